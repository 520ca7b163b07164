"""Sending an order, and finding out what happened when we could not tell (invariants 1, 2, 9).

The send is always preceded by a committed claim (pending -> submitted) so that exactly one
caller sends and a crash leaves a trace. Whatever the venue answers is recorded; when it
answers nothing we can trust (timeout, 5xx, dropped connection, rate limit on the write), the
order becomes ``submit_unknown`` and is resolved by asking the venue for our client id — and
only when the venue still has no such order a grace window after the unknown outcome is it sent
again, with the same client id.

Why the grace window is long and counted from the unknown outcome, in database time: a venue
can make an order visible seconds after it answered a timeout (Binance -1007 "execution status
unknown"), and Binance de-duplicates ``newClientOrderId`` only among *open* orders — a market
order that has already filled is forgotten, so re-sending it too early buys twice. One send may
itself take ~20 s (the rate limiter's wait plus ccxt's timeout), so a window counted from the
claim could be over before the outcome is even known.

An entry is different from an exit: its signal is worth acting on only within its candle
period. Past ``valid_until`` an entry is never sent (pending -> expired) and an entry of unknown
outcome is abandoned (-> expired, ENTRY_ABANDONED) instead of re-sent. Exits keep resolving and
re-sending with the same id, however long it takes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Max, Q
from django.db.models.functions import Now

from infra.clock import datetime_to_ms
from infra.faults import crash_point
from infra.logging import trace_context
from infra.telegram import telegram_enqueue
from trading.exchanges.base import (
    ExchangeGateway,
    OrderRequest,
    OrderType,
    Side,
    VenueOrder,
    VenueOrderStatus,
    last_look,
)
from trading.exchanges.errors import (
    AuthError,
    DuplicateClientOrderIdError,
    OrderNotFoundError,
    RateLimitHeldBackError,
    RejectedError,
    SendVetoedError,
    StopReplaceHalfDoneError,
    VenueError,
)
from trading.models import TERMINAL_STATUSES, Order, OrderEvent, OrderStatus
from trading.order_timing import MAX_SUBMIT_ATTEMPTS, RESEND_GRACE, STALE_PENDING, STALE_SUBMITTED
from trading.selectors import seconds_since
from trading.services import lifecycle
from trading.services.fees import fees_value
from trading.services.lifecycle import EventType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolveOutcome:
    status: str
    retry_in_s: float | None = None      # ask again later
    resent: bool = False


def _request(order: Order) -> OrderRequest:
    return OrderRequest(client_order_id=order.client_order_id, symbol=order.symbol, side=Side(order.side),
                        type=OrderType(order.type), quantity=order.quantity, price=order.price,
                        stop_price=order.stop_price)


# The claim decided against the committed halt. A send that leaves within this long of its claim
# acts on that decision; one that waited longer (in the shared rate limiter: up to 10 s) looks
# again before it leaves.
LAST_LOOK_AFTER_S = 0.05


def _entry_last_look(order_id: int, claimed_at: float) -> str | None:
    """Run after the rate limiter's wait, just before an entry leaves: halted or expired since
    the claim means it must not go (ARCHITECTURE invariant 9)."""
    if time.monotonic() - claimed_at < LAST_LOOK_AFTER_S:
        return None
    with transaction.atomic():
        return lifecycle.entry_send_veto(Order.objects.get(pk=order_id))


def order_submit(*, order_id: int, gateway: ExchangeGateway, resend_after_attempts: int | None = None) -> Order:
    """Send the order once. Safe to call any number of times, from any number of workers.

    A pending order is sent by whoever claims it first. An order whose outcome is unknown is
    only re-sent by ``order_resolve``, which passes the attempt count it saw before asking the
    venue (``resend_after_attempts``)."""
    order = lifecycle.order_mark_submitting(order_id=order_id, expected_attempts=resend_after_attempts)
    if order is None:
        return Order.objects.get(pk=order_id)   # already sent, canceled, expired, or an entry held by a halt
    with trace_context(order.trace_id):
        crash_point("before_send")
        claimed_at = time.monotonic()
        check = (lambda: _entry_last_look(order_id, claimed_at)) if order.intent == Order.Intent.ENTRY else None
        try:
            with last_look(check):
                if order.replaces_id is not None:
                    venue_order = _send_replacement(order, gateway)
                else:
                    venue_order = gateway.create_order(_request(order))
        except DuplicateClientOrderIdError:
            # The venue already has our id: an earlier send got through. Learn what it has.
            log.info("venue already has %s; resolving instead of re-sending", order.client_order_id)
            lifecycle.order_mark_submit_unknown(order_id=order_id, error="venue reports duplicate client id",
                                                reason_code="DUPLICATE_CLIENT_ID")
            order_resolve(order_id=order_id, gateway=gateway)
            return Order.objects.get(pk=order_id)
        except SendVetoedError as exc:
            log.info("entry %s not sent: %s", order.client_order_id, exc.message)
            return lifecycle.order_mark_send_deferred(order_id=order_id, detail=str(exc), reason_code=exc.message)
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
        log.info("order %s %s %s %s: %s", order.side, order.quantity.normalize(), order.symbol,
                 order.client_order_id, order.status)
        return order


def _send_replacement(order: Order, gateway: ExchangeGateway) -> VenueOrder:
    """Send a stop that replaces another in one venue request (Binance cancelReplace): the venue
    cancels ``order.replaces`` and places ``order`` only if that cancel succeeded, so there are
    never two live stops and no moment between two requests without one. What happened to the old
    stop is recorded here; this order's outcome is recorded by the caller as for any send (a
    refusal of either half is a ``RejectedError``, no answer an unknown outcome). A replaced stop
    that is no longer live, or a venue without cancel-replace, means a plain placement."""
    old = Order.objects.get(pk=order.replaces_id)
    if old.status in TERMINAL_STATUSES or not gateway.replaces_stops:
        return _place_instead_of(old, order, gateway)
    try:
        done = gateway.replace_stop(order.symbol, old.client_order_id, _request(order))
    except StopReplaceHalfDoneError as exc:
        # The old stop is gone, the new one refused: the position's next check places a new one.
        _record_replaced(old, exc.canceled, gateway)
        raise
    except OrderNotFoundError:
        # The old stop was not open any more and nothing was placed. Canceled (by an operator, or
        # by an earlier attempt of this very send whose answer was lost): place this one plainly,
        # under the same client id - Binance refuses a second open order with it, so a late-visible
        # first attempt cannot make two. Filled: it was the exit; this one is not wanted.
        _record_replaced(old, None, gateway)
        old.refresh_from_db()
        if old.status == OrderStatus.CANCELED and old.filled_quantity <= 0:
            return _place_instead_of(old, order, gateway)
        raise
    _record_replaced(old, done.canceled, gateway)
    return done.placed


def _place_instead_of(old: Order, order: Order, gateway: ExchangeGateway) -> VenueOrder:
    """The stop to replace is gone without selling. If we took it off for another exit (an
    emergency exit, a take-profit: a CANCEL_REQUESTED of ours), the new stop is not wanted and
    nothing is placed. Otherwise (canceled on the venue by an earlier attempt of this very send
    whose answer was lost, or by hand) the new stop is placed on its own under its client id -
    Binance refuses a second open order with it, so a late-visible first attempt cannot make two."""
    if old.events.filter(event_type=EventType.CANCEL_REQUESTED).exists() or old.filled_quantity > 0:
        raise RejectedError(f"the stop {old.client_order_id} it replaces was taken off for another exit; "
                            f"nothing placed", venue=gateway.name, code="REPLACED_STOP_GONE")
    return gateway.create_order(_request(order))


def _record_replaced(old: Order, answer: VenueOrder | None, gateway: ExchangeGateway) -> None:
    try:
        venue_order = answer or gateway.fetch_order(old.symbol, old.client_order_id)
    except VenueError as exc:
        log.warning("state of replaced stop %s not read now (%s); reconciliation will", old.client_order_id, exc)
        return
    if venue_order is not None:
        order_record_venue_state(order_id=old.pk, venue_order=venue_order, gateway=gateway,
                                 source=OrderEvent.Source.VENUE)


def held_back_for_rate_limit(order: Order) -> bool:
    """The order is pending again because our own rate limiter held its send back (so the
    submit task should come back soon), not because a halt holds an entry."""
    last = order.events.order_by("-id").values_list("event_type", "reason_code").first()
    return order.status == OrderStatus.PENDING and last == (EventType.SEND_DEFERRED, "RATE_LIMIT_HELD_BACK")


def _refetch(gateway: ExchangeGateway, order: Order, acknowledged: VenueOrder) -> VenueOrder:
    try:
        return gateway.fetch_order(order.symbol, order.client_order_id) or acknowledged
    except VenueError as exc:
        log.info("could not re-read %s after acceptance (%s); reconciliation will", order.client_order_id, exc)
        return acknowledged


def order_record_venue_state(*, order_id: int, venue_order: VenueOrder, gateway: ExchangeGateway,
                             source: str) -> Order:
    """Apply the venue's view of the order, then pull its trades if the venue reports fills we
    lack. The order's state is recorded first; if the trades cannot be read now, the order
    remembers the venue's filled quantity and reconciliation reads them later."""
    crash_point("before_accept_commit")
    order = lifecycle.order_apply_venue_order(order_id=order_id, venue_order=venue_order, source=source)
    crash_point("after_accept_commit")
    if venue_order.filled_quantity > order.filled_quantity:
        try:
            order_sync_fills(order=order, gateway=gateway, source=source)
        except VenueError as exc:
            log.warning("could not read the trades of %s now (%s); reconciliation will", order.client_order_id, exc)
        order.refresh_from_db()
    return order


