"""Sweep runs on the ``backtest`` queue (``alphasniper_project.celery``: ``backtest.*`` is routed
there, and only the backtest worker consumes it, so a sweep never waits in front of an order).

One task per stored run: the argument is the run's id, the work is
``backtest.services.stored_run_execute``. Acknowledged late and given back if its worker dies:
the run is idempotent (a finished run is left alone, a re-delivered one replaces its results).
"""

from __future__ import annotations

from celery import shared_task

from backtest.services import stored_run_execute

# A year of 1-minute candles for a few symbols runs in seconds, loading them from PostgreSQL in
# tens of seconds. The limits stay under the broker's visibility timeout (300 s,
# CELERY_BROKER_TRANSPORT_OPTIONS): an unacknowledged task older than that is delivered again,
# and a run still going then would be done twice. A run that hits the limit is marked failed.
SOFT_TIME_LIMIT_S = 240
TIME_LIMIT_S = 270


@shared_task(name="backtest.run", acks_late=True, reject_on_worker_lost=True, ignore_result=True,
             soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def backtest_run_task(run_id: int) -> str:
    return stored_run_execute(run_id=int(run_id))
