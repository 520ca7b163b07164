"""The emulator on the wire: signing rules, codes, headers, klines, faults and the control API."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from emulator import EmulatorControl
from emulator.control import ControlRequestError
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
from trading.exchanges.base import OrderRequest, OrderType, Side, VenueOrderStatus
from trading.exchanges.binance import BinanceGateway

KEY, SECRET = DEFAULT_API_KEY, DEFAULT_API_SECRET
ROOT = Path(__file__).resolve().parents[3]


def now_ms() -> int:
    return int(time.time() * 1000)


def binance_signed(base: str, method: str, path: str, params: dict, *, secret: str = SECRET,
                   key: str = KEY, in_body: bool = False) -> requests.Response:
    query = urlencode({"timestamp": now_ms(), **params, "recvWindow": 5000})
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    signed = f"{query}&signature={signature}"
    headers = {"X-MBX-APIKEY": key}
    if in_body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return requests.request(method, base + path, data=signed, headers=headers, timeout=5)
    return requests.request(method, f"{base}{path}?{signed}", headers=headers, timeout=5)


def bybit_signed(base: str, method: str, path: str, params: dict, *, secret: str = SECRET,
                 timestamp: int | None = None) -> requests.Response:
    ts = str(timestamp or now_ms())
    if method == "GET":
        payload = "&".join(f"{k}={v}" for k, v in params.items())
    else:
        payload = json.dumps(params, separators=(",", ":"))
    sign = hmac.new(secret.encode(), (ts + KEY + "5000" + payload).encode(), hashlib.sha256).hexdigest()
    headers = {"X-BAPI-API-KEY": KEY, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": "5000",
               "X-BAPI-SIGN": sign, "Content-Type": "application/json"}
    if method == "GET":
        return requests.get(f"{base}{path}?{payload}", headers=headers, timeout=5)
    return requests.post(base + path, data=payload, headers=headers, timeout=5)


# ---------------------------------------------------------------------- Binance wire
@pytest.mark.parametrize("emulator", ["binance"], indirect=True)
class TestBinanceWire:
    def test_signed_get_and_post_body(self, emulator):
        base = emulator.base_url
        assert binance_signed(base, "GET", "/api/v3/account", {}).status_code == 200
        resp = binance_signed(base, "POST", "/api/v3/order",
                              {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                               "newClientOrderId": "raw-1"}, in_body=True)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["status"] == "FILLED" and body["fills"][0]["price"] == "30000.00000000"
        assert resp.headers["X-MBX-ORDER-COUNT-10s"] == "1"

    @pytest.mark.parametrize(("kwargs", "status", "code"), [
        ({"secret": "nope"}, 400, -1022),
        ({"key": "other-key"}, 401, -2015),
        ({"key": ""}, 401, -2014),
    ])
    def test_auth_failures(self, emulator, kwargs, status, code):
        resp = binance_signed(emulator.base_url, "GET", "/api/v3/account", {}, **kwargs)
        assert (resp.status_code, resp.json()["code"]) == (status, code)

    def test_recv_window_rule(self, emulator, control):
        control.set_clock_offset(-3000)     # our timestamp is now 3 s ahead of the venue
        resp = binance_signed(emulator.base_url, "GET", "/api/v3/account", {})
        assert (resp.status_code, resp.json()["code"]) == (400, -1021)

    def test_quote_order_qty_market_buy(self, emulator, control):
        resp = binance_signed(emulator.base_url, "POST", "/api/v3/order",
                              {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "300",
                               "newClientOrderId": "q-1"}, in_body=True)
        assert resp.json()["executedQty"] == "0.01000000"
        assert control.balances()["USDT"]["free"] == Decimal("99700")

    @pytest.mark.parametrize(("params", "code", "msg"), [
        ({"quantity": "0.000015"}, -1013, "Filter failure: LOT_SIZE"),
        ({"quantity": "0.0001"}, -1013, "Filter failure: NOTIONAL"),
        ({"quantity": "0.001", "type": "LIMIT", "price": "29000.005", "timeInForce": "GTC"}, -1013,
         "Filter failure: PRICE_FILTER"),
        ({"quantity": "5"}, -2010, "Account has insufficient balance for requested action."),
        ({"quantity": "0.001", "newClientOrderId": "bad id!"}, -1100, None),
        ({"quantity": "0.001", "symbol": "NOPEUSDT"}, -1121, "Invalid symbol."),
    ])
    def test_order_rejections(self, emulator, params, code, msg):
        order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", **params}
        resp = binance_signed(emulator.base_url, "POST", "/api/v3/order", order, in_body=True)
        assert resp.status_code == 400
        assert resp.json()["code"] == code
        if msg:
            assert resp.json()["msg"] == msg

    def test_duplicate_and_lookup_by_client_id(self, emulator):
        base = emulator.base_url
        order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
                 "price": "29000", "newClientOrderId": "cid-9"}
        assert binance_signed(base, "POST", "/api/v3/order", order, in_body=True).status_code == 200
        dup = binance_signed(base, "POST", "/api/v3/order", order, in_body=True)
        assert (dup.status_code, dup.json()) == (400, {"code": -2010, "msg": "Duplicate order sent."})
        got = binance_signed(base, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "cid-9"})
        assert got.json()["status"] == "NEW"
        gone = binance_signed(base, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "zz"})
        assert gone.json()["code"] == -2013
        cancel = binance_signed(base, "DELETE", "/api/v3/order",
                                {"symbol": "BTCUSDT", "origClientOrderId": "cid-9"})
        assert cancel.json()["origClientOrderId"] == "cid-9" and cancel.json()["status"] == "CANCELED"
        again = binance_signed(base, "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "cid-9"})
        assert again.json()["code"] == -2011

    def test_stop_loss_waits_untriggered_then_fills_and_refuses_one_that_would_fire_at_once(self, emulator,
                                                                                          control):
        base = emulator.base_url
        order = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "quantity": "0.1", "stopPrice": "29000",
                 "newClientOrderId": "sl-1"}
        created = binance_signed(base, "POST", "/api/v3/order", order, in_body=True).json()
        assert (created["type"], created["status"], created["stopPrice"]) == ("STOP_LOSS", "NEW", "29000.00000000")
        waiting = binance_signed(base, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "sl-1"})
        assert waiting.json()["isWorking"] is False
        control.set_price("BTC/USDT", Decimal("28800"))
        fired = binance_signed(base, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "sl-1"})
        assert (fired.json()["status"], fired.json()["executedQty"]) == ("FILLED", "0.10000000")
        assert fired.json()["cummulativeQuoteQty"] == "2880.00000000"
        at_once = binance_signed(base, "POST", "/api/v3/order", {**order, "newClientOrderId": "sl-2"}, in_body=True)
        assert (at_once.status_code, at_once.json()) == (400, {"code": -2010,
                                                               "msg": "Stop price would trigger immediately."})
        no_stop = binance_signed(base, "POST", "/api/v3/order",
                                 {**order, "stopPrice": "", "newClientOrderId": "sl-3"}, in_body=True)
        assert no_stop.json()["code"] == -1102

    def test_weight_header_and_budget(self, emulator, control):
        base = emulator.base_url
        first = requests.get(base + "/api/v3/exchangeInfo", timeout=5)
        second = requests.get(base + "/api/v3/klines?symbol=BTCUSDT&interval=1m", timeout=5)
        assert int(second.headers["X-MBX-USED-WEIGHT-1m"]) == int(first.headers["X-MBX-USED-WEIGHT-1m"]) + 2
        control.set_rate_limit(weight_per_minute=1)
        limited = requests.get(base + "/api/v3/time", timeout=5)
        assert limited.status_code == 429 and limited.json()["code"] == -1003
        assert 1 <= int(limited.headers["Retry-After"]) <= 60

    def test_order_count_limit(self, emulator, control):
        control.set_rate_limit(orders_per_10s=2)
        codes = [
            binance_signed(emulator.base_url, "POST", "/api/v3/order",
                           {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                            "newClientOrderId": f"oc-{i}"}, in_body=True).status_code
            for i in range(5)
        ]
        assert 429 in codes

    def test_exchange_info_rules(self, emulator):
        info = requests.get(emulator.base_url + "/api/v3/exchangeInfo", timeout=5).json()
        btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
        filters = {f["filterType"]: f for f in btc["filters"]}
        assert {"LIMIT", "MARKET"} <= set(btc["orderTypes"])
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
        assert filters["NOTIONAL"]["minNotional"] == "5.00000000"


# ---------------------------------------------------------------------- Bybit wire
@pytest.mark.parametrize("emulator", ["bybit"], indirect=True)
class TestBybitWire:
    def test_signed_get_uses_the_raw_query(self, emulator):
        resp = bybit_signed(emulator.base_url, "GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"})
        assert resp.json()["retCode"] == 0
        assert {"X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp"} <= set(resp.headers)

    def test_create_cancel_and_duplicate(self, emulator):
        base = emulator.base_url
        order = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
                 "price": "29000", "orderLinkId": "by-1"}
        created = bybit_signed(base, "POST", "/v5/order/create", order).json()
        assert created["retCode"] == 0 and created["result"]["orderLinkId"] == "by-1"
        dup = bybit_signed(base, "POST", "/v5/order/create", order)
        assert (dup.status_code, dup.json()["retCode"]) == (200, 170141)
        cancel = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "by-1"}
        assert bybit_signed(base, "POST", "/v5/order/cancel", cancel).json()["retCode"] == 0
        assert bybit_signed(base, "POST", "/v5/order/cancel", cancel).json()["retCode"] == 170213
        history = bybit_signed(base, "GET", "/v5/order/history",
                               {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "by-1"}).json()
        assert history["result"]["list"][0]["orderStatus"] == "Cancelled"
        assert history["result"]["nextPageCursor"] == ""

    def test_conditional_order_is_found_only_by_a_cancel_that_names_it(self, emulator, control):
        base = emulator.base_url
        order = {"category": "spot", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.1",
                 "marketUnit": "baseCoin", "orderFilter": "StopOrder", "triggerPrice": "29000", "orderLinkId": "cs-1"}
        assert bybit_signed(base, "POST", "/v5/order/create", order).json()["retCode"] == 0
        listed = bybit_signed(base, "GET", "/v5/order/realtime", {"category": "spot", "symbol": "BTCUSDT"}).json()
        row = listed["result"]["list"][0]
        assert (row["orderLinkId"], row["orderStatus"], row["stopOrderType"]) == ("cs-1", "Untriggered", "Stop")
        assert (row["triggerPrice"], row["triggerDirection"]) == ("29000", 2)      # below the market: "fall"
        only_active = bybit_signed(base, "GET", "/v5/order/realtime",
                                   {"category": "spot", "symbol": "BTCUSDT", "orderFilter": "Order"}).json()
        assert only_active["result"]["list"] == []
        cancel = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "cs-1"}
        assert bybit_signed(base, "POST", "/v5/order/cancel", cancel).json()["retCode"] == 170213
        named = bybit_signed(base, "POST", "/v5/order/cancel", {**cancel, "orderFilter": "StopOrder"}).json()
        assert named["retCode"] == 0
        assert control.balances()["BTC"]["locked"] == Decimal("0")

    def test_conditional_order_fires_when_the_price_reaches_it(self, emulator, control):
        order = {"category": "spot", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.1",
                 "orderFilter": "StopOrder", "triggerPrice": "29000", "orderLinkId": "cs-2"}
        assert bybit_signed(emulator.base_url, "POST", "/v5/order/create", order).json()["retCode"] == 0
        control.set_price("BTC/USDT", Decimal("28700"))
        row = bybit_signed(emulator.base_url, "GET", "/v5/order/realtime",
                           {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "cs-2"}).json()["result"]["list"][0]
        assert (row["orderStatus"], row["cumExecQty"], row["avgPrice"]) == ("Filled", "0.1", "28700")

    def test_market_buy_without_market_unit_is_quote_quantity(self, emulator, control):
        order = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "300",
                 "orderLinkId": "by-q"}
        assert bybit_signed(emulator.base_url, "POST", "/v5/order/create", order).json()["retCode"] == 0
        assert control.orders(client_id="by-q")[0]["executed"] == "0.01"

    def test_auth_failures(self, emulator):
        base = emulator.base_url
        bad_sign = bybit_signed(base, "GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"},
                                secret="nope")
        assert bad_sign.json()["retCode"] == 10004
        stale = bybit_signed(base, "GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"},
                             timestamp=now_ms() - 60_000)
        assert stale.json()["retCode"] == 10002
        no_key = requests.get(base + "/v5/account/wallet-balance?accountType=UNIFIED", timeout=5)
        assert (no_key.status_code, no_key.json()["retCode"]) == (401, 10003)

    def test_pagination_cursor(self, emulator):
        base = emulator.base_url
        for i in range(3):
            bybit_signed(base, "POST", "/v5/order/create",
                         {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                          "qty": "0.001", "price": "29000", "orderLinkId": f"pg-{i}"})
        page = bybit_signed(base, "GET", "/v5/order/realtime",
                            {"category": "spot", "symbol": "BTCUSDT", "limit": "2"}).json()["result"]
        assert len(page["list"]) == 2 and page["nextPageCursor"]
        rest = bybit_signed(base, "GET", "/v5/order/realtime",
                            {"category": "spot", "symbol": "BTCUSDT", "limit": "2",
                             "cursor": page["nextPageCursor"]}).json()["result"]
        assert len(rest["list"]) == 1 and rest["nextPageCursor"] == ""

    def test_per_second_limit(self, emulator, control):
        control.set_rate_limit(per_second=1)
        codes = [bybit_signed(emulator.base_url, "GET", "/v5/account/wallet-balance",
                              {"accountType": "UNIFIED"}).json()["retCode"] for _ in range(10)]
        assert 10006 in codes

    def test_every_answer_has_ret_code(self, emulator):
        base = emulator.base_url
        for path in ("/v5/market/time", "/v5/market/instruments-info?category=spot",
                     "/v5/market/tickers?category=spot&symbol=BTCUSDT",
                     "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=60"):
            assert requests.get(base + path, timeout=5).json()["retCode"] == 0


# ---------------------------------------------------------------------- klines
def test_generated_klines_are_deterministic_and_include_the_forming_candle(emulator):
    base = emulator.base_url
    path = ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5" if emulator.venue == "binance"
            else "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=1&limit=5")

    def fetch() -> list:
        body = requests.get(base + path, timeout=5).json()
        rows = body if emulator.venue == "binance" else list(reversed(body["result"]["list"]))
        return [[int(r[0]), *r[1:6]] for r in rows]

    first, second = fetch(), fetch()
    if first[-1][0] != second[-1][0]:        # a minute boundary passed in between: compare the overlap
        first = first[1:]
        second = second[:-1]
    assert first == second
    newest = second[-1][0]
    assert newest <= now_ms() < newest + 60_000
    assert [r[0] for r in second] == sorted(r[0] for r in second)


def test_explicit_klines_replace_the_series_and_hide_the_future(emulator, control):
    hour = 3_600_000
    current = now_ms() // hour * hour
    control.set_klines("BTC/USDT", "1h", [
        [current - hour, "1", "2", "0.5", "1.5", "10"],
        [current, "1.5", "2", "1", "1.8", "3"],
        [current + hour, "9", "9", "9", "9", "9"],        # in the future: never served
    ])
    path = ("/api/v3/klines?symbol=BTCUSDT&interval=1h" if emulator.venue == "binance"
            else "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=60")
    body = requests.get(emulator.base_url + path, timeout=5).json()
    rows = body if emulator.venue == "binance" else body["result"]["list"]
    assert sorted(int(r[0]) for r in rows) == [current - hour, current]


# ---------------------------------------------------------------------- faults & control
def test_fault_rule_stops_after_times(emulator, control):
    path = "/api/v3/time" if emulator.venue == "binance" else "/v5/market/time"
    control.set_faults([{"method": "GET", "path": path, "times": 2, "action": "http_status", "status": 503}])

    statuses = [requests.get(emulator.base_url + path, timeout=5).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert control.faults() == []
    assert [r["status"] for r in control.requests(path=path)] == [503, 503, 200]


def test_glob_rules_and_bad_rules(emulator, control):
    path = "/api/v3/*" if emulator.venue == "binance" else "/v5/market/*"
    control.set_faults([{"path": path, "action": "latency_ms", "ms": 50}])
    started = time.monotonic()
    requests.get(emulator.base_url + ("/api/v3/time" if emulator.venue == "binance" else "/v5/market/time"),
                 timeout=5)
    assert time.monotonic() - started >= 0.05
    with pytest.raises(ControlRequestError):
        control.set_faults([{"path": "/x", "action": "explode"}])


def test_state_and_reset(emulator, control, gateway):
    gateway.create_order(OrderRequest(client_order_id="st-1", symbol="BTC/USDT", side=Side.BUY,
                                      type=OrderType.MARKET, quantity=Decimal("0.01")))
    state = control.state()
    assert [o["client_id"] for o in state["orders"]] == ["st-1"]
    assert len(state["trades"]) == 1
    control.set_balances({"USDT": "5"}, replace=True)
    assert set(control.balances()) == {"USDT"}

    control.reset()

    assert control.orders() == [] and control.trades() == []
    assert control.balances()["USDT"]["free"] == Decimal("100000")


# ---------------------------------------------------------------------- gateway configuration
def test_base_url_overrides_every_rest_endpoint(emulator, gateway_factory):
    gateway = gateway_factory(emulator)

    endpoints = gateway.rest_endpoints

    assert endpoints and all(url.startswith(emulator.base_url) for url in endpoints.values())
    if emulator.venue == "binance":
        assert endpoints["public"] == emulator.base_url + "/api/v3"
        assert endpoints["sapi"] == emulator.base_url + "/sapi/v1"


@pytest.mark.parametrize("bad", ["http://127.0.0.1:1/api/v3", "127.0.0.1:1", "ftp://127.0.0.1:1"])
def test_base_url_must_be_a_root(bad):
    with pytest.raises(ValueError):
        BinanceGateway(api_key="k", api_secret="s", base_url=bad, testnet=False)


def test_testnet_uses_the_sandbox_hosts():
    gateway = BinanceGateway(api_key="k", api_secret="s", base_url=None, testnet=True)
    assert gateway.rest_endpoints["public"] == "https://testnet.binance.vision/api/v3"


# ---------------------------------------------------------------------- a separate process
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_python_dash_m_emulator_trades_with_ccxt():
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--venue", "binance", "--port", str(port), "--api-key", "k1",
         "--api-secret", "s1", "--symbols", "BTC/USDT,ETH/USDT"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        control = EmulatorControl(base, timeout_s=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                control.health()
                break
            except ControlRequestError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        gateway = BinanceGateway(api_key="k1", api_secret="s1", base_url=base, testnet=False, timeout_ms=3000)

        assert set(gateway.load_markets()) == {"BTC/USDT", "ETH/USDT"}
        gateway.create_order(OrderRequest(client_order_id="proc-1", symbol="ETH/USDT", side=Side.BUY,
                                          type=OrderType.MARKET, quantity=Decimal("0.1")))
        order = gateway.fetch_order("ETH/USDT", "proc-1")
        assert order is not None and order.status is VenueOrderStatus.FILLED
        assert gateway.fetch_balances()["USDT"].free == Decimal("99800")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
