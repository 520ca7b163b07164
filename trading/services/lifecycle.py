"""The order lifecycle: the only writer of ``Order.status`` (ARCHITECTURE invariant 3).

Every change locks the order row, checks the transition is allowed, appends the
``order_events`` row that explains it and updates the ``orders`` projection — all in one
transaction. One function per event type. Re-applying a fact that is already recorded (the
same fill, the same acceptance) changes nothing, so re-delivered tasks, retries and
reconciliation can call these freely.

    pending ─► submitted ─► accepted ─► partially_filled ─► filled
       │           │  ▲         │              │
       │           ▼  │         └──────┬───────┴─► canceled / expired
       │      submit_unknown ──────────┘
       └─► canceled (never sent)          submitted / submit_unknown ─► rejected
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from trading.exchanges.base import VenueOrder, VenueOrderStatus, VenueTrade
from trading.models import TERMINAL_STATUSES, Order, OrderEvent, OrderStatus

log = logging.getLogger(__name__)

S = OrderStatus


class EventType:
    CREATED = "CREATED"
    SUBMITTING = "SUBMITTING"            # pending / submit_unknown -> submitted: a send starts now
    SEND_DEFERRED = "SEND_DEFERRED"      # submitted -> pending: our own rate limiter held the send back
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    SUBMIT_UNKNOWN = "SUBMIT_UNKNOWN"
    FILL = "FILL"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    STATUS_REPAIRED = "STATUS_REPAIRED"  # reconciliation put the projection back in line with the venue
    IMPORTED = "IMPORTED"                # reconciliation found our order on the venue, missing in the DB
    RESOLUTION_FAILED = "RESOLUTION_FAILED"


ALLOWED: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.SUBMITTED, S.CANCELED}),
    S.SUBMITTED: frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.SUBMIT_UNKNOWN, S.CANCELED,
                            S.EXPIRED, S.PENDING}),
    S.SUBMIT_UNKNOWN: frozenset({S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED,
                                 S.EXPIRED, S.SUBMIT_UNKNOWN}),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}

# Venue status -> the projection status it implies (fills decide between accepted / partial / filled).
_VENUE_TERMINAL = {
    VenueOrderStatus.CANCELED: S.CANCELED,
    VenueOrderStatus.REJECTED: S.REJECTED,
    VenueOrderStatus.EXPIRED: S.EXPIRED,
}


class IllegalTransition(Exception):
    def __init__(self, order: Order, to: str) -> None:
        super().__init__(f"order {order.client_order_id}: {order.status} -> {to} is not allowed")
        self.order = order
        self.to = to


@dataclass(frozen=True)
class NewOrder:
    client_order_id: str
    venue: str
    strategy: str
    symbol: str
    side: str
    type: str
    intent: str
    quantity: Decimal
    trace_id: str
    price: Decimal | None = None
    tick_id: str = ""
    reason_code: str = ""
    stop_price: Decimal | None = None     # stop_market orders only


def _locked(order_id: int) -> Order:
    return Order.objects.select_for_update().get(pk=order_id)


def _append(order: Order, *, event_type: str, source: str, trace_id: str | None, reason_code: str = "",
            payload: dict[str, Any] | None = None, idempotency_key: str | None = None) -> OrderEvent:
    return OrderEvent.objects.create(
        order=order, event_type=event_type, source=source, payload=_jsonable(payload or {}),
        trace_id=trace_id or order.trace_id, reason_code=reason_code, idempotency_key=idempotency_key,
    )


def _transition(order: Order, to: str, *, event_type: str, source: str, trace_id: str | None = None,
                reason_code: str = "", payload: dict[str, Any] | None = None, idempotency_key: str | None = None,
                **fields: Any) -> OrderEvent:
    """Caller holds the row lock inside ``transaction.atomic``."""
    if to not in ALLOWED[order.status]:
        raise IllegalTransition(order, to)
    event = _append(order, event_type=event_type, source=source, trace_id=trace_id, reason_code=reason_code,
                    payload={"from": order.status, "to": to, **(payload or {})}, idempotency_key=idempotency_key)
    order.status = to
    for name, value in fields.items():
        setattr(order, name, value)
    order.save(update_fields=["status", "updated_at", *fields])
    return event


# --- creation --------------------------------------------------------------------------------

def order_create(
    *, new: NewOrder, source: str = OrderEvent.Source.STRATEGY, enqueue: bool = True,
) -> tuple[Order, bool]:
    """Insert Order(PENDING) + CREATED in one transaction; enqueue the submit after commit.

    Returns (order, created). A second call with the same client id — a re-delivered task, a
    second worker, a second beat — returns the existing order and creates nothing.
    """
    with transaction.atomic():
        existing = Order.objects.filter(client_order_id=new.client_order_id).first()
        if existing:
            return existing, False
        try:
            with transaction.atomic():  # savepoint: a racing insert must not poison the caller's transaction
                order = Order.objects.create(
                    client_order_id=new.client_order_id, venue=new.venue, strategy=new.strategy, symbol=new.symbol,
                    side=new.side, type=new.type, intent=new.intent, quantity=new.quantity, price=new.price,
                    stop_price=new.stop_price, tick_id=new.tick_id, trace_id=new.trace_id,
                    reason_code=new.reason_code,
                )
        except IntegrityError:
            return Order.objects.get(client_order_id=new.client_order_id), False
        _append(order, event_type=EventType.CREATED, source=source, trace_id=new.trace_id,
                reason_code=new.reason_code, payload={"quantity": new.quantity, "price": new.price,
                                                      "stop_price": new.stop_price, "side": new.side,
                                                      "type": new.type, "intent": new.intent})
        if enqueue:
            from trading.tasks import submit_order

            order_id = order.pk
            transaction.on_commit(lambda: submit_order.delay(order_id))
    return order, True


# --- submission outcomes ---------------------------------------------------------------------

def order_mark_submitting(*, order_id: int, source: str = OrderEvent.Source.SYSTEM,
                          expected_attempts: int | None = None) -> Order | None:
    """Claim the right to send. Only one caller wins: the row lock serialises them and only a
    pending or submit-unknown order may move to submitted. None means "do not send".

    A re-send (from submit-unknown) must pass ``expected_attempts``: the attempt count it saw
    when it asked the venue whether the order exists. If anyone sent in the meantime, the
    venue's "no such order" is stale and the claim fails — otherwise two resolvers that both
    heard "no" could both re-send."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status not in (S.PENDING, S.SUBMIT_UNKNOWN):
            return None
        if order.status == S.SUBMIT_UNKNOWN and order.submit_attempts != expected_attempts:
            return None
        _transition(order, S.SUBMITTED, event_type=EventType.SUBMITTING, source=source,
                    payload={"attempt": order.submit_attempts + 1}, submit_attempts=order.submit_attempts + 1)
        return order


