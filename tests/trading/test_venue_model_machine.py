"""Random interleavings of the money path against venues that behave like the real ones.

A hypothesis state machine drives the real services — the one door (tick entries), sends,
resolution, the sweeper, reconciliation, the stop monitor, halts, resumes and emergency exits —
against ``ModelVenue`` (Binance's open-only client-id de-duplication or Bybit's strict one,
orders visible late after a timeout, lost sends, our rate limiter holding sends back, partial
fills whose rest expires, fees in base, quote and BNB, trades visible after their order closed).
Real PostgreSQL (database time), real Redis; real time, with the venue's delays and our grace
windows scaled down to fractions of a second.

Checked after every step: at most one venue order per client id; no entry reaches the venue
while trading is halted. After the safety nets have run (teardown): every order is terminal or
reported; each order's fills and fees equal those recomputed from the venue's trades; the
positions hold exactly what the venue holds; no position is closed while the venue still holds it.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from infra.redis import get_redis
from strategy.models import StrategyPosition
from strategy.services.positions import positions_sync, stop_monitor_run
from tests.strategy.factories import entry_decision
from tests.support.venue_model import ModelVenue
from trading.exchanges import factory
from trading.exchanges.base import last_look_veto
from trading.models import TERMINAL_STATUSES, Order, OrderEvent, OrderStatus
from trading.selectors import is_halted
from trading.services import lifecycle
from trading.services.control import trading_halt, trading_resume
from trading.services.emergency import emergency_exit
from trading.services.orders import OrderRefused, order_place
from trading.services.reconciliation import reconcile
from trading.services.submission import order_resolve, order_submit, orders_sweep

BTC = "BTC/USDT"
GRACE = timedelta(seconds=0.4)
# A slow send (SLOW) that times out, whose order the venue shows LATE after the send began: that
# is LATE - SLOW after the unknown outcome, inside GRACE (as on a real venue, where the grace is
# chosen above its late visibility) - but later than GRACE after the claim.
SLOW, LATE = 0.3, 0.55
START_BTC = Decimal(1)
MARKET = {"tick_size": "0.01", "lot_step": "0.00001", "min_qty": "0.00001", "min_notional": "5"}
FAULTS = ["ok", "ok", "late", "never", "timeout_after", "held_back", "partial"]


def wipe() -> None:
    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("TRUNCATE order_events, orders, strategy_positions, strategy_decisions, audit_log, "
                    "system_config, telegram_outbox, emergency_exit_runs CASCADE")
        cur.execute("SET session_replication_role = DEFAULT")
    get_redis().flushdb()


class Recorder(ModelVenue):
    """The model venue, noting every create that left while trading was halted."""

    entries_sent_while_halted: list[str]

    def create_order(self, request):
        last_look_veto(self.name)          # a vetoed send never leaves us; past this line it does
        if request.side == "buy" and is_halted().halted:
            self.entries_sent_while_halted.append(request.client_order_id)
        return super().create_order(request)


class MoneyPath(RuleBasedStateMachine):
    @initialize(name=st.sampled_from(["binance", "bybit"]), bnb_fees=st.booleans())
    def a_venue(self, name, bnb_fees):
        wipe()
        self.venue = Recorder(name, balances={"USDT": Decimal(100_000), "BTC": START_BTC, "BNB": Decimal(5)},
                              prices={BTC: Decimal(30_000), "ETH/USDT": Decimal(2_000), "BNB/USDT": Decimal(600)})
        self.venue.entries_sent_while_halted = []
        factory._gateway = self.venue      # what an enqueued send (eager here) talks to
        if bnb_fees:
            self.venue.set_fee_mode("BNB")
        self.ticks = 0
        self.emergencies = 0

    # --- what can happen -------------------------------------------------------------------

    @rule(quantity=st.sampled_from(["0.01", "0.02"]), valid_for=st.sampled_from([0.3, 5.0]))
    def a_tick_enters(self, quantity, valid_for):
        self.ticks += 1
        tick = f"T{self.ticks}"
        entry_decision(tick=tick, take_profit_r="3", market=MARKET)
        try:
            order_place(venue=self.venue.name, strategy="blite", symbol=BTC, side="buy", type="market",
                        intent="entry", quantity=Decimal(quantity), trace_id=f"t-{tick}", tick_id=tick,
                        valid_until=lifecycle.db_now() + timedelta(seconds=valid_for), enqueue=False)
        except OrderRefused:
            assert is_halted().halted

    @precondition(lambda self: Order.objects.filter(status=OrderStatus.PENDING).exists())
    @rule(data=st.data(), fault=st.sampled_from(FAULTS), redelivered=st.booleans())
    def a_worker_sends(self, data, fault, redelivered):
        order = data.draw(st.sampled_from(list(Order.objects.filter(status=OrderStatus.PENDING).order_by("id"))))
        if fault == "late":
            self.venue.script_next_create("late", delay_s=LATE, slow_s=SLOW)
        elif fault == "partial":
            self.venue.script_next_create("partial", fraction=Decimal("0.5"), rest="expired")
        elif fault == "held_back":
            self.venue.script_next_create("held_back", retry_after_s=1)
        elif fault != "ok":
            self.venue.script_next_create(fault)
        for _ in range(2 if redelivered else 1):
            order_submit(order_id=order.pk, gateway=self.venue)
        self.venue.clear_scripts()      # a script the send never reached (its claim was refused)

    @precondition(lambda self: Order.objects.filter(status=OrderStatus.SUBMIT_UNKNOWN).exists())
    @rule(data=st.data())
    def the_resolver_runs(self, data):
        order = data.draw(st.sampled_from(list(Order.objects.filter(status=OrderStatus.SUBMIT_UNKNOWN))))
        order_resolve(order_id=order.pk, gateway=self.venue, grace=GRACE)

    @rule(seconds=st.sampled_from([0.05, 0.15, 0.45]))
    def time_passes(self, seconds):
        time.sleep(seconds)

    @rule()
    def the_sweeper_and_reconciliation_run(self):
        found = orders_sweep()
        for order_id in found["resolve"]:
            order_resolve(order_id=order_id, gateway=self.venue, grace=GRACE)
        reconcile(gateway=self.venue, symbols=[BTC], full=False)

    @rule(price=st.sampled_from(["28000", "30000", "34000"]))
    def the_market_moves_and_the_stop_monitor_runs(self, price):
        self.venue.set_price(BTC, Decimal(price))
        stop_monitor_run(gateway=self.venue)
        for order in Order.objects.filter(status=OrderStatus.PENDING).exclude(intent="entry"):
            order_submit(order_id=order.pk, gateway=self.venue)     # what the enqueued send does

    @rule()
    def an_operator_halts(self):
        trading_halt(actor="ops", source="cli", reason_code="MANUAL_HALT", reason="model", trace_id="h")

    @rule()
    def an_operator_resumes(self):
        trading_resume(actor="ops", source="cli", reason_code="MANUAL_RESUME", reason="model", trace_id="r")

    @rule(partial=st.booleans())
    def an_operator_pulls_the_emergency_exit(self, partial):
        self.emergencies += 1
        if partial:
            self.venue.script_next_create("partial", fraction=Decimal("0.5"), rest="expired")
        emergency_exit(actor="ops", source="cli", reason_code="INCIDENT", reason="model", flatten_all=False,
                       trace_id=f"em-{self.emergencies}", gateway=self.venue)
        self.venue.clear_scripts()

    # --- always ------------------------------------------------------------------------------

    @invariant()
    def at_most_one_venue_order_per_client_id(self):
        if not hasattr(self, "venue"):
            return
        for cid in Order.objects.values_list("client_order_id", flat=True):
            assert self.venue.orders_with_client_id(cid) <= 1, (cid, self.venue.journal[-10:])

    @invariant()
    def no_entry_reaches_the_venue_while_halted(self):
        if hasattr(self, "venue"):
            assert self.venue.entries_sent_while_halted == []

    # --- after the safety nets have run ------------------------------------------------------

    def teardown(self):
        try:
            if hasattr(self, "venue"):
                self._converge_and_check()
        finally:
            wipe()

    def _converge_and_check(self):
        for _ in range(4):
            time.sleep(GRACE.total_seconds() + 0.05)
            orders_sweep(stale_submitted=timedelta(0))     # no send is in flight any more
            for order_id in Order.objects.filter(status=OrderStatus.PENDING).values_list("pk", flat=True):
                order_submit(order_id=order_id, gateway=self.venue)   # what each enqueued send does
            for order_id in Order.objects.filter(status=OrderStatus.SUBMIT_UNKNOWN).values_list("pk", flat=True):
                order_resolve(order_id=order_id, gateway=self.venue, grace=GRACE)
            reconcile(gateway=self.venue, symbols=[BTC], full=True)
            positions_sync(venue=self.venue.name)
        venue_orders = {vo.client_order_id: vo for vo in self.venue.all_orders()}
        # Every order is terminal, reported as unresolved, or an open position's protective stop
        # resting on the venue - one per position, for no more than it holds.
        open_positions = {f"P{p.pk}": p for p in StrategyPosition.objects.filter(status="open")}
        resting: dict[str, int] = {}
        for order in Order.objects.exclude(status__in=TERMINAL_STATUSES):
            position = open_positions.get(order.tick_id)
            on_venue = venue_orders.get(order.client_order_id)
            if (order.type == "stop_market" and order.status == OrderStatus.ACCEPTED and position is not None
                    and on_venue is not None and on_venue.status == "open"):
                resting[order.tick_id] = resting.get(order.tick_id, 0) + 1
                assert order.quantity <= position.remaining_quantity, (order, position)
                continue
            assert order.status == OrderStatus.PENDING and is_halted().halted or \
                order.events.filter(event_type="RESOLUTION_FAILED").exists(), (order, order.status)
        assert all(n == 1 for n in resting.values()), resting
        # Fills and fees equal those recomputed from the venue's trades.
        trades = self.venue.all_trades()
        by_venue_id = {}
        for t in trades:
            by_venue_id.setdefault(t.venue_order_id, []).append(t)
        for order in Order.objects.all():
            vo = venue_orders.get(order.client_order_id)
            mine = by_venue_id.get(vo.venue_order_id, []) if vo else []
            assert order.filled_quantity == sum((t.quantity for t in mine), Decimal(0)), order
            fee = Decimal(0)
            for t in mine:
                fee += (t.fee * t.price if t.fee_asset == "BTC" else t.fee * Decimal(600) if t.fee_asset == "BNB"
                        else t.fee)
            assert order.fee_quote == fee and order.fee_unvalued == {}, (order, order.fee_quote, fee)
            assert OrderEvent.objects.filter(order=order, event_type="FILL").count() == len(mine)
        # The positions hold exactly what the venue holds (beyond what the account started with).
        held = self.venue.balances()["BTC"].total - START_BTC
        positions = list(StrategyPosition.objects.all())
        assert sum((p.remaining_quantity for p in positions), Decimal(0)) == held, \
            [(p.pk, p.status, p.quantity, p.exited_quantity) for p in positions]
        for p in positions:
            if p.status == StrategyPosition.Status.CLOSED:
                assert p.remaining_quantity < Decimal(MARKET["lot_step"]), p
                assert p.realised_pnl is not None


@pytest.mark.django_db(transaction=True)
def test_random_interleavings_against_realistic_venues_keep_every_money_invariant(redis_client, celery_eager,
                                                                                  monkeypatch):
    monkeypatch.setattr(factory, "_gateway", None)          # restored afterwards; each example sets its own
    run = MoneyPath.TestCase
    run.settings = settings(max_examples=int(__import__("os").environ.get("MONEY_MODEL_EXAMPLES", "12")),
                            stateful_step_count=12, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    run().runTest()
