"""Every candle of a backtest is decided as the live tick decides it on that candle's window:
the same reason code (``decide_entries`` on the last ``history_candles`` candles), and for
entries the same ATR and proposed stop, to the last bit."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np
import pytest

from backtest.engine import simulate
from backtest.types import BacktestSpec, SymbolSeries
from strategy.engines import CandleBatch, decide_entries
from strategy.engines.blite import REASON_PRECEDENCE, EntryReason
from strategy.params import blite_params
from tests.strategy.helpers import C, random_walk
from trading.config_schema import config_defaults

pytestmark = pytest.mark.django_db      # the default market rules come from the paper venue module


def _breakouts(seed: int, n: int) -> list[C]:
    """A random walk with a breakout (on volume or not) every 30 candles, so every reason code occurs."""
    candles = random_walk(seed, n, force_entry=False)
    if seed % 2:
        # A falling market (-0.1 % a candle), so breakouts below the trend occur too.
        candles = [C(c.open_time_ms, *(x * float(np.exp(-0.001 * i)) for x in (c.open, c.high, c.low, c.close)),
                     c.volume) for i, c in enumerate(candles)]
    rng = np.random.default_rng(seed)
    out = list(candles)
    for i in range(30, n, 30):          # 30 apart: no breakout sits in the next one's channel
        prev_high = max(c.high for c in out[i - 25:i])
        close = prev_high * float(rng.choice([1.001, 1.02]))
        volume = float(np.mean([c.volume for c in candles[i - 20:i]])) * float(rng.choice([1.0, 4.0]))
        c = out[i]
        out[i] = dataclasses.replace(c, close=close, high=max(c.high, close), volume=volume)
    return out


def _series(symbol: str, candles: list[C]) -> SymbolSeries:
    return SymbolSeries(symbol, np.array([c.open_time_ms for c in candles], dtype=np.int64),
                        *(np.array([getattr(c, k) for c in candles], dtype=np.float64)
                          for k in ("open", "high", "low", "close", "volume")))


@pytest.mark.parametrize(("params", "n", "broken"), [
    ({"ema_trend": 5, "breakout_lookback": 3, "volume_sma": 3, "atr_period": 3}, 700, False),
    ({"ema_trend": 8, "breakout_lookback": 5, "volume_sma": 4, "atr_period": 6}, 700, True),
    ({}, 1700, False),                                                  # the defaults: a 1,021-candle window
])
def test_every_candle_gets_the_live_decision(params: dict, n: int, broken: bool) -> None:
    cfg = dataclasses.replace(config_defaults(), universe=("AAA/USDT", "BBB/USDT"), timeframe="1m", **params)
    p = blite_params(cfg)
    universe = {s: _breakouts(seed, n) for seed, s in enumerate(cfg.universe)}
    if broken:
        # Data problems the engine must report exactly as live: a NaN, a high below the close.
        rows = universe["AAA/USDT"]
        rows[300] = dataclasses.replace(rows[300], close=float("nan"))
        rows[450] = dataclasses.replace(rows[450], high=rows[450].close * 0.99)
    start = universe["AAA/USDT"][p.history_candles - 1].open_time_ms
    end = universe["AAA/USDT"][-1].open_time_ms + 60_000
    spec = BacktestSpec(config=cfg, start_ms=start, end_ms=end, initial_balances={"USDT": Decimal(10_000)})
    sim = simulate(spec, {s: _series(s, c) for s, c in universe.items()})

    seen = set()
    for symbol, candles in universe.items():
        codes = sim.engine_codes[symbol]
        for tick, last in enumerate(range(p.history_candles - 1, n)):
            window = CandleBatch.from_candles({symbol: candles[last - p.history_candles + 1:last + 1]},
                                              timeframe="1m")
            (live,) = decide_entries(window, p, expected_last_open_time_ms=candles[last].open_time_ms)
            assert REASON_PRECEDENCE[codes[tick]] is live.reason_code, (symbol, tick)
            seen.add(live.reason_code)
            if live.enter:
                atr, stop = sim.signal_levels[symbol][tick]
                assert (atr, stop) == (live.inputs["atr"], live.stop_price)
    # The cases exercised what they are about (a fast EMA leaves no breakout below the trend).
    assert {EntryReason.ENTRY_SIGNAL, EntryReason.NO_BREAKOUT, EntryReason.LOW_VOLUME} <= seen
    assert (EntryReason.BELOW_TREND in seen) == (p.ema_trend != 8)
    assert (EntryReason.BAD_DATA in seen) == broken
    # Every symbol is decided at every tick, once.
    assert sum(sim.result.decisions.values()) == len(universe) * (n - p.history_candles + 1)