def order_mark_send_deferred(*, order_id: int, detail: str) -> Order:
    """Undo a claim whose send provably never left this process (the shared rate-limit budget
    held it back), so it is sent later like any pending order. Only for that certainty: any
    doubt about whether bytes reached the venue means ``submit_unknown``."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status != S.SUBMITTED:
            return order
        _transition(order, S.PENDING, event_type=EventType.SEND_DEFERRED, source=OrderEvent.Source.SYSTEM,
                    reason_code="RATE_LIMIT_HELD_BACK", payload={"detail": detail})
        return order


def order_mark_submit_unknown(*, order_id: int, error: str, source: str = OrderEvent.Source.SYSTEM,
                              reason_code: str = "SUBMIT_OUTCOME_UNKNOWN") -> Order:
    with transaction.atomic():
        order = _locked(order_id)
        if order.status != S.SUBMITTED:
            return order  # someone already learned the outcome
        _transition(order, S.SUBMIT_UNKNOWN, event_type=EventType.SUBMIT_UNKNOWN, source=source,
                    reason_code=reason_code, payload={"error": error}, last_error=error[:2000])
        return order


def order_mark_rejected(*, order_id: int, code: str | None, message: str, source: str = OrderEvent.Source.VENUE,
                        reason_code: str = "VENUE_REJECTED") -> Order:
    with transaction.atomic():
        order = _locked(order_id)
        if order.status == S.REJECTED:
            return order
        _transition(order, S.REJECTED, event_type=EventType.REJECTED, source=source, reason_code=reason_code,
                    payload={"code": code, "message": message}, last_error=f"{code}: {message}"[:2000])
        return order


def order_apply_venue_order(*, order_id: int, venue_order: VenueOrder, source: str,
                            reason_code: str = "") -> Order:
    """Record what the venue says about our order: that it exists (acceptance), and a terminal
    cancel / reject / expiry. Fills never come from this snapshot: they come one trade at a
    time, with the venue's trade id, through ``order_record_fill``."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.venue_order_id is None and venue_order.venue_order_id:
            order.venue_order_id = venue_order.venue_order_id
            order.save(update_fields=["venue_order_id", "updated_at"])
        terminal = _VENUE_TERMINAL.get(venue_order.status)
        snapshot = {"venue_order_id": venue_order.venue_order_id, "venue_status": venue_order.status,
                    "venue_filled_quantity": venue_order.filled_quantity, "venue": venue_order.raw}
        if order.status in (S.SUBMITTED, S.SUBMIT_UNKNOWN):
            if terminal == S.REJECTED:
                _transition(order, S.REJECTED, event_type=EventType.REJECTED, source=source,
                            reason_code=reason_code or "VENUE_REJECTED", payload=snapshot)
                return order
            _transition(order, S.ACCEPTED, event_type=EventType.ACCEPTED, source=source, reason_code=reason_code,
                        payload=snapshot)
        if terminal in (S.CANCELED, S.EXPIRED) and terminal in ALLOWED[order.status]:
            event_type = EventType.CANCELED if terminal == S.CANCELED else EventType.EXPIRED
            _transition(order, terminal, event_type=event_type, source=source, reason_code=reason_code,
                        payload=snapshot)
        return order


