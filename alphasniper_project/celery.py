"""The Celery application: queues, routes and the beat schedule, all in code.

Processes (see ARCHITECTURE.md):
  data-syncer      celery -A alphasniper_project worker -Q sync -n data-syncer@%h
  strategy-engine  celery -A alphasniper_project worker -Q strategy,orders -n strategy-engine@%h
  beat             celery -A alphasniper_project beat   (exactly one; DatabaseScheduler)
  backtest-worker  celery -A alphasniper_project worker -Q backtest -n backtest-worker@%h
                   (sweeps; add workers on more machines to go faster)
"""

from __future__ import annotations

import os
from datetime import timedelta
from enum import StrEnum

from celery import Celery
from celery.schedules import crontab
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alphasniper_project.settings")


class Queue(StrEnum):
    """Every queue name, in one place."""

    SYNC = "sync"          # data-syncer: candles, tickers, balances, reconciliation
    STRATEGY = "strategy"  # strategy-engine: ticks, stop monitor
    ORDERS = "orders"      # strategy-engine: order submission / resolution, emergency exit
    BACKTEST = "backtest"  # backtest-worker only: sweep runs, so research never delays an order


# Options of every money-path task (order sends, resolution, ticks, the stop monitor, the emergency
# exit): acknowledged only when done and given back if the worker dies, so a crash re-delivers
# the task (each is idempotent); results are not kept.
MONEY_PATH = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}

# The process names /health reports, keyed by the queue whose heartbeat proves them alive.
HEARTBEAT_PROCESSES = {Queue.SYNC: "data-syncer", Queue.STRATEGY: "strategy-engine"}
HEARTBEAT_EVERY_S = 15

app = Celery("alphasniper")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.task_default_queue = Queue.STRATEGY
app.conf.task_routes = {
    "syncer.*": {"queue": Queue.SYNC},
    "trading.reconcile*": {"queue": Queue.SYNC},
    "trading.*": {"queue": Queue.ORDERS},
    "strategy.*": {"queue": Queue.STRATEGY},
    "infra.telegram.*": {"queue": Queue.SYNC},
    "backtest.*": {"queue": Queue.BACKTEST},
}


def _every(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


# Beat entries. Crontabs use CELERY_TIMEZONE = Asia/Hong_Kong; every entry expires within its
# period so a backlog never replays stale ticks.
app.conf.beat_schedule = {
    **{
        f"heartbeat-{queue}": {
            "task": "infra.heartbeat",
            "schedule": _every(HEARTBEAT_EVERY_S),
            "args": [process],
            "options": {"queue": str(queue), "expires": HEARTBEAT_EVERY_S},
        }
        for queue, process in HEARTBEAT_PROCESSES.items()
    },
    # Order path safety nets (ARCHITECTURE invariants 2 and 4).
    "sweep-orders": {"task": "trading.sweep_orders", "schedule": _every(15), "options": {"expires": 15}},
    "reconcile": {"task": "trading.reconcile", "schedule": _every(60), "options": {"expires": 60}},
    "reconcile-full": {"task": "trading.reconcile", "schedule": _every(600), "kwargs": {"full": True},
                       "options": {"expires": 300}},
    # Telegram outbox: re-enqueue messages whose delivery task was lost.
    "telegram-flush-pending": {"task": "infra.telegram.flush_pending", "schedule": _every(60),
                               "options": {"expires": 60}},
    # Data-syncer + strategy (syncer/, strategy/). The tick entry runs every HK minute and acts
    # only when a candle of the configured timeframe has just closed; it chains the strategy tick.
    "syncer-tick": {"task": "syncer.tick", "schedule": crontab(minute="*"), "options": {"expires": 55}},
    "syncer-market-snapshot": {"task": "syncer.market_snapshot", "schedule": _every(30),
                               "options": {"expires": 30}},
    "strategy-stop-monitor": {"task": "strategy.stop_monitor", "schedule": _every(20), "options": {"expires": 20}},
    "strategy-daily-summary": {"task": "strategy.daily_summary", "schedule": crontab(minute="0", hour="8"),
                               "options": {"expires": 3600}},
}

@task_prerun.connect
@task_postrun.connect
def _recycle_db_connections(task=None, **_kwargs) -> None:
    """Keep DB connections across tasks (CELERY_DB_REUSE_MAX), but drop any that are too old
    or broken — what Django does around each HTTP request. Not for a task run eagerly inside
    the caller's transaction (tests): that connection is the caller's."""
    if task is not None and task.request.is_eager:
        return
    from django.db import close_old_connections

    close_old_connections()


__all__ = ["app", "Queue", "crontab", "HEARTBEAT_PROCESSES", "HEARTBEAT_EVERY_S", "MONEY_PATH"]
