"""A trading history for the cockpit's tests, built through the money path's own services:
an entry decision, an entry order that is sent and filled (``trading.services.lifecycle``), the
position it opens (``strategy.services.positions``), an exit that fills and closes it, tickers and
equity snapshots. What the operator sees is then what production would show for the same facts."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from infra.clock import last_closed_candle_close, now_utc, timeframe_seconds
from strategy.models import StrategyDecision, StrategyPosition
from strategy.services.positions import position_open_from_entry, position_refresh
from syncer.models import Candle, Ticker
from trading.client_ids import make_client_order_id
from trading.exchanges.base import Side, VenueTrade
from trading.models import EquitySnapshot, Order
from trading.services.lifecycle import NewOrder, order_create, order_mark_submitting, order_record_fills

_n = itertools.count(1)
VENUE = "paper"


def decision(*, symbol: str, tick_id: str, decision: str = "enter", reason_code: str = "ENTRY_SIGNAL",
             atr: str = "100", engine_inputs: dict | None = None, created_at: datetime | None = None
             ) -> StrategyDecision:
    inputs = {
        "engine": {"reason_code": reason_code, "inputs": {"atr": float(atr), **(engine_inputs or {})}},
        "params": {"stop_atr_multiple": 2.0, "take_profit_r": 3.0},
        "market": {"tick_size": "0.01", "lot_step": "0.00001", "min_qty": "0.00001"},
        "timeframe": "1m",
    }
    row = StrategyDecision.objects.create(strategy="blite", tick_id=tick_id, symbol=symbol, decision=decision,
                                          reason_code=reason_code, trace_id=f"dec-{next(_n)}", inputs=inputs)
    if created_at is not None:
        StrategyDecision.objects.filter(pk=row.pk).update(created_at=created_at)
        row.refresh_from_db()
    return row


def _order(*, symbol: str, side: str, intent: str, quantity: str, tick_id: str, trace_id: str) -> Order:
    order, _ = order_create(new=NewOrder(
        client_order_id=make_client_order_id(strategy="blite", symbol=symbol, tick_id=tick_id, intent=intent),
        venue=VENUE, strategy="blite", symbol=symbol, side=side, type="market", intent=intent,
        quantity=Decimal(quantity), tick_id=tick_id, trace_id=trace_id, reason_code="TEST"))
    return order


def _fill(order: Order, *, price: str, fee: str) -> Order:
    order_mark_submitting(order_id=order.pk)
    order_record_fills(order_id=order.pk, source="venue", trades=[VenueTrade(
        trade_id=f"tr-{next(_n)}", venue_order_id=f"V{order.pk}", client_order_id=order.client_order_id,
        symbol=order.symbol, side=Side(order.side), price=Decimal(price), quantity=order.quantity,
        fee=Decimal(fee), fee_asset="USDT", timestamp_ms=int(now_utc().timestamp() * 1000))])
    order.refresh_from_db()
    return order


def filled_entry(*, symbol: str = "BTC/USDT", quantity: str = "0.01", price: str = "60000", fee: str = "0.6",
                 atr: str = "100", opened_ago: timedelta = timedelta(minutes=5)) -> StrategyPosition:
    """A B-lite entry that filled: stop = entry - 2 x ATR, take-profit at 3R (the money path's rule)."""
    tick_id = f"20261201T{next(_n):04d}"
    row = decision(symbol=symbol, tick_id=tick_id, atr=atr)
    entry = _fill(_order(symbol=symbol, side="buy", intent="entry", quantity=quantity, tick_id=tick_id,
                         trace_id=row.trace_id), price=price, fee=fee)
    position = position_open_from_entry(order_id=entry.pk) or StrategyPosition.objects.get(entry_order=entry)
    StrategyPosition.objects.filter(pk=position.pk).update(opened_at=timezone.now() - opened_ago)
    position.refresh_from_db()
    return position


def closed_by_exit(position: StrategyPosition, *, price: str, fee: str = "0.6",
                   intent: str = "take_profit") -> StrategyPosition:
    """Its own exit order (client intent ``exit0``, tick ``P<id>``) sells everything at ``price``
    (the stop monitor records the reason when it places the exit, as ``position_check`` does)."""
    StrategyPosition.objects.filter(pk=position.pk).update(exit_reason=intent.upper(),
                                                            exit_triggered_at=timezone.now())
    exit_order = _order(symbol=position.symbol, side="sell", intent=intent, quantity=str(position.quantity),
                        tick_id=f"P{position.pk}", trace_id=f"exit-{position.pk}")
    _fill(exit_order, price=price, fee=fee)
    return position_refresh(position_id=position.pk)


def ticker(symbol: str, last: str) -> None:
    Ticker.objects.update_or_create(venue=VENUE, symbol=symbol,
                                    defaults={"last": Decimal(last), "venue_time": timezone.now()})


def equity(at: datetime, value: str, quote: str = "USDT") -> EquitySnapshot:
    return EquitySnapshot.objects.create(venue=VENUE, taken_at=at, quote=quote, equity=Decimal(value),
                                         free_quote=Decimal(value))


def candles(symbol: str, *, closes: list[str], timeframe: str = "15m") -> list[Candle]:
    """Closed candles of ``timeframe`` (the strategy's default: 15m) up to the last close."""
    step = timeframe_seconds(timeframe)
    end = last_closed_candle_close(timezone.now(), timeframe)
    out = []
    for i, close in enumerate(closes):
        t = end - timedelta(seconds=step * (len(closes) - i))
        c = Decimal(close)
        out.append(Candle.objects.create(venue=VENUE, symbol=symbol, timeframe=timeframe, open_time=t, open=c,
                                         high=c + 5, low=c - 5, close=c, volume=Decimal(10)))
    return out
