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
       ├─► canceled (never sent)          submitted / submit_unknown ─► rejected
       └─► expired (an entry past its candle period: never sent late)
                                          submit_unknown ─► expired (an entry abandoned, not re-sent)

Fills are facts, whatever the status: a trade that becomes visible after its order was
canceled, expired or abandoned is still recorded, and ``fills_recorded`` tells the positions
(a projection of fills) to catch up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.dispatch import Signal

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
    ENTRY_EXPIRED = "ENTRY_EXPIRED"      # pending -> expired: its candle period ended before it could be sent
    ENTRY_ABANDONED = "ENTRY_ABANDONED"  # submit_unknown -> expired: past its period the venue never showed it
    FEE_VALUED = "FEE_VALUED"            # a fee paid in a third asset, valued in quote at the fill's time
    STOP_MOVE_REQUESTED = "STOP_MOVE_REQUESTED"  # a resting stop's trigger is being amended on the venue
    STOP_MOVED = "STOP_MOVED"            # the venue confirmed a resting stop's new trigger price


# Sent on commit with ``order_id`` whenever new fills of an order were recorded. Positions are a
# projection of their orders' fills; the strategy app listens and brings them up to date (the
# lifecycle knows nothing of positions).
fills_recorded = Signal()


ALLOWED: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.SUBMITTED, S.CANCELED, S.EXPIRED}),
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
    valid_until: datetime | None = None   # entries: not sent after this (the end of the signal's candle period)
    replaces_id: int | None = None        # a stop sent as the replacement of this one (one venue request)


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

def order_create(*, new: NewOrder, source: str = OrderEvent.Source.STRATEGY) -> tuple[Order, bool]:
    """Insert Order(PENDING) + CREATED in one transaction. Sending is not this module's business:
    ``trading.services.orders.order_place`` (the one door) enqueues the send after commit.

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
                    reason_code=new.reason_code, valid_until=new.valid_until, replaces_id=new.replaces_id,
                )
        except IntegrityError:
            return Order.objects.get(client_order_id=new.client_order_id), False
        _append(order, event_type=EventType.CREATED, source=source, trace_id=new.trace_id,
                reason_code=new.reason_code, payload={"quantity": new.quantity, "price": new.price,
                                                      "stop_price": new.stop_price, "side": new.side,
                                                      "type": new.type, "intent": new.intent,
                                                      "valid_until": new.valid_until and new.valid_until.isoformat(),
                                                      **({"replaces": new.replaces_id} if new.replaces_id else {})})
    return order, True


# --- submission outcomes ---------------------------------------------------------------------

def db_now() -> datetime:
    """The database's clock: every time window of the order path is measured on it, so workers
    with skewed clocks agree (event times are written by the database too)."""
    with connection.cursor() as cur:
        cur.execute("SELECT now()")
        return cur.fetchone()[0]


def entry_send_veto(order: Order) -> str | None:
    """Why an entry must not be sent now, or None: trading is halted (the committed halt, read
    under the halt lock), or its signal's candle period is over. Exits, stops and emergency sells
    are never held back. Runs inside the caller's transaction."""
    if order.intent != Order.Intent.ENTRY:
        return None
    from trading.services.control import halt_state_committed

    if order.valid_until is not None and db_now() >= order.valid_until:
        return "SIGNAL_EXPIRED"
    halt = halt_state_committed()
    return "HALTED" if halt.halted else None


