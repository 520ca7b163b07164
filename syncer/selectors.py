"""Reads of market data and of the syncer's own state (no writes, no venue calls).

The syncer's transient state lives in Redis (``infra.redis``), everything else in PostgreSQL:

* ``venue:health:<venue>``        - outcome of the syncer's last venue call batch (JSON)
* ``venue:rate_limited:<venue>``  - present while the venue asked us to back off (TTL = retry-after)
* ``sync:tick:<venue>:<tf>:<id>`` - the candle sync of that tick has finished (JSON report)
* ``sync:status:<venue>:<tf>``    - the last candle sync report (gaps, stale symbols)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from infra.clock import datetime_to_ms, ms_to_datetime, now_ms
from infra.redis import get_redis, key
from syncer.models import BalanceSnapshot, Candle, Ticker
from trading.exchanges.base import Candle as VenueCandle

__all__ = [
    "VenueHealth", "candles_between", "candles_recent", "candles_window", "latest_balances", "latest_prices",
    "newest_open_ms", "stored_open_times", "sync_status", "tick_synced", "venue_health",
]


def health_key(venue: str) -> str:
    return key("venue", "health", venue)


def rate_limited_key(venue: str) -> str:
    return key("venue", "rate_limited", venue)


def tick_key(venue: str, timeframe: str, tick_id: str) -> str:
    return key("sync", "tick", venue, timeframe, tick_id)


def status_key(venue: str, timeframe: str) -> str:
    return key("sync", "status", venue, timeframe)


def stale_set_key(venue: str, timeframe: str) -> str:
    return key("sync", "stale", venue, timeframe)


def candles_window(*, venue: str, symbol: str, timeframe: str, last_open_ms: int, count: int) -> list[VenueCandle]:
    """The newest ``count`` stored candles opening at or before ``last_open_ms``, oldest first.

    Holes are kept as holes: the strategy must see them (GAP_IN_DATA), never a repaired series.
    """
    rows = (Candle.objects.filter(venue=venue, symbol=symbol, timeframe=timeframe,
                                  open_time__lte=ms_to_datetime(last_open_ms))
            .order_by("-open_time").values_list("open_time", "open", "high", "low", "close", "volume")[:count])
    return [VenueCandle(datetime_to_ms(t), o, h, lo, c, v) for t, o, h, lo, c, v in reversed(rows)]


def candles_between(*, venue: str, symbol: str, timeframe: str, first_open_ms: int,
                    end_open_ms: int) -> list[tuple[int, float, float, float, float, float]]:
    """Stored candles opening in [first_open_ms, end_open_ms), oldest first, as
    ``(open_time_ms, open, high, low, close, volume)`` floats (the backtest's input; holes kept)."""
    rows = (Candle.objects.filter(venue=venue, symbol=symbol, timeframe=timeframe,
                                  open_time__gte=ms_to_datetime(first_open_ms),
                                  open_time__lt=ms_to_datetime(end_open_ms))
            .order_by("open_time").values_list("open_time", "open", "high", "low", "close", "volume"))
    return [(datetime_to_ms(t), float(o), float(h), float(lo), float(c), float(v)) for t, o, h, lo, c, v in rows]


def candles_recent(*, venue: str, symbol: str, timeframe: str, count: int) -> list[Candle]:
    """The newest ``count`` stored candles of one market, oldest first (for charts)."""
    rows = Candle.objects.filter(venue=venue, symbol=symbol, timeframe=timeframe).order_by("-open_time")[:count]
    return list(reversed(rows))


def newest_open_ms(*, venue: str, symbol: str, timeframe: str, at_or_before_ms: int | None = None) -> int | None:
    qs = Candle.objects.filter(venue=venue, symbol=symbol, timeframe=timeframe)
    if at_or_before_ms is not None:
        qs = qs.filter(open_time__lte=ms_to_datetime(at_or_before_ms))
    newest = qs.order_by("-open_time").values_list("open_time", flat=True).first()
    return None if newest is None else datetime_to_ms(newest)


def stored_open_times(*, venue: str, symbol: str, timeframe: str, first_ms: int, last_ms: int) -> list[int]:
    """Open times (ms) stored in [first_ms, last_ms], ascending."""
    times = (Candle.objects.filter(venue=venue, symbol=symbol, timeframe=timeframe,
                                   open_time__gte=ms_to_datetime(first_ms), open_time__lte=ms_to_datetime(last_ms))
             .order_by("open_time").values_list("open_time", flat=True))
    return [datetime_to_ms(t) for t in times]


def latest_prices(*, venue: str, symbols: list[str] | None = None) -> dict[str, Decimal]:
    """Last price per symbol from the newest stored ticker."""
    qs = Ticker.objects.filter(venue=venue)
    if symbols is not None:
        qs = qs.filter(symbol__in=symbols)
    return dict(qs.values_list("symbol", "last"))


def latest_balances(*, venue: str) -> tuple[dict[str, dict[str, Decimal]], datetime | None]:
    """``({asset: {"free": Decimal, "locked": Decimal}}, taken_at)`` of the last balance sync."""
    snap = BalanceSnapshot.objects.filter(venue=venue).first()
    if snap is None:
        return {}, None
    return ({asset: {k: Decimal(v) for k, v in amounts.items()} for asset, amounts in snap.balances.items()},
            snap.taken_at)


@dataclass(frozen=True)
class VenueHealth:
    ok: bool
    reason: str
    detail: dict[str, Any]


def venue_health(venue: str) -> VenueHealth:
    """Is the venue usable for new entries, as far as the syncer knows?

    Unhealthy while the venue bans us (418), while a rate-limit back-off is running, and when
    the syncer's last batch of venue calls failed. Never synced yet counts as unhealthy (fail
    closed). Raises if Redis is down: a tick that cannot tell must not trade.
    """
    from trading.exchanges.ratelimit import venue_ban_state

    ban = venue_ban_state(venue)
    if ban:
        left = ban.get("remaining_s") or 0
        return VenueHealth(False, f"banned by the venue for another {left:.0f}s (HTTP 418 / 403)", ban)
    client = get_redis()
    limited = client.get(rate_limited_key(venue))
    if limited:
        return VenueHealth(False, "rate limited", json.loads(limited))
    raw = client.get(health_key(venue))
    if raw is None:
        return VenueHealth(False, "no sync has reported on the venue yet", {})
    health = json.loads(raw)
    if not health.get("ok"):
        return VenueHealth(False, f"last {health.get('op', 'sync')} failed", health)
    return VenueHealth(True, "ok", health)


def rate_limited_until_ms(venue: str) -> int | None:
    raw = get_redis().get(rate_limited_key(venue))
    if not raw:
        return None
    return int(json.loads(raw).get("until_ms") or now_ms())


def tick_synced(*, venue: str, timeframe: str, tick_id: str) -> dict[str, Any] | None:
    """The candle sync report of that tick if its sync has finished, else None."""
    raw = get_redis().get(tick_key(venue, timeframe, tick_id))
    return None if raw is None else json.loads(raw)


def sync_status(*, venue: str, timeframe: str) -> dict[str, Any] | None:
    raw = get_redis().get(status_key(venue, timeframe))
    return None if raw is None else json.loads(raw)
