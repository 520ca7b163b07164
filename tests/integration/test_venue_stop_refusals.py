"""When the venue will not hold a position's stop (issue 14, bad cases), on Binance and Bybit through
real ccxt against the emulator: the position is marked unprotected-on-venue with the venue's
reason, the operator is alerted once (not every pass), and the bot-side stop keeps working."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.models import TelegramOutbox
from strategy.engines import PositionStop
from strategy.models import StrategyPosition
from strategy.selectors import positions_unprotected_on_venue
from strategy.services.positions import stop_monitor_run
from tests.integration.test_venue_stop_outage import (  # noqa: F401 (emulators: a fixture)
    Venue,
    emulators,
    open_positions,
    open_positions_with_stops,
)
from trading.models import TERMINAL_STATUSES, Order, OrderStatus

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
BTC = "BTC/USDT"


def btc_position() -> StrategyPosition:
    return StrategyPosition.objects.get(symbol=BTC)


def alerts() -> int:
    return TelegramOutbox.objects.filter(reason_code="VENUE_STOP_UNPROTECTED", text__contains=BTC).count()


@pytest.mark.parametrize("venue_name", ["binance", "bybit"])
def test_a_stop_the_venue_refuses_to_move_leaves_the_position_unprotected_and_alerts_once(
        venue_name, emulators, redis_client, celery_eager, monkeypatch):  # noqa: F811
    venue = Venue(venue_name, emulators)
    open_positions_with_stops(venue, monkeypatch)
    position = btc_position()
    first = Order.objects.get(type="stop_market", tick_id=f"P{position.pk}")
    state = PositionStop.from_dict(position.stop_state)
    # The market halts; the price still prints higher, so the trailing stop wants to move up.
    venue.control.set_market(BTC, halted=True)
    venue.control.set_price(BTC, state.entry_price + state.trail_distance * 2)
    for _ in range(4):
        stop_monitor_run(gateway=venue.gateway)
    position.refresh_from_db()
    stops = list(Order.objects.filter(type="stop_market", tick_id=f"P{position.pk}").order_by("id"))
    live = [o for o in stops if o.status not in TERMINAL_STATUSES]
    if venue.gateway.amends_stops:
        # Bybit refuses the amend: the old stop still rests and still protects.
        assert [o.pk for o in live] == [first.pk] and live[0].stop_price == first.stop_price
        assert position.venue_stop == "protected" and alerts() == 0
        return
    # Binance: cancelReplace canceled the old stop and the matching engine refused the new one.
    assert live == [] and stops[0].status == OrderStatus.CANCELED
    assert stops[1].status == OrderStatus.REJECTED and stops[1].replaces_id == stops[0].pk
    assert position.venue_stop == "unprotected" and "Market is closed." in position.venue_stop_reason
    assert alerts() == 1                                   # once, not on every pass
    assert len(stops) == 2                                 # the same refused stop is not asked for again
    # The bot-side stop still works: trading resumes and the price falls through the stop.
    venue.control.set_market(BTC, halted=False)
    bot_stop = PositionStop.from_dict(position.stop_state).stop_price
    venue.control.set_price(BTC, (bot_stop - Decimal("0.05")).quantize(Decimal("0.01")))
    stop_monitor_run(gateway=venue.gateway)
    stop_monitor_run(gateway=venue.gateway)
    position.refresh_from_db()
    assert (position.status, position.exit_reason) == ("closed", "TRAILING_STOP")
    assert Order.objects.get(intent="trailing_stop").status == OrderStatus.FILLED


@pytest.mark.parametrize("venue_name", ["binance", "bybit"])
def test_a_symbol_without_stop_orders_keeps_the_bot_side_stop_and_says_why(
        venue_name, emulators, redis_client, celery_eager, monkeypatch):  # noqa: F811
    venue = Venue(venue_name, emulators)
    venue.control.set_market(BTC, stop_orders=False)
    open_positions(venue, monkeypatch)
    position = btc_position()
    for _ in range(3):
        stop_monitor_run(gateway=venue.gateway)
    position.refresh_from_db()
    stops = list(Order.objects.filter(type="stop_market", symbol=BTC))
    if venue_name == "binance":
        # Binance lists the symbol's order types: no STOP_LOSS, so no stop is even asked for.
        assert stops == [] and position.venue_stop_reason == "binance offers no stop orders for BTC/USDT"
    else:
        # Bybit's instrument list does not say; the venue refuses the conditional order, once.
        assert [s.status for s in stops] == [OrderStatus.REJECTED]
        assert position.venue_stop_reason.startswith(f"the venue refused stop {stops[0].client_order_id}")
    assert position.venue_stop == "unprotected"
    assert alerts() == 1
    # What /health, tbot diagnose and the dashboard list (shown there in test_venue_stops.py).
    assert positions_unprotected_on_venue(venue=venue_name) == [position]
    # The bot-side stop sells it.
    venue.control.set_price(BTC, PositionStop.from_dict(position.stop_state).stop_price - Decimal("0.05"))
    stop_monitor_run(gateway=venue.gateway)
    stop_monitor_run(gateway=venue.gateway)
    position.refresh_from_db()
    assert (position.status, position.exit_reason) == ("closed", "STOP_LOSS")
    assert Order.objects.get(intent="stop_loss", type="market").status == OrderStatus.FILLED