def fill_key(venue: str, trade: VenueTrade) -> str:
    """The idempotency key of a fill: the venue's own trade id."""
    return f"{venue}:{trade.symbol}:fill:{trade.trade_id}"


def order_record_fill(*, order_id: int, trade: VenueTrade, source: str) -> bool:
    """Add one venue trade to the order. Idempotent by venue trade id: True if it was new."""
    return order_record_fills(order_id=order_id, trades=[trade], source=source) == 1


def order_record_fills(*, order_id: int, trades: list[VenueTrade], source: str) -> int:
    """Add venue trades to the order in one transaction (one row lock, one key look-up, one
    insert, one projection update). Idempotent by venue trade id: returns how many were new.

    Each FILL event carries the status change it causes (accepted -> partially_filled ->
    filled). A trade that arrives after a cancel is still real (filled before the cancel took
    effect): it is recorded and counted, and the status stays canceled.
    """
    if not trades:
        return 0
    with transaction.atomic():
        order = _locked(order_id)
        keyed = {fill_key(order.venue, t): t for t in trades}
        known = set(OrderEvent.objects.filter(idempotency_key__in=list(keyed)).values_list("idempotency_key",
                                                                                             flat=True))
        new = [(k, t) for k, t in keyed.items() if k not in known]
        if not new:
            return 0
        if order.status in (S.SUBMITTED, S.SUBMIT_UNKNOWN):
            _transition(order, S.ACCEPTED, event_type=EventType.ACCEPTED, source=source,
                        payload={"venue_order_id": new[0][1].venue_order_id, "implied_by_trade": new[0][1].trade_id})
        base = order.symbol.split("/")[0]
        events = []
        for key, trade in new:
            order.filled_quantity += trade.quantity
            order.filled_quote += trade.price * trade.quantity
            # A fee charged in the base asset (a buy on Binance) is valued at the trade price.
            order.fee_quote += trade.fee * trade.price if trade.fee_asset == base else trade.fee
            order.venue_order_id = order.venue_order_id or trade.venue_order_id
            payload = {"trade_id": trade.trade_id, "price": trade.price, "quantity": trade.quantity,
                       "fee": trade.fee, "fee_asset": trade.fee_asset, "timestamp_ms": trade.timestamp_ms,
                       "filled_quantity": order.filled_quantity, "venue": trade.raw}
            if order.status in (S.ACCEPTED, S.PARTIALLY_FILLED):
                to = S.FILLED if order.filled_quantity >= order.quantity else S.PARTIALLY_FILLED
                payload = {"from": order.status, "to": to, **payload}
                order.status = to
            elif order.status != S.CANCELED:
                log.warning("trade %s for %s arrived in status %s", trade.trade_id, order.client_order_id,
                            order.status)
            events.append(OrderEvent(order=order, event_type=EventType.FILL, source=source,
                                     payload=_jsonable(payload), trace_id=order.trace_id, idempotency_key=key))
        OrderEvent.objects.bulk_create(events)
        order.save(update_fields=["status", "filled_quantity", "filled_quote", "fee_quote", "venue_order_id",
                                  "updated_at"])
        return len(events)


