"""Scripted venue faults surface as our own error types (never as ccxt exceptions)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from trading.exchanges.base import OrderRequest, OrderType, Side, VenueOrderStatus
from trading.exchanges.errors import (
    AuthError,
    ClockSkewError,
    DuplicateClientOrderIdError,
    OutcomeUnknownError,
    RateLimitedError,
    TransientError,
)

D = Decimal
ORDER_PATH = {"binance": "/api/v3/order", "bybit": "/v5/order/create"}
MARKETS_PATH = {"binance": "/api/v3/exchangeInfo", "bybit": "/v5/market/instruments-info"}
BALANCE_PATH = {"binance": "/api/v3/account", "bybit": "/v5/account/wallet-balance"}
TICKER_PATH = {"binance": "/api/v3/ticker/24hr", "bybit": "/v5/market/tickers"}
OPEN_ORDERS_PATH = {"binance": "/api/v3/openOrders", "bybit": "/v5/order/realtime"}


def buy(client_id: str, qty: str = "0.01") -> OrderRequest:
    return OrderRequest(client_order_id=client_id, symbol="BTC/USDT", side=Side.BUY, type=OrderType.MARKET,
                        quantity=D(qty))


def create_rule(venue: str, action: str, **params) -> dict:
    return {"method": "POST", "path": ORDER_PATH[venue], "times": 1, "action": action, **params}


# ---------------------------------------------------------------------- writes with unknown outcome
@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("json_body", [False, True])
def test_5xx_on_create_is_outcome_unknown(emulator, control, gateway, status, json_body):
    control.set_faults([create_rule(emulator.venue, "http_status", status=status, json=json_body)])

    with pytest.raises(OutcomeUnknownError):
        gateway.create_order(buy("u5-1"))

    # This fault answered before the venue processed anything: resolving by client id finds nothing.
    assert gateway.fetch_order("BTC/USDT", "u5-1") is None


def test_5xx_after_processing_leaves_the_order_on_the_venue(emulator, control, gateway):
    control.set_faults([create_rule(emulator.venue, "http_status", status=503, process=True)])

    with pytest.raises(OutcomeUnknownError):
        gateway.create_order(buy("u5-2"))

    order = gateway.fetch_order("BTC/USDT", "u5-2")
    assert order is not None and order.status is VenueOrderStatus.FILLED
    assert len(control.orders(client_id="u5-2")) == 1


def test_accept_then_drop_creates_exactly_one_order(emulator, control, gateway):
    control.set_faults([create_rule(emulator.venue, "accept_then_drop")])

    with pytest.raises(OutcomeUnknownError):
        gateway.create_order(buy("drop-1"))

    assert len(control.orders(client_id="drop-1")) == 1
    resolved = gateway.fetch_order("BTC/USDT", "drop-1")
    assert resolved is not None and resolved.status is VenueOrderStatus.FILLED
    # Re-sending with the same id (the resolution path) cannot create a second order.
    with pytest.raises(DuplicateClientOrderIdError):
        gateway.create_order(buy("drop-1"))
    assert len(control.orders(client_id="drop-1")) == 1


def test_timeout_on_create_is_outcome_unknown_and_the_order_lands_later(emulator, control, gateway_factory):
    gateway = gateway_factory(emulator, timeout_ms=300)
    gateway.load_markets()
    control.set_faults([create_rule(emulator.venue, "latency_ms", ms=800)])

    with pytest.raises(OutcomeUnknownError):
        gateway.create_order(buy("slow-1"))

    deadline = time.monotonic() + 5
    while not control.orders(client_id="slow-1") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(control.orders(client_id="slow-1")) == 1


def test_non_json_200_on_create_is_outcome_unknown(emulator, control, gateway):
    control.set_faults([create_rule(emulator.venue, "http_status", status=200, body="<html>ok</html>",
                                    process=True)])

    with pytest.raises(OutcomeUnknownError):
        gateway.create_order(buy("nj-1"))

    assert len(control.orders(client_id="nj-1")) == 1


def test_5xx_on_cancel_is_outcome_unknown(emulator, control, gateway):
    gateway.create_order(OrderRequest(client_order_id="cu-1", symbol="BTC/USDT", side=Side.BUY,
                                      type=OrderType.LIMIT, quantity=D("0.01"), price=D("29000")))
    path = "/api/v3/order" if emulator.venue == "binance" else "/v5/order/cancel"
    method = "DELETE" if emulator.venue == "binance" else "POST"
    control.set_faults([{"method": method, "path": path, "times": 1, "action": "http_status", "status": 502}])

    with pytest.raises(OutcomeUnknownError):
        gateway.cancel_order("BTC/USDT", "cu-1")

    assert gateway.fetch_order("BTC/USDT", "cu-1").status is VenueOrderStatus.OPEN


# ---------------------------------------------------------------------- reads
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_reads_is_transient(emulator, control, gateway, status):
    venue = emulator.venue
    rules = [{"path": path[venue], "action": "http_status", "status": status}
             for path in (BALANCE_PATH, TICKER_PATH, OPEN_ORDERS_PATH)]
    if venue == "binance":        # fetch_order is GET /api/v3/order (Bybit's is covered by realtime)
        rules.append({"method": "GET", "path": "/api/v3/order", "action": "http_status", "status": status})
    control.set_faults(rules)

    for read in (gateway.fetch_balances, lambda: gateway.fetch_ticker("BTC/USDT"),
                 lambda: gateway.fetch_open_orders("BTC/USDT"), lambda: gateway.fetch_order("BTC/USDT", "x")):
        with pytest.raises(TransientError) as caught:
            read()
        assert not isinstance(caught.value, ClockSkewError)


def test_timeout_on_read_is_transient(emulator, control, gateway_factory):
    gateway = gateway_factory(emulator, timeout_ms=200)
    gateway.load_markets()
    control.set_faults([{"path": TICKER_PATH[emulator.venue], "times": 1, "action": "latency_ms", "ms": 600}])

    with pytest.raises(TransientError):
        gateway.fetch_ticker("BTC/USDT")

    assert gateway.fetch_ticker("BTC/USDT").last == D("30000")


def test_dropped_connection_on_read_is_transient(emulator, control, gateway):
    control.set_faults([{"path": BALANCE_PATH[emulator.venue], "times": 1, "action": "accept_then_drop"}])

    with pytest.raises(TransientError):
        gateway.fetch_balances()


# ---------------------------------------------------------------------- rate limits
def test_429_is_rate_limited_with_retry_after(emulator, control, gateway):
    control.set_faults([create_rule(emulator.venue, "rate_limit_429", retry_after=7)])

    with pytest.raises(RateLimitedError) as caught:
        gateway.create_order(buy("rl-1"))

    assert caught.value.banned is False
    assert 5 <= caught.value.retry_after_s <= 7
    assert control.orders(client_id="rl-1") == []


def test_ban_is_rate_limited_and_banned(emulator, control, gateway):
    control.set_faults([{"path": BALANCE_PATH[emulator.venue], "times": 1, "action": "ban_418",
                         "retry_after": 300}])

    with pytest.raises(RateLimitedError) as caught:
        gateway.fetch_balances()

    assert caught.value.banned is True
    assert caught.value.retry_after_s == 300


def test_bybit_ip_ban_without_retry_after_waits_ten_minutes(control_for, gateway_factory):
    handle, control = control_for("bybit")
    gateway = gateway_factory(handle)
    control.set_faults([{"path": "/v5/market/tickers", "times": 1, "action": "ban_418"}])
    gateway.load_markets()

    with pytest.raises(RateLimitedError) as caught:
        gateway.fetch_ticker("BTC/USDT")

    assert caught.value.banned is True and caught.value.retry_after_s == 600


def test_exhausted_budget_is_rate_limited(emulator, control, gateway):
    if emulator.venue == "binance":
        control.set_rate_limit(weight_per_minute=50)       # account is 20 a call
    else:
        control.set_rate_limit(per_second=1)

    with pytest.raises(RateLimitedError) as caught:
        for _ in range(30):
            gateway.fetch_balances()

    assert 0 < caught.value.retry_after_s <= 60
    assert caught.value.banned is False


class RecordingLimiter:
    def __init__(self) -> None:
        self.acquired: list[float] = []
        self.observed: list[dict[str, str]] = []
        self.penalties: list[tuple[float, bool]] = []

    def acquire(self, weight: float) -> None:
        self.acquired.append(weight)

    def observe(self, headers: dict[str, str]) -> None:
        self.observed.append(headers)

    def penalize(self, retry_after_s: float, banned: bool) -> None:
        self.penalties.append((retry_after_s, banned))


def test_rate_limiter_hook_sees_every_request(emulator, control, gateway_factory):
    limiter = RecordingLimiter()
    gateway = gateway_factory(emulator, rate_limiter=limiter)

    gateway.load_markets()
    gateway.fetch_balances()
    gateway.create_order(buy("hook-1"))
    control.set_faults([create_rule(emulator.venue, "rate_limit_429", retry_after=9)])
    with pytest.raises(RateLimitedError):
        gateway.create_order(buy("hook-2"))

    assert len(limiter.acquired) == len(limiter.observed) == 4
    if emulator.venue == "binance":
        assert limiter.acquired == [20, 20, 1, 1]
        assert "X-MBX-USED-WEIGHT-1m" in limiter.observed[1]
        assert "X-MBX-ORDER-COUNT-10s" in limiter.observed[2]
    else:
        assert limiter.acquired == [1, 1, 1, 1]
        assert {"X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp"} <= set(limiter.observed[2])
    assert len(limiter.penalties) == 1
    assert 7 <= limiter.penalties[0][0] <= 9 and limiter.penalties[0][1] is False


# ---------------------------------------------------------------------- auth & clock
@pytest.mark.parametrize("bad", ["key", "secret"])
def test_bad_credentials_are_auth_errors(emulator, bad, gateway_factory):
    kwargs = {"api_key": "wrong-key"} if bad == "key" else {"api_secret": "wrong-secret"}
    gateway = gateway_factory(emulator, **kwargs)

    with pytest.raises(AuthError):
        gateway.fetch_balances()
    with pytest.raises(AuthError):
        gateway.create_order(buy("auth-1"))


def test_auth_error_after_a_successful_call_is_still_auth(emulator, gateway, gateway_factory):
    gateway.fetch_balances()           # ccxt remembers this and calls a later -2015 "DDoSProtection"
    bad = gateway_factory(emulator, api_key="wrong-key")
    bad.load_markets()
    bad._ex.options["hasAlreadyAuthenticatedSuccessfully"] = True

    with pytest.raises(AuthError):
        bad.fetch_balances()


@pytest.mark.parametrize("skew_ms", [-20_000, 20_000])
def test_clock_skew_is_reported(emulator, control, gateway, skew_ms):
    control.set_faults([{"path": BALANCE_PATH[emulator.venue], "times": 1, "action": "clock_skew_ms",
                         "ms": skew_ms}])

    with pytest.raises(ClockSkewError):
        gateway.fetch_balances()

    assert gateway.fetch_balances()["USDT"].free == D("100000")


def test_clock_skew_on_create_is_a_definite_no(emulator, control, gateway):
    control.set_clock_offset(-30_000)

    with pytest.raises(ClockSkewError):
        gateway.create_order(buy("skew-1"))

    assert control.orders(client_id="skew-1") == []


# ---------------------------------------------------------------------- fills & duplicates
def test_partial_fill_is_reflected_then_completes(emulator, control, gateway):
    control.set_faults([create_rule(emulator.venue, "partial_fill", fraction=0.4)])

    gateway.create_order(buy("pf-1", qty="0.01"))

    order = gateway.fetch_order("BTC/USDT", "pf-1")
    assert order.status is VenueOrderStatus.PARTIALLY_FILLED
    assert order.filled_quantity == D("0.004")
    control.fill_pending()
    order = gateway.fetch_order("BTC/USDT", "pf-1")
    assert order.status is VenueOrderStatus.FILLED
    assert order.filled_quantity == D("0.01")
    assert len(gateway.fetch_my_trades("BTC/USDT")) == 2


def test_partial_fill_of_a_limit_order_completes_on_price_update(emulator, control, gateway):
    control.set_faults([create_rule(emulator.venue, "partial_fill", fraction=0.5)])
    gateway.create_order(OrderRequest(client_order_id="pf-2", symbol="BTC/USDT", side=Side.SELL,
                                      type=OrderType.LIMIT, quantity=D("0.02"), price=D("29990")))
    assert gateway.fetch_order("BTC/USDT", "pf-2").filled_quantity == D("0.01")

    control.set_price("BTC/USDT", "30010")

    assert gateway.fetch_order("BTC/USDT", "pf-2").status is VenueOrderStatus.FILLED


def test_duplicate_fault_surfaces_as_duplicate(emulator, control, gateway):
    control.set_faults([create_rule(emulator.venue, "duplicate")])

    with pytest.raises(DuplicateClientOrderIdError):
        gateway.create_order(buy("df-1"))

    assert control.orders(client_id="df-1") == []


# ---------------------------------------------------------------------- request economy
def test_load_markets_is_one_request(emulator, control, gateway_factory):
    gateway = gateway_factory(emulator)
    control.clear_requests()

    rules = gateway.load_markets()

    log = control.requests()
    assert [(r["method"], r["path"]) for r in log] == [("GET", MARKETS_PATH[emulator.venue])]
    assert set(rules) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}


def test_first_private_call_is_one_request(emulator, control, gateway_factory):
    gateway = gateway_factory(emulator)
    gateway.load_markets()
    control.clear_requests()

    gateway.fetch_balances()
    gateway.create_order(buy("one-1"))

    assert [r["path"] for r in control.requests()] == [BALANCE_PATH[emulator.venue], ORDER_PATH[emulator.venue]]


def test_client_id_is_always_sent(emulator, control, gateway):
    gateway.create_order(buy("cid-1"))

    (create,) = control.requests(path=ORDER_PATH[emulator.venue], method="POST")
    key = "newClientOrderId" if emulator.venue == "binance" else "orderLinkId"
    assert create["params"][key] == "cid-1"
    assert "quoteOrderQty" not in create["params"]
    if emulator.venue == "bybit":
        assert create["params"]["marketUnit"] == "baseCoin"


# ---------------------------------------------------------------------- answers of an unexpected shape
# JSON that no endpoint answers with: a dict without the expected keys, a list of scalars, null,
# and Bybit envelopes whose result.list is not a list or is missing (which must not read as "none").
WEIRD_BODIES = [{"unexpected": [1, 2]}, [1, 2, 3], None, {"retCode": 0, "retMsg": "OK", "result": {"list": "oops"}},
                {"retCode": 0, "retMsg": "OK", "result": {}}]
WEIRD_IDS = ["dict", "scalars", "null", "bad-list", "no-list"]
READS = {
    "binance": {
        "load_markets": "/api/v3/exchangeInfo", "fetch_closed_candles": "/api/v3/klines",
        "fetch_ticker": "/api/v3/ticker/24hr", "fetch_balances": "/api/v3/account",
        "fetch_order": "/api/v3/order", "fetch_open_orders": "/api/v3/openOrders",
        "fetch_my_trades": "/api/v3/myTrades", "server_time_ms": "/api/v3/time",
    },
    "bybit": {
        "load_markets": "/v5/market/instruments-info", "fetch_closed_candles": "/v5/market/kline",
        "fetch_ticker": "/v5/market/tickers", "fetch_balances": "/v5/account/wallet-balance",
        "fetch_order": "/v5/order/realtime", "fetch_open_orders": "/v5/order/realtime",
        "fetch_my_trades": "/v5/execution/list", "server_time_ms": "/v5/market/time",
    },
}
READ_CALLS = {
    "load_markets": lambda gw: gw.load_markets(),
    "fetch_closed_candles": lambda gw: gw.fetch_closed_candles("BTC/USDT", "1h", limit=5),
    "fetch_ticker": lambda gw: gw.fetch_ticker("BTC/USDT"),
    "fetch_balances": lambda gw: gw.fetch_balances(),
    "fetch_order": lambda gw: gw.fetch_order("BTC/USDT", "shape-1"),
    "fetch_open_orders": lambda gw: gw.fetch_open_orders("BTC/USDT"),
    "fetch_my_trades": lambda gw: gw.fetch_my_trades("BTC/USDT"),
    "server_time_ms": lambda gw: gw.server_time_ms(),
}


@pytest.mark.parametrize("body", WEIRD_BODIES, ids=WEIRD_IDS)
@pytest.mark.parametrize("read", sorted(READ_CALLS))
def test_a_read_answered_in_an_unexpected_shape_is_transient(emulator, control, gateway, read, body):
    control.set_faults([{"method": "GET", "path": READS[emulator.venue][read], "times": 1, "action": "http_status",
                         "status": 200, "body": body}])

    with pytest.raises(TransientError):
        READ_CALLS[read](gateway)

    assert control.faults() == []                 # the weird answer was really served
    READ_CALLS[read](gateway)                     # and the next, normal answer parses


@pytest.mark.parametrize("body", WEIRD_BODIES, ids=WEIRD_IDS)
def test_a_write_answered_in_an_unexpected_shape_is_outcome_unknown(emulator, control, gateway, body):
    gateway.create_order(OrderRequest(client_order_id="shape-c", symbol="BTC/USDT", side=Side.BUY,
                                      type=OrderType.LIMIT, quantity=D("0.01"), price=D("29000")))
    cancel = ("DELETE", "/api/v3/order") if emulator.venue == "binance" else ("POST", "/v5/order/cancel")
    control.set_faults([
        {**create_rule(emulator.venue, "http_status", status=200, body=body), "process": True},
        {"method": cancel[0], "path": cancel[1], "times": 1, "action": "http_status", "status": 200, "body": body},
    ])

    with pytest.raises(OutcomeUnknownError):
        gateway.create_order(buy("shape-w"))
    with pytest.raises(OutcomeUnknownError):
        gateway.cancel_order("BTC/USDT", "shape-c")

    # Resolution by client id finds what the venue really did.
    assert gateway.fetch_order("BTC/USDT", "shape-w").status is VenueOrderStatus.FILLED
    assert gateway.fetch_order("BTC/USDT", "shape-c").status is VenueOrderStatus.OPEN
