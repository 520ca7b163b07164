"""A lively synthetic market for ``make run``: choose the seed whose next quarter hour trades.

The offline synthetic market is a pure function of ``(seed, symbol, time)``, so the candles of
the next minutes are known in advance. B-lite gives about six entry signals an hour on it: a
newcomer's first ``make run`` would wait ten minutes for a trade as often as not. Instead of
loosening the strategy, the local run picks - once, on its first start - a market seed under
which the *unchanged* rules (``decide_entries`` on each candle close, ``evaluate_exit`` on the
price every 20 s, default parameters) enter within a few minutes and leave again soon after.
The seed is then kept for later runs (``infra.devstack``), so the stored candles stay one series.

Pure: no ORM, no settings, no I/O - ``infra.devstack`` calls it before any process starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from strategy.engines.blite import BLiteParams, decide_entries
from strategy.engines.candles import CandleBatch
from strategy.engines.stops import PositionStop, evaluate_exit
from trading.exchanges.paper.synthetic import SyntheticMarket

MINUTE_MS = 60_000
MONITOR_EVERY_MS = 20_000          # the stop monitor's period (alphasniper_project/celery.py)
# The processes need this long to start before the first tick can run (about 10 s measured;
# the rest is margin).
STARTUP_MS = 30_000


@dataclass(frozen=True)
class LivelySeed:
    seed: int
    symbol: str
    entry_tick_ms: int              # the candle close whose tick enters
    exit_ms: int                    # when the stop monitor would see the stop or the target hit
    exit_reason: str

    def minutes_after(self, now_ms: int) -> tuple[float, float]:
        return (self.entry_tick_ms - now_ms) / MINUTE_MS, (self.exit_ms - now_ms) / MINUTE_MS


def _first_exit(market: SyntheticMarket, symbol: str, entry: float, stop: float, after_ms: int,
                until_ms: int) -> tuple[int, str] | None:
    state = PositionStop.open(entry_price=Decimal(repr(entry)), stop_price=Decimal(repr(stop)))
    t = after_ms + MONITOR_EVERY_MS
    while t <= until_ms:
        check = evaluate_exit(state, market.price_at(symbol, t))
        state = check.state
        if check.exit:
            return t, str(check.reason_code)
        t += MONITOR_EVERY_MS
    return None


def seed_trial(*, seed: int, now_ms: int, universe: tuple[str, ...], params: BLiteParams,
               entry_ticks: int, exit_within_ms: int) -> LivelySeed | None:
    """Under ``seed``: the first entry among the first ``entry_ticks`` ticks after start-up whose
    stop or target is hit within ``exit_within_ms`` of its tick, or None."""
    market = SyntheticMarket(seed)
    h = params.history_candles
    first_tick = -(-(now_ms + STARTUP_MS) // MINUTE_MS) * MINUTE_MS
    last_tick = first_tick + (entry_ticks - 1) * MINUTE_MS
    by_symbol = {s: market.fetch_closed_candles(s, "1m", since_ms=first_tick - h * MINUTE_MS,
                                                limit=h + entry_ticks, now_ms=last_tick) for s in universe}
    full = CandleBatch.from_candles(by_symbol, timeframe="1m")
    if full.width < h + entry_ticks - 1:
        return None
    for k in range(entry_ticks):
        tick_ms = first_tick + k * MINUTE_MS
        cols = slice(full.width - entry_ticks + k - h + 1, full.width - entry_ticks + k + 1)
        batch = CandleBatch(symbols=full.symbols, timeframe_ms=full.timeframe_ms,
                            open_time_ms=full.open_time_ms[:, cols], open=full.open[:, cols],
                            high=full.high[:, cols], low=full.low[:, cols],
                            close=full.close[:, cols], volume=full.volume[:, cols],
                            n_candles=np.full(len(full.symbols), h, dtype=np.int64))
        for signal in decide_entries(batch, params, expected_last_open_time_ms=tick_ms - MINUTE_MS):
            if not signal.enter:
                continue
            done = _first_exit(market, signal.symbol, signal.entry_price, signal.stop_price, tick_ms,
                               tick_ms + exit_within_ms)
            if done is not None:
                return LivelySeed(seed=seed, symbol=signal.symbol, entry_tick_ms=tick_ms, exit_ms=done[0],
                                  exit_reason=done[1])
    return None


def lively_seed(*, now_ms: int, universe: tuple[str, ...], params: BLiteParams | None = None,
                entry_ticks: int = 2, exit_within_ms: int = 7 * MINUTE_MS, first_seed: int = 1,
                tries: int = 400) -> LivelySeed | None:
    """The first seed from ``first_seed`` on whose market enters within ``entry_ticks`` ticks of
    start-up and exits within ``exit_within_ms`` of that entry (the stop monitor's 20-s phase and
    the fill price differ a little from this model: the margins are for that). If none of ``tries``
    does, the same search with a tick and two minutes more; None if that fails too."""
    params = params or BLiteParams()
    for ticks, within in ((entry_ticks, exit_within_ms), (entry_ticks + 1, exit_within_ms + 2 * MINUTE_MS)):
        for seed in range(first_seed, first_seed + tries):
            found = seed_trial(seed=seed, now_ms=now_ms, universe=universe, params=params, entry_ticks=ticks,
                               exit_within_ms=within)
            if found is not None:
                return found
    return None
