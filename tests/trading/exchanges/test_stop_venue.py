"""Protective stops kept on the venue (issue 14), the venue side: moving a resting stop in place,
a stop the market gaps through, symbols without stops and halted symbols. Same tests on every
venue that has the behaviour (paper in PostgreSQL; Binance and Bybit through ccxt + emulator)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from emulator.control import ControlRequestError
from tests.trading.exchanges.conftest import make_gateway
from tests.trading.exchanges.test_emulator import bybit_signed
from trading.exchanges.base import OrderRequest, OrderType, Side, VenueOrder, VenueOrderStatus
from trading.exchanges.errors import (
    OrderNotFoundError,
    OutcomeUnknownError,
    RejectedError,
    StopReplaceHalfDoneError,
)
from trading.exchanges.ratelimit import RateLimitHeldBackError, SharedRateLimiter, rate_limit_state

D = Decimal
AMENDING = ["bybit", "paper"]          # the venues that move a stop in place
EMULATED = ["binance", "bybit"]        # the venues whose market conditions a test can change


def stop(client_id: str, qty: str, stop_price: str, symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(client_order_id=client_id, symbol=symbol, side=Side.SELL, type=OrderType.STOP_MARKET,
                        quantity=D(qty), stop_price=D(stop_price))


def fetched(venue, client_id: str, symbol: str = "BTC/USDT") -> VenueOrder:
    order = venue.gateway.fetch_order(symbol, client_id)
    assert order is not None, f"venue has no order {client_id}"
    return order


# ---------------------------------------------------------------------- moving a stop in place
@pytest.mark.parametrize("venue", AMENDING, indirect=True)
def test_a_resting_stop_moves_up_in_place_and_then_fires_at_its_new_trigger(venue):
    gw = venue.gateway
    gw.load_markets()
    placed = gw.create_order(stop("pst-1", "0.1", "29000"))

    moved = gw.amend_stop("BTC/USDT", "pst-1", D("29500"))

    assert gw.amends_stops is True
    assert (moved.client_order_id, moved.venue_order_id) == ("pst-1", placed.venue_order_id)
    assert (moved.type, moved.side, moved.status) == (OrderType.STOP_MARKET, Side.SELL, VenueOrderStatus.OPEN)
    assert moved.stop_price == D("29500") and moved.quantity == D("0.1") and moved.filled_quantity == 0
    resting = gw.fetch_open_orders("BTC/USDT")
    assert [(o.client_order_id, o.stop_price, o.quantity) for o in resting] == [("pst-1", D("29500"), D("0.1"))]
    assert venue.venue_order_count("pst-1") == 1              # moved, not replaced
    assert gw.fetch_balances()["BTC"].locked == D("0.1")      # the same reservation

    venue.set_price("BTC/USDT", D("29400"))                   # below the new trigger, above the old one

    sold = fetched(venue, "pst-1")
    assert sold.status is VenueOrderStatus.FILLED and sold.stop_price == D("29500")
    assert sold.filled_quantity == D("0.1") and sold.average_price == D("29400")
    assert gw.fetch_open_orders("BTC/USDT") == []


@pytest.mark.parametrize("venue", AMENDING, indirect=True)
def test_amending_a_stop_that_is_no_longer_resting_is_order_not_found(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("pnf-1", "0.1", "29000"))
    gw.create_order(stop("pnf-2", "0.1", "25000"))
    gw.cancel_order("BTC/USDT", "pnf-2")
    venue.set_price("BTC/USDT", D("28000"))                   # pnf-1 fires

    assert fetched(venue, "pnf-1").status is VenueOrderStatus.FILLED
    for client_id in ("pnf-1", "pnf-2", "never-placed-1"):
        with pytest.raises(OrderNotFoundError):
            gw.amend_stop("BTC/USDT", client_id, D("27000"))   # a valid trigger below the market
    assert fetched(venue, "pnf-1").stop_price == D("29000")
    assert fetched(venue, "pnf-2").status is VenueOrderStatus.CANCELED
    assert gw.fetch_balances()["BTC"].locked == 0


@pytest.mark.parametrize("venue", AMENDING, indirect=True)
@pytest.mark.parametrize(("case", "new_stop"), [
    ("at the market", "30000"),
    ("above the market", "30500"),
    ("off the tick", "29500.005"),
    ("not positive", "0"),
])
def test_a_stop_cannot_be_moved_where_it_could_not_be_placed(venue, case, new_stop):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("prj-1", "0.1", "29000"))

    with pytest.raises(RejectedError) as caught:
        gw.amend_stop("BTC/USDT", "prj-1", D(new_stop))

    assert not isinstance(caught.value, OrderNotFoundError), case
    resting = fetched(venue, "prj-1")
    assert (resting.status, resting.stop_price) == (VenueOrderStatus.OPEN, D("29000")), case


@pytest.mark.parametrize("venue", ["binance"], indirect=True)
def test_binance_does_not_move_stops_in_place(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("bst-1", "0.1", "29000"))
    venue.control.clear_requests()

    with pytest.raises(NotImplementedError, match="replace_stop"):
        gw.amend_stop("BTC/USDT", "bst-1", D("29500"))

    assert gw.amends_stops is False
    assert venue.control.requests() == []                     # nothing was sent
    assert fetched(venue, "bst-1").stop_price == D("29000")


# ---------------------------------------------------------------------- Binance: cancel-replace in one request
@pytest.mark.parametrize("venue", ["binance"], indirect=True)
def test_binance_replaces_a_stop_by_a_higher_one_in_one_request(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("brp-0", "0.1", "29000"))
    venue.control.clear_requests()

    done = gw.replace_stop("BTC/USDT", "brp-0", stop("brp-1", "0.1", "29500"))

    assert gw.replaces_stops is True
    assert [r["path"] for r in venue.control.requests()] == ["/api/v3/order/cancelReplace"]
    assert (done.canceled.client_order_id, done.canceled.status) == ("brp-0", VenueOrderStatus.CANCELED)
    assert (done.placed.client_order_id, done.placed.status, done.placed.stop_price) == \
        ("brp-1", VenueOrderStatus.OPEN, D("29500"))
    resting = gw.fetch_open_orders("BTC/USDT")
    assert [(o.client_order_id, o.stop_price) for o in resting] == [("brp-1", D("29500"))]   # never two
    assert gw.fetch_balances()["BTC"].locked == D("0.1")
    venue.set_price("BTC/USDT", D("29400"))
    assert fetched(venue, "brp-1").status is VenueOrderStatus.FILLED


@pytest.mark.parametrize("venue", ["binance"], indirect=True)
def test_binance_replace_of_a_stop_that_already_fired_places_nothing(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("brf-0", "0.1", "29000"))
    venue.set_price("BTC/USDT", D("28900"))                   # it fires
    venue.set_price("BTC/USDT", D("30000"))

    with pytest.raises(OrderNotFoundError, match="not open"):
        gw.replace_stop("BTC/USDT", "brf-0", stop("brf-1", "0.1", "29500"))

    assert gw.fetch_order("BTC/USDT", "brf-1") is None
    assert fetched(venue, "brf-0").status is VenueOrderStatus.FILLED


@pytest.mark.parametrize("venue", ["binance"], indirect=True)
def test_binance_replace_that_breaks_a_filter_changes_nothing(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("brx-0", "0.1", "29000"))
    venue.control.clear_requests()
    # Off the lot step: Binance checks filters before it cancels anything.
    with pytest.raises(RejectedError) as refused:
        gw._call("replace_stop", lambda: gw._ex.privatePostOrderCancelReplace({
            "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "cancelReplaceMode": "STOP_ON_FAILURE",
            "cancelOrigClientOrderId": "brx-0", "newClientOrderId": "brx-1", "quantity": "0.1000001",
            "stopPrice": "29500"}), write=True)
    assert refused.value.code == "-1013"
    assert [(o.client_order_id, o.stop_price) for o in gw.fetch_open_orders("BTC/USDT")] == [("brx-0", D("29000"))]


@pytest.mark.parametrize("venue", ["binance"], indirect=True)
def test_binance_replace_whose_new_half_is_refused_leaves_the_old_stop_canceled_and_says_so(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("brh-0", "0.1", "29000"))
    venue.control.set_market("BTC/USDT", halted=True)          # the matching engine refuses the new order

    with pytest.raises(StopReplaceHalfDoneError, match="Market is closed") as half:
        gw.replace_stop("BTC/USDT", "brh-0", stop("brh-1", "0.1", "29500"))

    assert half.value.canceled is not None and half.value.canceled.client_order_id == "brh-0"
    assert fetched(venue, "brh-0").status is VenueOrderStatus.CANCELED
    assert gw.fetch_order("BTC/USDT", "brh-1") is None
    assert gw.fetch_open_orders("BTC/USDT") == []


@pytest.mark.parametrize("venue", ["bybit"], indirect=True)
def test_an_amend_whose_answer_is_lost_is_an_unknown_outcome_and_the_venue_has_the_new_trigger(venue):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("bdr-1", "0.1", "29000"))
    venue.control.add_fault({"method": "POST", "path": "/v5/order/amend", "times": 1,
                             "action": "accept_then_drop"})

    with pytest.raises(OutcomeUnknownError):
        gw.amend_stop("BTC/USDT", "bdr-1", D("29500"))

    assert fetched(venue, "bdr-1").stop_price == D("29500")   # resolved by asking, as for any write
    assert venue.venue_order_count("bdr-1") == 1


# ---------------------------------------------------------------------- the market moves through a stop
@pytest.mark.parametrize(("gap_price", "case"), [("28999.99", "one tick through"), ("25000", "a gap")])
def test_a_price_that_falls_through_a_stop_sells_at_that_price_with_a_fee(venue, gap_price, case):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("gap-1", "0.1", "29000"))

    venue.set_price("BTC/USDT", D(gap_price))

    sold = fetched(venue, "gap-1")
    price = D(gap_price)
    assert sold.status is VenueOrderStatus.FILLED, case
    assert (sold.type, sold.stop_price) == (OrderType.STOP_MARKET, D("29000"))
    assert sold.filled_quantity == D("0.1") and sold.average_price == price     # the market, not the stop
    trades = [t for t in gw.fetch_my_trades("BTC/USDT") if t.venue_order_id == sold.venue_order_id]
    fee = (D("0.1") * price * venue.fee_rate).quantize(D("0.00000001"))
    assert [(t.side, t.quantity, t.price, t.fee, t.fee_asset) for t in trades] == [
        (Side.SELL, D("0.1"), price, fee, "USDT")]
    balances = gw.fetch_balances()
    assert balances["BTC"].total == D("0.9") and balances["BTC"].locked == 0
    assert balances["USDT"].free == D("100000") + D("0.1") * price - fee
    assert gw.fetch_open_orders("BTC/USDT") == []


# ---------------------------------------------------------------------- symbols without stops, halted symbols
def test_every_symbol_offers_stops_by_default(venue):
    rules = venue.gateway.load_markets()

    assert all(rules[symbol].stop_orders for symbol in ("BTC/USDT", "ETH/USDT"))


@pytest.mark.parametrize("venue", ["binance"], indirect=True)
def test_binance_rules_follow_the_order_types_it_lists_and_a_stop_is_refused_where_it_has_none(venue):
    gw = venue.gateway
    gw.load_markets()
    venue.control.set_market("ETH/USDT", stop_orders=False)

    # A gateway whose rules predate the change sends, and the venue refuses with its own words.
    with pytest.raises(RejectedError) as by_venue:
        gw.create_order(stop("nst-1", "1", "1900", symbol="ETH/USDT"))
    assert by_venue.value.code == "-2010"
    assert "Stop loss orders are not supported for this symbol." in str(by_venue.value)

    rules = gw.load_markets()
    assert rules["ETH/USDT"].stop_orders is False and rules["BTC/USDT"].stop_orders is True
    venue.control.clear_requests()
    with pytest.raises(RejectedError) as by_us:              # with fresh rules: refused before sending
        gw.create_order(stop("nst-2", "1", "1900", symbol="ETH/USDT"))
    assert by_us.value.code == "stop_orders" and "ETH/USDT" in str(by_us.value)
    assert venue.control.requests(path="/api/v3/order") == []
    assert venue.venue_order_count("nst-1") == venue.venue_order_count("nst-2") == 0
    assert gw.fetch_balances()["ETH"].locked == 0
    gw.create_order(stop("nst-3", "0.1", "29000"))          # other symbols keep theirs
    assert fetched(venue, "nst-3").status is VenueOrderStatus.OPEN


@pytest.mark.parametrize("venue", ["bybit"], indirect=True)
def test_bybit_refuses_a_conditional_order_on_a_symbol_without_them(venue):
    gw = venue.gateway
    venue.control.set_market("ETH/USDT", stop_orders=False)

    assert gw.load_markets()["ETH/USDT"].stop_orders is True  # Bybit's instrument list cannot say so
    with pytest.raises(RejectedError) as caught:
        gw.create_order(stop("nsb-1", "1", "1900", symbol="ETH/USDT"))

    assert caught.value.code == "170227" and "This feature is not supported." in str(caught.value)
    assert venue.venue_order_count("nsb-1") == 0
    assert gw.fetch_balances()["ETH"].locked == 0


@pytest.mark.parametrize(("venue", "code", "words"), [
    ("binance", "-2010", "Market is closed."),
    ("bybit", "170151", "The trading pair is not open yet"),
], indirect=["venue"])
def test_a_halted_symbol_refuses_new_stops_and_trades_nothing_until_trading_resumes(venue, code, words):
    gw = venue.gateway
    gw.load_markets()
    gw.create_order(stop("hlt-1", "0.1", "29000"))
    venue.control.set_market("BTC/USDT", halted=True)

    with pytest.raises(RejectedError) as caught:
        gw.create_order(stop("hlt-2", "0.1", "28000"))
    assert caught.value.code == code and words in str(caught.value)
    assert venue.venue_order_count("hlt-2") == 0
    if gw.amends_stops:
        with pytest.raises(RejectedError) as amend:
            gw.amend_stop("BTC/USDT", "hlt-1", D("29500"))
        assert amend.value.code == code and not isinstance(amend.value, OrderNotFoundError)

    venue.set_price("BTC/USDT", D("28500"))                   # through the stop, but nothing trades
    halted = fetched(venue, "hlt-1")
    assert (halted.status, halted.stop_price) == (VenueOrderStatus.OPEN, D("29000"))
    assert venue.gateway.load_markets()["BTC/USDT"].stop_orders is True

    venue.control.set_market("BTC/USDT", halted=False)        # resumes at the price of the moment
    resumed = fetched(venue, "hlt-1")
    assert resumed.status is VenueOrderStatus.FILLED and resumed.average_price == D("28500")
    gw.create_order(stop("hlt-3", "0.1", "28000"))
    assert fetched(venue, "hlt-3").status is VenueOrderStatus.OPEN


# ---------------------------------------------------------------------- the shared rate budget
def test_stop_moves_spend_their_own_endpoint_budget_not_the_one_entries_and_exits_use(control_for, redis_client):
    handle, _ = control_for("bybit")
    limiter = SharedRateLimiter("bybit", "stop-moves", budget_fraction=1.0, max_wait_s=0)
    gw = make_gateway(handle, rate_limiter=limiter)
    gw.load_markets()
    gw.create_order(stop("rl-1", "0.1", "29000"))

    gw.amend_stop("BTC/USDT", "rl-1", D("29100"))

    budgets = rate_limit_state("bybit", api_key="stop-moves")["accounts"][0]["budgets"]
    assert budgets["endpoint:/v5/order/amend"]["used"] == 1
    assert budgets["endpoint:/v5/order/create"]["used"] == 1
    # A burst of stop moves uses up the amend budget (Bybit's 20/s) and nothing else.
    burst = 0
    with pytest.raises(RateLimitHeldBackError):
        while burst < 100:
            limiter.acquire_request("POST", "/v5/order/amend", 1)
            burst += 1
    assert 1 <= burst <= 19
    with pytest.raises(RateLimitHeldBackError):
        gw.amend_stop("BTC/USDT", "rl-1", D("29200"))
    assert gw.fetch_order("BTC/USDT", "rl-1").stop_price == D("29100")   # the refused move never left
    limiter.acquire_request("POST", "/v5/order/create", 1)
    limiter.acquire_request("POST", "/v5/order/cancel", 1)


# ---------------------------------------------------------------------- Bybit order/amend on the wire
def _conditional(link_id: str, trigger: str) -> dict:
    return {"category": "spot", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.1",
            "marketUnit": "baseCoin", "orderFilter": "StopOrder", "triggerPrice": trigger, "orderLinkId": link_id}


@pytest.mark.parametrize("emulator", ["bybit"], indirect=True)
def test_bybit_amend_answers_with_ids_and_moves_the_trigger(emulator, control):
    base = emulator.base_url
    created = bybit_signed(base, "POST", "/v5/order/create", _conditional("wa-1", "29000")).json()

    amend = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "wa-1", "triggerPrice": "29400"}
    answer = bybit_signed(base, "POST", "/v5/order/amend", amend).json()

    assert answer["retCode"] == 0
    assert answer["result"] == {"orderId": created["result"]["orderId"], "orderLinkId": "wa-1"}
    row = bybit_signed(base, "GET", "/v5/order/realtime",
                       {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "wa-1"}).json()["result"]["list"][0]
    assert (row["triggerPrice"], row["orderStatus"], row["qty"], row["triggerDirection"]) == \
        ("29400", "Untriggered", "0.1", 2)
    assert control.request_count("/v5/order/amend") == 1


@pytest.mark.parametrize("emulator", ["bybit"], indirect=True)
@pytest.mark.parametrize(("case", "link_id", "trigger", "code", "words"), [
    ("unknown order", "wr-none", "28500", 170213, "Order does not exist."),
    ("filled order", "wr-filled", "28500", 170139, "Order has been filled."),
    ("canceled order", "wr-canceled", "28500", 170142, "Order has been canceled"),
    ("at the market", "wr-open", "29000", 110093, "expect Falling, but trigger_price[29000] >= current[29000]"),
    ("above the market", "wr-open", "31000", 110093, "expect Falling"),
    ("off the tick", "wr-open", "28500.005", 170134, "Order price decimal too long."),
    ("a quantity change", "wr-open", "28500", 10001, "amending qty is not emulated"),
])
def test_bybit_amend_refusals_carry_bybits_codes(emulator, control, case, link_id, trigger, code, words):
    base = emulator.base_url
    for placed, placed_trigger in (("wr-filled", "29500"), ("wr-canceled", "28000"), ("wr-open", "28000")):
        created = bybit_signed(base, "POST", "/v5/order/create", _conditional(placed, placed_trigger)).json()
        assert created["retCode"] == 0
    cancel = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "wr-canceled", "orderFilter": "StopOrder"}
    assert bybit_signed(base, "POST", "/v5/order/cancel", cancel).json()["retCode"] == 0
    control.set_price("BTC/USDT", "29000")                     # wr-filled fires, wr-open keeps resting
    amend = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": link_id, "triggerPrice": trigger}
    if case == "a quantity change":
        amend["qty"] = "0.2"

    answer = bybit_signed(base, "POST", "/v5/order/amend", amend).json()

    assert (answer["retCode"], answer["result"]) == (code, {}), case
    assert words in answer["retMsg"], case
    still = [o for o in control.orders(client_id="wr-open")]
    assert (still[0]["status"], still[0]["stop_price"]) == ("new", "28000"), case


@pytest.mark.parametrize("emulator", ["binance"], indirect=True)
def test_the_market_control_refuses_what_it_does_not_know(emulator, control):
    url = f"{emulator.base_url}/__control/market"
    not_a_boolean = requests.post(url, json={"symbol": "BTC/USDT", "halted": "yes"}, timeout=5)
    assert not_a_boolean.status_code == 400 and "halted must be a boolean" in not_a_boolean.json()["error"]
    unknown = requests.post(url, json={"symbol": "BTC/USDT", "paused": True}, timeout=5)
    assert unknown.status_code == 400 and "unknown market field(s) ['paused']" in unknown.json()["error"]
    with pytest.raises(ControlRequestError):
        control.set_market("NOPE/USDT", halted=True)

    control.set_market("BTC/USDT", stop_orders=False)

    assert control.state()["markets"]["BTC/USDT"] == {"stop_orders": False, "halted": False}
