"""Celery tasks of the order path. Each parses ids, calls one service, owns its retry policy.

``submit_order`` is never retried by Celery: a create must not be re-sent blindly
(ARCHITECTURE invariant 2). If its outcome is unknown the order says so, and
``resolve_order`` — which asks the venue first — takes over.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_init, worker_ready

from alphasniper_project.celery import MONEY_PATH
from trading.exchanges.errors import VenueError
from trading.exchanges.factory import get_gateway
from trading.order_timing import RESEND_GRACE, SEND_HARD_LIMIT_S

log = logging.getLogger(__name__)



# The hard limit is the longest a send can last; the sweeper's orphan bound sits above it.
@shared_task(name="trading.submit_order", soft_time_limit=SEND_HARD_LIMIT_S - 10, time_limit=SEND_HARD_LIMIT_S,
             **MONEY_PATH)
def submit_order(order_id: int) -> None:
    from trading.models import OrderStatus
    from trading.services.submission import held_back_for_rate_limit, order_submit

    order = order_submit(order_id=int(order_id), gateway=get_gateway())
    if order.status == OrderStatus.SUBMIT_UNKNOWN:
        # Nothing to learn before the venue's late-visibility window has passed.
        resolve_order.apply_async((order.pk,), countdown=RESEND_GRACE.total_seconds())
    elif held_back_for_rate_limit(order):          # our own limiter held it back: nothing was sent
        submit_order.apply_async((order.pk,), countdown=1)


@shared_task(name="trading.resolve_order", bind=True, soft_time_limit=40, time_limit=60, max_retries=None,
             **MONEY_PATH)
def resolve_order(self, order_id: int) -> None:
    from trading.services.submission import order_resolve

    try:
        outcome = order_resolve(order_id=int(order_id), gateway=get_gateway())
    except VenueError as exc:
        # The venue could not answer the question; asking again is always safe.
        log.warning("resolving order %s: venue did not answer (%s); retrying", order_id, exc)
        raise self.retry(countdown=min(60, 2 ** min(self.request.retries, 6))) from None
    if outcome.retry_in_s is not None:
        raise self.retry(countdown=outcome.retry_in_s)


@shared_task(name="trading.emergency_exit", soft_time_limit=540, time_limit=600, **MONEY_PATH)
def emergency_exit_run(*, actor: str, source: str, reason_code: str, reason: str, flatten_all: bool,
                       trace_id: str) -> None:
    """The API's emergency exit, where no web-server timeout can cut it short. Idempotent: a
    redelivery after a crash runs it again (nothing is sold twice); one that finds the report
    already written does nothing."""
    from trading.selectors import emergency_exit_report
    from trading.services.emergency import emergency_exit

    if emergency_exit_report(trace_id=trace_id)[0] == "done":
        return
    emergency_exit(actor=actor, source=source, reason_code=reason_code, reason=reason,
                   flatten_all=bool(flatten_all), trace_id=trace_id)


@shared_task(name="trading.sweep_orders", soft_time_limit=20, time_limit=30, ignore_result=True,
             expires=15)
def sweep_orders() -> dict:
    """Beat, every 15 s: re-enqueue orders a crash or a lost message left behind."""
    from trading.services.submission import orders_sweep

    found = orders_sweep()
    for order_id in found["submit"]:
        submit_order.delay(order_id)
    for order_id in found["resolve"]:
        resolve_order.delay(order_id)
    return found


@shared_task(name="trading.reconcile", soft_time_limit=120, time_limit=180, ignore_result=True, expires=60)
def reconcile(full: bool = False) -> dict:
    """Compare the DB with the venue and repair. Beat: a light pass every minute and a full one
    every ten; a full pass also runs at every worker start."""
    from infra.locks import LockNotAcquired, redis_lock
    from trading.services.reconciliation import reconcile as run

    try:
        with redis_lock("reconcile", ttl_s=170):
            return run(gateway=get_gateway(), full=bool(full)).as_dict()
    except LockNotAcquired:
        log.info("reconciliation already running elsewhere")
        return {}


@worker_ready.connect
def _reconcile_on_start(sender, **kwargs) -> None:
    """ARCHITECTURE invariant 4: reconciliation also runs at every worker start."""
    consumer = getattr(sender, "consumer", None) or sender
    queues = {q.name for q in consumer.app.amqp.queues.consume_from.values()}
    if queues & {"sync", "orders"}:
        reconcile.apply_async(kwargs={"full": True}, countdown=1)
        sweep_orders.apply_async(countdown=1)


@worker_init.connect
def _refuse_to_start_on_a_venue_we_cannot_trade(sender=None, **kwargs) -> None:
    """Bad keys, a universe symbol the venue does not list, a venue that cannot be reached, a
    clock far off: one clear line each and exit 2, before the worker takes a single task. The
    same check, with the same rules, as ``tbot prepare`` (``trading.exchanges.startup``)."""
    import os
    import sys

    from trading.config_schema import config_get
    from trading.exchanges.startup import is_warning, venue_startup_check

    try:
        problems = venue_startup_check(gateway=get_gateway(), universe=config_get().universe)
    except Exception as exc:  # e.g. an unmigrated database: the same rule, one line, no traceback
        problems = [f"venue start-up check could not run: {type(exc).__name__}: {exc}"]
    finally:
        from django.db import connections

        connections.close_all()   # opened in the parent; prefork children must not share it
    for line in problems:
        (log.warning if is_warning(line) else log.error)("venue check: %s", line)
    fatal = [line for line in problems if not is_warning(line)]
    if fatal:
        for line in fatal:
            sys.stderr.write(f"alphasniper: {line}\n")
        sys.stderr.flush()
        os._exit(2)   # a signal handler's SystemExit would be swallowed by Celery's dispatcher
