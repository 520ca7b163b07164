"""``CandleBatch``: the candles of a whole universe as right-aligned 2-D arrays.

Strategies decide on the *last* candle of every symbol, so rows are aligned on their right
end: column -1 is each symbol's newest candle. A symbol with a shorter history is padded on
the left with NaN prices and ``open_time_ms = PAD_OPEN_TIME``; ``n_candles`` says how many
columns of each row are real, and strategies treat padding as missing history (never as
data).

Only *closed* candles belong in a batch. The caller (syncer / backtest) drops the candle
that is still forming; deciding on a forming candle would act on a close that can still
change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from infra.clock import TIMEFRAME_SECONDS, timeframe_ms

__all__ = ["PAD_OPEN_TIME", "TIMEFRAME_MS", "CandleBatch", "CandleLike", "timeframe_to_ms"]

# Marks a padded (non-existent) candle in ``open_time_ms``. Negative, so it can never be a
# real epoch time and never accidentally look evenly spaced with real candles.
PAD_OPEN_TIME = np.int64(-1)

# The timeframe table lives in ``infra.clock`` (pure, no I/O): one for the whole system.
TIMEFRAME_MS: dict[str, int] = {tf: seconds * 1000 for tf, seconds in TIMEFRAME_SECONDS.items()}
timeframe_to_ms = timeframe_ms


class CandleLike(Protocol):
    """Anything shaped like ``trading.exchanges.base.Candle`` (Decimal, float or int fields)."""

    @property
    def open_time_ms(self) -> int: ...
    @property
    def open(self) -> Decimal | float: ...
    @property
    def high(self) -> Decimal | float: ...
    @property
    def low(self) -> Decimal | float: ...
    @property
    def close(self) -> Decimal | float: ...
    @property
    def volume(self) -> Decimal | float: ...


def _to_float(value: Decimal | float | int | None) -> float:
    # A missing or unparsable value becomes NaN, which the strategy reports as BAD_DATA
    # instead of crashing the whole universe's tick on one symbol's garbage.
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, ArithmeticError):
        return math.nan


def _to_time(value: object) -> int:
    # An unusable open time becomes the padding marker, which the strategy reports as
    # BAD_DATA for that symbol only.
    try:
        t = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return int(PAD_OPEN_TIME)
    return t if 0 <= t < 2**62 else int(PAD_OPEN_TIME)


@dataclass(frozen=True, eq=False)
class CandleBatch:
    """Closed candles of several symbols, right-aligned (see module docstring).

    ``open_time_ms`` is int64, the price/volume arrays float64, all shaped
    ``(len(symbols), width)``; ``n_candles[i]`` counts the real (non-padding) candles of row i.
    """

    symbols: tuple[str, ...]
    timeframe_ms: int
    open_time_ms: NDArray[np.int64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    n_candles: NDArray[np.int64]

    def __post_init__(self) -> None:
        n_sym = len(self.symbols)
        if len(set(self.symbols)) != n_sym:
            raise ValueError("CandleBatch symbols must be unique")
        if isinstance(self.timeframe_ms, bool) or not isinstance(self.timeframe_ms, int | np.integer) \
                or self.timeframe_ms <= 0:
            raise ValueError(f"timeframe_ms must be a positive int, got {self.timeframe_ms!r}")
        if self.open_time_ms.dtype != np.int64:
            raise ValueError(f"open_time_ms must be int64, got {self.open_time_ms.dtype}")
        shape = self.open_time_ms.shape
        if len(shape) != 2 or shape[0] != n_sym:
            raise ValueError(f"open_time_ms must be shaped ({n_sym}, width), got {shape}")
        for name in ("open", "high", "low", "close", "volume"):
            arr = getattr(self, name)
            if arr.dtype != np.float64 or arr.shape != shape:
                raise ValueError(f"{name} must be float64 shaped {shape}, got {arr.dtype} {arr.shape}")
        if self.n_candles.shape != (n_sym,) or self.n_candles.dtype != np.int64:
            raise ValueError(f"n_candles must be int64 shaped ({n_sym},)")
        if n_sym and (self.n_candles.min() < 0 or self.n_candles.max() > shape[1]):
            raise ValueError("n_candles out of range for the batch width")

    @property
    def width(self) -> int:
        return int(self.open_time_ms.shape[1])

    @classmethod
    def from_candles(
        cls, candles_by_symbol: Mapping[str, Sequence[CandleLike]], *, timeframe: str | int,
    ) -> CandleBatch:
        """Build from per-symbol lists of candles, oldest first (lists may differ in length).

        Values are taken as given: a list that is out of order, has holes or NaNs is kept as
        is so that the strategy can *see* the problem and report it (GAP_IN_DATA / BAD_DATA),
        rather than having it silently repaired here.
        """
        tf_ms = timeframe if isinstance(timeframe, int) else timeframe_to_ms(timeframe)
        symbols = tuple(candles_by_symbol)
        lengths = [len(candles_by_symbol[s]) for s in symbols]
        width = max(lengths, default=0)
        n_sym = len(symbols)
        times = np.full((n_sym, width), PAD_OPEN_TIME, dtype=np.int64)
        names = ("open", "high", "low", "close", "volume")
        fields = {name: np.full((n_sym, width), np.nan) for name in names}
        for row, symbol in enumerate(symbols):
            seq = candles_by_symbol[symbol]
            n = len(seq)
            if n == 0:
                continue
            start = width - n
            times[row, start:] = [_to_time(c.open_time_ms) for c in seq]
            for name, arr in fields.items():
                arr[row, start:] = [_to_float(getattr(c, name)) for c in seq]
        return cls(
            symbols=symbols, timeframe_ms=int(tf_ms), open_time_ms=times,
            n_candles=np.asarray(lengths, dtype=np.int64).reshape(n_sym), **fields,
        )

    def select(self, symbols: Sequence[str]) -> CandleBatch:
        """A batch of just these symbols (rows copied, padding kept)."""
        rows = [self.symbols.index(s) for s in symbols]
        return CandleBatch(
            symbols=tuple(symbols), timeframe_ms=self.timeframe_ms,
            open_time_ms=self.open_time_ms[rows].copy(), open=self.open[rows].copy(),
            high=self.high[rows].copy(), low=self.low[rows].copy(), close=self.close[rows].copy(),
            volume=self.volume[rows].copy(), n_candles=self.n_candles[rows].copy(),
        )

    def tail(self, width: int) -> CandleBatch:
        """The last ``width`` columns (or all of them, if the batch is narrower)."""
        w = min(width, self.width)
        start = self.width - w
        return CandleBatch(
            symbols=self.symbols, timeframe_ms=self.timeframe_ms,
            open_time_ms=self.open_time_ms[:, start:], open=self.open[:, start:],
            high=self.high[:, start:], low=self.low[:, start:], close=self.close[:, start:],
            volume=self.volume[:, start:], n_candles=np.minimum(self.n_candles, w),
        )
