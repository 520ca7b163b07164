"""Reads for the operator surface (API, Django admin, tbot). No writes here.

List selectors return querysets already ordered newest first and cut to ``limit``
(1..``MAX_LIMIT``); callers validate their inputs before calling.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max, QuerySet

from strategy.models import StrategyDecision
from trading.config_schema import SCHEMA, ConfigValidationError, config_get, config_version, stored_rows, to_json
from trading.models import TERMINAL_STATUSES, AuditLog, EquitySnapshot, Order, OrderEvent, OrderStatus
from trading.services.control import is_halted

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
UNRESOLVED_STATUSES = (OrderStatus.SUBMIT_UNKNOWN, OrderStatus.SUBMITTED)
OPEN_STATUSES = tuple(s for s in OrderStatus if s not in TERMINAL_STATUSES)


def _limit(limit: int | None) -> int:
    return max(1, min(int(limit or DEFAULT_LIMIT), MAX_LIMIT))


# --- orders ---------------------------------------------------------------------------------

def orders_list(*, status: str | None = None, symbol: str | None = None, intent: str | None = None,
                since: datetime | None = None, limit: int | None = None) -> QuerySet[Order]:
    qs = Order.objects.all()
    if status:
        qs = qs.filter(status=status)
    if symbol:
        qs = qs.filter(symbol=symbol)
    if intent:
        qs = qs.filter(intent=intent)
    if since:
        qs = qs.filter(created_at__gte=since)
    return qs.order_by("-created_at", "-id")[: _limit(limit)]


def order_get(*, client_order_id: str) -> Order:
    """Raises ``Order.DoesNotExist`` for an unknown id."""
    return Order.objects.get(client_order_id=client_order_id)


def order_events_list(*, client_order_id: str) -> QuerySet[OrderEvent]:
    """The order's events, oldest first. Raises ``Order.DoesNotExist`` for an unknown order."""
    order = order_get(client_order_id=client_order_id)
    return OrderEvent.objects.filter(order=order).order_by("id")


def open_orders_count() -> int:
    return Order.objects.filter(status__in=OPEN_STATUSES).count()


def unresolved_orders(*, limit: int | None = None) -> QuerySet[Order]:
    """Orders whose send is in flight or whose outcome is unknown (need resolution by client id)."""
    return Order.objects.filter(status__in=UNRESOLVED_STATUSES).order_by("created_at", "id")[: _limit(limit)]


def unresolved_orders_count() -> int:
    return Order.objects.filter(status__in=UNRESOLVED_STATUSES).count()


# --- decisions ------------------------------------------------------------------------------

def decisions_list(*, tick_id: str | None = None, symbol: str | None = None, decision: str | None = None,
                   reason_code: str | None = None, limit: int | None = None) -> QuerySet[StrategyDecision]:
    qs = StrategyDecision.objects.all()
    if tick_id:
        qs = qs.filter(tick_id=tick_id)
    if symbol:
        qs = qs.filter(symbol=symbol)
    if decision:
        qs = qs.filter(decision=decision)
    if reason_code:
        qs = qs.filter(reason_code=reason_code)
    return qs.order_by("-created_at", "-id")[: _limit(limit)]


def last_decision() -> StrategyDecision | None:
    return StrategyDecision.objects.order_by("-created_at", "-id").first()


def latest_decisions_per_symbol(*, symbols: list[str] | None = None) -> dict[str, StrategyDecision]:
    """The most recent decision of each symbol (of ``symbols``, or of every symbol seen)."""
    qs = StrategyDecision.objects.all()
    if symbols is not None:
        qs = qs.filter(symbol__in=symbols)
    latest_ids = qs.values("symbol").annotate(last_id=Max("id")).values_list("last_id", flat=True)
    return {d.symbol: d for d in StrategyDecision.objects.filter(id__in=list(latest_ids))}


# --- audit ----------------------------------------------------------------------------------

def audit_list(*, action: str | None = None, actor: str | None = None, limit: int | None = None) -> QuerySet[AuditLog]:
    qs = AuditLog.objects.all()
    if action:
        qs = qs.filter(action=action)
    if actor:
        qs = qs.filter(actor=actor)
    return qs.order_by("-created_at", "-id")[: _limit(limit)]