def order_mark_imported(*, order_id: int, venue_order: VenueOrder) -> Order:
    """Reconciliation found this order on the venue and created it here: it exists there, so it
    is accepted; terminal states and fills follow from the venue's answers."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status != S.PENDING:
            return order
        _append(order, event_type=EventType.IMPORTED, source=OrderEvent.Source.RECONCILIATION,
                trace_id=order.trace_id, reason_code="IMPORTED_FROM_VENUE",
                payload={"from": order.status, "to": S.ACCEPTED, "venue_order_id": venue_order.venue_order_id,
                         "venue_status": venue_order.status, "venue": venue_order.raw})
        order.status = S.ACCEPTED
        order.venue_order_id = venue_order.venue_order_id
        order.save(update_fields=["status", "venue_order_id", "updated_at"])
    return order_apply_venue_order(order_id=order_id, venue_order=venue_order,
                                   source=OrderEvent.Source.RECONCILIATION)


def order_mark_canceled(*, order_id: int, source: str, reason_code: str, payload: dict | None = None) -> Order:
    with transaction.atomic():
        order = _locked(order_id)
        if order.status in TERMINAL_STATUSES:
            return order
        _transition(order, S.CANCELED, event_type=EventType.CANCELED, source=source, reason_code=reason_code,
                    payload=payload)
        return order


def order_note(*, order_id: int, event_type: str, source: str, reason_code: str = "",
               payload: dict | None = None, idempotency_key: str | None = None) -> bool:
    """Append an event that changes no status (e.g. CANCEL_REQUESTED, RESOLUTION_FAILED)."""
    with transaction.atomic():
        order = _locked(order_id)
        if idempotency_key and OrderEvent.objects.filter(idempotency_key=idempotency_key).exists():
            return False
        _append(order, event_type=event_type, source=source, trace_id=order.trace_id, reason_code=reason_code,
                payload=payload, idempotency_key=idempotency_key)
        return True


def order_repair_status(*, order_id: int, to: str, reason_code: str, payload: dict[str, Any]) -> Order:
    """Reconciliation only: the projection disagrees with the venue and our own event stream
    (e.g. someone rewrote ``orders.status`` by hand). Put it back and say why."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status == to:
            return order
        _append(order, event_type=EventType.STATUS_REPAIRED, source=OrderEvent.Source.RECONCILIATION,
                trace_id=order.trace_id, reason_code=reason_code, payload={"from": order.status, "to": to, **payload})
        order.status = to
        order.save(update_fields=["status", "updated_at"])
        return order


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return value
