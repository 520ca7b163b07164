"""Worker memory: steady-state RSS of every worker process over 1,000 strategy ticks.

The two worker processes of ``infra.devstack`` run for real with the paper venue and synthetic
market data: strategy-engine (``-Q strategy,orders --concurrency 2``) and data-syncer
(``-Q sync --concurrency 1``). 1,000 ``strategy.tick`` tasks are sent for the last 1,000 closed
candles of the configured timeframe, in order (each tick syncs its candles, decides the
universe, writes a decision per symbol and places the orders the gates allow, which the same
worker submits to the paper venue); one ``syncer.market_snapshot`` is sent to the data-syncer
per tick. RSS (``/proc/<pid>/status`` VmRSS) of each worker main process and pool child is
sampled every second against the number of ticks done.

``worker_rss_mb`` = the largest process RSS at the end; ``worker_rss_growth_mb`` = the largest
per-process growth from 20 % of the ticks (after warm-up: imports, first candle history) to the end.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from bench.common import Target, children, rss_mb, say

NAME = "memory"
TITLE = "worker RSS over 1,000 strategy ticks (paper venue)"
TARGETS = [Target("worker_rss_mb", "info", 0, "MB, largest worker process"),
           Target("worker_rss_growth_mb", "<=", 10, "MB after warm-up")]


def _sample(workers: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, proc in workers.items():
        main = rss_mb(proc.pid)
        if main is not None:
            out[f"{name}:main"] = round(main, 1)
        for i, child in enumerate(sorted(children(proc.pid))):
            value = rss_mb(child)
            if value is not None:
                out[f"{name}:child{i}"] = round(value, 1)
    return out


def run(stack: Any, quick: bool) -> dict[str, Any]:
    from bench.b_reconcile import clean_orders
    from infra.clock import last_closed_candle_close, now_utc, tick_id_for, timeframe_seconds
    from strategy.models import StrategyDecision
    from strategy.params import STRATEGY_NAME
    from strategy.tasks import tick
    from syncer.tasks import market_snapshot
    from trading.config_schema import config_get

    n_ticks = 150 if quick else 1000
    clean_orders()
    cfg = config_get()
    env = {**stack.env, "EXCHANGE": "paper", "LOG_LEVEL": "INFO"}
    workers = {"strategy-engine": stack.celery_worker("strategy-engine", "strategy,orders", concurrency=2, env=env),
               "data-syncer": stack.celery_worker("data-syncer", "sync", concurrency=1, env=env)}
    step = timedelta(seconds=timeframe_seconds(cfg.timeframe))
    last = last_closed_candle_close(now_utc(), cfg.timeframe)
    tick_ids = [tick_id_for(last - step * k) for k in range(n_ticks, 0, -1)]
    before = StrategyDecision.objects.filter(strategy=STRATEGY_NAME).values("tick_id").distinct().count()
    t0 = time.monotonic()
    for tid in tick_ids:
        tick.apply_async(kwargs={"tick_id": tid, "timeframe": cfg.timeframe})
        market_snapshot.apply_async()
    samples = []
    deadline = t0 + (600 if quick else 1800)
    done = 0
    while time.monotonic() < deadline:
        done = StrategyDecision.objects.filter(strategy=STRATEGY_NAME).values("tick_id").distinct().count() - before
        samples.append({"t_s": round(time.monotonic() - t0, 1), "ticks_done": done, "rss_mb": _sample(workers)})
        if done >= n_ticks:
            break
        if len(samples) % 30 == 0:
            say(f"{done}/{n_ticks} ticks, RSS {samples[-1]['rss_mb']}")
        time.sleep(1.0)
    elapsed = time.monotonic() - t0
    time.sleep(2)
    final = _sample(workers)
    samples.append({"t_s": round(time.monotonic() - t0, 1), "ticks_done": done, "rss_mb": final})
    warm = next((s for s in samples if s["ticks_done"] >= n_ticks * 0.2), samples[0])
    growth = {k: round(final[k] - warm["rss_mb"].get(k, final[k]), 1) for k in final}
    decisions = StrategyDecision.objects.filter(strategy=STRATEGY_NAME).values_list("decision").order_by()
    from django.db.models import Count

    by_decision = dict(decisions.annotate(n=Count("id")))
    for proc in workers.values():
        stack.stop(proc)
    return {
        "summary": {"worker_rss_mb": max(final.values()) if final else None,
                    "worker_rss_growth_mb": max(growth.values()) if growth else None},
        "ticks_requested": n_ticks, "ticks_done": done, "elapsed_s": round(elapsed, 1),
        "ticks_per_s": round(done / elapsed, 2) if elapsed else None, "timeframe": cfg.timeframe,
        "universe": list(cfg.universe), "decisions": by_decision, "rss_final_mb": final,
        "rss_at_20pct_mb": warm["rss_mb"], "growth_mb": growth,
        "samples": samples[:: max(1, len(samples) // 60)],
    }
