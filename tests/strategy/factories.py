"""Rows of the strategy app as the live code writes them: an entry decision (what a position's
stop and dust limit are built from) and an open position on a filled entry order."""

from __future__ import annotations

from decimal import Decimal

from strategy.models import StrategyDecision, StrategyPosition
from trading.models import Order

MARKET = {"tick_size": "0.01", "lot_step": "0.00001", "min_qty": "0.00001", "min_notional": "5"}


def entry_decision(*, tick: str, symbol: str = "BTC/USDT", atr: str = "500", take_profit_r: str = "2",
                   market: dict | None = None) -> StrategyDecision:
    """The ``enter`` decision row of ``tick``: the engine's ATR, the multiples and the market rules
    the position's stop, target and dust limit are taken from."""
    return StrategyDecision.objects.create(
        strategy="blite", tick_id=tick, symbol=symbol, decision="enter", reason_code="ENTRY_SIGNAL",
        trace_id=f"t-{tick}", inputs={"engine": {"inputs": {"atr": atr}}, "market": market or MARKET,
                                      "params": {"stop_atr_multiple": "2", "take_profit_r": take_profit_r}})


def open_position(entry: Order, *, quantity: Decimal | str, entry_price: str = "30000", stop: str = "29000",
                  target: str = "33000", **fields) -> StrategyPosition:
    """A position on ``entry`` holding ``quantity``, its stop and target as given."""
    state = {"entry_price": entry_price, "initial_stop": stop, "stop_price": stop, "take_profit_price": target,
             "highest_price": entry_price, "trail_distance": str(Decimal(entry_price) - Decimal(stop)),
             "atr_multiple": "2"}
    return StrategyPosition.objects.create(**{
        "strategy": "blite", "venue": entry.venue, "symbol": entry.symbol, "entry_order": entry,
        "tick_id": entry.tick_id, "trace_id": entry.trace_id, "quantity": Decimal(quantity),
        "entry_price": Decimal(entry_price), "stop_state": state, "opened_at": entry.created_at, **fields})
