"""Tight per-candle loops of the backtest, compiled with numba (``cache=True``: compiled once
per machine, then loaded from ``__pycache__`` in well under a second).

Nothing here decides anything on its own:

* ``ema_at`` / ``wilder_at`` compute, for chosen candles, the trend EMA and the ATR exactly as
  ``strategy.engines.indicators.ema`` / ``atr`` compute them on the decision window that ends
  at that candle - the same seed (the window's first SMA, summed left to right) and the same
  operation order, so the floats are bit-for-bit equal (``tests/backtest/test_engine_kernels``).
  The live tick evaluates one window per tick; a backtest needs a window per candle, which in
  NumPy costs a Python-level loop per window.
* ``donchian_high`` is the live channel over a whole series in one pass (a maximum is exact).
* ``equity_curve`` is the run's equity at every close from the balance changes, in one pass.
* ``next_exit_candidate`` / ``first_loss_candidate`` are *searches*: they skip candles that
  certainly change nothing (a stop / target not touched, equity clearly above the daily loss
  limit), with a relative slack of ``EPS`` so float rounding can never skip a real hit. The
  candle they stop at is then decided by the live rules in Decimal (``stops.candle_exit``,
  ``gates.daily_loss_limit_hit``); a false alarm just resumes the search.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EPS = 1e-9


# Windows computed side by side. Each window's smoothing is one long chain of dependent float
# operations (a division per step for Wilder's), so a window at a time waits on the latency of
# every step; LANES independent chains advanced together keep the FPU busy. Each lane performs
# exactly its own window's operations in the same order, so the values do not change. A last,
# partial group repeats its final window in the spare lanes (computed, not stored).
LANES = 16


@njit(cache=True, nogil=True)
def _lane_starts(ends, g, window, starts):  # pragma: no cover - compiled
    m = ends.shape[0]
    for lane in range(LANES):
        starts[lane] = ends[min(g + lane, m - 1)] - window + 1


@njit(cache=True, nogil=True)
def ema_at(x, ends, window, period):  # pragma: no cover - compiled
    k = 2.0 / (period + 1)
    m = ends.shape[0]
    out = np.empty(m)
    prev = np.empty(LANES)
    starts = np.empty(LANES, dtype=np.int64)
    for g in range(0, m, LANES):
        _lane_starts(ends, g, window, starts)
        for lane in range(LANES):
            prev[lane] = 0.0
        for j in range(period):                     # the seed: the window's first SMA, left to right
            for lane in range(LANES):
                prev[lane] = prev[lane] + x[starts[lane] + j]
        for lane in range(LANES):
            prev[lane] = prev[lane] / period
        for j in range(period, window):
            for lane in range(LANES):
                prev[lane] = (x[starts[lane] + j] - prev[lane]) * k + prev[lane]
        for lane in range(min(LANES, m - g)):
            out[g + lane] = prev[lane]
    return out


@njit(cache=True, nogil=True)
def wilder_at(tr, ends, window, period):  # pragma: no cover - compiled
    """Wilder's smoothing of the true range ``tr`` (``indicators.true_range`` of the whole
    series: a candle's TR needs only it and the previous close, so it is the window's own)."""
    m = ends.shape[0]
    out = np.empty(m)
    prev = np.empty(LANES)
    starts = np.empty(LANES, dtype=np.int64)
    for g in range(0, m, LANES):
        _lane_starts(ends, g, window, starts)
        for lane in range(LANES):
            prev[lane] = 0.0
        for j in range(1, 1 + period):              # the seed skips the window's first TR (no prev close)
            for lane in range(LANES):
                prev[lane] = prev[lane] + tr[starts[lane] + j]
        for lane in range(LANES):
            prev[lane] = prev[lane] / period
        for j in range(period + 1, window):
            for lane in range(LANES):
                prev[lane] = (prev[lane] * (period - 1) + tr[starts[lane] + j]) / period
        for lane in range(min(LANES, m - g)):
            out[g + lane] = prev[lane]
    return out


@njit(cache=True, nogil=True)
def donchian_high(high, lookback):  # pragma: no cover - compiled
    """``indicators.donchian_high`` of one series: the highest of the ``lookback`` highs before
    each candle; NaN for the first ``lookback`` candles and wherever the window holds a NaN (as
    ``np.max`` propagates it). A maximum does not depend on the order it is taken in, so the
    values are the live function's (a zero's sign aside, which no comparison sees).

    In two passes whatever the lookback (van Herk / Gil-Werman): the series in blocks of
    ``lookback`` candles; a window starting in one block ends in the next, so its maximum is
    the maximum from its start to its block's end (a backward pass over the block) and from
    the next block's start to its last candle (a running maximum). NaNs are counted apart over
    the sliding window and stand as -inf in the maxima. No temporaries of the series' size."""
    n = high.shape[0]
    out = np.full(n, np.nan)
    if n <= lookback:
        return out
    to_end = np.empty(lookback)
    nans = 0
    for j in range(lookback):
        if np.isnan(high[j]):
            nans += 1
    for block in range(0, n - lookback, lookback):          # windows starting in [block, nxt)
        nxt = block + lookback
        run = -np.inf
        for j in range(nxt - 1, block - 1, -1):
            x = high[j]
            if x > run:                                     # NaN never is
                run = x
            to_end[j - block] = run
        run = -np.inf
        for first in range(block, nxt):
            i = first + lookback
            if i >= n:
                break
            if first > block:                               # the window gained high[i - 1]
                x = high[i - 1]
                if x > run:
                    run = x
            if nans == 0:
                out[i] = to_end[first - block] if to_end[first - block] > run else run
            # slide the NaN count to the next window [first + 1, i]
            if np.isnan(high[first]):
                nans -= 1
            if np.isnan(high[i]):
                nans += 1
    return out


