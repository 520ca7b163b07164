"""The money path against a venue that behaves like the real ones (``tests/support/venue_model``):
Binance forgets a client id once its order is closed, orders become visible seconds after a
timeout, trades show up after their order is terminal, fees come in a third asset, our own
rate limiter holds sends back. Each test is one defect an outside review proved on an earlier
main (issue 11), written as the behaviour the system must have; each failed before its fix.

Real PostgreSQL (database time), real Redis, the real services; time is real too, with the
venue's late-visibility windows and our grace windows scaled down to fractions of a second.
"""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import F

from infra.redis import get_redis
from strategy.models import StrategyPosition
from strategy.services.positions import position_refresh
from tests.strategy.factories import open_position
from tests.support.venue_model import ModelVenue, default_markets
from trading.exchanges.base import Side, VenueTrade
from trading.exchanges.errors import TransientError
from trading.models import Order, OrderStatus
from trading.selectors import unvalued_fees
from trading.services import lifecycle
from trading.services.control import trading_halt, trading_resume
from trading.services.emergency import emergency_exit
from trading.services.fees import fees_value
from trading.services.orders import OrderRefused, order_place
from trading.services.reconciliation import _cursor_key, reconcile
from trading.services.submission import order_resolve, order_submit, orders_sweep

pytestmark = pytest.mark.django_db(transaction=True)

BTC = "BTC/USDT"
GRACE = timedelta(seconds=0.6)


@pytest.fixture
def binance(redis_client):
    return ModelVenue("binance", balances={"USDT": Decimal(100_000), "BNB": Decimal(10), "BTC": Decimal(1)},
                      prices={BTC: Decimal(30_000), "ETH/USDT": Decimal(2_000), "BNB/USDT": Decimal(600)})


@pytest.fixture
def bybit(redis_client):
    markets = {s: r for s, r in default_markets().items() if s.startswith(("BTC", "ETH"))}    # no BNB market
    return ModelVenue("bybit", balances={"USDT": Decimal(100_000), "BTC": Decimal(1)}, prices={BTC: Decimal(30_000)},
                      markets=markets)


def place(venue, *, intent="entry", side="buy", tick="T1", quantity="0.01", valid_for_s: float | None = None,
          symbol=BTC, **kw) -> Order:
    valid_until = lifecycle.db_now() + timedelta(seconds=valid_for_s) if valid_for_s is not None else None
    order, _ = order_place(venue=venue.name, strategy="blite", symbol=symbol, side=side, type="market",
                           intent=intent, quantity=Decimal(quantity), trace_id=f"trace-{tick}", tick_id=tick,
                           valid_until=valid_until, enqueue=False, **kw)
    return order


