"""A diagnostic Celery app: the real ``alphasniper_project`` app plus timestamps, for explaining
where signal-to-wire time goes. Used only for the second, "breakdown" pass of that benchmark
(``celery -A bench.probe worker ...``); the headline numbers come from the unmodified app.

Per ``trading.submit_order`` task it records (epoch ms) in Redis hash ``bench:probe:<order_id>``:
``received`` (main process got the message), ``prerun`` (a pool child starts the task),
``claimed`` (order_mark_submitting returned: PENDING -> SUBMITTED committed), ``acquired``
(the shared rate limiter granted the send), ``sent`` (ccxt's fetch returned), ``done``.
"""

from __future__ import annotations

import functools
import time

from celery.signals import task_postrun, task_prerun, task_received

from alphasniper_project.celery import app

_marks: dict[str, float] = {}


def _now() -> float:
    return time.time() * 1000


def _order_id(args) -> str | None:
    return str(args[0]) if args else None


@task_received.connect
def _received(request=None, **_kw) -> None:
    if request is not None and request.name == "trading.submit_order":
        from infra.redis import get_redis

        get_redis().hset(f"bench:probe:{_order_id(request.args)}", "received", f"{_now():.3f}")


@task_prerun.connect
def _prerun(task=None, args=None, **_kw) -> None:
    if task is not None and task.name == "trading.submit_order":
        _marks.clear()
        _marks["prerun"] = _now()
        _install()


@task_postrun.connect
def _postrun(task=None, args=None, **_kw) -> None:
    if task is not None and task.name == "trading.submit_order":
        from infra.redis import get_redis

        _marks["done"] = _now()
        get_redis().hset(f"bench:probe:{_order_id(args)}", mapping={k: f"{v:.3f}" for k, v in _marks.items()})


def _stamp(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        finally:
            _marks.setdefault(name, _now())
    wrapper._bench_probe = True
    return wrapper


def _install() -> None:
    from trading.exchanges import ratelimit
    from trading.services import lifecycle

    if getattr(lifecycle.order_mark_submitting, "_bench_probe", False):
        return
    lifecycle.order_mark_submitting = _stamp("claimed", lifecycle.order_mark_submitting)
    ratelimit.SharedRateLimiter._acquire = _stamp("acquired", ratelimit.SharedRateLimiter._acquire)
    import requests

    requests.Session.send = _stamp("sent", requests.Session.send)


__all__ = ["app"]
