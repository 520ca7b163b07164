"""Time. Stored in UTC; schedules, tick ids and trading days are Hong Kong wall time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

HK = ZoneInfo("Asia/Hong_Kong")

# The one timeframe table: what the strategy can trade on, the syncer syncs and the paper venue's
# feeds serve. Everything else derives from it.
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}


def now_utc() -> datetime:
    return datetime.now(UTC)


def now_ms() -> int:
    return int(now_utc().timestamp() * 1000)


def to_hk(moment: datetime) -> datetime:
    return moment.astimezone(HK)


def hk_trading_day(moment: datetime) -> date:
    """The Hong Kong calendar day a moment belongs to (daily loss limit, daily summary)."""
    return to_hk(moment).date()


def hk_day_start_utc(moment: datetime) -> datetime:
    """UTC instant at which the HK trading day containing ``moment`` began."""
    hk = to_hk(moment)
    return hk.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def timeframe_seconds(timeframe: str) -> int:
    try:
        return TIMEFRAME_SECONDS[timeframe]
    except KeyError:
        raise ValueError(f"unsupported timeframe {timeframe!r}; use one of {', '.join(TIMEFRAME_SECONDS)}") from None


def timeframe_ms(timeframe: str) -> int:
    """'1m' -> 60000. Raises ValueError naming the unsupported timeframe."""
    return timeframe_seconds(timeframe) * 1000


def last_closed_candle_close(moment: datetime, timeframe: str) -> datetime:
    """The close time (UTC) of the newest candle that has closed at ``moment``."""
    step = timeframe_seconds(timeframe)
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step, tz=UTC)


def tick_id_for(candle_close: datetime) -> str:
    """A tick id is the HK wall time of the candle close, e.g. ``20261124T1415``.

    Deterministic for every process that looks at the same candle, so two beats or two
    workers computing the tick agree on its id (and thus on client order ids).
    """
    return to_hk(candle_close).strftime("%Y%m%dT%H%M")


def tick_close_from_id(tick_id: str) -> datetime:
    return datetime.strptime(tick_id, "%Y%m%dT%H%M").replace(tzinfo=HK).astimezone(UTC)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


__all__ = [
    "HK", "UTC", "now_utc", "now_ms", "to_hk", "hk_trading_day", "hk_day_start_utc", "timeframe_seconds",
    "timeframe_ms", "TIMEFRAME_SECONDS",
    "last_closed_candle_close", "tick_id_for", "tick_close_from_id", "ms_to_datetime", "datetime_to_ms",
    "timedelta",
]
