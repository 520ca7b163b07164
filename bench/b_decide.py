"""Decision cost vs universe size: ``decide_entries`` over 50 / 200 / 500 / 1,000 symbols x one
decision window (``history_candles``, 1,021 candles: every decision is a real one, none
INSUFFICIENT_HISTORY).

Candles come from ``SyntheticMarket.candle_arrays`` (the same series the paper venue serves),
stacked straight into a ``CandleBatch``. Only the ``decide_entries`` call is timed (best of
several repeats after a warm-up, to keep a busy machine's hiccups out): candles/s = symbols x
window / seconds. Linearity: seconds per symbol at each size relative to the 50-symbol run.

Peer, same run, same batch: the four indicator calls ``decide_entries`` makes (Donchian high,
volume SMA, trend EMA, ATR over the window it reads), timed alone the same way. Their candles/s
is the numeric floor of a decision on this CPU; ``decide_candles_per_s`` / that is the share of
the decision's time the indicators take, which a faster or slower CPU leaves much as it is.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from bench.b_floors import peer_reference
from bench.common import Target

NAME = "decide"
TITLE = "decide_entries cost vs universe size"
TARGETS = [Target("decide_candles_per_s", ">=", 1_000_000, "candles/s")]
SIZES = (50, 200, 500, 1000)

def _window() -> int:
    from strategy.engines import BLiteParams

    return BLiteParams().history_candles


CANDLES = _window()


def _batch(n_symbols: int):
    from strategy.engines import CandleBatch
    from trading.exchanges.paper.synthetic import SyntheticMarket

    market = SyntheticMarket(seed=7)
    start = 1_700_000_000_000 - (1_700_000_000_000 % 900_000)      # aligned to 15m
    rows = [market.candle_arrays(f"B{i:04d}/USDT", "15m", start, CANDLES) for i in range(n_symbols)]
    stack = {name: np.vstack([getattr(r, name) for r in rows])
             for name in ("open_time_ms", "open", "high", "low", "close", "volume")}
    batch = CandleBatch(symbols=tuple(f"B{i:04d}/USDT" for i in range(n_symbols)), timeframe_ms=900_000,
                        n_candles=np.full(n_symbols, CANDLES, dtype=np.int64), **stack)
    return batch, int(stack["open_time_ms"][0, -1])


def _indicators_only(batch, params) -> None:
    from strategy.engines import indicators

    w = batch.tail(params.history_candles)
    with np.errstate(invalid="ignore"):
        indicators.donchian_high(w.high, params.breakout_lookback)
        indicators.sma(w.volume, params.volume_sma)
        indicators.ema(w.close, params.ema_trend)
        indicators.atr(w.high, w.low, w.close, params.atr_period)


def _interleaved_median_s(fns: list, repeats: int) -> list[float]:
    """Median time of each function, the calls alternating so that a load change on a shared
    machine hits both alike."""
    for fn in fns:
        fn()                                                                       # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def run(stack: Any, quick: bool) -> dict[str, Any]:
    from strategy.engines import BLiteParams, decide_entries

    params = BLiteParams()
    repeats = 3 if quick else 9
    sizes: dict[str, Any] = {}
    for n in SIZES:
        batch, last_open = _batch(n)
        decide_entries(batch, params, expected_last_open_time_ms=last_open)          # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            signals = decide_entries(batch, params, expected_last_open_time_ms=last_open)
            times.append(time.perf_counter() - t0)
        assert len(signals) == n
        best, median = min(times), statistics.median(times)
        sizes[str(n)] = {
            "symbols": n, "candles": n * CANDLES, "best_s": round(best, 6), "median_s": round(median, 6),
            "candles_per_s_best": round(n * CANDLES / best), "candles_per_s_median": round(n * CANDLES / median),
            "us_per_symbol_median": round(median / n * 1e6, 2),
            "entries": sum(s.enter for s in signals),
            "reasons": dict(sorted({str(s.reason_code): sum(1 for x in signals if x.reason_code == s.reason_code)
                                    for s in signals}.items())),
        }
    base = sizes[str(SIZES[0])]["us_per_symbol_median"]
    for row in sizes.values():
        row["cost_per_symbol_vs_50"] = round(row["us_per_symbol_median"] / base, 3)
    # The summary figure is the largest universe (the throughput that matters), median of the repeats.
    largest = sizes[str(SIZES[-1])]
    batch, last_open = _batch(SIZES[-1])
    decide_s, peer_s = _interleaved_median_s(
        [lambda: decide_entries(batch, params, expected_last_open_time_ms=last_open),
         lambda: _indicators_only(batch, params)], repeats)
    peer_rate = round(SIZES[-1] * CANDLES / peer_s)
    return {
        "summary": {"decide_candles_per_s": largest["candles_per_s_median"]},
        # The ratio comes from the interleaved pair (decide, indicators), not from the size loop above.
        "reference": {"decide_candles_per_s": {
            **peer_reference(round(SIZES[-1] * CANDLES / decide_s), peer_rate, unit="candles/s",
                             basis=f"the 4 indicator calls of decide_entries alone on the same {SIZES[-1]}-symbol "
                                   "batch, timed interleaved with decide_entries (medians)"),
            "decide_candles_per_s_interleaved": round(SIZES[-1] * CANDLES / decide_s)}},
        "method": "median (and best) wall time of decide_entries over repeats after one warm-up; "
                  f"{CANDLES} candles per symbol (the engine reads the last history_candles={params.history_candles})",
        "repeats": repeats, "sizes": sizes,
        "linear": all(0.5 <= r["cost_per_symbol_vs_50"] <= 1.5 for r in sizes.values()),
    }
