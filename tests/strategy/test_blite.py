"""B-lite entry decisions: one hand-built case per reason code, then properties."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategy.engines.indicators as indicators
from strategy.engines.blite import BLiteParams, BLiteStrategy, EntryReason, decide_entries
from strategy.engines.candles import CandleBatch
from strategy.engines.protocols import EntryStrategy
from tests.strategy.helpers import TF_MS, C, entry_series, random_walk, series, with_last

P = BLiteParams()
H = P.history_candles


def decide_one(candles: list[C], **kw: object) -> object:
    batch = CandleBatch.from_candles({"BTC/USDT": candles}, timeframe="1m")
    (signal,) = decide_entries(batch, P, **kw)  # type: ignore[arg-type]
    return signal


# --- one case per reason code -------------------------------------------------------------

def test_breakout_on_volume_above_trend_enters_with_stop_and_target() -> None:
    s = decide_one(entry_series())
    assert s.reason_code is EntryReason.ENTRY_SIGNAL and s.enter and s.decision == "enter"
    atr = s.inputs["atr"]
    assert s.entry_price == 112.0
    assert s.stop_price == pytest.approx(112.0 - 2 * atr)
    assert s.take_profit_price == pytest.approx(112.0 + 3 * (112.0 - s.stop_price))
    assert s.inputs["close"] > s.inputs["donchian_high"]
    assert s.inputs["volume"] > 1.5 * s.inputs["volume_sma"]
    assert s.inputs["close"] > s.inputs["ema"]
    assert s.candle_open_time_ms == entry_series()[-1].open_time_ms


def test_close_inside_the_channel_is_no_breakout() -> None:
    candles = entry_series()
    prev_high = max(c.high for c in candles[-21:-1])
    s = decide_one(with_last(candles, close=prev_high, high=prev_high + 0.05))
    assert s.reason_code is EntryReason.NO_BREAKOUT
    assert s.inputs["breakout"] is False and s.entry_price is None and s.stop_price is None


def test_close_equal_to_the_channel_high_is_not_a_breakout() -> None:
    candles = entry_series()
    prev_high = max(c.high for c in candles[-21:-1])
    assert decide_one(with_last(candles, close=prev_high)).reason_code is EntryReason.NO_BREAKOUT


def test_breakout_without_volume_is_low_volume() -> None:
    # SMA20 includes the current candle: (19*100 + 140) / 20 = 102 -> threshold 153 > 140
    s = decide_one(with_last(entry_series(), volume=140.0))
    assert s.reason_code is EntryReason.LOW_VOLUME
    assert s.inputs["volume_threshold"] == pytest.approx(153.0)


def test_breakout_below_the_200_ema_is_below_trend() -> None:
    closes = [200.0] * (H - 221) + list(np.linspace(200.0, 100.0, 200)) + [100.0] * 20 + [101.0]
    s = decide_one(series(closes, [100.0] * (H - 1) + [300.0]))
    assert s.reason_code is EntryReason.BELOW_TREND
    assert s.inputs["breakout"] is True and s.inputs["volume_ok"] is True and s.inputs["ema"] > 101.0


def test_one_candle_short_is_insufficient_history() -> None:
    s = decide_one(entry_series()[1:])
    assert s.reason_code is EntryReason.INSUFFICIENT_HISTORY
    assert s.inputs["candles_used"] == H - 1 and s.inputs["candles_required"] == H


def test_empty_history_is_insufficient() -> None:
    batch = CandleBatch.from_candles({"A/USDT": [], "B/USDT": entry_series()}, timeframe="1m")
    a, b = decide_entries(batch)
    assert a.reason_code is EntryReason.INSUFFICIENT_HISTORY and a.candle_open_time_ms is None
    assert b.enter


@pytest.mark.parametrize(
    "change",
    [
        {"close": math.nan},
        {"volume": math.nan},
        {"high": math.inf},
        {"low": 0.0},
        {"open": -1.0},
        {"volume": -5.0},
        {"high": 111.0},            # below the close of 112
        {"low": 113.0},             # above open and close
    ],
    ids=["nan-close", "nan-volume", "inf-high", "zero-low", "negative-open", "negative-volume",
         "high-below-close", "low-above-close"],
)
def test_broken_candles_are_bad_data(change: dict[str, float]) -> None:
    assert decide_one(with_last(entry_series(), **change)).reason_code is EntryReason.BAD_DATA


def test_bad_candle_deep_in_the_window_is_bad_data() -> None:
    candles = entry_series()
    candles[5] = replace(candles[5], close=math.nan)
    assert decide_one(candles).reason_code is EntryReason.BAD_DATA


def test_bad_candle_before_the_window_is_ignored() -> None:
    # Only the last history_candles decide: older junk cannot change the decision.
    extra = series([50.0] * 30, [1.0] * 30, t0=entry_series()[0].open_time_ms - 30 * TF_MS)
    extra[3] = replace(extra[3], close=math.nan)
    assert decide_one(extra + entry_series()) == decide_one(entry_series())


@pytest.mark.parametrize("kind", ["missing-candle", "duplicate-time", "jitter"])
def test_uneven_open_times_are_a_gap(kind: str) -> None:
    candles = entry_series()
    if kind == "missing-candle":
        # Everything before index 100 is one minute earlier: a candle is missing there.
        candles = [replace(c, open_time_ms=c.open_time_ms - TF_MS) if i < 100 else c
                   for i, c in enumerate(candles)]
    elif kind == "duplicate-time":
        candles[150] = replace(candles[150], open_time_ms=candles[149].open_time_ms)
    else:
        candles[150] = replace(candles[150], open_time_ms=candles[150].open_time_ms + 1)
    assert decide_one(candles).reason_code is EntryReason.GAP_IN_DATA


def test_a_symbol_without_the_expected_last_candle_is_stale() -> None:
    last = entry_series()[-1].open_time_ms
    assert decide_one(entry_series(), expected_last_open_time_ms=last).enter
    s = decide_one(entry_series(), expected_last_open_time_ms=last + TF_MS)
    assert s.reason_code is EntryReason.STALE_DATA


def test_stop_at_or_below_zero_is_invalid_stop() -> None:
    # Zig-zag between 0.5 and 2.0: ATR ~1.5, so entry 2.1 - 2 x ATR is below zero.
    closes = [0.5 if i % 2 else 2.0 for i in range(H - 1)] + [2.1]
    s = decide_one(series(closes, [100.0] * (H - 1) + [500.0], wick=0.0))
    assert s.reason_code is EntryReason.INVALID_STOP
    assert s.inputs["close"] - 2 * s.inputs["atr"] <= 0


def test_data_problems_take_precedence_over_signals() -> None:
    short_and_broken = with_last(entry_series()[1:], close=math.nan)
    assert decide_one(short_and_broken).reason_code is EntryReason.INSUFFICIENT_HISTORY


def test_every_result_is_json_serialisable() -> None:
    batch = CandleBatch.from_candles(
        {"OK/USDT": entry_series(), "NAN/USDT": with_last(entry_series(), close=math.nan), "SHORT/USDT": []},
        timeframe="1m",
    )
    for s in decide_entries(batch):
        text = json.dumps(s.to_dict(), allow_nan=False)
        assert json.loads(text)["reason_code"] == s.reason_code.value


def test_strategy_object_satisfies_the_protocol() -> None:
    strat = BLiteStrategy()
    assert isinstance(strat, EntryStrategy) and strat.history_candles == H
    batch = CandleBatch.from_candles({"BTC/USDT": entry_series()}, timeframe="1m")
    assert strat.decide(batch) == decide_entries(batch)


# --- parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs",
    [{"breakout_lookback": 0}, {"ema_trend": 2.5}, {"volume_multiplier": 0}, {"stop_atr_multiple": -1},
     {"take_profit_r": math.nan}, {"risk_per_trade": 0.5}, {"history_candles": 150}, {"atr_period": True}],
)
def test_invalid_params_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BLiteParams(**kwargs)  # type: ignore[arg-type]


def test_params_from_config_reject_unknown_keys() -> None:
    assert BLiteParams.from_dict({"volume_multiplier": 2.0}).volume_multiplier == 2.0
    with pytest.raises(ValueError, match="unknown"):
        BLiteParams.from_dict({"volume_multplier": 2.0})
    assert BLiteParams.from_dict(P.to_dict()) == P


def test_defaults_are_the_documented_ones() -> None:
    assert (P.breakout_lookback, P.volume_sma, P.volume_multiplier, P.ema_trend, P.atr_period,
            P.stop_atr_multiple, P.take_profit_r, P.risk_per_trade, P.history_candles) == \
        (20, 20, 1.5, 200, 14, 2.0, 3.0, 0.005, 1021)


# --- properties ---------------------------------------------------------------------------

corruption = st.one_of(
    st.tuples(st.just("nan"), st.integers(0, H - 1),
              st.sampled_from(["open", "high", "low", "close", "volume"])),
    st.tuples(st.just("gap"), st.integers(1, H - 1), st.integers(1, 5)),
    st.tuples(st.just("dup"), st.integers(1, H - 1), st.just(0)),
    st.tuples(st.just("short"), st.integers(1, H), st.just(0)),
    st.tuples(st.just("stale"), st.just(0), st.just(0)),
)


def corrupt(candles: list[C], how: tuple[str, int, object]) -> tuple[list[C], int | None]:
    """Apply one corruption to the last H candles. Returns (candles, expected_last_open_time)."""
    kind, pos, arg = how
    candles = list(candles)
    expected = candles[-1].open_time_ms
    n = len(candles)
    if kind == "nan":
        i = n - 1 - pos
        candles[i] = replace(candles[i], **{str(arg): math.nan})
    elif kind == "gap":
        # Drop candles: the series before (n - pos) moves back by arg minutes.
        cut = n - pos
        candles = [replace(c, open_time_ms=c.open_time_ms - int(arg) * TF_MS) if i < cut else c
                   for i, c in enumerate(candles)]
    elif kind == "dup":
        i = n - pos
        candles[i] = replace(candles[i], open_time_ms=candles[i - 1].open_time_ms)
    elif kind == "short":
        candles = candles[n - (H - pos):] if H - pos > 0 else []
    elif kind == "stale":
        candles = candles[:-1]        # the venue has not published the newest candle
    return candles, expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), extra=st.integers(0, 40), how=corruption)
def test_corrupted_window_never_enters(seed: int, extra: int, how: tuple[str, int, object]) -> None:
    # Given a series whose clean version is an entry
    clean = random_walk(seed, H + extra)
    clean_signal = decide_one(clean, expected_last_open_time_ms=clean[-1].open_time_ms)
    assert clean_signal.enter
    # When any one of the last H candles is NaN, a gap/duplicate appears, history is short,
    # or the newest candle is missing
    broken, expected_last = corrupt(clean, how)
    signal = decide_one(broken, expected_last_open_time_ms=expected_last)
    # Then there is no entry, and the reason names a data problem
    assert not signal.enter
    assert signal.reason_code in {
        EntryReason.BAD_DATA, EntryReason.GAP_IN_DATA, EntryReason.INSUFFICIENT_HISTORY,
        EntryReason.STALE_DATA,
    }


symbol_case = st.tuples(
    st.integers(0, 10_000),                 # seed
    st.integers(H - 70, H + 40),            # length (some too short)
    st.booleans(),                          # force an entry on the last candle
    st.one_of(st.none(), corruption),       # optional corruption
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(symbol_case, min_size=1, max_size=8))
def test_vectorised_equals_deciding_each_symbol_alone(cases: list[tuple]) -> None:
    universe: dict[str, list[C]] = {}
    for i, (seed, length, force, how) in enumerate(cases):
        candles = random_walk(seed, length, force_entry=force)
        if how is not None and len(candles) >= H:
            candles, _ = corrupt(candles, how)
        universe[f"S{i}/USDT"] = candles
    together = decide_entries(CandleBatch.from_candles(universe, timeframe="1m"))
    alone = [decide_entries(CandleBatch.from_candles({s: c}, timeframe="1m"))[0] for s, c in universe.items()]
    assert [s.to_dict() for s in together] == [s.to_dict() for s in alone]


def test_universe_result_is_in_symbol_order_and_complete() -> None:
    # Odd symbols: a random walk whose last candle trades nothing (LOW_VOLUME, never an entry).
    universe = {f"S{i}/USDT": random_walk(i, H + 9) if i % 2 == 0 else with_last(random_walk(i, H + 9), volume=0.0)
                for i in range(10)}
    out = decide_entries(CandleBatch.from_candles(universe, timeframe="1m"))
    assert [s.symbol for s in out] == list(universe)
    assert [s.enter for s in out] == [i % 2 == 0 for i in range(10)]


# --- how far from an entry (tbot diagnose reads this from stored decisions) ---------------------

def test_entry_gaps_say_how_far_each_condition_is_from_holding() -> None:
    from strategy.engines.blite import entry_gaps

    candles = entry_series()
    prev_high = max(c.high for c in candles[-21:-1])
    close = prev_high * 0.99
    s = decide_one(with_last(candles, open=close, close=close, high=close + 0.05, low=close - 0.05, volume=120.0))
    assert s.reason_code is EntryReason.NO_BREAKOUT
    inputs = json.loads(json.dumps(s.to_dict()))["inputs"]        # as stored in strategy_decisions
    breakout, volume, trend = entry_gaps(inputs)
    assert (breakout.condition, breakout.met) == ("breakout", False)
    assert breakout.gap_pct == pytest.approx((inputs["donchian_high"] / inputs["close"] - 1) * 100)
    assert breakout.gap_pct == pytest.approx(1.0101, rel=1e-3)   # 1 % below the high = +1.0101 % to reach it
    assert "needs +1.01% to pass the breakout level" in breakout.describe()
    assert (volume.met, round(volume.level, 3)) == (False, round(inputs["volume_threshold"], 3))
    assert trend.met and trend.gap_pct == 0 and "is above the trend EMA" in trend.describe()


def test_entry_gaps_are_empty_when_a_data_problem_decided() -> None:
    from strategy.engines.blite import entry_gaps

    s = decide_one(entry_series()[:50])
    assert s.reason_code is EntryReason.INSUFFICIENT_HISTORY
    assert entry_gaps(json.loads(json.dumps(s.to_dict()))["inputs"]) == []


# --- the trend EMA is the chart's EMA (issue 15) ----------------------------------------------

def test_the_issue_example_no_longer_enters_on_an_ema_seeded_inside_the_window() -> None:
    # Given the issue's candles: one at 1000, 220 at 100, then 101 on ten times the volume
    closes = [1000.0] + [100.0] * 220 + [101.0]
    volumes = [1.0] * 221 + [10.0]
    chart_ema = indicators.ema(np.array([closes]), 200)[0, -1]
    assert chart_ema == pytest.approx(103.62, abs=0.005)
    # Then with the former 221-candle window the "EMA200" was a fresh SMA seed and it entered
    old = decide_entries(CandleBatch.from_candles({"X/USDT": series(closes, volumes, wick=0.0)}, timeframe="1m"),
                         replace(P, history_candles=221))[0]
    assert old.enter and old.inputs["ema"] == pytest.approx(100.01, abs=0.005)
    # When the same candles end a longer history (at 1000 for a while, then one at 100 for
    # longer than the old window), as the window now needs
    history = [1000.0] * 400 + [100.0] * (H - 221) + closes
    candles = series(history, [1.0] * (len(history) - 1) + [10.0], wick=0.0)
    s = decide_one(candles)
    full_ema = indicators.ema(np.array([history]), 200)[0, -1]
    # Then the decision's EMA is the full-history EMA (the chart's, 101.03) to 0.1 %, where a
    # 221-candle window would have seen a bare SMA seed of the last 200 candles (100.0)
    assert full_ema == pytest.approx(101.03, abs=0.005)
    assert s.inputs["ema"] == pytest.approx(full_ema, rel=1e-3)
    assert decide_one(candles[-221:]).reason_code is EntryReason.INSUFFICIENT_HISTORY
    # And a history too short for the window is no decision at all, never one on a raw seed
    assert decide_one(series(closes, volumes, wick=0.0)).reason_code is EntryReason.INSUFFICIENT_HISTORY


def test_the_decision_ema_agrees_with_the_full_history_ema_on_market_data() -> None:
    from trading.exchanges.paper.synthetic import SyntheticMarket

    market = SyntheticMarket(seed=11)
    start = 1_700_000_000_000 - 1_700_000_000_000 % TF_MS
    worst = 0.0
    for symbol in ("BTC/USDT", "XRP/USDT", "SOL/USDT"):
        a = market.candle_arrays(symbol, "1m", start, 6000)
        full = indicators.ema(a.close[None, :], P.ema_trend)[0]
        for end in range(H, 6000, 997):
            window = {symbol: [C(int(a.open_time_ms[i]), a.open[i], a.high[i], a.low[i], a.close[i], a.volume[i])
                               for i in range(end - H, end)]}
            (s,) = decide_entries(CandleBatch.from_candles(window, timeframe="1m"), P)
            worst = max(worst, abs(s.inputs["ema"] / full[end - 1] - 1))
    assert worst < 1e-3
