"""``make run``'s first impression: the local run's synthetic market is chosen so that the
unchanged B-lite rules enter within minutes of start-up and exit soon after (pure: no DB)."""

from __future__ import annotations

import numpy as np
import pytest

from strategy.engines.blite import BLiteParams, decide_entries
from strategy.engines.candles import CandleBatch
from strategy.local_market import MINUTE_MS, STARTUP_MS, lively_seed, seed_trial
from trading.exchanges.paper.synthetic import SyntheticMarket

UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
# different days of the year, hours of the day, seconds past the minute
STARTS = [1_735_689_600_000 + day * 86_400_000 + hour * 3_600_000 + sec * 1000
          for day, hour, sec in [(0, 0, 5), (45, 8, 1817), (133, 17, 734), (260, 6, 59), (364, 11, 2901)]]


@pytest.mark.parametrize("now_ms", STARTS)
def test_a_fresh_local_run_gets_an_entry_within_minutes_and_its_exit_soon_after(now_ms: int) -> None:
    found = lively_seed(now_ms=now_ms, universe=UNIVERSE)
    assert found is not None
    entry_min, exit_min = found.minutes_after(now_ms)
    # the first tick after start-up or the next; its stop or target within 7 minutes of it
    assert (STARTUP_MS / MINUTE_MS) <= entry_min <= 2 + STARTUP_MS / MINUTE_MS
    assert exit_min - entry_min <= 7
    assert entry_min < 3 and exit_min < 10


def test_the_chosen_entry_is_what_the_unchanged_strategy_decides_on_those_candles() -> None:
    now_ms = STARTS[1]
    found = lively_seed(now_ms=now_ms, universe=UNIVERSE)
    params = BLiteParams()
    h = params.history_candles
    candles = {s: SyntheticMarket(found.seed).fetch_closed_candles(s, "1m", limit=h, now_ms=found.entry_tick_ms)
               for s in UNIVERSE}
    batch = CandleBatch.from_candles(candles, timeframe="1m")
    assert int(batch.n_candles.min()) == h
    signals = {s.symbol: s for s in decide_entries(batch, params, expected_last_open_time_ms=found.entry_tick_ms
                                                   - MINUTE_MS)}
    assert signals[found.symbol].enter
    assert found.exit_reason in {"STOP_LOSS", "TRAILING_STOP", "TAKE_PROFIT"}


def test_a_seed_that_does_not_trade_soon_is_passed_over() -> None:
    now_ms = STARTS[0]
    found = lively_seed(now_ms=now_ms, universe=UNIVERSE)
    for seed in range(1, found.seed):
        assert seed_trial(seed=seed, now_ms=now_ms, universe=UNIVERSE, params=BLiteParams(), entry_ticks=2,
                          exit_within_ms=7 * MINUTE_MS) is None
    assert np.isfinite(found.entry_tick_ms)
