"""Sending an order, and finding out what happened when we could not tell (invariants 1 and 2).

The send is always preceded by a committed claim (pending -> submitted) so that exactly one
caller sends and a crash leaves a trace. Whatever the venue answers is recorded; when it
answers nothing we can trust (timeout, 5xx, dropped connection, rate limit on the write), the
order becomes ``submit_unknown`` and is resolved by asking the venue for our client id — and
only when the venue still has no such order after a grace window is it sent again, with the
same client id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Max

from infra.clock import datetime_to_ms, now_utc
from infra.faults import crash_point
from infra.logging import trace_context
from trading.exchanges.base import ExchangeGateway, OrderRequest, OrderType, Side, VenueOrder, VenueOrderStatus
from trading.exchanges.errors import (
    AuthError,
    DuplicateClientOrderIdError,
    RateLimitHeldBackError,
    RejectedError,
    VenueError,
)
from trading.models import TERMINAL_STATUSES, Order, OrderEvent, OrderStatus
from trading.services import lifecycle
from trading.services.lifecycle import EventType

log = logging.getLogger(__name__)

# A venue may take a moment to show an order it accepted; don't re-send before this.
RESOLVE_GRACE = timedelta(seconds=5)
# No send lives longer than ccxt's timeout plus the task's soft limit: a "submitted" order
# older than this was orphaned by a crash.
STALE_SUBMITTED = timedelta(seconds=30)
# A pending order whose submit task was lost (broker down at commit, crash) is re-enqueued.
STALE_PENDING = timedelta(seconds=10)
MAX_SUBMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class ResolveOutcome:
    status: str
    retry_in_s: float | None = None      # ask again later
    resent: bool = False


def _request(order: Order) -> OrderRequest:
    return OrderRequest(client_order_id=order.client_order_id, symbol=order.symbol, side=Side(order.side),
                        type=OrderType(order.type), quantity=order.quantity, price=order.price,
                        stop_price=order.stop_price)


def order_submit(*, order_id: int, gateway: ExchangeGateway, resend_after_attempts: int | None = None) -> Order:
    """Send the order once. Safe to call any number of times, from any number of workers.

    A pending order is sent by whoever claims it first. An order whose outcome is unknown is
    only re-sent by ``order_resolve``, which passes the attempt count it saw before asking the
    venue (``resend_after_attempts``)."""
    order = lifecycle.order_mark_submitting(order_id=order_id, expected_attempts=resend_after_attempts)
    if order is None:
        return Order.objects.get(pk=order_id)   # already sent, or canceled before sending
    with trace_context(order.trace_id):
        crash_point("before_send")
        try:
            venue_order = gateway.create_order(_request(order))
        except DuplicateClientOrderIdError:
            # The venue already has our id: an earlier send got through. Learn what it has.
            log.info("venue already has %s; resolving instead of re-sending", order.client_order_id)
            lifecycle.order_mark_submit_unknown(order_id=order_id, error="venue reports duplicate client id",
                                                reason_code="DUPLICATE_CLIENT_ID")
            order_resolve(order_id=order_id, gateway=gateway)
            return Order.objects.get(pk=order_id)
        except RateLimitHeldBackError as exc:
            log.info("order %s held back by the shared rate limit: %s", order.client_order_id, exc)
            return lifecycle.order_mark_send_deferred(order_id=order_id, detail=str(exc))
        except (RejectedError, AuthError) as exc:
            # The venue said no (or never let us in): nothing was placed.
            log.warning("order %s rejected: %s", order.client_order_id, exc)
            return lifecycle.order_mark_rejected(order_id=order_id, code=exc.code, message=exc.message,
                                                 reason_code="AUTH_FAILED" if isinstance(exc, AuthError)
                                                 else "VENUE_REJECTED")
        except VenueError as exc:
            # Timeout, 5xx, dropped connection, rate limit, clock skew: outcome unknown.
            log.warning("order %s outcome unknown: %s", order.client_order_id, exc)
            return lifecycle.order_mark_submit_unknown(order_id=order_id, error=f"{type(exc).__name__}: {exc}")
        crash_point("after_venue_accept")
        if venue_order.type == OrderType.MARKET and venue_order.status == VenueOrderStatus.OPEN:
            # Bybit acknowledges a create with ids only; a market order has usually filled by
            # now, so ask once for its real state rather than waiting for reconciliation.
            venue_order = _refetch(gateway, order, venue_order)
        order = order_record_venue_state(order_id=order_id, venue_order=venue_order, gateway=gateway,
                                         source=OrderEvent.Source.VENUE)
        log.info("order %s %s", order.client_order_id, order.status)
        return order


def _refetch(gateway: ExchangeGateway, order: Order, acknowledged: VenueOrder) -> VenueOrder:
    try:
        return gateway.fetch_order(order.symbol, order.client_order_id) or acknowledged
    except VenueError as exc:
        log.info("could not re-read %s after acceptance (%s); reconciliation will", order.client_order_id, exc)
        return acknowledged


def order_record_venue_state(*, order_id: int, venue_order: VenueOrder, gateway: ExchangeGateway,
                             source: str) -> Order:
    """Apply the venue's view of the order, then pull its trades if the venue reports fills we lack."""
    crash_point("before_accept_commit")
    order = lifecycle.order_apply_venue_order(order_id=order_id, venue_order=venue_order, source=source)
    crash_point("after_accept_commit")
    if venue_order.filled_quantity > order.filled_quantity:
        order_sync_fills(order=order, gateway=gateway, source=source)
        order.refresh_from_db()
    return order


