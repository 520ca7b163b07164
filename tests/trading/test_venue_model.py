"""The in-memory venue model (tests/support/venue_model.py): one short test per modelled
behaviour. No database; time is a manual clock so every test is instant and deterministic."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from tests.support.venue_model import ModelVenue
from trading.exchanges.base import OrderRequest, OrderType, Side, VenueOrderStatus
from trading.exchanges.errors import (
    DuplicateClientOrderIdError,
    InsufficientFundsError,
    OrderNotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RateLimitHeldBackError,
    RejectedError,
)

D = Decimal
T0 = 1_700_000_000.0


class ManualClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make(clock: ManualClock, name: str = "binance", **kw) -> ModelVenue:
    kw.setdefault("balances", {"USDT": D("100000"), "BTC": D("1"), "BNB": D("10")})
    kw.setdefault("prices", {"BTC/USDT": D("30000"), "ETH/USDT": D("2000"), "SOL/USDT": D("100"),
                             "BNB/USDT": D("300")})
    return ModelVenue(name, clock=clock, sleep=clock.advance, **kw)


def market(cid: str, side: Side = Side.BUY, qty: str = "0.01", symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol=symbol, side=side, type=OrderType.MARKET, quantity=D(qty))


def limit(cid: str, price: str, side: Side = Side.BUY, qty: str = "0.01") -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol="BTC/USDT", side=side, type=OrderType.LIMIT, quantity=D(qty),
                        price=D(price))


def stop(cid: str, stop_price: str, qty: str = "0.01") -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol="BTC/USDT", side=Side.SELL, type=OrderType.STOP_MARKET,
                        quantity=D(qty), stop_price=D(stop_price))


# --- client ids ---------------------------------------------------------------------------------

def test_binance_reuses_an_id_once_its_order_is_filled_creating_a_second_order(clock):
    venue = make(clock)
    first = venue.create_order(market("cid-1"))
    assert first.status is VenueOrderStatus.FILLED
    second = venue.create_order(market("cid-1"))           # the blind re-send
    assert second.venue_order_id != first.venue_order_id
    assert venue.orders_with_client_id("cid-1") == 2
    assert venue.fetch_order("BTC/USDT", "cid-1").venue_order_id == second.venue_order_id
    assert venue.balances()["BTC"].total == D("1") + 2 * (D("0.01") - D("0.00001"))


def test_binance_refuses_an_id_while_its_order_is_open_and_accepts_it_after_cancel(clock):
    venue = make(clock)
    venue.create_order(limit("cid-1", "29000"))
    with pytest.raises(DuplicateClientOrderIdError) as caught:
        venue.create_order(limit("cid-1", "29000"))
    assert caught.value.code == "-2010"
    venue.cancel_order("BTC/USDT", "cid-1")
    venue.create_order(limit("cid-1", "29000"))
    assert venue.orders_with_client_id("cid-1") == 2


def test_bybit_never_reuses_an_id(clock):
    venue = make(clock, "bybit")
    venue.create_order(market("cid-1"))
    with pytest.raises(DuplicateClientOrderIdError) as caught:
        venue.create_order(market("cid-1"))
    assert caught.value.code == "170141"
    assert venue.orders_with_client_id("cid-1") == 1
    assert len(venue.all_orders()) == 1


def test_bybit_answers_a_create_with_ids_only(clock):
    venue = make(clock, "bybit")
    answer = venue.create_order(market("cid-1"))
    assert (answer.status, answer.filled_quantity) == (VenueOrderStatus.OPEN, 0)
    assert venue.fetch_order("BTC/USDT", "cid-1").status is VenueOrderStatus.FILLED


def test_concurrent_sends_of_one_id_make_one_bybit_order(clock):
    venue = make(clock, "bybit")
    outcomes: list[str] = []

    def send() -> None:
        try:
            venue.create_order(market("cid-race"))
            outcomes.append("placed")
        except DuplicateClientOrderIdError:
            outcomes.append("duplicate")

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["duplicate"] * 7 + ["placed"]
    assert venue.orders_with_client_id("cid-race") == 1


def test_binance_trades_carry_no_client_id_and_bybit_trades_do(clock):
    for name, expected in (("binance", None), ("bybit", "cid-1")):
        venue = make(clock, name)
        order = venue.create_order(market("cid-1"))
        [trade] = venue.fetch_my_trades("BTC/USDT")
        assert trade.client_order_id == expected
        assert trade.venue_order_id == order.venue_order_id
        assert trade.raw["order_client_id"] == "cid-1"


# --- unknown outcomes ---------------------------------------------------------------------------

def test_late_order_is_invisible_until_its_time_then_appears_filled_at_that_moment(clock):
    venue = make(clock)
    venue.script_next_create("late", delay_s=0.3)
    with pytest.raises(OutcomeUnknownError) as caught:
        venue.create_order(market("cid-1"))
    assert caught.value.code == "-1007"
    assert venue.fetch_order("BTC/USDT", "cid-1") is None
    assert venue.fetch_open_orders("BTC/USDT") == []
    assert venue.fetch_my_trades("BTC/USDT") == []
    with pytest.raises(OrderNotFoundError):
        venue.cancel_order("BTC/USDT", "cid-1")
    clock.advance(0.1)
    venue.set_price("BTC/USDT", D("31000"))                 # the price of the moment it lands
    clock.advance(0.25)
    order = venue.fetch_order("BTC/USDT", "cid-1")
    assert order.status is VenueOrderStatus.FILLED
    assert order.average_price == D("31000")
    [trade] = venue.fetch_my_trades("BTC/USDT")
    assert trade.timestamp_ms == int((T0 + 0.3) * 1000)     # processed at send + delay
    assert venue.settles_at() is None


def test_late_order_lands_after_a_resend_filled_so_binance_ends_with_two_orders(clock):
    venue = make(clock)
    venue.script_next_create("late", delay_s=0.5)
    with pytest.raises(OutcomeUnknownError):
        venue.create_order(market("cid-1"))
    venue.create_order(market("cid-1"))                     # resolution saw nothing and re-sent
    assert venue.settles_at() == pytest.approx(T0 + 0.5)
    clock.advance(0.5)
    assert venue.orders_with_client_id("cid-1") == 2


def test_late_slow_send_takes_its_time(clock):
    venue = make(clock)
    venue.script_next_create("late", delay_s=1.0, slow_s=0.2)
    with pytest.raises(OutcomeUnknownError):
        venue.create_order(market("cid-1"))
    assert clock.now == pytest.approx(T0 + 0.2)
    assert venue.fetch_order("BTC/USDT", "cid-1") is None


def test_timeout_after_processes_the_order(clock):
    venue = make(clock)
    venue.script_next_create("timeout_after")
    with pytest.raises(OutcomeUnknownError):
        venue.create_order(market("cid-1"))
    assert venue.fetch_order("BTC/USDT", "cid-1").status is VenueOrderStatus.FILLED


@pytest.mark.parametrize("kind", ["timeout_before", "never"])
def test_timeout_before_and_never_place_nothing(clock, kind):
    venue = make(clock)
    venue.script_next_create(kind)
    with pytest.raises(OutcomeUnknownError):
        venue.create_order(market("cid-1"))
    clock.advance(3600)
    assert venue.fetch_order("BTC/USDT", "cid-1") is None
    assert venue.orders_with_client_id("cid-1") == 0


def test_scripts_are_consumed_one_per_create_in_order(clock):
    venue = make(clock)
    venue.script_next_create("timeout_before")
    venue.script_next_create("reject", code="-2010", message="New order rejected.")
    with pytest.raises(OutcomeUnknownError):
        venue.create_order(market("a"))
    with pytest.raises(RejectedError) as caught:
        venue.create_order(market("b"))
    assert caught.value.code == "-2010"
    venue.create_order(market("c"))
    assert [o.client_order_id for o in venue.all_orders()] == ["c"]


# --- rate limits ----------------------------------------------------------------------------------

def test_held_back_and_rate_limited_place_nothing(clock):
    venue = make(clock)
    venue.script_next_create("held_back")
    venue.script_next_create("rate_limited", retry_after_s=2.0)
    with pytest.raises(RateLimitHeldBackError):
        venue.create_order(market("cid-1"))
    with pytest.raises(RateLimitedError) as caught:
        venue.create_order(market("cid-1"))
    assert not isinstance(caught.value, RateLimitHeldBackError)
    assert caught.value.retry_after_s == 2.0
    assert venue.all_orders() == []


def test_ban_refuses_every_call_until_it_ends(clock):
    venue = make(clock)
    venue.script_next_create("ban", for_s=60)
    with pytest.raises(RateLimitedError) as caught:
        venue.create_order(market("cid-1"))
    assert caught.value.banned
    clock.advance(30)
    for call in (lambda: venue.fetch_ticker("BTC/USDT"), venue.fetch_balances,
                 lambda: venue.fetch_order("BTC/USDT", "cid-1"), lambda: venue.create_order(market("cid-2"))):
        with pytest.raises(RateLimitedError) as caught:
            call()
        assert caught.value.banned and caught.value.retry_after_s == pytest.approx(30)
    clock.advance(30)
    venue.create_order(market("cid-2"))
    assert [o.client_order_id for o in venue.all_orders()] == ["cid-2"]


# --- partial fills ------------------------------------------------------------------------------

@pytest.mark.parametrize(("rest", "status"), [("expired", VenueOrderStatus.EXPIRED),
                                              ("canceled", VenueOrderStatus.CANCELED)])
def test_partial_market_fill_then_the_rest_ends(clock, rest, status):
    venue = make(clock)
    venue.script_next_create("partial", fraction=0.4, rest=rest)
    answer = venue.create_order(market("cid-1", qty="0.01"))
    assert (answer.status, answer.filled_quantity) == (status, D("0.004"))
    [trade] = venue.fetch_my_trades("BTC/USDT")
    assert trade.quantity == D("0.004")
    usdt = venue.balances()["USDT"]
    assert (usdt.free, usdt.locked) == (D("100000") - D("120"), 0)


def test_partial_limit_fill_keeps_resting_and_fills_later(clock):
    venue = make(clock)
    venue.script_next_create("partial", fraction=0.5)
    venue.create_order(limit("cid-1", "29000", qty="0.01"))
    venue.set_price("BTC/USDT", D("29000"))
    order = venue.fetch_order("BTC/USDT", "cid-1")
    assert (order.status, order.filled_quantity) == (VenueOrderStatus.PARTIALLY_FILLED, D("0.005"))
    assert venue.balances()["USDT"].locked == D("145")
    venue.set_price("BTC/USDT", D("28900"))
    order = venue.fetch_order("BTC/USDT", "cid-1")
    assert (order.status, order.average_price) == (VenueOrderStatus.FILLED, D("29000"))
    assert venue.balances()["USDT"].locked == 0


# --- order types and balances -------------------------------------------------------------------

def test_limit_rests_fills_on_cross_and_cancel_releases(clock):
    venue = make(clock)
    venue.create_order(limit("buy-1", "29000"))
    venue.create_order(limit("buy-2", "28000"))
    assert venue.balances()["USDT"].locked == D("570")
    venue.set_price("BTC/USDT", D("28999"))
    assert venue.fetch_order("BTC/USDT", "buy-1").status is VenueOrderStatus.FILLED
    assert [o.client_order_id for o in venue.fetch_open_orders("BTC/USDT")] == ["buy-2"]
    canceled = venue.cancel_order("BTC/USDT", "buy-2")
    assert canceled.status is VenueOrderStatus.CANCELED
    assert venue.balances()["USDT"].locked == 0
    with pytest.raises(OrderNotFoundError):
        venue.cancel_order("BTC/USDT", "buy-2")
    with pytest.raises(OrderNotFoundError):
        venue.cancel_order("BTC/USDT", "buy-1")              # filled: no OPEN order with the id


def test_stop_rests_with_base_reserved_and_fires_as_market(clock):
    venue = make(clock)
    venue.create_order(stop("stop-1", "29000", qty="0.5"))
    btc = venue.balances()["BTC"]
    assert (btc.free, btc.locked) == (D("0.5"), D("0.5"))
    venue.set_price("BTC/USDT", D("29500"))
    assert venue.fetch_order("BTC/USDT", "stop-1").status is VenueOrderStatus.OPEN
    venue.set_price("BTC/USDT", D("28800"))                # gaps through the stop
    order = venue.fetch_order("BTC/USDT", "stop-1")
    assert (order.status, order.average_price) == (VenueOrderStatus.FILLED, D("28800"))
    assert venue.balances()["BTC"].total == D("0.5")


def test_stop_at_or_above_market_is_refused(clock):
    venue = make(clock)
    with pytest.raises(RejectedError, match="would trigger immediately"):
        venue.create_order(stop("stop-1", "30000"))
    assert venue.all_orders() == []


def test_insufficient_funds(clock):
    venue = make(clock, balances={"USDT": D("100")})
    with pytest.raises(InsufficientFundsError):
        venue.create_order(market("cid-1", qty="0.01"))
    with pytest.raises(InsufficientFundsError):
        venue.create_order(market("cid-2", side=Side.SELL))
    assert venue.all_orders() == []


# --- fees ---------------------------------------------------------------------------------------

def test_default_fees_are_in_the_asset_received_and_quote_mode_in_quote(clock):
    venue = make(clock)
    venue.create_order(market("buy-1"))
    venue.create_order(market("sell-1", side=Side.SELL))
    venue.set_fee_mode("quote")
    venue.create_order(market("buy-2"))
    fees = [(t.fee, t.fee_asset) for t in venue.fetch_my_trades("BTC/USDT")]
    assert fees == [(D("0.00001"), "BTC"), (D("0.3"), "USDT"), (D("0.3"), "USDT")]


def test_bnb_fee_debits_bnb(clock):
    venue = make(clock)
    venue.set_fee_mode("BNB")
    venue.create_order(market("cid-1", qty="0.01"))         # notional 300 -> fee 0.3 USDT = 0.001 BNB
    [trade] = venue.fetch_my_trades("BTC/USDT")
    assert (trade.fee, trade.fee_asset) == (D("0.001"), "BNB")
    balances = venue.balances()
    assert balances["BNB"].free == D("9.999")
    assert balances["BTC"].free == D("1.01")                # the bought asset arrives whole
    assert balances["USDT"].free == D("99700")


# --- trade visibility ---------------------------------------------------------------------------

def test_trade_visibility_delay_hides_trades_while_the_order_shows_the_fill(clock):
    venue = make(clock)
    venue.create_order(market("early"))
    cursor = venue.fetch_my_trades("BTC/USDT")[-1].timestamp_ms
    clock.advance(1)
    venue.script_trade_visibility_delay(2.0)
    venue.create_order(market("cid-1"))
    order = venue.fetch_order("BTC/USDT", "cid-1")
    assert (order.status, order.filled_quantity) == (VenueOrderStatus.FILLED, D("0.01"))
    assert [t.raw["order_client_id"] for t in venue.fetch_my_trades("BTC/USDT")] == ["early"]
    clock.advance(1)
    venue.create_order(market("later"))                     # the next order is not delayed
    seen = venue.fetch_my_trades("BTC/USDT", since_ms=cursor + 1)
    assert [t.raw["order_client_id"] for t in seen] == ["later"]
    cursor = seen[-1].timestamp_ms
    clock.advance(1.5)
    late = venue.fetch_my_trades("BTC/USDT", since_ms=0)
    assert [t.raw["order_client_id"] for t in late] == ["early", "cid-1", "later"]
    assert late[1].timestamp_ms == int((T0 + 1) * 1000)    # its execution time, in the past
    assert venue.fetch_my_trades("BTC/USDT", since_ms=cursor + 1) == []   # a moved cursor misses it


def test_unknown_script_kinds_and_arguments_are_refused(clock):
    venue = make(clock)
    with pytest.raises(ValueError):
        venue.script_next_create("explode")
    with pytest.raises(ValueError):
        venue.script_next_create("late")                     # delay_s is required
    with pytest.raises(ValueError):
        venue.script_next_create("ban", for_s=1, delay_s=2)
