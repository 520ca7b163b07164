"""Sweep throughput: backtest runs per minute on the ``backtest`` queue with 1 and with 2 workers.

A grid sweep (``backtest.services.sweep_create``, exactly what ``tbot backtest sweep`` does) of
``RUNS`` parameter sets over the synthetic market (2 symbols, 15-minute candles, 60 days after
the warm-up) is queued as one Celery task per run; real worker processes started as
``infra.devstack.processes()`` runs its backtest worker (prefork, concurrency 1 each, ``-Q
backtest``) take them. Measured: wall time from the enqueue (the sweep's commit) until the last
run is stored as done (``backtest_runs``, polled every 50 ms); runs/min = runs / that time. Each
run loads its candles itself (as a worker on another machine would), runs the engine, computes
the metrics and stores trades and curve. Workers are started and answer a ping before the clock
starts; one warm-up sweep per worker count (two runs per worker) is not timed. The 1-worker vs 2-worker ratio is the
scale-out (at most 2 on this 2-core machine, and less when the machine is shared).
"""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from bench.common import Target, say

NAME = "sweep"
TITLE = "sweep runs per minute, 1 and 2 backtest workers"
TARGETS = [Target("sweep_runs_per_min_1_worker", "info", 0, "runs/min"),
           Target("sweep_runs_per_min_2_workers", "info", 0, "runs/min"),
           Target("sweep_scale_out_2_workers", "info", 0, "x the 1-worker rate")]
UNIVERSE = ("BTC/USDT", "ETH/USDT")
DAYS = 60
START_MS = 1_704_067_200_000           # 2024-01-01 00:00 UTC


def _space(quick: bool) -> dict[str, list[Any]]:
    if quick:
        return {"take_profit_r": ["2", "3"], "stop_atr_multiple": ["1.5", "2"]}
    return {"take_profit_r": ["2", "3", "4"], "stop_atr_multiple": ["1.5", "2", "2.5"], "breakout_lookback": [20, 30]}


def _sweep(space: dict[str, list[Any]]) -> tuple[int, float, int]:
    """Queue one sweep, wait for its last run; (runs, seconds, failed)."""
    from backtest.data import DataSource
    from backtest.models import BacktestSweep
    from backtest.selectors import sweep_progress
    from backtest.services import spec_build
    from trading.config_schema import config_defaults

    base = spec_build(base=replace(config_defaults(), universe=UNIVERSE, timeframe="15m"), overrides={},
                      start_ms=START_MS, end_ms=START_MS + DAYS * 86_400_000,
                      initial_balances={"USDT": Decimal(10_000)}, fee_rate=Decimal("0.001"),
                      slippage_bps=Decimal(5))
    from backtest.services import sweep_create

    t0 = time.perf_counter()
    sweep: BacktestSweep = sweep_create(base_spec=base, source=DataSource("synthetic", seed=7), space=space,
                                        actor="bench")
    deadline = time.monotonic() + 1800
    while True:
        progress = sweep_progress(sweep=sweep)
        if progress["finished"] >= progress["total"]:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"sweep #{sweep.pk} not finished after 30 min: {progress}")
        time.sleep(0.05)
    return progress["total"], time.perf_counter() - t0, progress["failed"]


def run(stack: Any, quick: bool) -> dict[str, Any]:
    space = _space(quick)
    rows: dict[str, Any] = {}
    for workers in (1, 2):
        procs = [stack.celery_worker(f"backtest-worker-{i}", "backtest", concurrency=1) for i in range(workers)]
        try:
            # Warm-up, untimed: every worker process imports, JIT-loads the engine and makes its
            # first candles (a group hands each worker some of these 2 x workers runs).
            first_key = next(iter(space))
            _sweep({k: (v[:2 * workers] if k == first_key else v[:1]) for k, v in space.items()})
            runs, seconds, failed = _sweep(space)
        finally:
            for proc in procs:
                stack.stop(proc)
        if failed:
            raise RuntimeError(f"{failed} of {runs} sweep runs failed with {workers} worker(s)")
        rate = runs / seconds * 60
        rows[str(workers)] = {"workers": workers, "runs": runs, "seconds": round(seconds, 2),
                              "runs_per_min": round(rate, 1), "seconds_per_run": round(seconds / runs, 3)}
        say(f"{workers} worker(s): {runs} runs in {seconds:.1f}s = {rate:.1f} runs/min")
    one, two = rows["1"]["runs_per_min"], rows["2"]["runs_per_min"]
    return {
        "summary": {"sweep_runs_per_min_1_worker": one, "sweep_runs_per_min_2_workers": two,
                    "sweep_scale_out_2_workers": round(two / one, 2)},
        "method": __doc__.strip().split("\n\n", 1)[1].replace("\n", " "),
        "sweep": {"universe": list(UNIVERSE), "timeframe": "15m", "days": DAYS, "space": space,
                  "candles_per_run": len(UNIVERSE) * DAYS * 96},
        "workers": rows,
    }