@njit(cache=True, nogil=True)
def next_exit_candidate(o, h, lo, start, end, stop, take_profit, highest, distance):  # pragma: no cover
    """First candle in [start, end) that may exit a position whose stop is ``stop`` before
    ``start``: (index or -1, highest high before that candle, stop before it)."""
    for j in range(start, end):
        s_hi = stop * (1.0 + EPS)
        tp_lo = take_profit * (1.0 - EPS)
        if o[j] <= s_hi or lo[j] <= s_hi or o[j] >= tp_lo or h[j] >= tp_lo:
            return j, highest, stop
        if h[j] > highest:
            highest = h[j]
        if highest - distance > stop:
            stop = highest - distance
    return -1, highest, stop


@njit(cache=True, nogil=True)
def first_loss_candidate(cash, quantities, close, start, end, threshold):  # pragma: no cover - compiled
    """First tick in [start, end] whose equity (cash + quantities x closes) may be at or below
    ``threshold``, or -1."""
    bound = threshold * (1.0 + EPS) + abs(threshold) * EPS
    n_sym = quantities.shape[0]
    for t in range(start, end + 1):
        equity = cash
        for s in range(n_sym):
            equity += quantities[s] * close[s, t]
        if equity <= bound:
            return t
    return -1


@njit(cache=True, nogil=True)
def equity_curve(cash0, cash_delta, qty0, qty_delta, close):  # pragma: no cover - compiled
    """``cash0 + cumsum(cash_delta) + sum over symbols of (qty0 + cumsum(qty_delta)) x close`` at
    every tick, with NumPy's operations in NumPy's order (each running sum left to right from
    its first element, the symbols added in order starting from the first product), in one pass
    instead of five arrays of the whole run's size."""
    n = cash_delta.shape[0]
    n_sym = qty0.shape[0]
    out = np.empty(n)
    running = np.empty(n_sym)
    cash_run = 0.0
    for t in range(n):
        cash_run = cash_delta[0] if t == 0 else cash_run + cash_delta[t]
        total = 0.0
        for s in range(n_sym):
            running[s] = qty_delta[s, 0] if t == 0 else running[s] + qty_delta[s, t]
            marked = (qty0[s] + running[s]) * close[s, t]
            total = marked if s == 0 else total + marked
        out[t] = (cash0 + cash_run) + total
    return out
