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
scale-out (at most 2 on this 2-core machine, and less when the machine is shared). The peer of
the same run: the same runs executed one after the other in the bench process, without Celery
(the task's body, ``stored_run_execute``): 1 worker / peer is what the queue costs, 2 workers /
(2 x peer) how close two workers come to a perfect scale-out.
"""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from bench.b_floors import peer_reference
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


def _sweep_created(space: dict[str, list[Any]]):
    """``sweep_create`` of the bench's sweep: stored, and its tasks sent on commit."""
    from backtest.data import DataSource
    from backtest.services import spec_build, sweep_create
    from trading.config_schema import config_defaults

    base = spec_build(base=replace(config_defaults(), universe=UNIVERSE, timeframe="15m"), overrides={},
                      start_ms=START_MS, end_ms=START_MS + DAYS * 86_400_000,
                      initial_balances={"USDT": Decimal(10_000)}, fee_rate=Decimal("0.001"),
                      slippage_bps=Decimal(5))
    return sweep_create(base_spec=base, source=DataSource("synthetic", seed=7), space=space, actor="bench")


def _sweep(space: dict[str, list[Any]]) -> tuple[int, float, int]:
    """Queue one sweep, wait for its last run; (runs, seconds, failed)."""
    from backtest.models import BacktestSweep
    from backtest.selectors import sweep_progress

    t0 = time.perf_counter()
    sweep: BacktestSweep = _sweep_created(space)
    deadline = time.monotonic() + 1800
    while True:
        progress = sweep_progress(sweep=sweep)
        if progress["finished"] >= progress["total"]:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"sweep #{sweep.pk} not finished after 30 min: {progress}")
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    global _last_parallelism
    _last_parallelism = _parallelism(sweep)
    return progress["total"], seconds, progress["failed"]


_last_parallelism: dict[str, float] = {}


def _parallelism(sweep) -> dict[str, float]:
    """From the runs' own start / finish times: the mean seconds a run took in its worker, and
    how many ran at once on average (their summed durations / first start to last finish)."""
    spans = [(r.started_at, r.finished_at) for r in sweep.runs.all() if r.started_at and r.finished_at]
    if not spans:
        return {}
    busy = sum((end - start).total_seconds() for start, end in spans)
    window = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
    return {"mean_run_s_in_worker": round(busy / len(spans), 3),
            "runs_at_once_mean": round(busy / window, 2) if window else None}


def _in_process(space: dict[str, list[Any]]) -> tuple[int, float]:
    """The same sweep's runs executed one after the other in this process (``stored_run_execute``,
    the task's own body), without Celery: the peer the queue's rate is compared with. The first
    run warms the process up (imports, the engine's compiled kernels) and is not timed."""
    from alphasniper_project.celery import Queue, app
    from backtest.services import stored_run_execute

    try:
        sweep = _sweep_created(space)
    finally:   # no worker is running: take the sweep's tasks back out of the broker
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(Queue.BACKTEST)
    first, *timed = list(sweep.runs.order_by("id").values_list("id", flat=True))
    stored_run_execute(run_id=first)
    t0 = time.perf_counter()
    for run_id in timed:
        stored_run_execute(run_id=run_id)
    return len(timed), time.perf_counter() - t0


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
                              "runs_per_min": round(rate, 1), "seconds_per_run": round(seconds / runs, 3),
                              **_last_parallelism}
        say(f"{workers} worker(s): {runs} runs in {seconds:.1f}s = {rate:.1f} runs/min {_last_parallelism}")
    runs, seconds = _in_process(space)
    peer = round(runs / seconds * 60, 1)
    say(f"in-process, no Celery: {runs} runs in {seconds:.1f}s = {peer:.1f} runs/min")
    one, two = rows["1"]["runs_per_min"], rows["2"]["runs_per_min"]
    return {
        "summary": {"sweep_runs_per_min_1_worker": one, "sweep_runs_per_min_2_workers": two,
                    "sweep_scale_out_2_workers": round(two / one, 2)},
        "reference": {
            "sweep_runs_per_min_1_worker": peer_reference(
                one, peer, unit="runs/min", basis="the same runs executed one after the other in the bench process "
                                                 "(stored_run_execute, the task's body) without Celery, same run"),
            "sweep_runs_per_min_2_workers": peer_reference(
                two, round(2 * peer, 1), unit="runs/min", basis="twice the in-process rate: perfect scale-out"),
        },
        "in_process": {"runs": runs, "seconds": round(seconds, 2), "runs_per_min": peer},
        "method": __doc__.strip().split("\n\n", 1)[1].replace("\n", " "),
        "sweep": {"universe": list(UNIVERSE), "timeframe": "15m", "days": DAYS, "space": space,
                  "candles_per_run": len(UNIVERSE) * DAYS * 96},
        "workers": rows,
    }
