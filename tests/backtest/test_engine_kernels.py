"""The backtest's compiled loops give bit-for-bit the indicator values the live tick computes
on each decision window (``strategy.engines.indicators``, itself checked against TA-Lib)."""

from __future__ import annotations

import numpy as np
import pytest

import strategy.engines.indicators as indicators
from backtest import _kernels


def _walk(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    high = close * (1 + rng.uniform(0, 0.01, n))
    low = close * (1 - rng.uniform(0, 0.01, n))
    return high, low, close


@pytest.mark.parametrize(("window", "period"), [(1021, 200), (29, 5), (13, 2), (50, 50)])
def test_windowed_ema_and_atr_equal_the_live_functions_on_each_window(window: int, period: int) -> None:
    high, low, close = _walk(window + period, 3000)
    ends = np.arange(window - 1, 3000, 37, dtype=np.int64)
    ema = _kernels.ema_at(close, ends, window, period)
    tr = indicators.true_range(high[None, :], low[None, :], close[None, :])[0]
    atr_period = min(period, window - 1)
    atr = _kernels.wilder_at(tr, ends, window, atr_period)
    windows = np.stack([np.arange(e - window + 1, e + 1) for e in ends])
    live_ema = indicators.ema(close[windows], period)[:, -1]
    live_atr = indicators.atr(high[windows], low[windows], close[windows], atr_period)[:, -1]
    np.testing.assert_array_equal(ema, live_ema)        # bit for bit, not approximately
    np.testing.assert_array_equal(atr, live_atr)


@pytest.mark.parametrize("count", [0, 1, _kernels.LANES - 1, _kernels.LANES, 2 * _kernels.LANES + 3])
def test_windows_computed_side_by_side_equal_one_window_at_a_time(count: int) -> None:
    # The kernels advance LANES windows together; a last partial group, a single window and no
    # window at all must give each window exactly its own value (the live function's).
    window, period = 301, 50
    high, low, close = _walk(count, 2000)
    ends = np.random.default_rng(count).integers(window - 1, 2000, count).astype(np.int64)
    tr = indicators.true_range(high[None, :], low[None, :], close[None, :])[0]
    ema = _kernels.ema_at(close, ends, window, period)
    atr = _kernels.wilder_at(tr, ends, window, 14)
    assert ema.shape == atr.shape == (count,)
    for i, e in enumerate(ends):
        win = slice(e - window + 1, e + 1)
        assert ema[i] == indicators.ema(close[None, win], period)[0, -1]
        assert atr[i] == indicators.atr(high[None, win], low[None, win], close[None, win], 14)[0, -1]


@pytest.mark.parametrize("lookback", [1, 2, 3, 7, 20, 64])
def test_the_channel_in_one_pass_equals_the_live_donchian_high_nan_holes_included(lookback: int) -> None:
    high, _, _ = _walk(lookback, 3000)
    rng = np.random.default_rng(lookback)
    high[rng.integers(0, 3000, 12)] = np.nan             # holes anywhere in the blocks the kernel uses
    high[[5, 700, 701, 2990]] = np.nan                   # a hole makes every window over it undefined
    high[1000:1030] = high[999]                          # ties
    high[1500:1510] = np.inf
    got = _kernels.donchian_high(high, lookback)
    np.testing.assert_array_equal(got, indicators.donchian_high(high[None, :], lookback)[0])
    assert np.isnan(got[:lookback]).all() and np.isnan(got[701 + lookback])
    assert np.isfinite(got).sum() > 1000 and got[1510] == np.inf        # and the test had defined windows
    assert np.isnan(_kernels.donchian_high(high[:lookback], lookback)).all()       # too short: undefined


@pytest.mark.parametrize("n_sym", [1, 5, 12])
def test_the_equity_curve_in_one_pass_equals_the_numpy_expression_bit_for_bit(n_sym: int) -> None:
    rng = np.random.default_rng(n_sym)
    n = 5000
    cash_delta = np.where(rng.random(n) < 0.02, rng.normal(0, 500, n), 0.0)
    qty_delta = np.where(rng.random((n_sym, n)) < 0.01, rng.normal(0, 3, (n_sym, n)), 0.0)
    qty_delta[:, 0] = -0.0                                # a negative zero first, as cumsum copies it
    qty0 = rng.uniform(0, 2, n_sym)
    qty0[0] = 0.0
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_sym, n)), axis=1))
    close[-1, :40] = np.nan                               # unmarked at first
    cash0 = 10_000.0
    expected = cash0 + np.cumsum(cash_delta) + ((qty0[:, None] + np.cumsum(qty_delta, axis=1)) * close).sum(axis=0)
    got = _kernels.equity_curve(cash0, cash_delta, qty0, qty_delta, close)
    assert got.tobytes() == expected.tobytes()            # bit for bit, NaNs and zeros' signs included


def test_the_live_volume_sma_on_chosen_windows_equals_it_over_the_whole_series() -> None:
    # The engine takes the volume SMA of a candle from the live function on that candle's own
    # window; the live tick takes it from a 1,021-candle window: the same per-window mean.
    rng = np.random.default_rng(5)
    volume = rng.lognormal(3, 1.5, 200_000) * rng.integers(1, 10**6, 200_000)
    whole = indicators.sma(volume[None, :], 20)[0]
    ends = np.sort(rng.choice(np.arange(19, volume.size), 20_000, replace=False))
    chosen = indicators.sma(volume[ends[:, None] + np.arange(-19, 1)], 20)[:, -1]
    assert chosen.tobytes() == whole[ends].tobytes()
    live = indicators.sma(volume[None, 5000:6021], 20)[0, 19:]
    assert live.tobytes() == whole[5019:6021].tobytes()


def test_the_exit_search_never_skips_a_candle_that_touches_the_stop_or_target() -> None:
    # A candle whose low equals the stop exactly is a candidate even when float rounding of the
    # ratcheted stop (highest - distance) lands a hair below it.
    o = np.array([100.3, 100.2, 100.1])
    h = np.array([100.7, 100.4, 100.2])
    lo = np.array([100.2, 100.1, 100.1])
    stop, highest, distance = 99.0, 100.0, 0.6
    j, high_before, stop_before = _kernels.next_exit_candidate(o, h, lo, 0, 3, stop, 200.0, highest, distance)
    # After candle 0 the stop is 100.7 - 0.6 = 100.1 (in floats 100.10000000000001 or so)
    assert j == 1 and high_before == 100.7 and stop_before == pytest.approx(100.1)
