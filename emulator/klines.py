"""Candles: deterministic from (symbol, interval, open time) unless set through the control API.

Generated candles are a pure function of the symbol's anchor price, the interval and the open
time, so two runs (or two processes) see identical history. A candle's open equals the
previous candle's close, so series look continuous. Only candles whose open time is not in the
future are served, and the still-forming one is included, as both venues do.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from emulator.core import MarketSpec, floor_to_step

_MINUTE = 60_000
INTERVAL_MS: dict[str, int] = {
    "1m": _MINUTE, "3m": 3 * _MINUTE, "5m": 5 * _MINUTE, "15m": 15 * _MINUTE, "30m": 30 * _MINUTE,
    "1h": 60 * _MINUTE, "2h": 120 * _MINUTE, "4h": 240 * _MINUTE, "6h": 360 * _MINUTE,
    "8h": 480 * _MINUTE, "12h": 720 * _MINUTE, "1d": 1440 * _MINUTE, "3d": 3 * 1440 * _MINUTE,
    "1w": 7 * 1440 * _MINUTE,
}
# Bybit's interval names -> ours. Monthly candles are not emulated.
BYBIT_INTERVALS: dict[str, str] = {
    "1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h", "240": "4h",
    "360": "6h", "720": "12h", "D": "1d", "W": "1w",
}
# Weekly candles open on Monday 00:00 UTC; the epoch was a Thursday.
_WEEK_OFFSET_MS = 4 * 1440 * _MINUTE


@dataclass(frozen=True)
class Kline:
    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def align(interval: str, t_ms: int) -> int:
    """Open time of the candle containing ``t_ms``."""
    size = INTERVAL_MS[interval]
    offset = _WEEK_OFFSET_MS if interval == "1w" else 0
    return (t_ms - offset) // size * size + offset


def _unit(*parts: object) -> float:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class KlineStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._explicit: dict[tuple[str, str], dict[int, Kline]] = {}

    def reset(self) -> None:
        with self._lock:
            self._explicit.clear()

    def set(self, symbol: str, interval: str, rows: list[Kline]) -> None:
        """Replace the series of (symbol, interval) with exactly these candles."""
        if interval not in INTERVAL_MS:
            raise ValueError(f"unsupported interval {interval!r}")
        with self._lock:
            self._explicit[(symbol, interval)] = {k.open_time: k for k in rows}

    def query(
        self, market: MarketSpec, interval: str, *, start: int | None, end: int | None, limit: int,
        now_ms: int, latest_first: bool,
    ) -> list[Kline]:
        """Candles oldest first with ``start <= open_time <= min(end, now)``.

        ``latest_first=False`` (Binance): with a start, the first ``limit`` candles from it.
        ``latest_first=True`` (Bybit): always the newest ``limit`` candles of the window.
        """
        last_open = align(interval, now_ms if end is None else min(end, now_ms))
        with self._lock:
            explicit = self._explicit.get((market.symbol, interval))
            if explicit is not None:
                rows = sorted(
                    (k for t, k in explicit.items() if t <= last_open and (start is None or t >= start)),
                    key=lambda k: k.open_time,
                )
                if start is not None and not latest_first:
                    return rows[:limit]
                return rows[-limit:]
        size = INTERVAL_MS[interval]
        if start is not None and not latest_first:
            first = align(interval, start)
            if first < start:
                first += size
            times = range(first, min(last_open, first + (limit - 1) * size) + 1, size)
        else:
            first = last_open - (limit - 1) * size
            if start is not None:
                aligned = align(interval, start)
                first = max(first, aligned if aligned >= start else aligned + size)
            times = range(first, last_open + 1, size)
        return list(self._generate(market, interval, times))

    @staticmethod
    def _generate(market: MarketSpec, interval: str, times: range) -> Iterator[Kline]:
        size = INTERVAL_MS[interval]
        tick = market.tick_size

        def level(t: int) -> Decimal:
            # A slow wave plus noise around the anchor, so strategies see trends and ranges.
            wave = 0.04 * math.sin(2 * math.pi * t / (size * 240)) + 0.01 * math.sin(t / (size * 7.0))
            noise = 0.006 * (_unit(market.symbol, interval, t) - 0.5)
            return floor_to_step(market.anchor * Decimal(str(round(1 + wave + noise, 10))), tick)

        for t in times:
            open_, close = level(t), level(t + size)
            spread = Decimal(str(round(0.004 * _unit(market.symbol, interval, t, "hl"), 10)))
            high = floor_to_step(max(open_, close) * (1 + spread), tick)
            low = floor_to_step(min(open_, close) * (1 - spread / 2), tick)
            volume = Decimal(str(round(10 + 90 * _unit(market.symbol, interval, t, "v"), 4)))
            yield Kline(t, open_, max(high, open_, close), min(low, open_, close), close,
                        volume.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
