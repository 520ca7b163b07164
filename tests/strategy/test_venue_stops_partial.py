"""A partial entry fill too small for the venue's minimum order (issue 14, bad cases), on the
scripted venue model of Binance (``tests/support/venue_model.py``): the position cannot have a stop
on the venue, says so in the venue's terms, alerts once, and the bot-side stop still sells it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.models import TelegramOutbox
from strategy.models import StrategyPosition
from strategy.services.positions import position_check, position_refresh
from strategy.services.venue_stops import venue_stop_ensure
from tests.strategy.factories import open_position
from tests.support.venue_model import ModelVenue
from trading.config_schema import config_get
from trading.models import Order, OrderStatus
from trading.services.orders import order_place
from trading.services.submission import order_submit

pytestmark = pytest.mark.django_db(transaction=True)
BTC = "BTC/USDT"


@pytest.fixture
def binance(redis_client):
    return ModelVenue("binance", balances={"USDT": Decimal(100_000)}, prices={BTC: Decimal(30_000)})


def test_a_partial_fill_below_the_minimum_order_is_unprotected_on_the_venue_and_alerts_once(binance):
    # The entry fills a tenth, the rest expires: 0.0001 BTC, 3 USDT, under Binance's 5 USDT minimum.
    binance.script_next_create("partial", fraction=Decimal("0.1"), rest="expired")
    placed, _ = order_place(venue="binance", strategy="blite", symbol=BTC, side="buy", type="market",
                            intent="entry", quantity=Decimal("0.001"), trace_id="t-partial", tick_id="T1",
                            enqueue=False)
    entry = order_submit(order_id=placed.pk, gateway=binance)
    assert entry.status == OrderStatus.EXPIRED and Decimal(0) < entry.filled_quantity < entry.quantity
    position = position_refresh(position_id=open_position(entry, quantity=entry.filled_quantity, stop="29000").pk)
    rules = binance.load_markets()[BTC]

    for _ in range(3):          # three monitor passes
        assert venue_stop_ensure(position_id=position.pk, rules=rules, config=config_get()) is None
    position.refresh_from_db()
    assert position.venue_stop == "unprotected"
    assert "below the venue's minimum order" in position.venue_stop_reason
    assert "notional 5" in position.venue_stop_reason
    assert not Order.objects.filter(type="stop_market").exists()
    assert TelegramOutbox.objects.filter(reason_code="VENUE_STOP_UNPROTECTED").count() == 1

    # The bot-side stop still watches it: through the stop, what the venue can take is sold - here
    # nothing (dust below the minimum), so the position closes as dust rather than retrying forever.
    binance.set_price(BTC, Decimal(28_900))
    assert position_check(position_id=position.pk, last_price=Decimal(28_900), rules=rules) is None
    for _ in range(2):          # later passes keep it closed, and say so once
        position = position_refresh(position_id=position.pk)
        position_check(position_id=position.pk, last_price=Decimal(28_800), rules=rules)
    assert StrategyPosition.objects.get(pk=position.pk).status == "closed"
    assert TelegramOutbox.objects.filter(text__contains="CLOSED").count() == 1
