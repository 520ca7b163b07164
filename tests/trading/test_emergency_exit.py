"""Emergency exit on each venue: halt, cancel every open order of ours, sell what the system
bought (or everything with flatten_all), report what is left — and do nothing the second time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.models import TelegramOutbox
from tests.trading.factories import create, new_order
from trading.models import AuditLog, Order, OrderStatus
from trading.selectors import expected_holdings, is_halted
from trading.services import lifecycle
from trading.services.emergency import emergency_exit
from trading.services.submission import order_submit

WHO = {"actor": "ops-oncall", "source": "api", "reason_code": "EMERGENCY", "reason": "venue incident"}


@pytest.fixture
def book(venue, redis_client):
    """A filled entry (our BTC position), a resting limit buy, and a pending order never sent."""
    entry = order_submit(order_id=create(venue=venue.name, quantity="0.01", tick="e1").pk, gateway=venue.gateway)
    assert entry.status == OrderStatus.FILLED
    resting, _ = lifecycle.order_create(new=new_order(venue=venue.name, symbol="ETH/USDT", type="limit",
                                                      price="1000.00", quantity="0.01", tick="r1"))
    resting = order_submit(order_id=resting.pk, gateway=venue.gateway)
    assert resting.status == OrderStatus.ACCEPTED
    pending = create(venue=venue.name, quantity="0.01", tick="p1")
    return entry, resting, pending


def test_emergency_exit_halts_cancels_flattens_and_reports(venue, book):
    entry, resting, pending = book
    foreign_eth = venue.gateway.fetch_balances().get("ETH")

    report = emergency_exit(**WHO, flatten_all=False, trace_id="trace-emx-1", gateway=venue.gateway)

    assert is_halted().halted
    assert set(report.canceled_orders) == {resting.client_order_id, pending.client_order_id}
    for order in (resting, pending):
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELED
    assert len(report.exit_orders) == 1
    sell = Order.objects.get(client_order_id=report.exit_orders[0])
    assert (sell.side, sell.intent, sell.symbol, sell.status) == ("sell", "emergency_exit", "BTC/USDT", "filled")
    assert sell.trace_id == "trace-emx-1"
    # Only what the system bought was sold: our position is flat, anything else is untouched.
    assert abs(expected_holdings(venue.name).get("BTC", Decimal(0))) < Decimal("0.0001")
    eth_after = venue.gateway.fetch_balances().get("ETH")
    assert (eth_after.total if eth_after else 0) == (foreign_eth.total if foreign_eth else 0)
    assert report.unresolved_orders == [] and report.errors == []
    # One audit row for the call, in the same transaction as the halt; Telegram carries the trace.
    audit = AuditLog.objects.get(action="emergency_exit")
    assert audit.after["halted"] is True and audit.trace_id == "trace-emx-1"
    assert AuditLog.objects.count() == 1
    message = TelegramOutbox.objects.get(reason_code="EMERGENCY")
    assert "EMERGENCY EXIT" in message.text and "trace_id=trace-emx-1" in message.text

    # Pulling it again places nothing.
    again = emergency_exit(**WHO, flatten_all=False, trace_id="trace-emx-2", gateway=venue.gateway)
    assert again.exit_orders == [] and again.canceled_orders == [] and again.already_flat
    assert Order.objects.filter(intent="emergency_exit").count() == 1


def test_a_resting_stop_is_canceled_first_so_the_position_it_reserves_can_be_sold(venue, redis_client):
    entry = order_submit(order_id=create(venue=venue.name, quantity="0.01", tick="s1").pk, gateway=venue.gateway)
    stop, _ = lifecycle.order_create(new=new_order(venue=venue.name, side="sell", type="stop_market",
                                                   intent="stop_loss", quantity="0.0099", tick="s1",
                                                   stop_price="25000.00"))
    stop = order_submit(order_id=stop.pk, gateway=venue.gateway)
    assert (entry.status, stop.status) == (OrderStatus.FILLED, OrderStatus.ACCEPTED)

    report = emergency_exit(**WHO, flatten_all=False, trace_id="trace-emx-s", gateway=venue.gateway)

    stop.refresh_from_db()
    assert stop.status == OrderStatus.CANCELED and report.canceled_orders == [stop.client_order_id]
    assert len(report.exit_orders) == 1 and report.unresolved_orders == [] and report.errors == []
    assert Order.objects.get(client_order_id=report.exit_orders[0]).status == OrderStatus.FILLED
    assert abs(expected_holdings(venue.name).get("BTC", Decimal(0))) < Decimal("0.0001")
    assert venue.gateway.fetch_open_orders("BTC/USDT") == []


def test_flatten_all_also_sells_holdings_the_system_did_not_open(emulated, redis_client):
    # The emulator account starts with BTC, ETH and SOL of its own.
    before = {a: b.total for a, b in emulated.gateway.fetch_balances().items()}
    assert before.get("ETH", 0) > 0

    report = emergency_exit(**WHO, flatten_all=True, trace_id="trace-emx-3", gateway=emulated.gateway)

    sold = {Order.objects.get(client_order_id=c).symbol for c in report.exit_orders}
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT"} <= sold
    after = emulated.gateway.fetch_balances()
    for asset in ("BTC", "ETH", "SOL"):
        left = after[asset].total if asset in after else Decimal(0)
        assert left < before[asset] / 100          # only dust below the lot step can remain
    assert set(report.remaining) <= {"BTC", "ETH", "SOL"}


def test_a_sell_already_on_its_way_is_not_doubled(venue, redis_client):
    order_submit(order_id=create(venue=venue.name, quantity="0.01", tick="e2").pk, gateway=venue.gateway)
    # a stop-loss sell was claimed and is being sent right now
    stop_exit, _ = lifecycle.order_create(new=new_order(venue=venue.name, side="sell", quantity="0.0099",
                                                        tick="stop", intent="stop_loss"))
    lifecycle.order_mark_submitting(order_id=stop_exit.pk)

    report = emergency_exit(**WHO, flatten_all=False, trace_id="trace-emx-4", gateway=venue.gateway)

    assert report.exit_orders == []
    assert stop_exit.client_order_id in report.unresolved_orders
    assert not Order.objects.filter(intent="emergency_exit").exists()
