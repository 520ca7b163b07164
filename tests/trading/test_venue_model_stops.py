"""The venue model's protective stops (tests/support/venue_model.py), as the real gateways report
them (tests/trading/exchanges/test_stop_venue.py): moved in place on bybit only, a gap fills at
the price of the moment, symbols without stops, halted symbols."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.trading.test_venue_model import ManualClock, make, stop
from trading.exchanges.base import OrderType, Side, VenueOrderStatus
from trading.exchanges.errors import OrderNotFoundError, RejectedError

D = Decimal


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_bybit_moves_a_stop_in_place_and_it_fires_at_the_new_trigger_at_the_gap_price(clock):
    venue = make(clock, "bybit")
    placed = venue.create_order(stop("m-1", "29000", qty="0.1"))

    moved = venue.amend_stop("BTC/USDT", "m-1", D("29500"))

    assert venue.amends_stops is True
    assert (moved.venue_order_id, moved.client_order_id, moved.stop_price, moved.quantity) == \
        (placed.venue_order_id, "m-1", D("29500"), D("0.1"))
    assert venue.orders_with_client_id("m-1") == 1
    assert venue.balances()["BTC"].locked == D("0.1")
    venue.set_price("BTC/USDT", D("26000"))                  # gaps far through the stop
    sold = venue.fetch_order("BTC/USDT", "m-1")
    assert (sold.status, sold.type, sold.average_price) == (VenueOrderStatus.FILLED, OrderType.STOP_MARKET, D("26000"))
    [trade] = venue.fetch_my_trades("BTC/USDT")
    assert (trade.side, trade.price, trade.quantity, trade.fee, trade.fee_asset) == \
        (Side.SELL, D("26000"), D("0.1"), D("2.6"), "USDT")


def test_bybit_refuses_to_move_a_stop_that_is_not_resting_or_to_where_it_would_fire(clock):
    venue = make(clock, "bybit")
    venue.create_order(stop("r-filled", "29500", qty="0.1"))
    venue.create_order(stop("r-canceled", "28000", qty="0.1"))
    venue.create_order(stop("r-open", "28000", qty="0.1"))
    venue.cancel_order("BTC/USDT", "r-canceled")
    venue.set_price("BTC/USDT", D("29000"))

    for client_id, code in (("r-filled", "170139"), ("r-canceled", "170142"), ("r-never", "170213")):
        with pytest.raises(OrderNotFoundError) as caught:
            venue.amend_stop("BTC/USDT", client_id, D("28500"))
        assert caught.value.code == code
    for new_stop in ("29000", "29500", "28500.005"):
        with pytest.raises(RejectedError) as refused:
            venue.amend_stop("BTC/USDT", "r-open", D(new_stop))
        assert not isinstance(refused.value, OrderNotFoundError)
    assert venue.fetch_order("BTC/USDT", "r-open").stop_price == D("28000")


def test_binance_does_not_move_stops_in_place(clock):
    venue = make(clock, "binance")
    venue.create_order(stop("b-1", "29000", qty="0.1"))

    with pytest.raises(NotImplementedError):
        venue.amend_stop("BTC/USDT", "b-1", D("29500"))

    assert venue.amends_stops is False
    assert venue.fetch_order("BTC/USDT", "b-1").stop_price == D("29000")


@pytest.mark.parametrize(("name", "listed", "code"), [("binance", False, "stop_orders"), ("bybit", True, "170227")])
def test_a_symbol_without_stops_refuses_them_as_each_venue_does(clock, name, listed, code):
    venue = make(clock, name)
    venue.set_market("BTC/USDT", stop_orders=False)

    assert venue.load_markets()["BTC/USDT"].stop_orders is listed     # only Binance's rules can say it
    assert venue.load_markets()["ETH/USDT"].stop_orders is True
    with pytest.raises(RejectedError) as caught:
        venue.create_order(stop("ns-1", "29000", qty="0.1"))
    assert caught.value.code == code
    assert venue.orders_with_client_id("ns-1") == 0


@pytest.mark.parametrize(("name", "code", "words"), [
    ("binance", "-2010", "Market is closed."), ("bybit", "170151", "The trading pair is not open yet"),
])
def test_a_halted_symbol_refuses_orders_and_trades_nothing_until_it_resumes(clock, name, code, words):
    venue = make(clock, name)
    venue.create_order(stop("h-1", "29000", qty="0.1"))
    venue.set_market("BTC/USDT", halted=True)

    with pytest.raises(RejectedError) as caught:
        venue.create_order(stop("h-2", "28000", qty="0.1"))
    assert caught.value.code == code and words in str(caught.value)
    venue.set_price("BTC/USDT", D("28500"))
    assert venue.fetch_order("BTC/USDT", "h-1").status is VenueOrderStatus.OPEN

    venue.set_market("BTC/USDT", halted=False)

    resumed = venue.fetch_order("BTC/USDT", "h-1")
    assert (resumed.status, resumed.average_price) == (VenueOrderStatus.FILLED, D("28500"))