def resolve_until_settled(venue, order: Order, *, deadline_s: float = 5.0) -> Order:
    """What the resolve task does: ask again when told to, until the outcome is known."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        outcome = order_resolve(order_id=order.pk, gateway=venue, grace=GRACE)
        if outcome.retry_in_s is None:
            break
        time.sleep(min(outcome.retry_in_s, 0.1))
    order.refresh_from_db()
    return order


# --- 1. a slow send whose order shows up late is never sent twice -----------------------------

def test_a_late_visible_filled_market_order_is_not_sent_again_on_binance(binance):
    # Given a market buy whose send takes a while and times out, and which the venue executes
    # but shows only 0.4 s after the timeout (Binance -1007), and which is then already filled -
    # so Binance has forgotten its client id and would accept a re-send as a new order.
    binance.script_next_create("late", delay_s=0.8, slow_s=0.4)
    order = place(binance, tick="T1")
    # When it is sent and then resolved as the resolve task would
    order = order_submit(order_id=order.pk, gateway=binance)
    assert order.status == OrderStatus.SUBMIT_UNKNOWN
    order = resolve_until_settled(binance, order)
    time.sleep(0.5)                                  # whatever was late has landed by now
    reconcile(gateway=binance, symbols=[BTC])
    # Then the venue has exactly one order for that id, and we know it filled
    assert binance.orders_with_client_id(order.client_order_id) == 1
    assert order.status == OrderStatus.FILLED and order.filled_quantity == Decimal("0.01")


def test_an_entry_whose_outcome_stays_unknown_past_its_candle_is_abandoned_not_resent(binance):
    # Given an entry valid for 0.2 s whose send vanished (the venue never got it)
    binance.script_next_create("never")
    order = place(binance, tick="T2", valid_for_s=0.2)
    order = order_submit(order_id=order.pk, gateway=binance)
    # When resolution runs past the grace window and the candle period
    order = resolve_until_settled(binance, order)
    # Then it is expired with an ENTRY_ABANDONED event, and nothing was re-sent
    assert order.status == OrderStatus.EXPIRED
    assert order.events.filter(event_type="ENTRY_ABANDONED", reason_code="SIGNAL_EXPIRED").count() == 1
    assert binance.orders_with_client_id(order.client_order_id) == 0 and order.submit_attempts == 1


def test_an_exit_whose_send_vanished_is_resent_with_the_same_id_after_the_grace(bybit):
    exit_order = place(bybit, intent="stop_loss", side="sell", tick="P7", client_intent="exit0")
    bybit.script_next_create("never")
    order = order_submit(order_id=exit_order.pk, gateway=bybit)
    assert order.status == OrderStatus.SUBMIT_UNKNOWN
    order = resolve_until_settled(bybit, order)
    assert order.submit_attempts == 2 and bybit.orders_with_client_id(order.client_order_id) == 1
    assert order.status == OrderStatus.FILLED


# --- 3. a halt binds at the moment of writing and of sending ----------------------------------

def test_no_entry_is_written_after_a_halt_and_a_pending_entry_is_not_sent_while_halted(binance):
    pending = place(binance, tick="T3", valid_for_s=0.5)           # committed while running
    trading_halt(actor="ops", source="cli", reason_code="MANUAL_HALT", reason="incident", trace_id="h1")
    with pytest.raises(OrderRefused):
        place(binance, tick="T4")
    assert not Order.objects.filter(tick_id="T4").exists()
    # The committed entry is not sent while halted ...
    assert order_submit(order_id=pending.pk, gateway=binance).status == OrderStatus.PENDING
    assert binance.orders_with_client_id(pending.client_order_id) == 0
    # ... and once its candle period is over it expires, even if trading resumes
    time.sleep(0.6)
    trading_resume(actor="ops", source="cli", reason_code="MANUAL_RESUME", reason="ok", trace_id="h2")
    orders_sweep()
    pending.refresh_from_db()
    assert pending.status == OrderStatus.EXPIRED
    assert pending.events.filter(event_type="ENTRY_EXPIRED", reason_code="SIGNAL_EXPIRED").exists()
    assert order_submit(order_id=pending.pk, gateway=binance).status == OrderStatus.EXPIRED
    assert binance.orders_with_client_id(pending.client_order_id) == 0


def test_exits_are_sent_while_halted(binance):
    trading_halt(actor="ops", source="cli", reason_code="MANUAL_HALT", reason="incident", trace_id="h1")
    binance.set_price(BTC, Decimal(30_000))
    sell = place(binance, intent="stop_loss", side="sell", tick="P9", client_intent="exit0")
    assert order_submit(order_id=sell.pk, gateway=binance).status == OrderStatus.FILLED


def test_an_entry_held_in_the_rate_limiter_while_a_halt_commits_is_not_sent(binance, monkeypatch):
    # The send waits in the limiter; meanwhile an operator halts. The last look before the
    # bytes go sees the halt: nothing reaches the venue.
    order = place(binance, tick="T5")
    real_create = ModelVenue.create_order

    def create_after_a_halt(self, request):
        trading_halt(actor="ops", source="cli", reason_code="MANUAL_HALT", reason="during send", trace_id="h3")
        time.sleep(0.1)                    # the send waits in the shared rate limiter meanwhile
        from trading.exchanges.base import last_look_veto

        last_look_veto(self.name)          # what every real gateway does after the limiter's wait
        return real_create(self, request)

    monkeypatch.setattr(ModelVenue, "create_order", create_after_a_halt)
    order = order_submit(order_id=order.pk, gateway=binance)
    assert order.status == OrderStatus.PENDING and order.submit_attempts == 0
    assert binance.orders_with_client_id(order.client_order_id) == 0


# --- 6. deferrals by our own rate limiter use up no re-send budget ----------------------------

def test_rate_limit_hold_backs_do_not_use_up_the_resend_budget(binance):
    exit_order = place(binance, intent="stop_loss", side="sell", tick="P2", client_intent="exit0")
    binance.script_next_create("never")
    order = order_submit(order_id=exit_order.pk, gateway=binance)
    assert order.submit_attempts == 1
    for _ in range(8):                                  # a long ban: every re-send is held back
        binance.script_next_create("held_back", retry_after_s=5)
    time.sleep(GRACE.total_seconds() + 0.05)
    for _ in range(8):
        order_resolve(order_id=order.pk, gateway=binance, grace=GRACE, max_attempts=3)
    order.refresh_from_db()
    assert order.status == OrderStatus.SUBMIT_UNKNOWN and order.submit_attempts == 1
    assert not order.events.filter(event_type="RESOLUTION_FAILED").exists()
    # and when the venue lets us again, it is sent (once)
    order = resolve_until_settled(binance, order)
    assert order.status == OrderStatus.FILLED and binance.orders_with_client_id(order.client_order_id) == 1


# --- 7. a fee paid in BNB is never booked as quote --------------------------------------------

def test_a_fee_paid_in_bnb_is_valued_at_the_bnb_price_not_counted_as_usdt(binance):
    binance.set_fee_mode("BNB")
    order = order_submit(order_id=place(binance, tick="T6").pk, gateway=binance)
    assert order.status == OrderStatus.FILLED
    fill = order.events.get(event_type="FILL").payload
    assert fill["fee_asset"] == "BNB"
    bnb_fee = Decimal(fill["fee"])
    # Valued at the venue's BNB price of the fill's time: 0.1 % of 300 USDT, not 0.0005 "USDT"
    assert order.fee_quote == bnb_fee * Decimal(600) and order.fee_unvalued == {}
    assert abs(order.fee_quote - Decimal("0.3")) < Decimal("0.001")


def test_a_bnb_fee_that_cannot_be_priced_stays_unvalued(bybit):
    # Given a fill whose fee was paid in BNB on a venue that lists no BNB market to price it
    order = place(bybit, tick="T7")
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.ACCEPTED)
    trade = VenueTrade(trade_id="t-bnb", venue_order_id="V1", client_order_id=order.client_order_id, symbol=BTC,
                       side=Side.BUY, price=Decimal(30_000), quantity=Decimal("0.01"), fee=Decimal("0.0005"),
                       fee_asset="BNB", timestamp_ms=int(time.time() * 1000))
    lifecycle.order_record_fills(order_id=order.pk, trades=[trade], source="venue")
    # When the fee is valued
    assert fees_value(gateway=bybit, order_ids=[order.pk]) == 0
    # Then it is kept, unvalued, and never counted as quote
    order.refresh_from_db()
    assert order.fee_quote == 0 and order.fee_unvalued == {"BNB": "0.0005"}
    assert unvalued_fees() == [{"client_order_id": order.client_order_id, "symbol": BTC, "fees": {"BNB": "0.0005"}}]


# --- 12. trades that become visible long after their order closed -----------------------------

def test_trades_visible_long_after_the_order_closed_are_still_recorded(binance):
    # Given a market buy that half fills, its rest expires, and whose trade the venue lists late
    binance.script_next_create("partial", fraction=Decimal("0.5"), rest="expired")
    binance.script_trade_visibility_delay(0.5)
    order = order_submit(order_id=place(binance, tick="T8").pk, gateway=binance)
    # The order is over (expired) and its query says 0.005 filled; the trade list shows nothing yet
    assert order.status == OrderStatus.EXPIRED
    assert order.venue_filled_quantity == Decimal("0.005") and order.filled_quantity == 0
    # A reconciliation pass has meanwhile moved the trade cursor far past the trade's time
    get_redis().set(_cursor_key("binance", BTC), int(time.time() * 1000) + 600_000)
    time.sleep(0.6)
    reconcile(gateway=binance, symbols=[BTC], full=False)
    order.refresh_from_db()
    assert order.filled_quantity == Decimal("0.005") and order.status == OrderStatus.EXPIRED
    assert not Order.objects.filter(venue_filled_quantity__gt=F("filled_quantity")).exists()


# --- 4, 5, 11. positions are projections of fills --------------------------------------------

def _position_for(entry: Order, quantity: str) -> StrategyPosition:
    return open_position(entry, quantity=quantity)


def test_a_partial_emergency_fill_leaves_the_unsold_part_open(binance):
    entry = order_submit(order_id=place(binance, tick="T9", quantity="0.02").pk, gateway=binance)
    position = _position_for(entry, "0.01998")
    binance.script_next_create("partial", fraction=Decimal("0.5"), rest="expired")
    report = emergency_exit(actor="ops", source="cli", reason_code="INCIDENT", reason="test", flatten_all=False,
                            trace_id="em-1", gateway=binance)
    position = position_refresh(position_id=position.pk)
    sold = Order.objects.get(intent="emergency_exit").filled_quantity
    assert Decimal(0) < sold < position.quantity
    assert position.status == StrategyPosition.Status.OPEN
    assert position.remaining_quantity == position.quantity - sold
    assert not report.flat and report.remaining          # the report says what is left


def test_exit_fills_that_arrive_after_the_exit_order_ended_reach_the_position(binance):
    entry = order_submit(order_id=place(binance, tick="T10").pk, gateway=binance)
    position = _position_for(entry, str(entry.filled_quantity - Decimal("0.00001")))
    exit_order = place(binance, intent="stop_loss", side="sell", tick=f"P{position.pk}", quantity="0.00999",
                       client_intent="exit0")
    binance.script_trade_visibility_delay(0.4)
    exit_order = order_submit(order_id=exit_order.pk, gateway=binance)
    assert exit_order.status == OrderStatus.ACCEPTED or exit_order.filled_quantity == 0
    lifecycle.order_mark_canceled(order_id=exit_order.pk, source="venue", reason_code="TEST")   # terminal now
    time.sleep(0.5)
    reconcile(gateway=binance, symbols=[BTC], full=True)      # the fills land on the terminal order
    position.refresh_from_db()
    assert position.exited_quantity == Decimal("0.00999")
    assert position.status == StrategyPosition.Status.CLOSED


def test_entry_fills_that_arrive_after_the_exit_started_are_added_to_the_position(binance):
    entry = place(binance, tick="T11", quantity="0.02")
    Order.objects.filter(pk=entry.pk).update(status=OrderStatus.ACCEPTED)
    def trade(tid: str, qty: str) -> VenueTrade:
        return VenueTrade(trade_id=tid, venue_order_id="V1", client_order_id=entry.client_order_id, symbol=BTC,
                          side=Side.BUY, price=Decimal(30_000), quantity=Decimal(qty), fee=Decimal(0),
                          fee_asset="USDT", timestamp_ms=int(time.time() * 1000))

    lifecycle.order_record_fills(order_id=entry.pk, trades=[trade("t1", "0.01")], source="venue")
    position = _position_for(Order.objects.get(pk=entry.pk), "0.01")
    place(binance, intent="stop_loss", side="sell", tick=f"P{position.pk}", quantity="0.01", client_intent="exit0")
    position = position_refresh(position_id=position.pk)
    assert position.status == StrategyPosition.Status.CLOSING
    lifecycle.order_record_fills(order_id=entry.pk, trades=[trade("t2", "0.01")], source="venue")
    position.refresh_from_db()
    assert position.quantity == Decimal("0.02")


def test_a_trade_read_that_fails_after_the_venue_answered_does_not_escape_the_send(binance, monkeypatch):
    # Given the venue fills the order but its trade list cannot be read right then
    def trades_unavailable(*args, **kwargs):
        raise TransientError("myTrades: 502 Bad Gateway")

    monkeypatch.setattr(binance, "fetch_my_trades", trades_unavailable)
    # When it is sent, the send records what the venue said and returns normally
    order = order_submit(order_id=place(binance, tick="T12").pk, gateway=binance)
    assert order.status == OrderStatus.ACCEPTED and order.venue_filled_quantity == Decimal("0.01")
    # Then reconciliation, once the trades can be read, records the fills the venue owed us
    monkeypatch.undo()
    reconcile(gateway=binance, symbols=[BTC], full=False)
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED and order.filled_quantity == Decimal("0.01")


# --- 9, 10. the sweeper and the emergency exit ------------------------------------------------

def test_a_live_send_is_never_declared_orphaned_and_the_bound_is_above_the_longest_send(binance, settings):
    from trading.exchanges.ratelimit import DEFAULT_MAX_WAIT_S
    from trading.order_timing import SEND_HARD_LIMIT_S, STALE_SUBMITTED
    from trading.tasks import submit_order

    # One venue call: the shared limiter's longest wait + ccxt's 10 s timeout. A send is at most 3.
    one_call = getattr(settings, "RATE_LIMIT_MAX_WAIT_S", DEFAULT_MAX_WAIT_S) + 10
    assert STALE_SUBMITTED.total_seconds() > 3 * one_call and STALE_SUBMITTED.total_seconds() > SEND_HARD_LIMIT_S
    assert submit_order.time_limit == SEND_HARD_LIMIT_S
    claimed = lifecycle.order_mark_submitting(order_id=place(binance, tick="T13").pk)
    assert orders_sweep()["resolve"] == []
    claimed.refresh_from_db()
    assert claimed.status == OrderStatus.SUBMITTED


def test_emergency_exit_is_not_flat_while_a_sell_of_ours_is_in_flight(binance):
    entry = order_submit(order_id=place(binance, tick="T14").pk, gateway=binance)
    stop_exit = place(binance, intent="stop_loss", side="sell", tick="P14", quantity="0.00999", client_intent="exit0")
    lifecycle.order_mark_submitting(order_id=stop_exit.pk)            # its send is in flight right now
    report = emergency_exit(actor="ops", source="cli", reason_code="INCIDENT", reason="test", flatten_all=False,
                            trace_id="em-2", gateway=binance)
    assert entry.status == OrderStatus.FILLED
    assert stop_exit.client_order_id in report.unresolved_orders
    assert not report.flat and not report.already_flat


def test_emergency_exit_whose_read_back_fails_is_not_flat_and_tbot_exits_1(binance, monkeypatch):
    order_submit(order_id=place(binance, tick="T15").pk, gateway=binance)
    calls = {"n": 0}
    real = binance.fetch_balances

    def second_read_fails():
        calls["n"] += 1
        if calls["n"] > 1:
            raise TransientError("account: 503")
        return real()

    monkeypatch.setattr(binance, "fetch_balances", second_read_fails)
    monkeypatch.setattr("trading.exchanges.factory._gateway", binance)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("tbot", "emergency-exit", "--by", "ops", "--reason-code", "INCIDENT", "--reason", "test",
                     "--confirm", "EMERGENCY_EXIT", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert exited.value.code == 1
    assert result["flat"] is False and result["ok"] is False
    assert any("reading balances back" in e for e in result["errors"])


def test_diagnose_shows_fees_that_could_not_be_valued(bybit):
    from adminapi.diagnostics import diagnose_findings

    order = place(bybit, tick="T16")
    Order.objects.filter(pk=order.pk).update(fee_unvalued={"BNB": "0.0005"})
    fees = [f for f in diagnose_findings() if f["code"] == "FEES_UNVALUED"]
    assert fees and "0.0005 BNB" in fees[0]["detail"] and fees[0]["severity"] == "warning"


def test_an_abandoned_entry_that_the_venue_had_after_all_is_found_by_the_next_light_pass(binance):
    # Given an entry whose send the venue showed only long after it was abandoned
    binance.script_next_create("late", delay_s=1.2)
    order = order_submit(order_id=place(binance, tick="T17", valid_for_s=0.1).pk, gateway=binance)
    order = resolve_until_settled(binance, order)
    assert order.status == OrderStatus.EXPIRED and order.events.filter(event_type="ENTRY_ABANDONED").exists()
    time.sleep(1.0)
    # When a light reconciliation pass runs (the trade cursor already past the fill)
    get_redis().set(_cursor_key("binance", BTC), int(time.time() * 1000) + 600_000)
    reconcile(gateway=binance, symbols=[BTC], full=False)
    # Then its fills are recorded: the position sees what the venue holds
    order.refresh_from_db()
    assert order.filled_quantity == Decimal("0.01") and binance.orders_with_client_id(order.client_order_id) == 1
