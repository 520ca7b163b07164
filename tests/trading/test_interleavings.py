"""Property: whatever order venue events, retries, re-deliveries, crashes and reconciliation
happen in, once reconciliation has run the ``orders`` projection equals the venue's state,
each venue trade is one FILL event, and no client id has two venue orders.

A hypothesis state machine drives the real lifecycle, submission, resolution and
reconciliation services against the real paper venue (its own tables and transactions) on
real PostgreSQL and Redis.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from infra.redis import get_redis
from tests.support.venues import paper_venue
from tests.trading.factories import new_order
from trading.exchanges.base import OrderRequest, OrderType, Side
from trading.models import TERMINAL_STATUSES, Order, OrderEvent, OrderStatus, PaperOrder, PaperTrade
from trading.services import lifecycle
from trading.services.reconciliation import reconcile
from trading.services.submission import order_resolve, order_submit, orders_sweep

SYMBOL = "BTC/USDT"
VENUE_TO_DB = {"open": {OrderStatus.ACCEPTED}, "partially_filled": {OrderStatus.PARTIALLY_FILLED},
               "filled": {OrderStatus.FILLED}, "canceled": {OrderStatus.CANCELED}, "expired": {OrderStatus.EXPIRED},
               "rejected": {OrderStatus.REJECTED}}


def wipe() -> None:
    """order_events refuses TRUNCATE; a test reset needs superuser rights to suspend that."""
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("TRUNCATE order_events, orders, paper_trades, paper_orders, paper_balances, audit_log CASCADE")
        cur.execute("SET session_replication_role = DEFAULT")
    get_redis().flushdb()


class OrderBook(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        wipe()
        self.venue = paper_venue({"USDT": Decimal("1000000")})
        self.venue.set_price(SYMBOL, Decimal("30000"))
        self.ticks = 0

    def _orders(self) -> list[Order]:
        return list(Order.objects.order_by("id"))

    # --- what can happen -------------------------------------------------------------------

    @rule(limit=st.booleans(), offset=st.sampled_from(["-100", "0", "100"]))
    def strategy_creates_an_order(self, limit, offset):
        self.ticks += 1
        price = str(Decimal("30000") + Decimal(offset)) if limit else None
        lifecycle.order_create(new=new_order(tick=f"t{self.ticks}", type="limit" if limit else "market",
                                             price=price))

    @precondition(lambda self: Order.objects.filter(status=OrderStatus.PENDING).exists())
    @rule(times=st.integers(1, 3), data=st.data())
    def worker_submits_possibly_redelivered(self, times, data):
        order = data.draw(st.sampled_from(list(Order.objects.filter(status=OrderStatus.PENDING))))
        for _ in range(times):
            order_submit(order_id=order.pk, gateway=self.venue.gateway)

    @precondition(lambda self: Order.objects.filter(status=OrderStatus.PENDING).exists())
    @rule(data=st.data(), reached_venue=st.booleans())
    def worker_dies_mid_send(self, data, reached_venue):
        order = data.draw(st.sampled_from(list(Order.objects.filter(status=OrderStatus.PENDING))))
        claimed = lifecycle.order_mark_submitting(order_id=order.pk)
        if claimed and reached_venue:
            self.venue.gateway.create_order(OrderRequest(
                client_order_id=order.client_order_id, symbol=order.symbol, side=Side(order.side),
                type=OrderType(order.type), quantity=order.quantity, price=order.price))
        # ... and the answer is never recorded.

    @rule(price=st.sampled_from(["29800", "30000", "30200"]))
    def market_moves(self, price):
        self.venue.set_price(SYMBOL, Decimal(price))
        self.venue.gateway.match_resting_orders([SYMBOL])

    @precondition(lambda self: PaperOrder.objects.filter(status="open").exists())
    @rule(data=st.data())
    def someone_cancels_on_the_venue(self, data):
        paper = data.draw(st.sampled_from(list(PaperOrder.objects.filter(status="open"))))
        self.venue.gateway.cancel_order(paper.symbol, paper.client_order_id)

    @precondition(lambda self: PaperTrade.objects.exists() and Order.objects.exists())
    @rule(data=st.data())
    def a_fill_is_delivered_again(self, data):
        trade = data.draw(st.sampled_from(self.venue.gateway.fetch_my_trades(SYMBOL)))
        order = Order.objects.filter(client_order_id=trade.client_order_id).first()
        if order is not None and order.status not in (OrderStatus.PENDING,):
            lifecycle.order_record_fill(order_id=order.pk, trade=trade, source="venue")

    @rule()
    def time_passes_and_the_sweeper_runs(self):
        # Every send in flight is now older than the longest send (database time cannot be moved,
        # so the bound is what moves).
        found = orders_sweep(stale_submitted=timedelta(0))
        for order_id in found["resolve"]:
            order_resolve(order_id=order_id, gateway=self.venue.gateway, grace=timedelta(0))

    @rule()
    def reconciliation_runs(self):
        reconcile(gateway=self.venue.gateway, symbols=[SYMBOL])

    # --- what must always hold -------------------------------------------------------------

    @invariant()
    def never_two_venue_orders_per_client_id(self):
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM paper_orders GROUP BY client_order_id HAVING count(*) > 1")
            assert cur.fetchall() == []

    @invariant()
    def each_trade_is_at_most_one_fill_event(self):
        with connection.cursor() as cur:
            cur.execute("SELECT payload->>'trade_id', count(*) FROM order_events WHERE event_type = 'FILL' "
                        "GROUP BY 1 HAVING count(*) > 1")
            assert cur.fetchall() == []

    def teardown(self):
        try:
            self._converge_and_compare()
        finally:
            wipe()

    def _converge_and_compare(self):
        # Let time pass and the safety nets run, as they would in production.
        for _ in range(3):
            self.time_passes_and_the_sweeper_runs()
            for order in Order.objects.filter(status=OrderStatus.PENDING):
                order_submit(order_id=order.pk, gateway=self.venue.gateway)
            reconcile(gateway=self.venue.gateway, symbols=[SYMBOL])
        assert not reconcile(gateway=self.venue.gateway, symbols=[SYMBOL]).changed
        venue_orders = {p.client_order_id: p for p in PaperOrder.objects.all()}
        for order in self._orders():
            paper = venue_orders.get(order.client_order_id)
            if paper is None:
                assert order.status in (OrderStatus.REJECTED, OrderStatus.CANCELED), (order, "not on the venue")
                continue
            assert order.status in VENUE_TO_DB[paper.status], (order.client_order_id, order.status, paper.status)
            assert order.filled_quantity == paper.filled_quantity
            fills = OrderEvent.objects.filter(order=order, event_type="FILL").count()
            assert fills == paper.trades.count()
        assert not Order.objects.exclude(status__in=TERMINAL_STATUSES).filter(
            status__in=[OrderStatus.SUBMITTED, OrderStatus.SUBMIT_UNKNOWN, OrderStatus.PENDING]).exists()


@pytest.mark.django_db(transaction=True)
def test_any_interleaving_converges_to_the_venue_state(_isolated_redis):
    run = OrderBook.TestCase
    run.settings = settings(max_examples=30, stateful_step_count=15, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    run().runTest()
