"""Reconciliation: make our DB agree with the venue, and say what was repaired (invariant 4).

Per symbol it asks the venue twice — open orders, and our trades since a cursor — rather than
once per order, then looks up individually only the few orders whose state it cannot tell
from those two answers (an order of ours that is no longer open, an order whose venue id we
never learned). What it finds is written through the lifecycle with ``source=reconciliation``:

* fills we missed (idempotent by venue trade id) — however late the venue shows them: an order
  whose venue-reported filled quantity exceeds its recorded fills keeps its symbol's trades
  being read from the order's creation until they are all there, whatever its status,
* fees paid in a third asset that could not be valued yet (``trading.services.fees``),
* acceptances and cancels / expiries we missed,
* orders that carry our client-id prefix on the venue but are missing from the DB (imported),
* an ``orders.status`` that disagrees with the order's own event stream (repaired, with a
  STATUS_REPAIRED event saying from what to what),
* base-asset holdings on the venue smaller than what our fills say we hold (drift: audited
  and alerted, never "fixed" by trading).

Running it twice changes nothing the second time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now

from infra.clock import datetime_to_ms, now_ms
from infra.logging import new_trace_id
from infra.redis import get_redis, key
from infra.telegram import telegram_enqueue
from trading.client_ids import PREFIX, is_ours
from trading.exchanges.base import ExchangeGateway, VenueOrder, VenueTrade
from trading.exchanges.errors import VenueError
from trading.models import TERMINAL_STATUSES, AuditLog, Order, OrderEvent, OrderStatus
from trading.selectors import expected_holdings, send_may_be_in_flight
from trading.services import lifecycle
from trading.services.control import audit_record
from trading.services.fees import fees_value
from trading.services.submission import order_sync_fills

log = logging.getLogger(__name__)

SOURCE = OrderEvent.Source.RECONCILIATION
DEFAULT_LOOKBACK_MS = 24 * 3600 * 1000
CURSOR_OVERLAP_MS = 60_000   # re-read the last minute: trades are idempotent, gaps are not
ABANDONED_WATCH = timedelta(hours=1)


@dataclass
class ReconcileReport:
    full: bool = True
    symbols: list[str] = field(default_factory=list)
    venue_requests: int = 0
    imported: list[str] = field(default_factory=list)
    fills_added: int = 0
    fees_valued: int = 0
    acceptances: int = 0
    closed: int = 0
    statuses_repaired: list[str] = field(default_factory=list)
    unknown_on_venue: list[str] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)     # symbol -> why it could not be checked

    @property
    def changed(self) -> bool:
        return bool(self.imported or self.fills_added or self.acceptances or self.closed or self.statuses_repaired
                    or self.fees_valued)

    def as_dict(self) -> dict:
        return asdict(self)


def _universe() -> list[str]:
    from trading.config_schema import config_get

    return list(config_get().universe)


def reconcile(*, gateway: ExchangeGateway, symbols: list[str] | None = None, full: bool = True) -> ReconcileReport:
    """One pass. ``full`` reads every symbol's trade history since its cursor; otherwise only
    where a trade can be news: a symbol with one of our orders in flight, or one of our orders
    open on the venue that we do not know or whose fills we lack. The periodic pass is light
    (about one request per symbol); a full pass runs at worker start and every few minutes and
    is what finds an order the DB lost entirely after it had already filled."""
    report = ReconcileReport(full=full)
    _repair_projection(report)
    active = set(Order.objects.filter(venue=gateway.name).exclude(status__in=TERMINAL_STATUSES)
                 .values_list("symbol", flat=True))
    report.symbols = sorted(set(symbols if symbols is not None else _universe()) | active)
    for symbol in report.symbols:
        try:
            _reconcile_symbol(gateway, symbol, report, full=full)
        except VenueError as exc:
            # One symbol the venue cannot answer for must not leave every other one unchecked.
            report.errors[symbol] = str(exc)
            log.warning("reconciliation skipped %s: %s", symbol, exc)
    report.fees_valued = fees_value(gateway=gateway)
    try:
        _check_drift(gateway, report)
    except VenueError as exc:
        report.errors["balances"] = str(exc)
    if report.changed:
        log.info("reconciliation repaired: %s", json.dumps(report.as_dict(), default=str))
    return report


# --- the projection against its own event stream ---------------------------------------------

_EXPECTED_STATUS_SQL = """
SELECT o.id, o.status, COALESCE(last.to_status, 'pending') AS expected
FROM orders o
LEFT JOIN LATERAL (
    SELECT e.payload ->> 'to' AS to_status
    FROM order_events e
    WHERE e.order_id = o.id AND e.payload ? 'to'
    ORDER BY e.id DESC
    LIMIT 1
) last ON TRUE
WHERE o.status <> COALESCE(last.to_status, 'pending')
"""


def _repair_projection(report: ReconcileReport) -> None:
    """``orders.status`` must be what its last status event says. Anything else was written
    around the lifecycle (by hand, by a bug): put it back and record why."""
    with connection.cursor() as cur:
        cur.execute(_EXPECTED_STATUS_SQL)
        rows = cur.fetchall()
    for order_id, actual, expected in rows:
        order = lifecycle.order_repair_status(
            order_id=order_id, to=expected, reason_code="PROJECTION_MISMATCH",
            payload={"detail": f"orders.status was {actual!r} but the order's events say {expected!r}"})
        report.statuses_repaired.append(order.client_order_id)


# --- one symbol ------------------------------------------------------------------------------

def _cursor_key(venue: str, symbol: str) -> str:
    return key("reconcile", "trades_cursor", venue, symbol)


def _reconcile_symbol(gateway: ExchangeGateway, symbol: str, report: ReconcileReport, *, full: bool) -> None:
    venue = gateway.name
    open_on_venue = gateway.fetch_open_orders(symbol)
    report.venue_requests += 1
    ours_open = {vo.client_order_id: vo for vo in open_on_venue if is_ours(vo.client_order_id)}
    known = {o.client_order_id: o for o in Order.objects.filter(client_order_id__in=list(ours_open))}
    # A new trade is possible only for an order the venue shows open with other fills than ours,
    # one we do not know, or one we think is live that the venue no longer shows open.
    fills_differ = any(cid not in known or vo.filled_quantity != known[cid].filled_quantity
                       for cid, vo in ours_open.items())
    closed_there = (Order.objects.filter(venue=venue, symbol=symbol)
                    .exclude(status__in=[*TERMINAL_STATUSES, OrderStatus.PENDING])
                    .exclude(client_order_id__in=list(ours_open)).exists())
    # Trades the venue owes us: it said an order of ours filled more than we have trades for (its
    # trade list lags its order query). Read from that order's creation, however long ago, until
    # they are all recorded - a trade that shows up late carries its (old) execution time.
    # Likewise an entry abandoned with its outcome unknown within the last hour: if the venue had
    # it after all, its trades show up late and must be found on the next pass, not a full one.
    owed_since = (Order.objects.filter(Q(venue_filled_quantity__gt=F("filled_quantity"))
                                       | Q(status=OrderStatus.EXPIRED, submit_attempts__gt=0,
                                           updated_at__gte=Now() - ABANDONED_WATCH),
                                       venue=venue, symbol=symbol)
                  .order_by("created_at").values_list("created_at", flat=True).first())
    trades: list[VenueTrade] = []
    read_trades = full or fills_differ or closed_there or owed_since is not None
    if read_trades:
        cursor_raw = get_redis().get(_cursor_key(venue, symbol))
        since = int(cursor_raw) if cursor_raw else now_ms() - DEFAULT_LOOKBACK_MS
        if owed_since is not None:
            since = min(since, datetime_to_ms(owed_since) - CURSOR_OVERLAP_MS)
        trades = gateway.fetch_my_trades(symbol, since_ms=since)
        report.venue_requests += 1

    for cid, venue_order in ours_open.items():
        order = known.get(cid)
        if order is None:
            order = _import(venue_order, venue=venue, report=report)
        if order.status in (OrderStatus.SUBMITTED, OrderStatus.SUBMIT_UNKNOWN) and _settled(order):
            lifecycle.order_apply_venue_order(order_id=order.pk, venue_order=venue_order, source=SOURCE)
            report.acceptances += 1
        elif venue_order.stop_price is not None and venue_order.stop_price != order.stop_price:
            # A resting stop the venue triggers elsewhere than we recorded (a lost amend answer).
            lifecycle.order_apply_venue_order(order_id=order.pk, venue_order=venue_order, source=SOURCE)

    _apply_trades(gateway, symbol, trades, report)

    # Ours, not terminal here, not open there: the venue closed it, or never had it.
    stale = (Order.objects.filter(venue=venue, symbol=symbol)
             .exclude(status__in=[*TERMINAL_STATUSES, OrderStatus.PENDING])
             .exclude(client_order_id__in=list(ours_open)))
    for order in stale:
        if not _settled(order):
            continue   # a send may be in flight right now; the sweeper handles orphans
        venue_order = gateway.fetch_order(symbol, order.client_order_id)
        report.venue_requests += 1
        if venue_order is None:
            if order.status == OrderStatus.SUBMITTED:
                lifecycle.order_mark_submit_unknown(order_id=order.pk, error="venue has no such order",
                                                    source=SOURCE, reason_code="NOT_ON_VENUE")
            report.unknown_on_venue.append(order.client_order_id)
            continue
        before = order.status
        order = lifecycle.order_apply_venue_order(order_id=order.pk, venue_order=venue_order, source=SOURCE)
        if venue_order.filled_quantity > order.filled_quantity:
            report.fills_added += order_sync_fills(order=order, gateway=gateway, source=SOURCE)
            report.venue_requests += 1
            order.refresh_from_db()
        if order.status != before:
            report.closed += order.status in TERMINAL_STATUSES
            report.acceptances += before in (OrderStatus.SUBMITTED, OrderStatus.SUBMIT_UNKNOWN)

    if trades:
        newest = max(t.timestamp_ms for t in trades)
        get_redis().set(_cursor_key(venue, symbol), newest - CURSOR_OVERLAP_MS)
    elif read_trades and full:
        # Nothing in the whole window: start the next read from (almost) now, not 24 h back.
        get_redis().set(_cursor_key(venue, symbol), now_ms() - CURSOR_OVERLAP_MS)


def _settled(order: Order) -> bool:
    """False for an order whose send may still be in flight (database time)."""
    return not send_may_be_in_flight(order)


def _apply_trades(gateway: ExchangeGateway, symbol: str, trades: list[VenueTrade], report: ReconcileReport) -> None:
    if not trades:
        return
    venue = gateway.name
    # Most trades in the window are already recorded: skip them with one query rather than a
    # locked transaction each (fills are append-only and keyed by the venue's trade id).
    known = set(OrderEvent.objects.filter(idempotency_key__in=[lifecycle.fill_key(venue, t) for t in trades])
                .values_list("idempotency_key", flat=True))
    trades = [t for t in trades if lifecycle.fill_key(venue, t) not in known]
    if not trades:
        return
    by_cid = {o.client_order_id: o for o in Order.objects.filter(
        venue=venue, client_order_id__in=[t.client_order_id for t in trades if t.client_order_id])}
    # Binance numbers orders per symbol: a venue order id means something only with its symbol.
    by_venue_id = {o.venue_order_id: o for o in Order.objects.filter(
        venue=venue, symbol=symbol, venue_order_id__in=[t.venue_order_id for t in trades])}
    unmatched = [t for t in trades if t.client_order_id not in by_cid and t.venue_order_id not in by_venue_id]
    if unmatched:
        # Binance trades carry no client id: learn the venue ids of our orders that lack one.
        for order in Order.objects.filter(venue=venue, symbol=symbol, venue_order_id__isnull=True).exclude(
                status=OrderStatus.PENDING):
            venue_order = gateway.fetch_order(symbol, order.client_order_id)
            report.venue_requests += 1
            if venue_order is not None:
                lifecycle.order_apply_venue_order(order_id=order.pk, venue_order=venue_order, source=SOURCE)
                by_venue_id[venue_order.venue_order_id] = order
        for trade in unmatched:
            if trade.venue_order_id in by_venue_id or not is_ours(trade.client_order_id):
                continue
            venue_order = gateway.fetch_order(symbol, trade.client_order_id)
            report.venue_requests += 1
            if venue_order is not None:
                order = _import(venue_order, venue=venue, report=report)
                by_cid[order.client_order_id] = order
    per_order: dict[int, list[VenueTrade]] = {}
    for trade in trades:
        order = by_cid.get(trade.client_order_id) or by_venue_id.get(trade.venue_order_id)
        if order is not None:     # else: not ours (a manual trade on the same account)
            per_order.setdefault(order.pk, []).append(trade)
    for order_id, order_trades in per_order.items():
        report.fills_added += lifecycle.order_record_fills(order_id=order_id, trades=order_trades, source=SOURCE)


def _import(venue_order: VenueOrder, *, venue: str, report: ReconcileReport) -> Order:
    """An order with our prefix that the DB does not know (e.g. the DB was restored from an
    older backup). Create it as the venue shows it; its fills follow through trades."""
    cid = venue_order.client_order_id or ""
    strategy = cid[len(PREFIX):].split("-", 1)[0] if cid.startswith(PREFIX) else "unknown"
    trace_id = new_trace_id()
    with transaction.atomic():
        order, created = lifecycle.order_create(new=lifecycle.NewOrder(
            client_order_id=cid, venue=venue, strategy=strategy[:32], symbol=venue_order.symbol,
            side=venue_order.side, type=venue_order.type, intent=Order.Intent.IMPORTED,
            quantity=venue_order.quantity, price=venue_order.price, stop_price=venue_order.stop_price,
            trace_id=trace_id,
            reason_code="IMPORTED_FROM_VENUE"), source=SOURCE)
        if created:
            lifecycle.order_mark_imported(order_id=order.pk, venue_order=venue_order)
    if created:
        report.imported.append(cid)
    return Order.objects.get(pk=order.pk)


# --- holdings ----------------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _check_drift(gateway: ExchangeGateway, report: ReconcileReport) -> None:
    expected = {a: q for a, q in expected_holdings(gateway.name).items() if q > 0}
    if not expected:
        return
    balances = gateway.fetch_balances()
    report.venue_requests += 1
    for asset, qty in sorted(expected.items()):
        on_venue = balances[asset].total if asset in balances else Decimal(0)
        # Fees charged in the base asset make the venue hold slightly less; allow 1 %.
        if on_venue < qty * Decimal("0.99"):
            report.drift.append({"asset": asset, "expected": _plain(qty), "on_venue": _plain(on_venue)})
    signature = json.dumps(report.drift, sort_keys=True)
    drift_key = key("reconcile", "drift", gateway.name)
    if signature == (get_redis().get(drift_key) or "[]"):
        return   # already reported
    get_redis().set(drift_key, signature)
    if not report.drift:
        return
    trace_id = new_trace_id()
    assets = ", ".join(f"{d['asset']} expected {d['expected']} on venue {d['on_venue']}" for d in report.drift)
    with transaction.atomic():
        audit_record(actor="reconciliation", source=AuditLog.Source.SYSTEM, action="balance_drift",
                     reason_code="BALANCE_DRIFT", reason="venue holds less than our fills say",
                     before=None, after={"drift": report.drift}, trace_id=trace_id)
        telegram_enqueue(text=f"BALANCE DRIFT on {gateway.name}: {assets}. reason_code=BALANCE_DRIFT "
                              f"trace_id={trace_id}", trace_id=trace_id, reason_code="BALANCE_DRIFT")


__all__ = ["reconcile", "ReconcileReport"]
