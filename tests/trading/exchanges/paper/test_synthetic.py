"""The synthetic market: deterministic, closed-only, self-consistent, and lively enough that
B-lite trades on it within minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy.engines.blite import BLiteParams, decide_entries
from strategy.engines.candles import CandleBatch
from strategy.engines.stops import ExitReason, PositionStop, evaluate_exit
from trading.exchanges.base import Candle
from trading.exchanges.paper import synthetic
from trading.exchanges.paper.synthetic import SyntheticMarket, symbol_profile

REPO = Path(__file__).resolve().parents[4]
NOW = 1_750_000_000_000                 # not on a minute boundary (40 s into a minute)
UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
TF = synthetic.SUPPORTED_TIMEFRAMES


def test_same_request_gives_identical_candles_across_instances() -> None:
    a = SyntheticMarket(7).fetch_closed_candles("BTC/USDT", "1m", limit=300, now_ms=NOW)
    b = SyntheticMarket(7).fetch_closed_candles("BTC/USDT", "1m", limit=300, now_ms=NOW)
    assert a == b and len(a) == 300


@pytest.mark.parametrize("timeframe", list(TF))
def test_a_candle_does_not_depend_on_the_request_window(timeframe: str) -> None:
    # Given two overlapping requests made at different times
    m = SyntheticMarket(7)
    tf = TF[timeframe]
    early = m.fetch_closed_candles("ETH/USDT", timeframe, limit=120, now_ms=NOW - 37 * tf)
    since = early[50].open_time_ms
    late = m.fetch_closed_candles("ETH/USDT", timeframe, since_ms=since, limit=200, now_ms=NOW)
    # Then every candle both contain is the same candle
    by_time = {c.open_time_ms: c for c in late}
    shared = [c for c in early if c.open_time_ms in by_time]
    assert len(shared) == 70
    assert all(by_time[c.open_time_ms] == c for c in shared)


def test_seed_and_symbol_change_the_market() -> None:
    a = SyntheticMarket(1).fetch_closed_candles("BTC/USDT", "1m", limit=50, now_ms=NOW)
    b = SyntheticMarket(2).fetch_closed_candles("BTC/USDT", "1m", limit=50, now_ms=NOW)
    assert [c.close for c in a] != [c.close for c in b]


_CHILD = """
import json, sys
from trading.exchanges.paper.synthetic import fetch_closed_candles, price_at
cs = fetch_closed_candles("SOL/USDT", "5m", None, 40, {now}, seed=11)
rows = [[c.open_time_ms, str(c.open), str(c.high), str(c.low), str(c.close), str(c.volume)] for c in cs]
print(json.dumps(rows + [str(price_at("SOL/USDT", {now}, seed=11))]))
"""


def test_other_processes_with_other_hash_seeds_agree() -> None:
    # Python's hash() is salted per process; the generator must not depend on it.
    outputs = []
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", _CHILD.format(now=NOW)], capture_output=True, text=True,
                              env=env, cwd=REPO, check=True, timeout=60)
        outputs.append(json.loads(proc.stdout))
    here = synthetic.fetch_closed_candles("SOL/USDT", "5m", None, 40, NOW, seed=11)
    mine = [[c.open_time_ms, str(c.open), str(c.high), str(c.low), str(c.close), str(c.volume)] for c in here]
    mine.append(str(synthetic.price_at("SOL/USDT", NOW, seed=11)))
    assert outputs[0] == outputs[1] == mine


def test_golden_candle_pins_the_generator() -> None:
    # Changing the generator changes the market under every stored backtest and every running
    # paper account. If this fails on purpose, bump "synthetic-v1" in the hash domain too.
    (c,) = synthetic.fetch_closed_candles("BTC/USDT", "1m", 1_749_999_900_000, 1, NOW)
    assert c == Candle(
        open_time_ms=1_749_999_900_000, open=Decimal("60469.34"), high=Decimal("60481.91"),
        low=Decimal("60461.30"), close=Decimal("60477.88"), volume=Decimal("27.563"),
    )


# --- closed-only and request semantics -----------------------------------------------------

@pytest.mark.parametrize("timeframe", list(TF))
def test_only_closed_candles_are_returned(timeframe: str) -> None:
    tf = TF[timeframe]
    m = SyntheticMarket()
    candles = m.fetch_closed_candles("BTC/USDT", timeframe, limit=10, now_ms=NOW)
    assert candles[-1].open_time_ms + tf <= NOW < candles[-1].open_time_ms + 2 * tf
    assert [c.open_time_ms for c in candles] == [candles[0].open_time_ms + i * tf for i in range(10)]
    assert all(c.open_time_ms % tf == 0 for c in candles)
    # A candle that closes exactly at "now" is closed; one millisecond earlier it is not.
    boundary = candles[-1].open_time_ms + tf
    assert m.fetch_closed_candles("BTC/USDT", timeframe, limit=1, now_ms=boundary)[-1] == candles[-1]
    assert m.fetch_closed_candles("BTC/USDT", timeframe, limit=1, now_ms=boundary - 1)[-1] == candles[-2]


def test_since_and_limit() -> None:
    m = SyntheticMarket()
    since = NOW - 100 * 60_000 + 1                                    # not aligned: rounds up
    got = m.fetch_closed_candles("BNB/USDT", "1m", since_ms=since, limit=30, now_ms=NOW)
    assert len(got) == 30 and got[0].open_time_ms >= since and got[0].open_time_ms - since < 60_000
    tail = m.fetch_closed_candles("BNB/USDT", "1m", since_ms=NOW - 5 * 60_000, limit=30, now_ms=NOW)
    assert len(tail) == 4                                             # only 4 have closed
    assert m.fetch_closed_candles("BNB/USDT", "1m", since_ms=NOW, limit=30, now_ms=NOW) == []


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": synthetic.MAX_LIMIT + 1}, {"timeframe": "2m"}])
def test_bad_requests_are_refused(kwargs: dict[str, object]) -> None:
    args = {"timeframe": "1m", "limit": 10, **kwargs}
    with pytest.raises(ValueError):
        SyntheticMarket().fetch_closed_candles("BTC/USDT", args["timeframe"], limit=args["limit"], now_ms=NOW)


# --- realism and consistency ----------------------------------------------------------------

@pytest.mark.parametrize("symbol", [*UNIVERSE, "DOGE/USDT", "PEPEUSDT"])
@pytest.mark.parametrize("timeframe", list(TF))
def test_candles_are_consistent(symbol: str, timeframe: str) -> None:
    candles = SyntheticMarket().fetch_closed_candles(symbol, timeframe, limit=400, now_ms=NOW)
    tick = symbol_profile(symbol).tick_size
    for prev, c in zip(candles, candles[1:], strict=False):
        assert c.open == prev.close                           # no phantom gaps between candles
    for c in candles:
        assert all(isinstance(v, Decimal) for v in (c.open, c.high, c.low, c.close, c.volume))
        assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
        assert c.low > 0 and c.volume > 0
        assert all(v % tick == 0 for v in (c.open, c.high, c.low, c.close))


@pytest.mark.parametrize("symbol, price", [("BTC/USDT", 60000), ("ETH/USDT", 3000), ("SOL/USDT", 150),
                                           ("BNB/USDT", 600), ("XRP/USDT", 0.6)])
def test_prices_stay_near_the_symbol_base(symbol: str, price: float) -> None:
    m = SyntheticMarket()
    arr = m.candle_arrays(symbol, "1h", 1_700_000_000_000 // 3_600_000 * 3_600_000, 24 * 60)   # two months
    assert 0.5 * price < arr.low.min() and arr.high.max() < 1.5 * price
    r = np.diff(np.log(arr.close))
    assert 0.002 < r.std() < 0.05                              # hourly moves of a few tenths of a percent


def test_higher_timeframes_aggregate_the_minutes() -> None:
    m = SyntheticMarket()
    five = m.fetch_closed_candles("ETH/USDT", "5m", limit=12, now_ms=NOW)
    ones = m.fetch_closed_candles("ETH/USDT", "1m", since_ms=five[0].open_time_ms, limit=60, now_ms=NOW)
    for i, c in enumerate(five):
        group = ones[5 * i:5 * i + 5]
        assert c.open == group[0].open and c.close == group[-1].close
        assert c.high == max(g.high for g in group) and c.low == min(g.low for g in group)
        assert abs(c.volume - sum(g.volume for g in group)) <= 5 * symbol_profile("ETH/USDT").volume_step


def test_regimes_differ_in_volatility() -> None:
    # Per-candle moves averaged over 64-minute windows (the generator's regime length)
    start = NOW // (64 * 60_000) * (64 * 60_000) - 200 * 64 * 60_000
    arr = SyntheticMarket().candle_arrays("BTC/USDT", "1m", start, 200 * 64)
    r = np.abs(np.log(arr.close / arr.open)).reshape(200, 64).mean(axis=1)
    assert r.max() / r.min() > 2.5                              # calm windows vs volatile windows


@settings(max_examples=30, deadline=None)
@given(offset_s=st.integers(0, 24 * 3600 - 1), symbol=st.sampled_from(UNIVERSE))
def test_ticker_stays_inside_its_candle_and_builds_it(offset_s: int, symbol: str) -> None:
    m = SyntheticMarket()
    t = NOW + offset_s * 1000
    minute_open = t // 60_000 * 60_000
    # When the minute has closed, its candle bounds every ticker seen during it
    (closed,) = m.fetch_closed_candles(symbol, "1m", since_ms=minute_open, limit=1,
                                       now_ms=minute_open + 60_000)
    ticks = [m.price_at(symbol, minute_open + s * 1000 + 999) for s in range(60)]
    assert ticks[0] == closed.open
    assert min(ticks) == closed.low and max(ticks) == closed.high
    # And the forming candle at t is the minute so far: its close is the ticker at t
    forming = m.forming_candle(symbol, "1m", t)
    seen = ticks[: (t - minute_open) // 1000 + 1]
    assert forming.open == closed.open and forming.close == m.price_at(symbol, t)
    assert forming.high == max(seen) and forming.low == min(seen)


def test_forming_hour_candle_agrees_with_the_closed_one() -> None:
    m = SyntheticMarket()
    hour_open = NOW // 3_600_000 * 3_600_000
    forming = m.forming_candle("SOL/USDT", "1h", hour_open + 1_234_567)
    (closed,) = m.fetch_closed_candles("SOL/USDT", "1h", since_ms=hour_open, limit=1,
                                       now_ms=hour_open + 3_600_000)
    assert forming.open == closed.open and forming.open_time_ms == closed.open_time_ms
    assert closed.low <= forming.low and forming.high <= closed.high
    assert forming.volume < closed.volume


def test_generation_is_vectorised_enough_for_backtests() -> None:
    # Not a timing assert (tests never assert wall clock): a smoke check that a year of
    # hourly candles is one call, not a per-candle loop.
    arr = SyntheticMarket().candle_arrays("BTC/USDT", "1h", 1_700_000_000_000 // 3_600_000 * 3_600_000, 5000)
    assert len(arr) == 5000 and np.isfinite(arr.close).all()


# --- B-lite trades on it within minutes -----------------------------------------------------

START_TIMES = [  # different days of the year, hours of the day, minutes past the hour
    1_735_689_600_000 + day * 86_400_000 + hour * 3_600_000 + minute * 60_000
    for day, hour, minute in [(0, 0, 0), (17, 3, 7), (45, 8, 30), (90, 13, 59), (133, 17, 12),
                              (201, 21, 45), (260, 6, 3), (333, 23, 21), (364, 11, 48), (3, 15, 0)]
]
HORIZON = 60          # candles after "now" in which we expect an entry
EXIT_HORIZON = 120    # candles after an entry in which we expect its stop or target


def _exit_after(candles: list[Candle], entry: float, stop: float) -> tuple[int, ExitReason] | None:
    """Walk the candles after an entry through ``evaluate_exit``: open, then the wick on the
    side the candle did not close on, the other wick, then close."""
    state = PositionStop.open(entry_price=Decimal(repr(entry)), stop_price=Decimal(repr(stop)))
    for n, c in enumerate(candles, start=1):
        path = (c.open, c.low, c.high, c.close) if c.close >= c.open else (c.open, c.high, c.low, c.close)
        for price in path:
            check = evaluate_exit(state, price)
            state = check.state
            if check.exit:
                return n, check.reason_code
    return None


def test_blite_enters_within_the_hour_and_exits_follow() -> None:
    params = BLiteParams()
    h = params.history_candles
    m = SyntheticMarket()
    hours_with_entry = 0
    exits: list[tuple[int, ExitReason] | None] = []
    for start in START_TIMES:
        # Given the closed history at "now" plus the candles that close over the next hour
        since = start - h * 60_000
        end_ms = start + (HORIZON + EXIT_HORIZON) * 60_000
        by_symbol = {s: m.fetch_closed_candles(s, "1m", since_ms=since, limit=h + HORIZON + EXIT_HORIZON,
                                               now_ms=end_ms) for s in UNIVERSE}
        full = CandleBatch.from_candles(by_symbol, timeframe="1m")
        entered = False
        # When B-lite runs on every candle close of the next hour, exactly as live would
        for k in range(HORIZON):
            cols = slice(k, h + k)           # the h candles closed at this tick
            tick_batch = CandleBatch(
                symbols=full.symbols, timeframe_ms=full.timeframe_ms, open_time_ms=full.open_time_ms[:, cols],
                open=full.open[:, cols], high=full.high[:, cols], low=full.low[:, cols],
                close=full.close[:, cols], volume=full.volume[:, cols],
                n_candles=np.full(len(UNIVERSE), h, dtype=np.int64),
            )
            expected_last = start + (k - 1) * 60_000
            for signal in decide_entries(tick_batch, params, expected_last_open_time_ms=expected_last):
                if not signal.enter:
                    continue
                entered = True
                later = by_symbol[signal.symbol][h + k:h + k + EXIT_HORIZON]
                exits.append(_exit_after(later, signal.entry_price, signal.stop_price))
        hours_with_entry += entered
    # Then most hours see an entry, and entries end by stop or target within two hours
    assert hours_with_entry >= 8, f"only {hours_with_entry}/{len(START_TIMES)} hours had an entry"
    assert exits, "no entries at all"
    finished = [e for e in exits if e is not None]
    assert len(finished) >= 0.9 * len(exits)
    assert {reason for _, reason in finished} <= {ExitReason.STOP_LOSS, ExitReason.TRAILING_STOP,
                                                  ExitReason.TAKE_PROFIT}
    assert np.median([n for n, _ in finished]) <= 60
