"""What /health reports: every dependency and process a trade needs, each with a verdict.

Fail closed (ARCHITECTURE invariant 6): callers treat anything but ``ok`` as "no new entries".
"""

from __future__ import annotations

import functools
import time

import redis as redis_lib
from django.conf import settings
from django.db import connection

from infra import heartbeat
from infra.redis import get_redis


class Unhealthy(Exception):
    """A check's own verdict, reported as is (no exception class name)."""


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check() or {}
        result = {"ok": True, **detail}
    except Unhealthy as exc:
        result = {"ok": False, "error": str(exc)[:300]}
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _database() -> dict:
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()
    return {}


def _redis() -> dict:
    get_redis().ping()
    return {}


@functools.cache
def _broker_client(url: str) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _broker() -> dict:
    _broker_client(settings.CELERY_BROKER_URL).ping()
    return {}


def _venue() -> dict:
    """What the data-syncer last learned about the venue: reachable, not rate-limited, not banned."""
    # Deliberately upward (and lazy): /health reports the venue as the data-syncer last saw it.
    from syncer.selectors import venue_health

    health = venue_health(settings.VENUE.name)
    if not health.ok:
        raise Unhealthy(health.reason)
    return {}


def check_health() -> tuple[bool, dict]:
    """Returns (healthy, report). ``report['failing']`` names every component that is down or stale."""
    components = {"database": _timed(_database), "redis": _timed(_redis), "broker": _timed(_broker)}
    components["venue"] = _timed(_venue) if components["redis"]["ok"] else {"ok": False, "error": "redis unavailable"}
    processes: dict[str, dict] = {}
    if components["redis"]["ok"]:
        for name, age in heartbeat.ages().items():
            fresh = age is not None and age <= heartbeat.STALE_AFTER_S
            processes[name] = {"ok": fresh, "heartbeat_age_s": age}
            if not fresh:
                processes[name]["error"] = "no heartbeat yet" if age is None else f"heartbeat is {age:.0f}s old"
    else:
        processes = {p: {"ok": False, "heartbeat_age_s": None, "error": "redis unavailable"}
                     for p in heartbeat.PROCESSES}
    failing = [n for n, c in components.items() if not c["ok"]] + [n for n, p in processes.items() if not p["ok"]]
    healthy = not failing
    report = {
        "status": "ok" if healthy else "unhealthy",
        "venue": settings.VENUE.name,
        "failing": failing,
        "components": components,
        "processes": processes,
        "warnings": _warnings() if components["database"]["ok"] else [],
    }
    return healthy, report


def _warnings() -> list[dict]:
    """Not failures of the system (the status stays 200) but what an operator must know: open
    positions without their protective stop on the venue, and why."""
    # Deliberately upward (and lazy), as for the venue above.
    from strategy.selectors import positions_unprotected_on_venue

    try:
        positions = positions_unprotected_on_venue(venue=settings.VENUE.name)
    except Exception as exc:      # /health must answer whatever the read model does
        return [{"code": "WARNINGS_UNAVAILABLE", "detail": f"{type(exc).__name__}: {exc}"[:300]}]
    return [{"code": "VENUE_STOP_UNPROTECTED", "position": p.pk, "symbol": p.symbol,
             "detail": f"position #{p.pk} {p.symbol} has no stop on the venue: {p.venue_stop_reason}"}
            for p in positions]
