"""The one door for placing an order.

Every order the system places — a tick's entry, a stop-monitor exit, an emergency sell —
comes through ``order_place``: it derives the deterministic client id from the intent, commits
``Order(pending)`` with its CREATED event (and, for an entry, against the committed halt state
in the same transaction), and enqueues the send after commit. A re-send of an order whose
outcome is unknown is not a new placement: ``submission.order_resolve`` re-sends the same order
with the same id.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from trading.client_ids import make_client_order_id
from trading.models import TERMINAL_STATUSES, Order, OrderEvent
from trading.services import lifecycle
from trading.services.control import halt_state_committed


def _sell_in_flight(*, venue: str, symbol: str, except_client_order_id: str,
                    replaces: Order | None = None) -> Order | None:
    """Under the per-symbol sell lock (held until the caller's transaction ends): a sell of ours
    on ``symbol`` that is not final yet, other than the one being placed (and the stop it replaces
    in the same venue request, which the venue cancels before it places the new one)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"alphasniper:sell:{venue}:{symbol}"])
    live = (Order.objects.filter(venue=venue, symbol=symbol, side=Order.Side.SELL)
            .exclude(status__in=TERMINAL_STATUSES).exclude(client_order_id=except_client_order_id))
    if replaces is not None:
        live = live.exclude(pk=replaces.pk)
    return live.first()


class OrderRefused(Exception):
    """The order cannot be placed now; nothing was written. ``reason_code``: HALTED (an entry while
    trading is halted) or SELL_IN_FLIGHT (another sell of ours on the symbol is not final)."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


def submit_enqueue(order_id: int, *, countdown: float | None = None) -> None:
    """Queue the send of a committed order (the ``orders`` queue)."""
    # Deliberately upward, and lazy: the one door enqueues after commit, so it needs the task;
    # nothing below it (lifecycle, submission) does, and no module imports tasks at import time.
    from trading.tasks import submit_order

    if countdown is None:
        submit_order.delay(order_id)
    else:
        submit_order.apply_async((order_id,), countdown=countdown)


def order_place(*, venue: str, strategy: str, symbol: str, side: str, type: str, intent: str, quantity: Decimal,
                trace_id: str, tick_id: str, client_intent: str | None = None, price: Decimal | None = None,
                stop_price: Decimal | None = None, valid_until: datetime | None = None, reason_code: str = "",
                source: str = OrderEvent.Source.STRATEGY, enqueue: bool = True,
                replaces: Order | None = None) -> tuple[Order, bool]:
    """Place one order of one intent. Returns (order, created).

    The client id is ``make_client_order_id(strategy, symbol, tick_id, client_intent or intent)``:
    the same intent computed twice — a re-delivered task, a second worker — finds the order
    already there and places nothing. An entry is refused (``OrderRefused``) when trading is
    halted, decided against the committed halt inside this transaction (ARCHITECTURE invariant 9);
    a halt never refuses an exit. A sell is refused while another sell of ours on the same symbol
    is not final: the stop monitor and an emergency exit must never both sell one holding, so
    every sell is placed under one lock per venue and symbol. ``enqueue=False`` is for a caller
    that sends the order itself right after (the emergency exit, which reports each sell's
    outcome). ``replaces``: a resting stop of ours that this stop replaces in one venue request
    (Binance cancelReplace); only that stop may be live beside it, and the send does both."""
    client_order_id = make_client_order_id(strategy=strategy, symbol=symbol, tick_id=tick_id,
                                           intent=client_intent or intent)
    new = lifecycle.NewOrder(client_order_id=client_order_id, venue=venue, strategy=strategy, symbol=symbol,
                             side=side, type=type, intent=intent, quantity=quantity, trace_id=trace_id, price=price,
                             tick_id=tick_id, reason_code=reason_code, stop_price=stop_price, valid_until=valid_until,
                             replaces_id=replaces.pk if replaces is not None else None)
    with transaction.atomic():
        if intent == Order.Intent.ENTRY:
            halt = halt_state_committed()
            if halt.halted:
                raise OrderRefused("HALTED", f"trading is halted ({halt.reason_code or 'no reason recorded'})")
        if side == Order.Side.SELL:
            busy = _sell_in_flight(venue=venue, symbol=symbol, except_client_order_id=client_order_id,
                                   replaces=replaces)
            if busy is not None:
                raise OrderRefused("SELL_IN_FLIGHT", f"sell {busy.client_order_id} on {symbol} is still {busy.status}")
        order, created = lifecycle.order_create(new=new, source=source)
        if created and enqueue:
            order_id = order.pk
            transaction.on_commit(lambda: submit_enqueue(order_id))
    return order, created