def order_sync_fills(*, order: Order, gateway: ExchangeGateway, source: str) -> int:
    """Record every venue trade of this order (idempotent by trade id). Returns how many were new."""
    since = datetime_to_ms(order.created_at) - 60_000
    ours = [t for t in gateway.fetch_my_trades(order.symbol, since_ms=since)
            if t.client_order_id == order.client_order_id
            or (order.venue_order_id and t.venue_order_id == order.venue_order_id)]
    return lifecycle.order_record_fills(order_id=order.pk, trades=ours, source=source)


def _last_send_at(order: Order):
    return order.events.filter(event_type=EventType.SUBMITTING).aggregate(t=Max("created_at"))["t"]


def order_resolve(*, order_id: int, gateway: ExchangeGateway, max_attempts: int = MAX_SUBMIT_ATTEMPTS,
                  grace: timedelta = RESOLVE_GRACE) -> ResolveOutcome:
    """Resolve a submit-unknown order: ask the venue by client id first; re-send the same id
    only when the venue has had time to show it and still has none; give up (loudly) after
    ``max_attempts`` sends, leaving the order unknown and its symbol blocked for entries."""
    order = Order.objects.get(pk=order_id)
    if order.status != OrderStatus.SUBMIT_UNKNOWN:
        return ResolveOutcome(order.status)
    with trace_context(order.trace_id):
        venue_order = gateway.fetch_order(order.symbol, order.client_order_id)
        if venue_order is not None:
            order = order_record_venue_state(order_id=order_id, venue_order=venue_order, gateway=gateway,
                                             source=OrderEvent.Source.RECONCILIATION)
            log.info("resolved %s: the venue has it (%s)", order.client_order_id, order.status)
            return ResolveOutcome(order.status)
        last_send = _last_send_at(order)
        waited = now_utc() - last_send if last_send else grace
        if waited < grace:
            return ResolveOutcome(order.status, retry_in_s=(grace - waited).total_seconds() + 0.1)
        if order.submit_attempts >= max_attempts:
            first = lifecycle.order_note(
                order_id=order_id, event_type=EventType.RESOLUTION_FAILED, source=OrderEvent.Source.SYSTEM,
                reason_code="SUBMIT_UNRESOLVED", idempotency_key=f"unresolved:{order.client_order_id}",
                payload={"attempts": order.submit_attempts, "detail": "venue has no such order after every send"})
            if first:
                _alert_unresolved(order)
            return ResolveOutcome(order.status)
        log.info("venue has no %s after %.1fs: sending again with the same id", order.client_order_id,
                 waited.total_seconds())
        order = order_submit(order_id=order_id, gateway=gateway, resend_after_attempts=order.submit_attempts)
        return ResolveOutcome(order.status, resent=True,
                              retry_in_s=grace.total_seconds() if order.status == OrderStatus.SUBMIT_UNKNOWN
                              else None)


def _alert_unresolved(order: Order) -> None:
    try:
        from infra.telegram import telegram_enqueue
    except ImportError:  # the Telegram outbox is optional wiring
        return
    telegram_enqueue(
        text=(f"ORDER UNRESOLVED {order.client_order_id} {order.side} {order.quantity} {order.symbol}: the venue "
              f"has no such order after {order.submit_attempts} sends. New entries on {order.symbol} are blocked. "
              f"reason_code=SUBMIT_UNRESOLVED trace_id={order.trace_id}"),
        trace_id=order.trace_id, reason_code="SUBMIT_UNRESOLVED")


def orders_sweep() -> dict[str, list[int]]:
    """Find orders a crash or a lost message left behind. Returns ids to (re)submit and resolve."""
    now = now_utc()
    stale_submitted = Order.objects.filter(status=OrderStatus.SUBMITTED, updated_at__lt=now - STALE_SUBMITTED)
    for order_id in stale_submitted.values_list("pk", flat=True):
        lifecycle.order_mark_submit_unknown(order_id=order_id, error="send was orphaned (worker died mid-send)",
                                            reason_code="STALE_SUBMISSION")
    pending = list(Order.objects.filter(status=OrderStatus.PENDING, created_at__lt=now - STALE_PENDING)
                   .values_list("pk", flat=True))
    unknown = list(Order.objects.filter(status=OrderStatus.SUBMIT_UNKNOWN).values_list("pk", flat=True))
    return {"submit": pending, "resolve": unknown}


def open_order_ids() -> list[int]:
    return list(Order.objects.exclude(status__in=TERMINAL_STATUSES).values_list("pk", flat=True))
