"""Candle builders for the pure strategy tests (no Django, no DB)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

TF_MS = 60_000
T0 = 1_700_000_040_000          # a minute boundary


@dataclass(frozen=True)
class C:
    """A candle as a venue would return it (floats are fine for the strategy)."""

    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def series(closes: list[float] | np.ndarray, volumes: list[float] | np.ndarray, *, wick: float = 0.05,
           t0: int = T0) -> list[C]:
    """Candles whose open is the previous close and whose wicks stick out by ``wick``."""
    out: list[C] = []
    prev = float(closes[0])
    for i, (c, v) in enumerate(zip(closes, volumes, strict=True)):
        o = prev
        out.append(C(t0 + i * TF_MS, o, max(o, c) + wick, min(o, c) - wick, float(c), float(v)))
        prev = float(c)
    return out


def entry_series(n: int | None = None) -> list[C]:
    """Steady uptrend, flat volume, and a last candle that breaks out on double volume
    (``n`` candles: by default exactly the default decision window)."""
    if n is None:
        from strategy.engines.blite import BLiteParams

        n = BLiteParams().history_candles
    # The same slope whatever n: 10 per 220 candles, ending at 110.
    closes = list(np.linspace(110.0 - 10.0 * (n - 2) / 219, 110.0, n - 1)) + [112.0]
    volumes = [100.0] * (n - 1) + [200.0]
    return series(closes, volumes)


def with_last(candles: list[C], **changes: float) -> list[C]:
    return [*candles[:-1], replace(candles[-1], **changes)]


def random_walk(seed: int, n: int, *, force_entry: bool = True, t0: int = T0) -> list[C]:
    """A random walk; with ``force_entry`` the last candle is pushed into a clear breakout on
    high volume above the trend, so the *clean* series enters (making corruption tests bite)."""
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.004, n)))
    volumes = rng.lognormal(4, 0.3, n)
    if force_entry:
        closes[-1] = max(closes[:-1].max(), closes[-1]) * 1.03
        volumes[-1] = volumes[:-1].max() * 3
    return series(closes, volumes, wick=0.02, t0=t0)
