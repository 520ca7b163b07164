"""A BNB fee valued after the position opened reaches its cost; the emergency exit counts what
the venue says filled before its trades are readable (found by a hostile review; each test failed
before its fix). Real PostgreSQL, real Redis, the real services; the venue is ModelVenue."""

from __future__ import annotations

from decimal import Decimal

import pytest

from strategy.models import StrategyPosition
from strategy.services.positions import position_refresh, positions_sync
from tests.strategy.factories import entry_decision
from tests.support.venue_model import ModelVenue, default_markets
from trading.models import Order, OrderStatus
from trading.services.emergency import emergency_exit
from trading.services.orders import order_place
from trading.services.submission import order_submit

pytestmark = pytest.mark.django_db(transaction=True)

BTC = "BTC/USDT"


def entry_with_decision(venue: ModelVenue, tick: str, quantity: str = "0.01") -> Order:
    """An entry as the tick writes it: its decision row (what the position's stop is built from)
    and its order."""
    entry_decision(tick=tick)
    order, _ = order_place(venue=venue.name, strategy="blite", symbol=BTC, side="buy", type="market", intent="entry",
                           quantity=Decimal(quantity), trace_id=f"t-{tick}", tick_id=tick, enqueue=False)
    return order


def test_a_bnb_entry_fee_reaches_the_position_cost(redis_client):
    # Given Binance charging fees in BNB, and an entry that fills
    venue = ModelVenue("binance", balances={"USDT": Decimal(100_000), "BNB": Decimal(10)},
                       prices={BTC: Decimal(30_000), "BNB/USDT": Decimal(600)})
    venue.set_fee_mode("BNB")
    order = order_submit(order_id=entry_with_decision(venue, "A1").pk, gateway=venue)
    assert order.status == OrderStatus.FILLED
    assert order.fee_quote > Decimal("0.29")          # 0.1 % of 300 USDT, valued at the BNB price
    # When the position is opened from its fills and refreshed by every safety net
    positions_sync(venue=venue.name)
    position = StrategyPosition.objects.get(entry_order=order)
    position = position_refresh(position_id=position.pk)
    position.refresh_from_db()
    # Then the position's cost includes the entry fee the venue really charged
    assert position.entry_fee == order.fee_quote, (
        f"position #{position.pk} carries entry_fee {position.entry_fee}, the order paid {order.fee_quote} "
        f"(BNB valued after the position opened is never written to it)")


def test_emergency_exit_is_not_flat_while_an_entry_it_knows_filled_lacks_its_trades(redis_client):
    # Given an entry the venue reports FILLED whose trades the venue's trade list does not show
    # yet (Binance's order query runs ahead of myTrades), and no other BTC on the account
    venue = ModelVenue("binance", balances={"USDT": Decimal(100_000)}, markets=default_markets(),
                       prices={BTC: Decimal(30_000), "ETH/USDT": Decimal(2_000), "SOL/USDT": Decimal(150),
                               "BNB/USDT": Decimal(600), "XRP/USDT": Decimal("0.5")})
    venue.script_trade_visibility_delay(60)
    entry = order_submit(order_id=entry_with_decision(venue, "A3").pk, gateway=venue)
    assert entry.venue_filled_quantity == Decimal("0.01") and entry.filled_quantity == 0
    held = venue.balances()["BTC"].total
    assert held > Decimal("0.009")
    # When an operator runs the emergency exit
    report = emergency_exit(actor="ops", source="cli", reason_code="INCIDENT", reason="attack", flatten_all=False,
                            trace_id="em-a3", gateway=venue)
    # Then it either sold the BTC our entry bought or says it is not flat
    still_held = venue.balances()["BTC"].total
    assert not (report.flat and still_held > Decimal("0.001")), (
        f"emergency exit reported flat={report.flat} with {still_held} BTC of ours still on the venue: "
        f"{report.as_dict()}")
