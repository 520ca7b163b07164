"""Defects a hostile review proved in the venue-side protective stops (issue 14), on the paper
venue with real PostgreSQL / Redis and the order path's Celery tasks run eagerly (fixtures in
conftest.py). Each test is a way the first version lost money, and failed until its fix; each
docstring gives the scenario and the root cause that was fixed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from strategy.engines import PositionStop
from strategy.models import StrategyPosition
from strategy.services.positions import MAX_EXIT_ATTEMPTS, stop_monitor_run
from tests.strategy.test_stop_monitor import BTC, price
from trading.models import TERMINAL_STATUSES, Order, OrderStatus, PaperOrder

pytestmark = pytest.mark.django_db(transaction=True)


def stops() -> list[Order]:
    return list(Order.objects.filter(type="stop_market").order_by("id"))


def state_of(position: StrategyPosition) -> PositionStop:
    position.refresh_from_db()
    return PositionStop.from_dict(position.stop_state)


def test_a_position_the_monitor_gave_up_on_keeps_the_venue_stop_that_would_sell_it(opened):
    """Scenario: the monitor has given up on a position's exits (``exit_attempt`` reached
    ``MAX_EXIT_ATTEMPTS``, EXIT FAILED sent - e.g. through the per-pass balance cache of
    tests/integration/test_venue_stops_review.py, or market sells refused during a halt). Its
    venue stop is now its only protection. The bot-side stop has risen by less than the step, so
    the venue stop lags below it; the price falls between the two.

    ``position_check`` returns ``StopInTheWay`` BEFORE it looks at ``exit_attempt``: the monitor
    cancels the venue stop, then ``position_check`` declines to sell (attempts exhausted), and
    ``venue_stop_ensure`` asks for a new stop at the bot-side level - under the market, so the
    venue refuses it ("would trigger immediately") and, being the same refused stop, it is not
    asked for again for 5 minutes. The price keeps falling through the old stop's level: nothing
    sells; the position is naked. (With the price above the target instead, every pass cancels and
    re-places the stop: two order requests per position per 20 s, forever.)

    Root cause: in ``position_check`` the venue stop is taken off for an exit that the same call
    then refuses to place; the exit-attempt limit is checked after ``StopInTheWay``."""
    gw, source, _, position = opened
    (stop,) = stops()
    state = state_of(position)
    price(source, state.entry_price + stop.stop_price * Decimal("0.004"))
    stop_monitor_run(gateway=gw)
    bot_stop = state_of(position).stop_price
    stop.refresh_from_db()
    assert bot_stop > stop.stop_price and stop.status == OrderStatus.ACCEPTED
    # The monitor has given up selling this position (what EXIT FAILED means).
    StrategyPosition.objects.filter(pk=position.pk).update(exit_attempt=MAX_EXIT_ATTEMPTS)

    price(source, bot_stop - (bot_stop - stop.stop_price) / 2)
    stop_monitor_run(gateway=gw)
    stop.refresh_from_db()
    assert stop.status == OrderStatus.ACCEPTED, (
        f"the venue stop was {stop.status} although nothing sells the position: "
        f"{[(o.client_order_id, o.status, o.last_error) for o in stops()]}")

    # The market falls through the venue stop's level: the venue's stop is what sells it.
    price(source, stop.stop_price - Decimal("0.5"))
    gw.match_resting_orders([BTC])
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    assert position.status == "closed", [(o.client_order_id, o.status) for o in stops()]
    assert [o for o in stops() if o.status not in TERMINAL_STATUSES] == []
    assert PaperOrder.objects.filter(side="sell", filled_quantity__gt=0).count() == 1


def test_take_profit_due_on_a_given_up_position_does_not_churn_its_venue_stop(opened):
    """Scenario: as above (exits given up), with the price above the target. Every monitor pass
    cancels the venue stop (``StopInTheWay``), declines to sell, and places the next version:
    one cancel and one create per position per pass, forever, eating the shared order budget
    that entries and exits need, and leaving the position without a stop for the time between
    them (a database round trip and a Celery hop, not one request).

    Root cause: as above - ``StopInTheWay`` is returned before the exit-attempt limit is checked."""
    gw, source, _, position = opened
    StrategyPosition.objects.filter(pk=position.pk).update(exit_attempt=MAX_EXIT_ATTEMPTS)
    price(source, state_of(position).take_profit_price + Decimal("0.5"))
    for _ in range(3):
        stop_monitor_run(gateway=gw)
    assert [(o.status, o.client_order_id) for o in stops()] == [(OrderStatus.ACCEPTED, stops()[0].client_order_id)]