def order_mark_submitting(*, order_id: int, source: str = OrderEvent.Source.SYSTEM,
                          expected_attempts: int | None = None) -> Order | None:
    """Claim the right to send. Only one caller wins: the row lock serialises them and only a
    pending or submit-unknown order may move to submitted. None means "do not send".

    An entry is not claimed while trading is halted (it stays pending, and is sent if trading
    resumes within its candle period) and a pending entry past its period is expired instead:
    a signal is never acted on late (ARCHITECTURE invariant 9).

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
        veto = entry_send_veto(order)
        if veto == "SIGNAL_EXPIRED" and order.status == S.PENDING:
            _transition(order, S.EXPIRED, event_type=EventType.ENTRY_EXPIRED, source=source,
                        reason_code="SIGNAL_EXPIRED",
                        payload={"valid_until": order.valid_until, "detail": "not sent within its candle period"})
            return None
        if veto is not None:
            return None
        _transition(order, S.SUBMITTED, event_type=EventType.SUBMITTING, source=source,
                    payload={"attempt": order.submit_attempts + 1}, submit_attempts=order.submit_attempts + 1)
        return order


def order_mark_send_deferred(*, order_id: int, detail: str, reason_code: str = "RATE_LIMIT_HELD_BACK") -> Order:
    """Undo a claim whose send provably never left this process (the shared rate-limit budget
    held it back, or the sender's last look vetoed it). The order goes back to where the claim
    took it from — pending, or submit-unknown for a re-send, which must ask the venue again
    before any other send — and the attempt is given back: only real sends count against the
    re-send budget. Only for that certainty: any doubt about whether bytes reached the venue
    means ``submit_unknown``."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status != S.SUBMITTED:
            return order
        claim = order.events.filter(event_type=EventType.SUBMITTING).order_by("-id").values_list(
            "payload", flat=True).first() or {}
        back_to = S.SUBMIT_UNKNOWN if claim.get("from") == S.SUBMIT_UNKNOWN else S.PENDING
        _transition(order, back_to, event_type=EventType.SEND_DEFERRED, source=OrderEvent.Source.SYSTEM,
                    reason_code=reason_code, payload={"detail": detail, "attempts": order.submit_attempts - 1},
                    submit_attempts=order.submit_attempts - 1)
        return order


def order_mark_expired(*, order_id: int, reason_code: str, detail: str,
                       source: str = OrderEvent.Source.SYSTEM) -> Order:
    """An entry that will never be sent: pending past its candle period (ENTRY_EXPIRED), or of
    unknown outcome past it with the venue showing nothing after the grace window
    (ENTRY_ABANDONED). If it surfaces on the venue after all, its fills are still recorded."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status not in (S.PENDING, S.SUBMIT_UNKNOWN):
            return order
        event_type = EventType.ENTRY_EXPIRED if order.status == S.PENDING else EventType.ENTRY_ABANDONED
        _transition(order, S.EXPIRED, event_type=event_type, source=source, reason_code=reason_code,
                    payload={"valid_until": order.valid_until, "detail": detail})
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
        learned = []
        if order.venue_order_id is None and venue_order.venue_order_id:
            order.venue_order_id = venue_order.venue_order_id
            learned.append("venue_order_id")
        if venue_order.filled_quantity > order.venue_filled_quantity:
            # The venue's order query can run ahead of its trade list: remember what it said, so
            # reconciliation keeps looking for the trades until they are all recorded.
            order.venue_filled_quantity = venue_order.filled_quantity
            learned.append("venue_filled_quantity")
        if learned:
            order.save(update_fields=[*learned, "updated_at"])
        if (order.type == Order.Type.STOP_MARKET and venue_order.stop_price is not None
                and venue_order.stop_price != order.stop_price):
            # The venue triggers at another price than we recorded: a move whose answer was lost
            # (or a crash before it was recorded). The venue's price is the fact.
            _append(order, event_type=EventType.STOP_MOVED, source=source, trace_id=order.trace_id,
                    reason_code=reason_code or "VENUE_STOP_PRICE",
                    payload={"from": _plain(order.stop_price) if order.stop_price is not None else None,
                             "stop_price": _plain(venue_order.stop_price)})
            order.stop_price = venue_order.stop_price
            order.save(update_fields=["stop_price", "updated_at"])
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
        base, quote = order.symbol.split("/")
        events = []
        for key, trade in new:
            order.filled_quantity += trade.quantity
            order.filled_quote += trade.price * trade.quantity
            if trade.fee_asset in (None, "", quote):
                order.fee_quote += trade.fee
            elif trade.fee_asset == base:
                # A fee charged in the base asset (a buy on Binance) is worth the trade price.
                order.fee_quote += trade.fee * trade.price
            elif trade.fee:
                # A third asset (BNB): never counted as quote. Kept unvalued until
                # ``trading.services.fees`` values it at the venue's price of the fill's time.
                unvalued = dict(order.fee_unvalued)
                unvalued[trade.fee_asset] = str(Decimal(unvalued.get(trade.fee_asset, "0")) + trade.fee)
                order.fee_unvalued = unvalued
            order.venue_order_id = order.venue_order_id or trade.venue_order_id
            payload = {"trade_id": trade.trade_id, "price": trade.price, "quantity": trade.quantity,
                       "fee": trade.fee, "fee_asset": trade.fee_asset, "timestamp_ms": trade.timestamp_ms,
                       "filled_quantity": order.filled_quantity, "venue": trade.raw}
            if order.status in (S.ACCEPTED, S.PARTIALLY_FILLED):
                to = S.FILLED if order.filled_quantity >= order.quantity else S.PARTIALLY_FILLED
                payload = {"from": order.status, "to": to, **payload}
                order.status = to
            elif order.status not in (S.CANCELED, S.EXPIRED):
                log.warning("trade %s for %s arrived in status %s", trade.trade_id, order.client_order_id,
                            order.status)
            events.append(OrderEvent(order=order, event_type=EventType.FILL, source=source,
                                     payload=_jsonable(payload), trace_id=order.trace_id, idempotency_key=key))
        OrderEvent.objects.bulk_create(events)
        order.venue_filled_quantity = max(order.venue_filled_quantity, order.filled_quantity)
        order.save(update_fields=["status", "filled_quantity", "filled_quote", "fee_quote", "fee_unvalued",
                                  "venue_order_id", "venue_filled_quantity", "updated_at"])
        qty = sum((t.quantity for _, t in new), Decimal(0))
        avg = sum((t.price * t.quantity for _, t in new), Decimal(0)) / qty if qty else Decimal(0)
        log.info("fill %s %s %s @ %s (%d trade(s)); order %s is %s", order.side, _plain(qty), order.symbol,
                 _plain(avg), len(events), order.client_order_id, order.status)
        transaction.on_commit(lambda: fills_recorded.send(sender=Order, order_id=order_id))
        return len(events)


def order_value_fee(*, order_id: int, fill_key: str, asset: str, amount: Decimal, price: Decimal,
                    price_source: str) -> bool:
    """Value a fee paid in a third asset: ``amount`` of ``asset`` at ``price`` (quote per unit,
    the venue's price at the fill's time) moves from ``fee_unvalued`` into ``fee_quote``.
    Idempotent per fill: True if it was valued now."""
    with transaction.atomic():
        order = _locked(order_id)
        key = f"{fill_key}:fee"
        if OrderEvent.objects.filter(idempotency_key=key).exists():
            return False
        left = Decimal(order.fee_unvalued.get(asset, "0")) - amount
        unvalued = {a: v for a, v in order.fee_unvalued.items() if a != asset}
        if left > 0:
            unvalued[asset] = str(left)
        value = amount * price
        _append(order, event_type=EventType.FEE_VALUED, source=OrderEvent.Source.SYSTEM, trace_id=order.trace_id,
                reason_code="FEE_IN_THIRD_ASSET", idempotency_key=key,
                payload={"fill": fill_key, "asset": asset, "amount": amount, "price": price, "value": value,
                         "price_source": price_source})
        order.fee_quote += value
        order.fee_unvalued = unvalued
        order.save(update_fields=["fee_quote", "fee_unvalued", "updated_at"])
    transaction.on_commit(lambda: fills_recorded.send(sender=Order, order_id=order_id))
    return True


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


def order_cancel_unsent(*, order_id: int, source: str, reason_code: str, detail: str) -> Order:
    """Cancel an order that was never sent. Decided under the row lock: if a worker has claimed
    it meanwhile (submitted), it is not ours to cancel here — only the venue can say what became
    of it."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status != S.PENDING:
            return order
        _transition(order, S.CANCELED, event_type=EventType.CANCELED, source=source, reason_code=reason_code,
                    payload={"detail": detail})
        return order


def order_mark_canceled(*, order_id: int, source: str, reason_code: str, payload: dict | None = None) -> Order:
    """The venue canceled the order (or it was never sent). A send in flight or of unknown outcome
    is never written off here: only the venue's own answer settles those."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.status in TERMINAL_STATUSES or order.status in (S.SUBMITTED, S.SUBMIT_UNKNOWN):
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


def order_stop_moved(*, order_id: int, stop_price: Decimal, source: str, reason_code: str = "TRAILING") -> Order:
    """The venue confirmed that a resting stop now triggers at ``stop_price`` (amended in place:
    same client id, same quantity). Records the move once; a repeat with the same price is a no-op."""
    with transaction.atomic():
        order = _locked(order_id)
        if order.stop_price == stop_price:
            return order
        _append(order, event_type=EventType.STOP_MOVED, source=source, trace_id=order.trace_id, reason_code=reason_code,
                payload={"from": _plain(order.stop_price) if order.stop_price is not None else None,
                         "stop_price": _plain(stop_price)})
        order.stop_price = stop_price
        order.save(update_fields=["stop_price", "updated_at"])
        return order


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


def _plain(value: Decimal) -> str:
    return format(value.quantize(Decimal("1e-12")).normalize(), "f")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # enums
        return value.value
    return value
