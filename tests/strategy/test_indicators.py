"""Indicators against independent references: TA-Lib (when installed) and plain loops.

The loop references below are written from the textbook definitions, one symbol at a time,
with no NumPy vectorisation - a different code path from ``strategy.engines.indicators``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy.engines import indicators as ind

try:  # TA-Lib is a test-only reference; the loop references always run.
    import talib
except ImportError:  # pragma: no cover - depends on the environment
    talib = None

needs_talib = pytest.mark.skipif(talib is None, reason="TA-Lib not installed")


# --- plain-loop references (one series, list in, list out, None = undefined) ----------------

def ref_sma(xs: list[float], n: int) -> list[float | None]:
    out: list[float | None] = [None] * len(xs)
    for i in range(n - 1, len(xs)):
        window = xs[i - n + 1:i + 1]
        if any(math.isnan(v) for v in window):
            continue
        out[i] = sum(window) / n
    return out


def ref_ema(xs: list[float], n: int) -> list[float | None]:
    out: list[float | None] = [None] * len(xs)
    start = next((i for i, v in enumerate(xs) if not math.isnan(v)), len(xs))
    if start + n > len(xs):
        return out
    value = sum(xs[start:start + n]) / n
    out[start + n - 1] = value
    k = 2 / (n + 1)
    for i in range(start + n, len(xs)):
        value = value + k * (xs[i] - value)
        out[i] = value
    return out


def ref_atr(h: list[float], lo: list[float], c: list[float], n: int) -> list[float | None]:
    out: list[float | None] = [None] * len(c)
    start = next((i for i, v in enumerate(c) if not math.isnan(v)), len(c))
    trs = []
    for i in range(start + 1, len(c)):
        trs.append(max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])))
    if len(trs) < n:
        return out
    value = sum(trs[:n]) / n
    out[start + n] = value
    for j in range(n, len(trs)):
        value = (value * (n - 1) + trs[j]) / n
        out[start + 1 + j] = value
    return out


def ref_donchian(h: list[float], n: int) -> list[float | None]:
    out: list[float | None] = [None] * len(h)
    for i in range(n, len(h)):
        window = h[i - n:i]
        if any(math.isnan(v) for v in window):
            continue
        out[i] = max(window)
    return out


def assert_matches(actual: np.ndarray, expected: list[float | None], *, rtol: float = 1e-12) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if e is None:
            assert math.isnan(a), f"index {i}: expected undefined (NaN), got {a}"
        else:
            assert a == pytest.approx(e, rel=rtol, abs=1e-12), f"index {i}: {a} != {e}"


def random_walk_ohlc(seed: int, n_sym: int, n: int, pad: list[int] | None = None) -> tuple[np.ndarray, ...]:
    """Random-walk candles; row i starts with ``pad[i]`` NaN padding columns."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_sym, n)), axis=1))
    open_ = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, (n_sym, n)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, (n_sym, n)))
    volume = rng.lognormal(5, 0.5, (n_sym, n))
    for row, p in enumerate(pad or []):
        for arr in (open_, high, low, close, volume):
            arr[row, :p] = np.nan
    return open_, high, low, close, volume


PADS = [0, 0, 7, 60, 190, 250]   # a row shorter than every warm-up, too


@pytest.mark.parametrize("period", [1, 2, 14, 20, 200])
def test_ema_matches_loop_reference_including_warmup(period: int) -> None:
    _, _, _, close, _ = random_walk_ohlc(1, len(PADS), 260, PADS)
    out = ind.ema(close, period)
    for row in range(len(PADS)):
        assert_matches(out[row], ref_ema(close[row].tolist(), period), rtol=1e-11)


@pytest.mark.parametrize("period", [1, 5, 20])
def test_sma_matches_loop_reference(period: int) -> None:
    _, _, _, _, volume = random_walk_ohlc(2, len(PADS), 260, PADS)
    out = ind.sma(volume, period)
    for row in range(len(PADS)):
        assert_matches(out[row], ref_sma(volume[row].tolist(), period))


