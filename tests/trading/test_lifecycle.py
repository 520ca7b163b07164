"""The state machine: one writer, allowed transitions only, every change explained by an event."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.trading.factories import create, new_order, trade
from trading.models import Order, OrderEvent, OrderStatus
from trading.services import lifecycle
from trading.services.lifecycle import ALLOWED, IllegalTransition, order_create

pytestmark = pytest.mark.django_db


def events(order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).order_by("id").values_list("event_type", flat=True))


def accepted(order):
    lifecycle.order_mark_submitting(order_id=order.pk)
    from trading.exchanges.base import OrderType, Side, VenueOrder, VenueOrderStatus

    venue_order = VenueOrder(client_order_id=order.client_order_id, venue_order_id="V1", symbol=order.symbol,
                             side=Side(order.side), type=OrderType(order.type), status=VenueOrderStatus.OPEN,
                             quantity=order.quantity, filled_quantity=Decimal(0), average_price=None, price=None,
                             updated_at_ms=0)
    return lifecycle.order_apply_venue_order(order_id=order.pk, venue_order=venue_order, source="venue")


def test_create_is_idempotent_by_client_id():
    first, created = order_create(new=new_order())
    again, created_again = order_create(new=new_order())
    assert (created, created_again) == (True, False)
    assert first.pk == again.pk
    assert Order.objects.count() == 1
    assert events(first) == ["CREATED"]
    assert first.status == OrderStatus.PENDING


def test_only_one_caller_may_send():
    order = create()
    assert lifecycle.order_mark_submitting(order_id=order.pk) is not None
    assert lifecycle.order_mark_submitting(order_id=order.pk) is None   # a second worker must not send
    order.refresh_from_db()
    assert order.status == OrderStatus.SUBMITTED
    assert order.submit_attempts == 1


def test_illegal_transitions_raise_and_write_nothing():
    order = create()
    with pytest.raises(IllegalTransition, match="pending -> filled is not allowed"):
        with lifecycle.transaction.atomic():
            locked = lifecycle._locked(order.pk)
            lifecycle._transition(locked, OrderStatus.FILLED, event_type="FILL", source="venue")
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING
    assert events(order) == ["CREATED"]


def test_terminal_states_have_no_way_out():
    for status in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED):
        assert ALLOWED[status] == frozenset()


def test_partial_fills_accumulate_in_decimal_and_are_idempotent_by_trade_id():
    order = accepted(create(quantity="0.3"))
    for trade_id, qty in (("T1", "0.1"), ("T2", "0.1"), ("T1", "0.1")):
        lifecycle.order_record_fill(order_id=order.pk, trade=trade(order, trade_id=trade_id, quantity=qty),
                                    source="venue")
    order.refresh_from_db()
    assert order.filled_quantity == Decimal("0.2")
    assert order.status == OrderStatus.PARTIALLY_FILLED
    lifecycle.order_record_fill(order_id=order.pk, trade=trade(order, trade_id="T3", quantity="0.1"), source="venue")
    order.refresh_from_db()
    assert order.filled_quantity == Decimal("0.3")          # 0.1 + 0.1 + 0.1 exactly, not 0.30000000000000004
    assert order.status == OrderStatus.FILLED
    assert events(order) == ["CREATED", "SUBMITTING", "ACCEPTED", "FILL", "FILL", "FILL"]
    assert order.filled_quote == Decimal("9000")


def test_a_fill_before_the_acceptance_implies_it():
    order = create()
    lifecycle.order_mark_submitting(order_id=order.pk)
    lifecycle.order_record_fill(order_id=order.pk, trade=trade(order, trade_id="T9", quantity="0.01"),
                                source="reconciliation")
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert events(order) == ["CREATED", "SUBMITTING", "ACCEPTED", "FILL"]


def test_a_late_fill_on_a_canceled_order_is_counted_but_status_stays():
    order = accepted(create(quantity="0.02"))
    lifecycle.order_mark_canceled(order_id=order.pk, source="venue", reason_code="CANCELED_BY_VENUE")
    lifecycle.order_record_fill(order_id=order.pk, trade=trade(order, trade_id="T5", quantity="0.01"), source="venue")
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELED
    assert order.filled_quantity == Decimal("0.01")


def test_every_status_change_has_an_event_whose_to_matches():
    order = accepted(create(quantity="0.01"))
    lifecycle.order_record_fill(order_id=order.pk, trade=trade(order, trade_id="T1", quantity="0.01"), source="venue")
    order.refresh_from_db()
    last = OrderEvent.objects.filter(order=order, payload__has_key="to").order_by("-id").first()
    assert last.payload["to"] == order.status == OrderStatus.FILLED
