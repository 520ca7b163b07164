"""Reconciliation converges: it repairs what drifted, says so with events, and a second run
changes nothing (invariant 4)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from infra.clock import now_utc
from tests.trading.factories import create, new_order
from trading.client_ids import make_client_order_id
from trading.exchanges.base import OrderRequest, OrderType, Side
from trading.models import AuditLog, Order, OrderEvent, OrderStatus, PaperBalance
from trading.services import lifecycle
from trading.services.reconciliation import reconcile
from trading.services.submission import order_submit

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@pytest.fixture(autouse=True)
def _fresh_cursors(redis_client):
    """Trade cursors live in Redis; each test starts without them."""


def event_count() -> int:
    return OrderEvent.objects.count()


def converge(venue) -> None:
    second = reconcile(gateway=venue.gateway, symbols=SYMBOLS)
    assert not second.changed, f"a second pass changed things: {second.as_dict()}"


def test_a_hand_edited_status_is_put_back_with_an_event(venue):
    order = order_submit(order_id=create(venue=venue.name).pk, gateway=venue.gateway)
    assert order.status == OrderStatus.FILLED
    with connection.cursor() as cur:
        cur.execute("UPDATE orders SET status = 'canceled' WHERE id = %s", [order.pk])

    report = reconcile(gateway=venue.gateway, symbols=SYMBOLS)

    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert report.statuses_repaired == [order.client_order_id]
    repaired = OrderEvent.objects.get(order=order, event_type="STATUS_REPAIRED")
    assert repaired.source == "reconciliation"
    assert (repaired.payload["from"], repaired.payload["to"]) == ("canceled", "filled")
    assert "canceled" in repaired.payload["detail"]
    converge(venue)


def test_an_order_the_venue_took_while_we_crashed_gets_its_fills(venue):
    # The worker committed "submitted", sent, and died before recording the answer.
    order = create(venue=venue.name)
    lifecycle.order_mark_submitting(order_id=order.pk)
    venue.gateway.create_order(OrderRequest(client_order_id=order.client_order_id, symbol=order.symbol,
                                            side=Side.BUY, type=OrderType.MARKET, quantity=order.quantity))
    Order.objects.filter(pk=order.pk).update(updated_at=now_utc() - timedelta(minutes=5))

    report = reconcile(gateway=venue.gateway, symbols=SYMBOLS)

    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert order.filled_quantity == order.quantity
    assert report.fills_added == 1
    sources = set(OrderEvent.objects.filter(order=order, event_type__in=["ACCEPTED", "FILL"])
                  .values_list("source", flat=True))
    assert sources == {"reconciliation"}
    assert venue.orders_with_client_id(order.client_order_id) == 1
    converge(venue)


def test_our_order_missing_from_the_db_is_imported(venue):
    cid = make_client_order_id(strategy="blite", symbol="ETH/USDT", tick_id="lost", intent="entry")
    venue.gateway.create_order(OrderRequest(client_order_id=cid, symbol="ETH/USDT", side=Side.BUY,
                                            type=OrderType.LIMIT, quantity=Decimal("0.01"),
                                            price=Decimal("1000")))
    foreign = "manual-order-by-a-human"
    venue.gateway.create_order(OrderRequest(client_order_id=foreign, symbol="ETH/USDT", side=Side.BUY,
                                            type=OrderType.LIMIT, quantity=Decimal("0.01"),
                                            price=Decimal("1000")))

    report = reconcile(gateway=venue.gateway, symbols=SYMBOLS)

    assert report.imported == [cid]
    imported = Order.objects.get(client_order_id=cid)
    assert (imported.intent, imported.status, imported.strategy) == ("imported", "accepted", "blite")
    assert not Order.objects.filter(client_order_id=foreign).exists()
    converge(venue)

    venue.set_price("ETH/USDT", Decimal("990"))           # the resting buy fills on the venue
    reconcile(gateway=venue.gateway, symbols=SYMBOLS)
    imported.refresh_from_db()
    assert imported.status == OrderStatus.FILLED
    converge(venue)


def test_a_protective_stop_rests_on_the_venue_and_its_fill_is_learned(venue):
    entry = order_submit(order_id=create(venue=venue.name, quantity="0.01", tick="stop-entry").pk,
                         gateway=venue.gateway)
    assert entry.status == OrderStatus.FILLED
    stop, _ = lifecycle.order_create(new=new_order(venue=venue.name, side="sell", type="stop_market",
                                                   intent="stop_loss", quantity="0.009", tick="stop",
                                                   stop_price="27000.00"))

    stop = order_submit(order_id=stop.pk, gateway=venue.gateway)

    assert stop.status == OrderStatus.ACCEPTED and stop.venue_order_id
    assert OrderEvent.objects.get(order=stop, event_type="CREATED").payload["stop_price"] == "27000.00"
    converge(venue)                                       # a resting stop is a settled book
    venue.set_price("BTC/USDT", Decimal("26500"))         # the market falls through the stop

    reconcile(gateway=venue.gateway, symbols=SYMBOLS)

    stop.refresh_from_db()
    assert stop.status == OrderStatus.FILLED
    assert (stop.filled_quantity, stop.average_price) == (Decimal("0.009"), Decimal("26500"))
    assert venue.orders_with_client_id(stop.client_order_id) == 1
    converge(venue)


def test_our_stop_missing_from_the_db_is_imported_as_a_stop(venue):
    venue.gateway.create_order(OrderRequest(client_order_id="bought-by-hand-1", symbol="BTC/USDT", side=Side.BUY,
                                            type=OrderType.MARKET, quantity=Decimal("0.01")))
    cid = make_client_order_id(strategy="blite", symbol="BTC/USDT", tick_id="lost", intent="stop_loss")
    venue.gateway.create_order(OrderRequest(client_order_id=cid, symbol="BTC/USDT", side=Side.SELL,
                                            type=OrderType.STOP_MARKET, quantity=Decimal("0.005"),
                                            stop_price=Decimal("25000")))

    reconcile(gateway=venue.gateway, symbols=SYMBOLS)

    imported = Order.objects.get(client_order_id=cid)
    assert (imported.type, imported.stop_price, imported.status) == ("stop_market", Decimal("25000"), "accepted")
    converge(venue)


def test_a_venue_side_cancel_is_learned(venue):
    order, _ = lifecycle.order_create(new=new_order(venue=venue.name, type="limit", price="1000.00",
                                                    quantity="0.01", tick="cancel"))
    order = order_submit(order_id=order.pk, gateway=venue.gateway)
    assert order.status == OrderStatus.ACCEPTED
    venue.gateway.cancel_order(order.symbol, order.client_order_id)   # e.g. canceled in the venue's UI
    Order.objects.filter(pk=order.pk).update(updated_at=now_utc() - timedelta(minutes=5))

    report = reconcile(gateway=venue.gateway, symbols=SYMBOLS)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELED
    assert report.closed == 1
    assert OrderEvent.objects.get(order=order, event_type="CANCELED").source == "reconciliation"
    converge(venue)


def test_reconciling_a_clean_book_changes_nothing(venue):
    for tick in ("a", "b", "c"):
        order_submit(order_id=create(venue=venue.name, tick=tick).pk, gateway=venue.gateway)
    before = event_count()
    first = reconcile(gateway=venue.gateway, symbols=SYMBOLS)
    assert not first.changed
    assert event_count() == before
    assert first.venue_requests <= 2 * len(SYMBOLS) + 1     # batch reads, not one request per order


@pytest.mark.django_db(transaction=True)
def test_holdings_smaller_than_our_fills_are_reported_once(redis_client):
    from tests.support.venues import paper_venue

    venue = paper_venue()
    order_submit(order_id=create(venue="paper", quantity="0.1").pk, gateway=venue.gateway)
    PaperBalance.objects.filter(asset="BTC").update(free=Decimal("0.01"))   # someone withdrew

    first = reconcile(gateway=venue.gateway, symbols=SYMBOLS)
    second = reconcile(gateway=venue.gateway, symbols=SYMBOLS)

    # we bought 0.1 and the venue kept 0.1 % of it as the fee: we should hold 0.0999
    assert first.drift == [{"asset": "BTC", "expected": "0.0999", "on_venue": "0.01"}]
    assert second.drift == first.drift
    assert AuditLog.objects.filter(action="balance_drift", reason_code="BALANCE_DRIFT").count() == 1


def test_the_periodic_pass_reads_trades_only_where_one_can_be_news(emulated):
    # a resting order that still rests, and a filled order: nothing can have changed
    resting, _ = lifecycle.order_create(new=new_order(venue=emulated.name, symbol="ETH/USDT", type="limit",
                                                      price="1000.00", quantity="0.01", tick="rest"))
    order_submit(order_id=resting.pk, gateway=emulated.gateway)
    order_submit(order_id=create(venue=emulated.name, tick="done").pk, gateway=emulated.gateway)
    reconcile(gateway=emulated.gateway, symbols=SYMBOLS, full=True)

    light = reconcile(gateway=emulated.gateway, symbols=SYMBOLS, full=False)
    assert light.venue_requests == len(SYMBOLS) + 1          # open orders per symbol + one balance read
    assert not light.changed

    # the resting order fills on the venue: the next light pass sees it gone and reads its trades
    emulated.set_price("ETH/USDT", Decimal("990"))
    Order.objects.filter(pk=resting.pk).update(updated_at=now_utc() - timedelta(minutes=5))
    caught = reconcile(gateway=emulated.gateway, symbols=SYMBOLS, full=False)
    resting.refresh_from_db()
    assert resting.status == OrderStatus.FILLED and caught.fills_added == 1
