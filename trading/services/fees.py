"""Fees paid in a third asset (BNB on Binance), valued in quote at the fill's time.

A fill's fee in the base or the quote asset is valued when the fill is recorded. One in another
asset cannot be: it needs the venue's price of that asset against the quote *at the fill's
time*. Until it has one the fee stays in ``orders.fee_unvalued`` (never counted as quote),
and reports and ``tbot diagnose`` show it.

The price: for a fill of the last two minutes, the venue's last price now; for an older one, the
close of the venue's one-minute candle that contains the fill.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from infra.clock import now_ms
from trading.exchanges.base import ExchangeGateway
from trading.exchanges.errors import VenueError
from trading.models import Order
from trading.services import lifecycle
from trading.services.lifecycle import EventType

log = logging.getLogger(__name__)

RECENT_MS = 120_000
MINUTE_MS = 60_000


def fee_price_at(gateway: ExchangeGateway, *, asset: str, quote: str, at_ms: int) -> tuple[Decimal, str] | None:
    """The venue's price of ``asset`` in ``quote`` at ``at_ms``, and where it came from; None if the
    venue has no such market or cannot say now."""
    symbol = f"{asset}/{quote}"
    try:
        if now_ms() - at_ms <= RECENT_MS:
            return gateway.fetch_ticker(symbol).last, "ticker"
        minute = at_ms - at_ms % MINUTE_MS
        for candle in gateway.fetch_closed_candles(symbol, "1m", since_ms=minute, limit=2):
            if candle.open_time_ms == minute:
                return candle.close, f"1m candle {minute}"
    except VenueError as exc:
        log.info("no %s price for a fee at %s: %s", symbol, at_ms, exc)
    return None


def fees_value(*, gateway: ExchangeGateway, order_ids: list[int] | None = None) -> int:
    """Value every third-asset fee still unvalued (of ``order_ids``, or of every order of this
    venue). Returns how many fills' fees were valued; what cannot be priced now stays as it is."""
    orders = Order.objects.filter(venue=gateway.name).exclude(fee_unvalued={})
    if order_ids is not None:
        orders = orders.filter(pk__in=order_ids)
    valued = 0
    for order in orders:
        quote = order.symbol.split("/")[1]
        base = order.symbol.split("/")[0]
        done = {p.get("fill") for p in order.events.filter(event_type=EventType.FEE_VALUED)
                .values_list("payload", flat=True)}
        fills = order.events.filter(event_type=EventType.FILL).values_list("idempotency_key", "payload")
        for key, payload in fills:
            asset = payload.get("fee_asset")
            if key in done or asset in (None, "", base, quote) or Decimal(str(payload.get("fee") or 0)) == 0:
                continue
            priced = fee_price_at(gateway, asset=asset, quote=quote, at_ms=int(payload["timestamp_ms"]))
            if priced is None:
                continue
            valued += lifecycle.order_value_fee(order_id=order.pk, fill_key=key, asset=asset,
                                                amount=Decimal(str(payload["fee"])), price=priced[0],
                                                price_source=priced[1])
    return valued


__all__ = ["fees_value", "fee_price_at"]
