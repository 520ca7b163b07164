from __future__ import annotations

from decimal import Decimal

from trading.client_ids import make_client_order_id
from trading.exchanges.base import Side, VenueTrade
from trading.services.lifecycle import NewOrder, order_create


def new_order(*, venue: str = "paper", symbol: str = "BTC/USDT", side: str = "buy", quantity: str = "0.01",
              tick: str = "20261124T1415", intent: str = "entry", type: str = "market",
              price: str | None = None, stop_price: str | None = None) -> NewOrder:
    return NewOrder(
        client_order_id=make_client_order_id(strategy="blite", symbol=symbol, tick_id=tick, intent=intent),
        venue=venue, strategy="blite", symbol=symbol, side=side, type=type, intent=intent,
        quantity=Decimal(quantity), price=Decimal(price) if price else None, tick_id=tick, trace_id=f"trace-{tick}",
        reason_code="ENTRY_SIGNAL", stop_price=Decimal(stop_price) if stop_price else None)


def create(**kwargs):
    order, _ = order_create(new=new_order(**kwargs))
    return order


def trade(order, *, trade_id: str, quantity: str, price: str = "30000", fee: str = "0") -> VenueTrade:
    return VenueTrade(trade_id=trade_id, venue_order_id=order.venue_order_id or "V1",
                      client_order_id=order.client_order_id, symbol=order.symbol, side=Side(order.side),
                      price=Decimal(price), quantity=Decimal(quantity), fee=Decimal(fee), fee_asset="USDT",
                      timestamp_ms=1_700_000_000_000)


def equity_snapshot(*, taken_at, equity: str, venue: str = "paper", quote: str = "USDT"):
    """One point of the equity curve at ``taken_at`` (the data-syncer appends these)."""
    from trading.models import EquitySnapshot

    return EquitySnapshot.objects.create(venue=venue, taken_at=taken_at, quote=quote, equity=Decimal(equity),
                                         free_quote=Decimal(equity))
