"""order_events is append-only in PostgreSQL itself, not only in Python."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from trading.models import Order, OrderEvent


@pytest.fixture
def event(db):
    order = Order.objects.create(
        client_order_id="AS-test-1", venue="paper", strategy="blite", symbol="BTC/USDT", side="buy",
        type="market", intent="entry", quantity="0.01", trace_id="t1",
    )
    return OrderEvent.objects.create(order=order, event_type="CREATED", source="strategy", payload={"a": 1},
                                     trace_id="t1")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE order_events SET event_type = 'FILLED' WHERE id = %s",
        "DELETE FROM order_events WHERE id = %s",
    ],
)
def test_raw_sql_cannot_rewrite_history(event, sql):
    with pytest.raises(DatabaseError, match="order_events is append-only"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [event.pk] if "%s" in sql else None)
    event.refresh_from_db()
    assert event.event_type == "CREATED"


@pytest.mark.django_db(transaction=True)
def test_truncate_is_rejected_too():
    order = Order.objects.create(
        client_order_id="AS-test-2", venue="paper", strategy="blite", symbol="BTC/USDT", side="buy",
        type="market", intent="entry", quantity="0.01", trace_id="t2",
    )
    OrderEvent.objects.create(order=order, event_type="CREATED", source="strategy", trace_id="t2")
    with pytest.raises(DatabaseError, match="order_events is append-only: TRUNCATE"), connection.cursor() as cur:
        cur.execute("TRUNCATE order_events CASCADE")
    assert OrderEvent.objects.filter(order=order).count() == 1


def test_orm_cannot_rewrite_history(event):
    event.event_type = "FILLED"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.save()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        OrderEvent.objects.filter(pk=event.pk).delete()
    assert OrderEvent.objects.get(pk=event.pk).event_type == "CREATED"


def test_appending_still_works(event):
    OrderEvent.objects.create(order=event.order, event_type="ACCEPTED", source="venue", trace_id="t1")
    assert list(event.order.events.values_list("event_type", flat=True)) == ["CREATED", "ACCEPTED"]
