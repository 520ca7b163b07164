"""Reads of the trading app's own models (services write, selectors read; no writes here):
orders and their events, the audit log, the halt state, what our fills say we hold, equity
snapshots, fees not yet valued, emergency exit runs, and the order path's database-time ages.

List selectors return querysets already ordered newest first and cut to ``limit``
(1..``MAX_LIMIT``); callers validate their inputs before calling.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from trading.config_schema import HALT_KEY, HaltState
from trading.models import (
    TERMINAL_STATUSES,
    AuditLog,
    EmergencyExitRun,
    EquitySnapshot,
    Order,
    OrderEvent,
    OrderStatus,
    SystemConfig,
)
from trading.order_timing import STALE_SUBMITTED

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
UNRESOLVED_STATUSES = (OrderStatus.SUBMIT_UNKNOWN, OrderStatus.SUBMITTED)
OPEN_STATUSES = tuple(s for s in OrderStatus if s not in TERMINAL_STATUSES)


def clamp_limit(limit: int | None) -> int:
    """A list's ``limit`` within 1..MAX_LIMIT (DEFAULT_LIMIT when not given)."""
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
    return qs.order_by("-created_at", "-id")[: clamp_limit(limit)]


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
    return Order.objects.filter(status__in=UNRESOLVED_STATUSES).order_by("created_at", "id")[: clamp_limit(limit)]


def unresolved_orders_count() -> int:
    return Order.objects.filter(status__in=UNRESOLVED_STATUSES).count()


# --- decisions ------------------------------------------------------------------------------


# --- audit ----------------------------------------------------------------------------------

def audit_list(*, action: str | None = None, actor: str | None = None, limit: int | None = None) -> QuerySet[AuditLog]:
    qs = AuditLog.objects.all()
    if action:
        qs = qs.filter(action=action)
    if actor:
        qs = qs.filter(actor=actor)
    return qs.order_by("-created_at", "-id")[: clamp_limit(limit)]


# --- config and status ----------------------------------------------------------------------


def is_halted() -> HaltState:
    """The current halt state (a read; missing row = running)."""
    row = SystemConfig.objects.filter(key=HALT_KEY).only("value").first()
    return HaltState.from_json(row.value if row else None)


_HOLDINGS_SQL = """
WITH fills AS (
    SELECT split_part(o.symbol, '/', 1) AS base,
           SUM(CASE WHEN o.side = 'buy' THEN 1 ELSE -1 END * (e.payload ->> 'quantity')::numeric)
         - SUM(CASE WHEN e.payload ->> 'fee_asset' = split_part(o.symbol, '/', 1)
                    THEN (e.payload ->> 'fee')::numeric ELSE 0 END) AS held
    FROM order_events e
    JOIN orders o ON o.id = e.order_id
    WHERE e.event_type = 'FILL' AND o.venue = %s
    GROUP BY 1
), owed AS (
    SELECT split_part(symbol, '/', 1) AS base,
           SUM(CASE WHEN side = 'buy' THEN 1 ELSE -1 END * (venue_filled_quantity - filled_quantity)) AS owed
    FROM orders
    WHERE venue = %s AND venue_filled_quantity > filled_quantity
    GROUP BY 1
)
SELECT base, COALESCE(fills.held, 0) + COALESCE(owed.owed, 0)
FROM fills FULL OUTER JOIN owed USING (base)
"""


def expected_holdings(venue: str) -> dict[str, Decimal]:
    """Base-asset quantity our own orders say we hold, per asset: bought minus sold, minus fees
    the venue took in the base asset (Binance and Bybit charge a buy's fee in the coin bought) —
    and counting what the venue says an order filled whose trades we have not read yet (its fee
    is not known then, so that part is counted whole)."""
    with connection.cursor() as cur:
        cur.execute(_HOLDINGS_SQL, [venue, venue])
        return {base: held for base, held in cur.fetchall()}


# A snapshot older than this before the day's start does not describe the start (the system
# was down over midnight): the day then starts at its first snapshot instead.
DAY_START_MAX_AGE = timedelta(hours=1)


def equity_at_day_start(*, venue: str, day_start: datetime) -> EquitySnapshot | None:
    """The equity the HK day began with: the last snapshot at or before ``day_start`` (at most
    ``DAY_START_MAX_AGE`` old), else the day's first snapshot, else None (nothing recorded yet)."""
    before = (EquitySnapshot.objects.filter(venue=venue, taken_at__lte=day_start,
                                            taken_at__gte=day_start - DAY_START_MAX_AGE)
              .order_by("-taken_at", "-id").first())
    if before is not None:
        return before
    return EquitySnapshot.objects.filter(venue=venue, taken_at__gt=day_start).order_by("taken_at", "id").first()


def unvalued_fees() -> list[dict]:
    """Orders with fees still not valued in quote: for reports and ``tbot diagnose``."""
    return [{"client_order_id": cid, "symbol": symbol, "fees": fees}
            for cid, symbol, fees in Order.objects.exclude(fee_unvalued={})
            .values_list("client_order_id", "symbol", "fee_unvalued")]


def emergency_exit_report(*, trace_id: str) -> tuple[str, dict | None]:
    """("done", report) | ("running", None) | ("unknown", None) for this trace id."""
    run = EmergencyExitRun.objects.filter(trace_id=trace_id).first()
    if run is None:
        return "unknown", None
    return ("done", run.report) if run.finished_at else ("running", None)


def seconds_since(order_id: int, *event_types: str) -> float | None:
    """Database time since the order's last event of these types (None: there is none)."""
    with connection.cursor() as cur:
        cur.execute("SELECT EXTRACT(EPOCH FROM now() - max(created_at)) FROM order_events "
                    "WHERE order_id = %s AND event_type = ANY(%s)", [order_id, list(event_types)])
        value = cur.fetchone()[0]
    return None if value is None else float(value)


def send_may_be_in_flight(order: Order, *, stale: timedelta = STALE_SUBMITTED) -> bool:
    """A submitted order whose claim is younger than the longest send (database time)."""
    if order.status != OrderStatus.SUBMITTED:
        return False
    age = seconds_since(order.pk, "SUBMITTING")       # lifecycle.EventType.SUBMITTING: the claim
    return age is None or age < stale.total_seconds()
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
    return qs.order_by("-created_at", "-id")[: clamp_limit(limit)]


def audit_between(*, start: datetime, end: datetime | None = None, limit: int | None = None) -> QuerySet[AuditLog]:
    qs = AuditLog.objects.filter(created_at__gte=start)
    if end is not None:
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("-created_at", "-id")[: clamp_limit(limit)]


def orders_of_symbol_between(*, venue: str, symbol: str, start: datetime, end: datetime | None = None
                             ) -> QuerySet[Order]:
    """Orders of one symbol that filled something, created in the window (chart markers)."""
    qs = Order.objects.filter(venue=venue, symbol=symbol, created_at__gte=start, filled_quantity__gt=0)
    if end is not None:
        qs = qs.filter(created_at__lt=end)
    return qs.order_by("created_at", "id")
