"""Technical indicators over a universe at once: 2-D float64 arrays, one row per symbol.

Every function takes ``(symbols x candles)`` arrays and returns an array of the same shape,
NaN wherever the indicator is not defined yet. Rows may start with NaN *padding* (symbols
with a shorter history are right-aligned, see ``candles.CandleBatch``); each row's warm-up
starts at its own first non-NaN value, so a row gives exactly the numbers it would give on
its own, and a padded row gives the numbers TA-Lib's Python wrapper gives (it also skips
leading NaNs).

Semantics follow TA-Lib so that what an operator sees on a chart or in TA-Lib matches what
the strategy saw:

* ``ema``: seeded with the SMA of the first ``period`` values, then
  ``ema += k * (x - ema)`` with ``k = 2 / (period + 1)``.
* ``atr`` (Wilder): true range needs the previous close, so the first TR is at the row's
  second candle; the first ATR is the mean of the first ``period`` TRs, then
  ``atr = (atr * (period - 1) + tr) / period``.
* NaN *inside* a row: the recursive indicators (EMA, ATR) stay NaN from there on, as in
  TA-Lib; the windowed ones (SMA, Donchian) are NaN only for windows that contain the NaN.
  The strategy never trades on a window with a NaN anyway (``BAD_DATA``).

The recursions loop over candles (a few hundred) and vectorise over symbols (thousands):
that is the cheap direction, and keeps each value computed by the same arithmetic whatever
the batch size.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

__all__ = ["FloatArray", "atr", "donchian_high", "ema", "sma", "true_range"]


def _as_2d(values: NDArray[np.floating] | list[list[float]], name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (symbols x candles), got shape {arr.shape}")
    return arr


def _check_period(period: int) -> None:
    # bool is an int subclass; ema(x, True) is certainly a bug.
    if isinstance(period, bool) or not isinstance(period, int | np.integer) or period < 1:
        raise ValueError(f"period must be a positive int, got {period!r}")


def _first_valid(x: FloatArray) -> NDArray[np.int64]:
    """Index of each row's first non-NaN value (row length if the row is all NaN)."""
    valid = ~np.isnan(x)
    return np.where(valid.any(axis=1), valid.argmax(axis=1), x.shape[1]).astype(np.int64)


def _seeded_recursion(
    x: FloatArray, seed_idx: NDArray[np.int64], seed: FloatArray, *, ema_period: int = 0,
    wilder_period: int = 0,
) -> FloatArray:
    """``out[seed_idx] = seed``, then one smoothing step per candle.

    EMA: ``out[j] = (x[j] - out[j-1]) * k + out[j-1]``; Wilder:
    ``out[j] = (out[j-1] * (n - 1) + x[j]) / n``. Mathematically both are
    ``prev + alpha * (x - prev)``, but each is written in TA-Lib's own operation order so the
    floats agree to the last bit with what TA-Lib (and a chart using it) shows. Columns
    before a row's seed stay NaN because NaN propagates.
    """
    n_sym, n = x.shape
    # Column-major copy: the loop reads one column per step.
    xt = np.ascontiguousarray(x.T)
    out_t = np.full((n, n_sym), np.nan)
    start = int(seed_idx.min()) if n_sym else n
    prev = np.full(n_sym, np.nan)
    k = 2.0 / (ema_period + 1) if ema_period else 0.0
    for j in range(start, n):
        if ema_period:
            cur = (xt[j] - prev) * k + prev
        else:
            cur = (prev * (wilder_period - 1) + xt[j]) / wilder_period
        is_seed = seed_idx == j
        if is_seed.any():
            cur[is_seed] = seed[is_seed]
        out_t[j] = cur
        prev = cur
    return np.ascontiguousarray(out_t.T)


def _window_mean_from(x: FloatArray, start: NDArray[np.int64], period: int) -> FloatArray:
    """Mean of ``x[r, start[r] : start[r] + period]`` per row (NaN if out of range or NaN inside)."""
    n_sym, n = x.shape
    out = np.full(n_sym, np.nan)
    ok = start + period <= n
    if ok.any():
        rows = np.nonzero(ok)[0]
        idx = start[rows, None] + np.arange(period)[None, :]
        # Summed left to right like TA-Lib's seed loop, so the seed is bit-for-bit the
        # same whatever the batch layout.
        window = np.take_along_axis(x[rows], idx, axis=1)
        total = np.zeros(len(rows))
        for i in range(period):
            total = total + window[:, i]
        out[rows] = total / period
    return out


def ema(values: FloatArray, period: int) -> FloatArray:
    """Exponential moving average, seeded with the SMA of each row's first ``period`` values."""
    _check_period(period)
    x = _as_2d(values, "values")
    first = _first_valid(x)
    seed_idx = first + period - 1
    seed = _window_mean_from(x, first, period)
    return _seeded_recursion(x, seed_idx, seed, ema_period=period)


def sma(values: FloatArray, period: int) -> FloatArray:
    """Simple moving average of the last ``period`` values, current one included."""
    _check_period(period)
    x = _as_2d(values, "values")
    out = np.full_like(x, np.nan)
    if x.shape[1] < period:
        return out
    # A direct window mean rather than a running cumsum: no drift from subtracting large
    # running totals, and every window is computed independently of what came before.
    windows = sliding_window_view(x, period, axis=1)
    out[:, period - 1:] = windows.mean(axis=-1)
    return out


def true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """max(high - low, |high - prev close|, |low - prev close|); NaN at each row's first candle."""
    h = _as_2d(high, "high")
    lo = _as_2d(low, "low")
    c = _as_2d(close, "close")
    if not h.shape == lo.shape == c.shape:
        raise ValueError(f"high/low/close shapes differ: {h.shape}, {lo.shape}, {c.shape}")
    out = np.full_like(h, np.nan)
    prev_close = c[:, :-1]
    # np.maximum (not fmax) so that a NaN anywhere makes the TR NaN instead of being skipped.
    out[:, 1:] = np.maximum(
        h[:, 1:] - lo[:, 1:],
        np.maximum(np.abs(h[:, 1:] - prev_close), np.abs(lo[:, 1:] - prev_close)),
    )
    return out


def atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int = 14) -> FloatArray:
    """Wilder's average true range with TA-Lib's warm-up (first value at row start + period)."""
    _check_period(period)
    tr = true_range(high, low, close)
    # The first TR sits one candle after the row's first candle (it needs a previous close).
    first_candle = _first_valid(_as_2d(close, "close"))
    first_tr = first_candle + 1
    seed = _window_mean_from(tr, first_tr, period)
    return _seeded_recursion(tr, first_tr + period - 1, seed, wilder_period=period)


def donchian_high(high: FloatArray, lookback: int) -> FloatArray:
    """Highest high of the ``lookback`` candles *before* each candle (the current one excluded).

    Excluding the current candle is what makes "close above the channel" a breakout test:
    with it included, a close could never exceed its own candle's high.
    """
    _check_period(lookback)
    h = _as_2d(high, "high")
    out = np.full_like(h, np.nan)
    if h.shape[1] <= lookback:
        return out
    # np.max propagates NaN, so a window touching padding or a hole is undefined.
    windows = sliding_window_view(h[:, :-1], lookback, axis=1)
    out[:, lookback:] = windows.max(axis=-1)
    return out