# --- config and status ----------------------------------------------------------------------

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


# --- equity (the curve the data-syncer appends every ~30 s) ---------------------------------

def equity_latest(*, venue: str) -> EquitySnapshot | None:
    return EquitySnapshot.objects.filter(venue=venue).order_by("-taken_at", "-id").first()


def equity_last_at_or_before(*, venue: str, moment: datetime) -> EquitySnapshot | None:
    return EquitySnapshot.objects.filter(venue=venue, taken_at__lte=moment).order_by("-taken_at", "-id").first()


def equity_series(*, venue: str, since: datetime, until: datetime | None = None,
                  max_points: int = 2000) -> list[tuple[datetime, Any, Any]]:
    """``(taken_at, equity, free_quote)`` oldest first. More than ``max_points`` snapshots are
    thinned to every n-th (the newest is always kept): a month is ~86,000 rows, a chart needs
    a few thousand."""
    qs = EquitySnapshot.objects.filter(venue=venue, taken_at__gte=since)
    if until is not None:
        qs = qs.filter(taken_at__lte=until)
    total = qs.count()
    if total <= max_points:
        return list(qs.order_by("taken_at", "id").values_list("taken_at", "equity", "free_quote"))
    step = -(-total // max_points)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT taken_at, equity, free_quote FROM ("
            "  SELECT taken_at, equity, free_quote, id, row_number() OVER (ORDER BY taken_at DESC, id DESC) - 1 AS n"
            "  FROM equity_snapshots WHERE venue = %s AND taken_at >= %s"
            "    AND (%s::timestamptz IS NULL OR taken_at <= %s)"
            ") t WHERE n %% %s = 0 ORDER BY taken_at, id",
            [venue, since, until, until, step])
        return list(cur.fetchall())


def equity_max_drawdown(*, venue: str, start: datetime | None = None, end: datetime | None = None
                        ) -> tuple[Any, Any] | None:
    """The largest fall of equity from a running peak within [start, end): ``(amount, fraction
    of that peak)``, or None without snapshots. The window opens with the equity it started
    with (the last snapshot at or before ``start``), so a fall right after midnight counts.
    Computed in PostgreSQL over every snapshot."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT dd, CASE WHEN peak > 0 THEN dd / peak END FROM ("
            "  SELECT peak - equity AS dd, peak FROM ("
            "    SELECT equity, max(equity) OVER (ORDER BY taken_at, id) AS peak FROM equity_snapshots"
            "    WHERE venue = %s AND (%s::timestamptz IS NULL OR taken_at >= COALESCE("
            "      (SELECT max(taken_at) FROM equity_snapshots WHERE venue = %s AND taken_at <= %s), %s))"
            "      AND (%s::timestamptz IS NULL OR taken_at < %s)) s"
            ") d ORDER BY dd DESC LIMIT 1",
            [venue, start, venue, start, start, end, end])
        row = cur.fetchone()
    return None if row is None else (row[0], row[1])


def equity_first_taken_at(*, venue: str) -> datetime | None:
    return (EquitySnapshot.objects.filter(venue=venue).order_by("taken_at", "id")
            .values_list("taken_at", flat=True).first())


# --- what happened in a time window (the cockpit's timeline) ---------------------------------

def order_events_between(*, start: datetime, end: datetime | None = None, limit: int | None = None
                         ) -> QuerySet[OrderEvent]:
    qs = OrderEvent.objects.filter(created_at__gte=start).select_related("order")
    if end is not None:
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("-created_at", "-id")[: _limit(limit)]


def audit_between(*, start: datetime, end: datetime | None = None, limit: int | None = None) -> QuerySet[AuditLog]:
    qs = AuditLog.objects.filter(created_at__gte=start)
    if end is not None:
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("-created_at", "-id")[: _limit(limit)]


def orders_of_symbol_between(*, venue: str, symbol: str, start: datetime, end: datetime | None = None
                             ) -> QuerySet[Order]:
    """Orders of one symbol that filled something, created in the window (chart markers)."""
    qs = Order.objects.filter(venue=venue, symbol=symbol, created_at__gte=start, filled_quantity__gt=0)
    if end is not None:
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("created_at", "id")
