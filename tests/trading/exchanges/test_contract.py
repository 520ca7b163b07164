"""The gateway contract: every venue (Binance, Bybit via ccxt + emulator; later paper) behaves alike."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from trading.exchanges.base import OrderRequest, OrderType, Side, VenueOrder, VenueOrderStatus
from trading.exchanges.errors import (
    DuplicateClientOrderIdError,
    InsufficientFundsError,
    OrderNotFoundError,
    RejectedError,
)

D = Decimal
HOUR_MS = 3_600_000


def market(client_id: str, side: Side, qty: str, symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(client_order_id=client_id, symbol=symbol, side=side, type=OrderType.MARKET,
                        quantity=D(qty))


def limit(client_id: str, side: Side, qty: str, price: str, symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(client_order_id=client_id, symbol=symbol, side=side, type=OrderType.LIMIT,
                        quantity=D(qty), price=D(price))


def stop(client_id: str, qty: str, stop_price: str, symbol: str = "BTC/USDT", side: Side = Side.SELL,
         price: str | None = None) -> OrderRequest:
    return OrderRequest(client_order_id=client_id, symbol=symbol, side=side, type=OrderType.STOP_MARKET,
                        quantity=D(qty), stop_price=D(stop_price), price=None if price is None else D(price))


def fetched(venue, client_id: str, symbol: str = "BTC/USDT") -> VenueOrder:
    order = venue.gateway.fetch_order(symbol, client_id)
    assert order is not None, f"venue has no order {client_id}"
    return order


def test_markets_carry_the_trading_rules(venue):
    rules = venue.gateway.load_markets()

    for symbol, expected in venue.expected_rules.items():
        assert rules[symbol] == expected


def test_closed_candles_drop_the_forming_one(venue):
    now_ms = int(time.time() * 1000)
    forming_open = now_ms // HOUR_MS * HOUR_MS
    rows = [
        (forming_open - (4 - i) * HOUR_MS, D(100 + i), D(110 + i), D(90 + i), D(105 + i), D(7 + i))
        for i in range(5)
    ]                                  # the last row is the still-forming candle
    venue.set_candles("BTC/USDT", "1h", rows)
    venue.gateway.load_markets()

    candles = venue.gateway.fetch_closed_candles("BTC/USDT", "1h", limit=10)

    assert [c.open_time_ms for c in candles] == [r[0] for r in rows[:4]]
    assert [(c.open, c.high, c.low, c.close, c.volume) for c in candles] == [r[1:] for r in rows[:4]]
    since = rows[2][0]
    later = venue.gateway.fetch_closed_candles("BTC/USDT", "1h", since_ms=since, limit=10)
    assert [c.open_time_ms for c in later] == [rows[2][0], rows[3][0]]
    assert [c.open_time_ms for c in venue.gateway.fetch_closed_candles("BTC/USDT", "1h", limit=2)] == \
        [rows[2][0], rows[3][0]]


def test_generated_candles_are_closed_and_ordered(venue):
    venue.gateway.load_markets()

    candles = venue.gateway.fetch_closed_candles("ETH/USDT", "15m", limit=5)

    assert len(candles) == 5
    now_ms = int(time.time() * 1000)
    assert all(c.open_time_ms + 15 * 60_000 <= now_ms for c in candles)
    assert [c.open_time_ms for c in candles] == sorted(c.open_time_ms for c in candles)
    assert all(c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close) for c in candles)


def test_ticker_shows_the_current_price(venue):
    venue.set_price("BTC/USDT", D("31234.56"))
    venue.gateway.load_markets()

    ticker = venue.gateway.fetch_ticker("BTC/USDT")

    assert ticker.symbol == "BTC/USDT"
    assert ticker.last == D("31234.56")
    assert ticker.bid is not None and ticker.ask is not None
    assert ticker.bid <= ticker.last <= ticker.ask
    assert abs(ticker.timestamp_ms - time.time() * 1000) < 60_000


def test_balances(venue):
    balances = venue.gateway.fetch_balances()

    assert balances["USDT"].free == D("100000")
    assert balances["USDT"].locked == 0
    assert balances["BTC"].total == D("1")


def test_market_buy_fills_and_moves_balances(venue):
    gw = venue.gateway
    gw.load_markets()

    created = gw.create_order(market("mb-1", Side.BUY, "0.01"))

    assert created.client_order_id == "mb-1"
    assert created.quantity == D("0.01")
    if venue.create_returns_fill_state:
        assert created.status is VenueOrderStatus.FILLED
    order = fetched(venue, "mb-1")
    assert order.status is VenueOrderStatus.FILLED
    assert order.type is OrderType.MARKET and order.side is Side.BUY
    assert order.filled_quantity == D("0.01")
    assert order.average_price == D("30000")
    assert order.venue_order_id == created.venue_order_id
    balances = gw.fetch_balances()
    assert balances["USDT"].free == D("100000") - D("300")
    assert balances["BTC"].free == D("1") + D("0.01") * (1 - venue.fee_rate)


def test_market_sell_fills_and_moves_balances(venue):
    gw = venue.gateway
    gw.load_markets()

    gw.create_order(market("ms-1", Side.SELL, "0.5", symbol="ETH/USDT"))

    order = fetched(venue, "ms-1", "ETH/USDT")
    assert order.status is VenueOrderStatus.FILLED
    assert order.filled_quantity == D("0.5")
    balances = gw.fetch_balances()
    assert balances["ETH"].free == D("9.5")
    assert balances["USDT"].free == D("100000") + D("1000") * (1 - venue.fee_rate)


def test_limit_order_rests_then_fills_when_price_crosses(venue):
    gw = venue.gateway
    gw.load_markets()

    created = gw.create_order(limit("lb-1", Side.BUY, "0.01", "29000"))

    assert created.status is VenueOrderStatus.OPEN
    resting = fetched(venue, "lb-1")
    assert resting.status is VenueOrderStatus.OPEN
    assert resting.price == D("29000") and resting.filled_quantity == 0
    assert gw.fetch_balances()["USDT"].locked == D("290")

    venue.set_price("BTC/USDT", D("28950"))

    filled = fetched(venue, "lb-1")
    assert filled.status is VenueOrderStatus.FILLED
    assert filled.filled_quantity == D("0.01")
    assert filled.average_price == D("29000")
    balances = gw.fetch_balances()
    assert balances["USDT"].locked == 0
    assert balances["USDT"].free == D("100000") - D("290")


def test_stop_order_rests_with_the_quantity_reserved_then_sells_when_the_price_falls_to_it(venue):
    gw = venue.gateway
    gw.load_markets()

    created = gw.create_order(stop("st-1", "0.1", "29000"))

    assert created.status is VenueOrderStatus.OPEN
    assert created.type is OrderType.STOP_MARKET and created.stop_price == D("29000")
    resting = fetched(venue, "st-1")
    assert resting.status is VenueOrderStatus.OPEN
    assert (resting.type, resting.side, resting.quantity) == (OrderType.STOP_MARKET, Side.SELL, D("0.1"))
    assert resting.stop_price == D("29000") and resting.price is None and resting.filled_quantity == 0
    assert [o.client_order_id for o in gw.fetch_open_orders("BTC/USDT")] == ["st-1"]
    assert gw.fetch_balances()["BTC"].locked == D("0.1")

    venue.set_price("BTC/USDT", D("29000.01"))         # above the stop: nothing happens
    assert fetched(venue, "st-1").status is VenueOrderStatus.OPEN
    venue.set_price("BTC/USDT", D("28900"))            # through it: a market sell at the price of the moment

    sold = fetched(venue, "st-1")
    assert sold.status is VenueOrderStatus.FILLED
    assert sold.type is OrderType.STOP_MARKET and sold.stop_price == D("29000")
    assert sold.filled_quantity == D("0.1") and sold.average_price == D("28900")
    assert gw.fetch_open_orders("BTC/USDT") == []
    balances = gw.fetch_balances()
    assert balances["BTC"].locked == 0 and balances["BTC"].free == D("0.9")
    assert balances["USDT"].free == D("100000") + D("2890") * (1 - venue.fee_rate)
    trades = [t for t in gw.fetch_my_trades("BTC/USDT") if t.venue_order_id == sold.venue_order_id]
    assert [(t.side, t.quantity, t.price) for t in trades] == [(Side.SELL, D("0.1"), D("28900"))]


def test_cancelling_a_stop_order_releases_what_it_reserved(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("sc-1", "0.2", "25000"))

    canceled = gw.cancel_order("BTC/USDT", "sc-1")

    assert canceled.status is VenueOrderStatus.CANCELED and canceled.client_order_id == "sc-1"
    after = fetched(venue, "sc-1")
    assert after.status is VenueOrderStatus.CANCELED and after.type is OrderType.STOP_MARKET
    assert gw.fetch_balances()["BTC"].locked == 0
    venue.set_price("BTC/USDT", D("24000"))            # a canceled stop never fires
    assert fetched(venue, "sc-1").filled_quantity == 0
    with pytest.raises(OrderNotFoundError):
        gw.cancel_order("BTC/USDT", "sc-1")


@pytest.mark.parametrize(("case", "request_args"), [
    ("at the market", ("sr-1", "0.1", "30000")),
    ("above the market", ("sr-2", "0.1", "31000")),
    ("a buy stop", ("sr-3", "0.1", "31000", "BTC/USDT", Side.BUY)),
    ("off the tick", ("sr-4", "0.1", "29000.005")),
    ("with a limit price", ("sr-5", "0.1", "29000", "BTC/USDT", Side.SELL, "28990")),
    ("without a stop price", ("sr-6", "0.1", "0")),
])
def test_stop_orders_a_venue_cannot_keep_are_refused_and_nothing_is_placed(venue, case, request_args):
    gw = venue.gateway
    gw.load_markets()

    with pytest.raises(RejectedError) as caught:
        gw.create_order(stop(*request_args))

    assert not isinstance(caught.value, InsufficientFundsError | DuplicateClientOrderIdError), case
    assert venue.venue_order_count(request_args[0]) == 0
    assert gw.fetch_balances()["BTC"].locked == 0


def test_a_stop_for_more_than_is_held_is_refused_for_funds(venue):
    gw = venue.gateway
    gw.load_markets()

    with pytest.raises(InsufficientFundsError):
        gw.create_order(stop("sf-1", "2", "29000"))                # 1 BTC held

    assert venue.venue_order_count("sf-1") == 0


def test_a_market_order_with_a_stop_price_is_refused(venue):
    gw = venue.gateway
    gw.load_markets()
    request = OrderRequest(client_order_id="sm-1", symbol="BTC/USDT", side=Side.SELL, type=OrderType.MARKET,
                           quantity=D("0.1"), stop_price=D("29000"))

    with pytest.raises(RejectedError):
        gw.create_order(request)

    assert venue.venue_order_count("sm-1") == 0


def test_fetch_order_by_unknown_client_id_is_none(venue):
    venue.gateway.load_markets()

    assert venue.gateway.fetch_order("BTC/USDT", "never-sent-1") is None


def test_cancel_by_client_id(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(limit("cx-1", Side.SELL, "0.1", "35000"))
    assert gw.fetch_balances()["BTC"].locked == D("0.1")

    canceled = gw.cancel_order("BTC/USDT", "cx-1")

    assert canceled.status is VenueOrderStatus.CANCELED
    assert canceled.client_order_id == "cx-1"
    assert fetched(venue, "cx-1").status is VenueOrderStatus.CANCELED
    assert gw.fetch_balances()["BTC"].locked == 0
    with pytest.raises(OrderNotFoundError):
        gw.cancel_order("BTC/USDT", "cx-1")
    with pytest.raises(OrderNotFoundError):
        gw.cancel_order("BTC/USDT", "never-sent-2")


def test_open_orders_lists_only_open_ones(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(limit("oo-1", Side.BUY, "0.01", "29000"))
    gw.create_order(limit("oo-2", Side.BUY, "0.01", "28000"))
    gw.create_order(limit("oo-3", Side.SELL, "0.01", "40000"))
    gw.cancel_order("BTC/USDT", "oo-3")
    venue.set_price("BTC/USDT", D("28999"))       # fills oo-1 only

    open_orders = gw.fetch_open_orders("BTC/USDT")

    assert [o.client_order_id for o in open_orders] == ["oo-2"]
    assert open_orders[0].status is VenueOrderStatus.OPEN
    assert gw.fetch_open_orders("ETH/USDT") == []


def test_my_trades_since_a_cursor(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(market("tr-1", Side.BUY, "0.01"))
    first = gw.fetch_my_trades("BTC/USDT")
    assert len(first) == 1
    cursor = first[-1].timestamp_ms + 1
    time.sleep(0.01)
    venue.set_price("BTC/USDT", D("30100"))
    gw.create_order(market("tr-2", Side.SELL, "0.005"))
    gw.create_order(market("tr-3", Side.BUY, "0.002"))

    later = gw.fetch_my_trades("BTC/USDT", since_ms=cursor)

    assert [(t.side, t.quantity, t.price) for t in later] == [
        (Side.SELL, D("0.005"), D("30100")), (Side.BUY, D("0.002"), D("30100")),
    ]
    assert all(t.timestamp_ms >= cursor for t in later)
    assert len({t.trade_id for t in first + later}) == 3
    assert later[0].fee == (D("0.005") * D("30100") * venue.fee_rate).quantize(D("0.00000001"))
    assert later[0].fee_asset == "USDT" and later[1].fee_asset == "BTC"
    orders = {o: fetched(venue, o).venue_order_id for o in ("tr-2", "tr-3")}
    assert [t.venue_order_id for t in later] == [orders["tr-2"], orders["tr-3"]]


def test_duplicate_client_id_is_refused_and_leaves_one_order(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(limit("dup-1", Side.BUY, "0.01", "29000"))

    with pytest.raises(DuplicateClientOrderIdError):
        gw.create_order(limit("dup-1", Side.BUY, "0.01", "29000"))

    assert venue.venue_order_count("dup-1") == 1
    assert len(gw.fetch_open_orders("BTC/USDT")) == 1


def test_duplicate_of_a_filled_order_is_refused(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(market("dup-2", Side.BUY, "0.001"))

    with pytest.raises(DuplicateClientOrderIdError):
        gw.create_order(market("dup-2", Side.BUY, "0.001"))

    assert venue.venue_order_count("dup-2") == 1


def test_insufficient_funds(venue):
    gw = venue.gateway
    gw.load_markets()

    with pytest.raises(InsufficientFundsError):
        gw.create_order(market("if-1", Side.BUY, "10"))          # 300k USDT needed, 100k held
    with pytest.raises(InsufficientFundsError):
        gw.create_order(limit("if-2", Side.SELL, "2", "31000"))  # 1 BTC held

    assert venue.venue_order_count("if-1") == 0
    assert gw.fetch_balances()["USDT"].free == D("100000")


def test_below_min_notional_is_rejected(venue):
    gw = venue.gateway
    gw.load_markets()

    with pytest.raises(RejectedError) as caught:
        gw.create_order(limit("mn-1", Side.BUY, "0.0001", "29000"))     # 2.9 USDT < 5

    assert not isinstance(caught.value, InsufficientFundsError | DuplicateClientOrderIdError)
    assert gw.fetch_order("BTC/USDT", "mn-1") is None


def test_quantity_off_the_lot_step_is_refused_before_sending(venue):
    gw = venue.gateway
    gw.load_markets()

    with pytest.raises(RejectedError):
        gw.create_order(market("ls-1", Side.BUY, "0.000015"))

    assert venue.venue_order_count("ls-1") == 0


def test_server_time_is_close_to_ours(venue):
    assert abs(venue.gateway.server_time_ms() - time.time() * 1000) < 5_000