def order_sync_fills(*, order: Order, gateway: ExchangeGateway, source: str) -> int:
    """Record every venue trade of this order (idempotent by trade id) and value any fee paid in
    a third asset. Returns how many trades were new."""
    since = datetime_to_ms(order.created_at) - 60_000
    ours = [t for t in gateway.fetch_my_trades(order.symbol, since_ms=since)
            if t.client_order_id == order.client_order_id
            or (order.venue_order_id and t.venue_order_id == order.venue_order_id)]
    added = lifecycle.order_record_fills(order_id=order.pk, trades=ours, source=source)
    if added:
        fees_value(gateway=gateway, order_ids=[order.pk])
    return added


def order_resolve(*, order_id: int, gateway: ExchangeGateway, max_attempts: int = MAX_SUBMIT_ATTEMPTS,
                  grace: timedelta = RESEND_GRACE) -> ResolveOutcome:
    """Resolve a submit-unknown order: ask the venue by client id first. If the venue has none,
    wait until ``grace`` has passed since the unknown outcome (database time), then: abandon an
    entry whose candle period is over, or re-send the same id. An entry stops re-sending after
    ``max_attempts`` sends (it is blocked and an operator alerted); an exit never stops."""
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
        waited = seconds_since(order_id, EventType.SUBMIT_UNKNOWN)
        waited = grace.total_seconds() if waited is None else waited
        if waited < grace.total_seconds():
            return ResolveOutcome(order.status, retry_in_s=grace.total_seconds() - waited + 0.1)
        entry = order.intent == Order.Intent.ENTRY
        if entry and order.valid_until is not None and lifecycle.db_now() >= order.valid_until:
            order = lifecycle.order_mark_expired(
                order_id=order_id, reason_code="SIGNAL_EXPIRED",
                detail=(f"the venue showed no such order {waited:.0f}s after the unknown outcome and the entry's "
                        f"candle period is over: abandoned, not re-sent"))
            log.warning("entry %s abandoned: its signal expired with its outcome unknown", order.client_order_id)
            return ResolveOutcome(order.status)
        if order.submit_attempts >= max_attempts:
            first = lifecycle.order_note(
                order_id=order_id, event_type=EventType.RESOLUTION_FAILED, source=OrderEvent.Source.SYSTEM,
                reason_code="SUBMIT_UNRESOLVED", idempotency_key=f"unresolved:{order.client_order_id}",
                payload={"attempts": order.submit_attempts, "detail": "venue has no such order after every send",
                         "resending": not entry})
            if first:
                _alert_unresolved(order, resending=not entry)
            if entry:
                return ResolveOutcome(order.status)
        log.info("venue has no %s %.1fs after the unknown outcome: sending again with the same id",
                 order.client_order_id, waited)
        order = order_submit(order_id=order_id, gateway=gateway, resend_after_attempts=order.submit_attempts)
        retry = None
        if order.status == OrderStatus.SUBMIT_UNKNOWN:
            # Unknown again (ask again after a full grace), or held back by our rate limiter before
            # anything was sent (ask again soon).
            last = order.events.order_by("-id").values_list("event_type", flat=True).first()
            retry = 5.0 if last == EventType.SEND_DEFERRED else grace.total_seconds()
        return ResolveOutcome(order.status, resent=True, retry_in_s=retry)