@pytest.mark.parametrize("period", [1, 14, 30])
def test_atr_matches_loop_reference(period: int) -> None:
    _, high, low, close, _ = random_walk_ohlc(3, len(PADS), 260, PADS)
    out = ind.atr(high, low, close, period)
    for row in range(len(PADS)):
        assert_matches(out[row], ref_atr(high[row].tolist(), low[row].tolist(), close[row].tolist(), period))


@pytest.mark.parametrize("lookback", [1, 20, 55])
def test_donchian_is_previous_candles_only(lookback: int) -> None:
    _, high, _, _, _ = random_walk_ohlc(4, len(PADS), 260, PADS)
    out = ind.donchian_high(high, lookback)
    for row in range(len(PADS)):
        assert_matches(out[row], ref_donchian(high[row].tolist(), lookback))


@needs_talib
@pytest.mark.parametrize("seed", range(5))
def test_against_talib_on_random_walks(seed: int) -> None:
    # Given random-walk candles, some rows left-padded like a short venue history
    _, high, low, close, volume = random_walk_ohlc(seed, len(PADS), 300, PADS)
    # When computing the universe at once
    ema200, ema20 = ind.ema(close, 200), ind.ema(close, 20)
    atr14, sma20 = ind.atr(high, low, close, 14), ind.sma(volume, 20)
    donchian = ind.donchian_high(high, 20)
    # Then every row equals TA-Lib on that row alone, NaN warm-up positions included
    for r in range(len(PADS)):
        np.testing.assert_allclose(ema200[r], talib.EMA(close[r], 200), rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(ema20[r], talib.EMA(close[r], 20), rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(atr14[r], talib.ATR(high[r], low[r], close[r], 14),
                                   rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(sma20[r], talib.SMA(volume[r], 20), rtol=1e-12, equal_nan=True)
        # TA-Lib's MAX includes the current candle; shifting by one gives "previous 20".
        expected = np.concatenate([[np.nan], talib.MAX(high[r], 20)[:-1]])
        np.testing.assert_array_equal(donchian[r], expected)
        # Warm-up: first defined index = first real candle + period - 1 (EMA) / + period (ATR)
        first = PADS[r]
        if first + 200 <= 300:
            assert np.isnan(ema200[r, first + 198]) and not np.isnan(ema200[r, first + 199])
        if first + 15 <= 300:
            assert np.isnan(atr14[r, first + 13]) and not np.isnan(atr14[r, first + 14])


def test_rows_are_independent_of_the_rest_of_the_batch() -> None:
    _, high, low, close, _ = random_walk_ohlc(9, 4, 250, [0, 10, 0, 100])
    together = ind.atr(high, low, close, 14)
    for r in range(4):
        alone = ind.atr(high[r:r + 1], low[r:r + 1], close[r:r + 1], 14)
        np.testing.assert_array_equal(together[r], alone[0])


def test_nan_inside_a_row_poisons_recursive_indicators_but_only_windows_for_sma() -> None:
    x = np.arange(1.0, 61.0).reshape(1, 60)
    x[0, 30] = np.nan
    assert np.isnan(ind.ema(x, 5)[0, 30:]).all()
    sma = ind.sma(x, 5)[0]
    assert np.isnan(sma[30:35]).all() and not np.isnan(sma[35:]).any()
    assert np.isnan(ind.donchian_high(x, 5)[0, 31:36]).all()


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=1, max_size=80),
    period=st.integers(1, 30),
)
def test_ema_property_matches_reference(values: list[float], period: int) -> None:
    out = ind.ema(np.array([values]), period)[0]
    assert_matches(out, ref_ema(values, period), rtol=1e-9)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_invalid_period_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="period"):
        ind.ema(np.ones((1, 10)), bad)  # type: ignore[arg-type]


def test_one_dimensional_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="2-D"):
        ind.sma(np.ones(10), 3)
