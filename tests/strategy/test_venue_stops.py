"""The protective stop kept on the venue, on the paper venue with real Celery submission (eager)
and real PostgreSQL / Redis: placed when the entry fills, moved up with the trailing stop, taken
off before any other exit, recognised when it fired on the venue - and a position the venue
cannot protect says so (``/health``, ``tbot diagnose``, the API) and alerts once.

Binance and Bybit (real ccxt against the emulator), and the whole system killed while stops
rest, are in ``tests/integration/test_venue_stop_outage.py``."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from adminapi.selectors import positions_overview
from infra.models import TelegramOutbox
from strategy.engines import PositionStop, round_to_step
from strategy.models import StrategyPosition
from strategy.services import venue_stops as venue_stop_service
from strategy.services.positions import stop_monitor_run
from tests.strategy.test_stop_monitor import BTC, price
from tests.strategy.test_tick import configure
from trading.client_ids import make_client_order_id
from trading.config_schema import config_get
from trading.models import Order, OrderStatus, PaperOrder
from trading.services.emergency import emergency_exit

pytestmark = pytest.mark.django_db(transaction=True)


def stops() -> list[Order]:
    return list(Order.objects.filter(type="stop_market").order_by("id"))


def sells_on_venue() -> list[PaperOrder]:
    return list(PaperOrder.objects.filter(side="sell").order_by("id"))


def state_of(position: StrategyPosition) -> PositionStop:
    position.refresh_from_db()
    return PositionStop.from_dict(position.stop_state)


def test_the_entry_fill_puts_the_positions_stop_on_the_venue_at_once(opened):
    gw, _, _, position = opened
    (stop,) = stops()
    assert stop.client_order_id == make_client_order_id(strategy="blite", symbol=BTC, tick_id=f"P{position.pk}",
                                                        intent="stop0")
    assert (stop.side, stop.status, stop.intent) == ("sell", OrderStatus.ACCEPTED, "stop_loss")
    rules = gw.rules(BTC)
    assert stop.stop_price == round_to_step(state_of(position).stop_price, rules.tick_size)
    assert stop.quantity == round_to_step(position.quantity, rules.lot_step)
    assert [o.client_order_id for o in gw.fetch_open_orders(BTC)] == [stop.client_order_id]
    position.refresh_from_db()
    assert (position.status, position.venue_stop) == ("open", "protected")
    # A resting stop is not an exit: the position is open, no exit attempt is used up.
    assert position.exit_attempt == 0 and position.exit_order is None
    # More passes place nothing more.
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    assert len(stops()) == 1 and len(gw.fetch_open_orders(BTC)) == 1


def test_the_venue_stop_follows_the_trailing_stop_in_steps_in_place(opened):
    gw, source, _, position = opened
    (stop,) = stops()
    first = stop.stop_price
    state = state_of(position)
    # A rise that lifts the bot-side stop by less than the step (0.5 %) leaves the venue alone.
    price(source, state.entry_price + first * Decimal("0.002"))
    stop_monitor_run(gateway=gw)
    assert state_of(position).stop_price > first
    stop.refresh_from_db()
    assert stop.stop_price == first and not stop.events.filter(event_type="STOP_MOVED").exists()
    # A rise well past the step moves it: the same order, amended in place on the venue.
    high = state.entry_price + state.trail_distance * 2
    price(source, high)
    stop_monitor_run(gateway=gw)
    raised = state_of(position).stop_price
    assert raised == high - state.trail_distance
    stop.refresh_from_db()
    assert stop.stop_price == round_to_step(raised, gw.rules(BTC).tick_size) and stop.status == OrderStatus.ACCEPTED
    moved = stop.events.get(event_type="STOP_MOVED")
    assert (Decimal(moved.payload["from"]), Decimal(moved.payload["stop_price"])) == (first, stop.stop_price)
    (resting,) = gw.fetch_open_orders(BTC)
    assert (resting.client_order_id, resting.stop_price) == (stop.client_order_id, stop.stop_price)
    assert len(stops()) == 1 and not sells_on_venue()[1:]


def test_a_stop_that_fired_on_the_venue_closes_the_position_once_as_the_stop(opened):
    gw, source, _, position = opened
    (stop,) = stops()
    price(source, stop.stop_price - Decimal("0.5"))
    gw.match_resting_orders([BTC])          # the venue fills the stop on its own, whoever is watching
    # The monitor sees the price through its stop too: it must recognise the venue's sale, not sell again.
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    stop.refresh_from_db()
    position.refresh_from_db()
    assert stop.status == OrderStatus.FILLED and stop.filled_quantity == stop.quantity
    assert [o.client_order_id for o in sells_on_venue()] == [stop.client_order_id]
    assert Order.objects.filter(side="sell").count() == 1
    assert (position.status, position.exit_reason, position.exit_order_id) == ("closed", "STOP_LOSS", stop.pk)
    expected = (stop.filled_quote - stop.fee_quote) - (position.entry_price * stop.filled_quantity
                                                       + position.entry_fee * stop.filled_quantity / position.quantity)
    assert abs(position.realised_pnl - expected) < Decimal("1e-12") and position.realised_pnl < 0
    closed = TelegramOutbox.objects.get(text__contains="CLOSED")
    assert stop.trace_id in closed.text and "STOP_LOSS" in closed.text and "stop on the venue" in closed.text
    assert not gw.fetch_open_orders(BTC)


def test_a_raised_venue_stop_that_fires_is_a_trailing_stop(opened):
    gw, source, _, position = opened
    state = state_of(position)
    price(source, state.entry_price + state.trail_distance * 2)
    stop_monitor_run(gateway=gw)
    (stop,) = stops()
    price(source, stop.stop_price - Decimal("0.01"))
    gw.match_resting_orders([BTC])
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    assert (position.status, position.exit_reason) == ("closed", "TRAILING_STOP")
    assert Order.objects.filter(side="sell").count() == 1


def test_take_profit_takes_the_venue_stop_off_before_selling(opened):
    gw, source, _, position = opened
    (stop,) = stops()
    price(source, state_of(position).take_profit_price + Decimal("0.01"))
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    stop.refresh_from_db()
    position.refresh_from_db()
    assert stop.status == OrderStatus.CANCELED and stop.filled_quantity == 0
    events = list(stop.events.values_list("event_type", flat=True))
    assert events[-2:] == ["CANCEL_REQUESTED", "CANCELED"]
    take_profit = Order.objects.get(intent="take_profit")
    assert take_profit.status == OrderStatus.FILLED and take_profit.id > stop.id
    assert (position.status, position.exit_reason) == ("closed", "TAKE_PROFIT") and position.realised_pnl > 0
    assert not gw.fetch_open_orders(BTC)
    assert [o.client_order_id for o in sells_on_venue() if o.filled_quantity > 0] == [take_profit.client_order_id]


def test_a_bot_side_stop_above_the_lagging_venue_stop_cancels_it_then_sells_once(opened):
    gw, source, _, position = opened
    (stop,) = stops()
    state = state_of(position)
    # The trailing stop rises by less than the step: the venue stop stays where it was ...
    lift = stop.stop_price * Decimal("0.004")
    price(source, state.entry_price + lift)
    stop_monitor_run(gateway=gw)
    bot_stop = state_of(position).stop_price
    stop.refresh_from_db()
    assert bot_stop > stop.stop_price
    # ... and the price falls between the two: the bot-side stop exits, the venue's would not yet.
    price(source, bot_stop - (bot_stop - stop.stop_price) / 2)
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    stop.refresh_from_db()
    position.refresh_from_db()
    assert stop.status == OrderStatus.CANCELED
    exit_order = Order.objects.get(intent="trailing_stop")
    assert exit_order.status == OrderStatus.FILLED
    assert (position.status, position.exit_reason) == ("closed", "TRAILING_STOP")
    assert [o.client_order_id for o in sells_on_venue() if o.filled_quantity > 0] == [exit_order.client_order_id]


def test_an_emergency_exit_takes_the_venue_stop_off_and_sells_once(opened):
    gw, _, _, position = opened
    (stop,) = stops()
    report = emergency_exit(actor="ops", source="api", reason_code="MANUAL", reason="test", flatten_all=False,
                            trace_id="emergency-1", gateway=gw)
    assert report.flat, report.as_dict()
    assert stop.client_order_id in report.canceled_orders
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    assert (position.status, position.exit_reason) == ("closed", "EMERGENCY_EXIT")
    assert len(stops()) == 1 and not gw.fetch_open_orders(BTC)
    assert len([o for o in sells_on_venue() if o.filled_quantity > 0]) == 1


def test_with_venue_stops_off_nothing_rests_on_the_venue(opened):
    # The fixture opened the position with stops on; a position opened after switching off gets none,
    # and the existing one keeps its stop until it closes (switching off cancels nothing by surprise).
    gw, _, _, position = opened
    configure(venue_stops="off")
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    assert position.venue_stop == "none" and len(stops()) == 1


def test_a_position_the_venue_cannot_protect_says_why_everywhere_and_alerts_once(opened, client):
    gw, _, _, position = opened
    (stop,) = stops()
    # Take the stop off as an operator might, on a venue whose minimum order is now above the holding.
    assert venue_stop_service.venue_stop_clear(position=position, gateway=gw, reason_code="TEST")
    strict = replace(gw.rules(BTC), min_notional=Decimal("1000000"))
    for _ in range(3):
        assert venue_stop_service.venue_stop_ensure(position_id=position.pk, rules=strict, config=config_get()) is None
    position.refresh_from_db()
    assert position.venue_stop == "unprotected" and "below the venue's minimum order" in position.venue_stop_reason
    alerts = TelegramOutbox.objects.filter(reason_code="VENUE_STOP_UNPROTECTED")
    assert alerts.count() == 1 and "NO STOP ON THE VENUE" in alerts.get().text

    health = client.get("/health").json()
    assert {"code": "VENUE_STOP_UNPROTECTED", "position": position.pk, "symbol": BTC,
            "detail": f"position #{position.pk} {BTC} has no stop on the venue: {position.venue_stop_reason}"} \
        in health["warnings"]
    (shown,) = positions_overview(venue="paper", state="open")
    assert shown["venue_stop"] == {"state": "unprotected", "stop_price": None, "client_order_id": None,
                                   "reason": position.venue_stop_reason}
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("tbot", "diagnose", "--json", stdout=out, stderr=StringIO())
    assert exited.value.code == 1
    findings = json.loads(out.getvalue())["findings"]
    assert any(f["code"] == "VENUE_STOP_UNPROTECTED" and f["data"]["position"] == position.pk for f in findings)
    listing = StringIO()
    call_command("tbot", "positions", stdout=listing, stderr=StringIO())
    assert f"NO VENUE STOP: {position.venue_stop_reason}" in listing.getvalue()

    # Protected again (the venue takes it now): the state clears and a later episode alerts again.
    assert venue_stop_service.venue_stop_ensure(position_id=position.pk, rules=gw.rules(BTC), config=config_get())
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    assert position.venue_stop == "protected" and not position.venue_stop_alerted
    (shown,) = positions_overview(venue="paper", state="open")
    assert shown["venue_stop"]["state"] == "protected"
    assert shown["venue_stop"]["client_order_id"] == stops()[-1].client_order_id
    assert stops()[-1].client_order_id == make_client_order_id(strategy="blite", symbol=BTC,
                                                              tick_id=f"P{position.pk}", intent="stop1")