def _alert_unresolved(order: Order, *, resending: bool) -> None:
    then = ("It keeps being re-sent with the same id (an exit)." if resending
            else f"New entries on {order.symbol} are blocked.")
    telegram_enqueue(
        text=(f"ORDER UNRESOLVED {order.client_order_id} {order.side} {order.quantity} {order.symbol}: the venue "
              f"has no such order after {order.submit_attempts} sends. {then} "
              f"reason_code=SUBMIT_UNRESOLVED trace_id={order.trace_id}"),
        trace_id=order.trace_id, reason_code="SUBMIT_UNRESOLVED")


def orders_sweep(*, stale_submitted: timedelta = STALE_SUBMITTED,
                 stale_pending: timedelta = STALE_PENDING) -> dict[str, list[int]]:
    """Find orders a crash or a lost message left behind (every age in database time). Returns
    ids to (re)submit and resolve; pending entries past their candle period are expired here."""
    orphaned = (Order.objects.filter(status=OrderStatus.SUBMITTED)
                .annotate(claimed_at=Max("events__created_at", filter=Q(events__event_type=EventType.SUBMITTING)))
                .filter(claimed_at__lt=Now() - stale_submitted).values_list("pk", flat=True))
    for order_id in orphaned:
        lifecycle.order_mark_submit_unknown(order_id=order_id, error="send was orphaned (worker died mid-send)",
                                            reason_code="STALE_SUBMISSION")
    expired = Order.objects.filter(status=OrderStatus.PENDING, intent=Order.Intent.ENTRY, valid_until__lte=Now())
    for order_id in expired.values_list("pk", flat=True):
        lifecycle.order_mark_expired(order_id=order_id, reason_code="SIGNAL_EXPIRED",
                                     detail="not sent within its candle period")
    pending = list(Order.objects.filter(status=OrderStatus.PENDING)
                   .annotate(created=Max("events__created_at", filter=Q(events__event_type=EventType.CREATED)))
                   .filter(created__lt=Now() - stale_pending).values_list("pk", flat=True))
    unknown = list(Order.objects.filter(status=OrderStatus.SUBMIT_UNKNOWN).values_list("pk", flat=True))
    return {"submit": pending, "resolve": unknown}
