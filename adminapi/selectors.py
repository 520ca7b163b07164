"""Reads that compose the operator surface's overviews (``GET /admin/status``, ``/admin/config``,
``tbot status``) from each app's own selectors. No writes here."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from strategy.selectors import last_decision
from trading.config_schema import SCHEMA, ConfigValidationError, config_get, config_version, stored_rows, to_json
from trading.selectors import is_halted, open_orders_count, unresolved_orders_count


def config_overview() -> dict[str, Any]:
    """Every key with its effective value, default, version and where the value comes from.

    Unlike ``config_get()`` this never raises: an invalid stored value is shown with its problems."""
    rows = stored_rows()
    problems: dict[str, list[str]] = {}
    try:
        effective = config_get().as_json()
    except ConfigValidationError as exc:
        problems = exc.problems
        effective = {k: (rows[k].value if k in rows else to_json(k, spec.default)) for k, spec in SCHEMA.items()}
    keys = []
    for key, spec in SCHEMA.items():
        row = rows.get(key)
        keys.append({
            **spec.describe(),
            "value": effective[key],
            "source": "stored" if row else "default",
            "version": row.version if row else 0,
            "updated_at": row.updated_at if row else None,
            "updated_by": row.updated_by if row else None,
            "problems": problems.get(key, []),
        })
    return {"version": sum(r.version for r in rows.values()), "valid": not problems, "values": effective,
            "keys": keys}


def heartbeat_ages() -> tuple[dict[str, float | None], str | None]:
    """Heartbeat ages per process, and the error when Redis could not be read."""
    from infra import heartbeat

    try:
        return heartbeat.ages(), None
    except Exception as exc:  # status must answer even when Redis is down
        return {p: None for p in heartbeat.PROCESSES}, f"{type(exc).__name__}: {exc}"[:300]


def system_status() -> dict[str, Any]:
    """What GET /admin/status and ``tbot status`` show."""
    halt = is_halted()
    ages, heartbeat_error = heartbeat_ages()
    decision = last_decision()
    return {
        "halted": halt.halted,
        "halt": halt.as_json(),
        "config_version": config_version(),
        "venue": settings.VENUE.name,
        "open_orders": open_orders_count(),
        "unresolved_orders": unresolved_orders_count(),
        "heartbeats": ages,
        "heartbeat_error": heartbeat_error,
        "last_decision": None if decision is None else {
            "tick_id": decision.tick_id, "symbol": decision.symbol, "decision": decision.decision,
            "reason_code": decision.reason_code, "trace_id": decision.trace_id, "created_at": decision.created_at,
        },
    }
