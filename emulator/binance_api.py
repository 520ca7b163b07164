"""Binance spot REST (``/api/v3``) as ccxt 4.5.90 uses it: shapes, signing, codes, weights."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from emulator.core import Fill, MarketSpec, Order, Reject, fixed8
from emulator.faults import FaultRule
from emulator.klines import INTERVAL_MS
from emulator.venue import Context, FixedWindow, Request, Response, VenueApi, http_error_page

CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
_SIGNATURE_RE = re.compile(r"(^|&)signature=[^&]*")
_STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED", "canceled": "CANCELED",
           "expired": "EXPIRED"}
_REJECTS: dict[str, tuple[int, str]] = {
    "unknown_symbol": (-1121, "Invalid symbol."),
    "duplicate": (-2010, "Duplicate order sent."),
    "lot_size": (-1013, "Filter failure: LOT_SIZE"),
    "price_filter": (-1013, "Filter failure: PRICE_FILTER"),
    "min_notional": (-1013, "Filter failure: NOTIONAL"),
    "insufficient": (-2010, "Account has insufficient balance for requested action."),
    "would_trigger": (-2010, "Stop price would trigger immediately."),
    # The matching engine's -2010 messages (errors.md, "Messages for -1010, -2010 and -2011").
    "halted": (-2010, "Market is closed."),
    "stops_unsupported": (-2010, "Stop loss orders are not supported for this symbol."),
}
# Our type names <-> Binance's. STOP_LOSS is Binance spot's stop-market order.
_TYPES = {"LIMIT": "limit", "MARKET": "market", "STOP_LOSS": "stop"}
_WIRE_TYPES = {ours: wire for wire, ours in _TYPES.items()}
DEFAULT_WEIGHT_PER_MINUTE = 6000
DEFAULT_ORDERS_PER_10S = 100


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.data = status, code, msg, data

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg, **({"data": self.data} if self.data is not None else {})}


def _missing(name: str) -> BinanceError:
    return BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _decimal(req: Request, name: str, *, required: bool = False) -> Decimal | None:
    raw = req.params.get(name)
    if raw is None or raw == "":
        if required:
            raise _missing(name)
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                       "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
    if not value.is_finite() or value < 0:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return value


def _int(req: Request, name: str) -> int | None:
    raw = req.params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                       "'^[0-9]{1,20}$'.") from None


@dataclass(frozen=True)
class _Route:
    fn: Callable[[Request], Any]
    weight: Callable[[Request], int]
    signed: bool


class BinanceApi(VenueApi):
    name = "binance"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.weight_per_minute: int | None = DEFAULT_WEIGHT_PER_MINUTE
        self.orders_per_10s: int | None = DEFAULT_ORDERS_PER_10S
        self._weight = FixedWindow(60_000)
        self._orders_10s = FixedWindow(10_000)
        self._orders_day = FixedWindow(86_400_000)
        self._cancel_ids = itertools.count(1)

        def const(n: int) -> Callable[[Request], int]:
            return lambda _req: n

        def by_symbol(with_symbol: int, without: int) -> Callable[[Request], int]:
            return lambda req: with_symbol if req.params.get("symbol") else without

        # Request weights as Binance documents them for /api/v3 (rest-api.md).
        self.routes: dict[tuple[str, str], _Route] = {
            ("GET", "/api/v3/ping"): _Route(lambda _r: {}, const(1), False),
            ("GET", "/api/v3/time"): _Route(self.time, const(1), False),
            ("GET", "/api/v3/exchangeInfo"): _Route(self.exchange_info, const(20), False),
            ("GET", "/api/v3/klines"): _Route(self.klines, const(2), False),
            ("GET", "/api/v3/ticker/24hr"): _Route(self.ticker_24hr, by_symbol(2, 80), False),
            ("GET", "/api/v3/account"): _Route(self.account, const(20), True),
            ("POST", "/api/v3/order"): _Route(self.create_order, const(1), True),
            ("GET", "/api/v3/order"): _Route(self.query_order, const(4), True),
            ("DELETE", "/api/v3/order"): _Route(self.cancel_order, const(1), True),
            ("POST", "/api/v3/order/cancelReplace"): _Route(self.cancel_replace, const(1), True),
            ("GET", "/api/v3/openOrders"): _Route(self.open_orders, by_symbol(6, 80), True),
            ("GET", "/api/v3/allOrders"): _Route(self.all_orders, const(20), True),
            ("GET", "/api/v3/myTrades"): _Route(self.my_trades, const(20), True),
        }

    # ------------------------------------------------------------------ plumbing
    def handle(self, req: Request) -> Response:
        route = self.routes.get((req.method, req.path))
        if route is None:
            return Response(404, http_error_page(404))
        used = self._weight.add(route.weight(req), req.now_ms)
        headers = {"X-MBX-USED-WEIGHT-1m": str(used)}
        if self.weight_per_minute is not None and used > self.weight_per_minute:
            return self._too_much_weight(req, headers)
        try:
            if route.signed:
                self._authenticate(req)
            payload = route.fn(req)
        except BinanceError as exc:
            if exc.code == -1015:
                reset = self._orders_10s.reset_at_ms(req.now_ms)
                headers["Retry-After"] = str(max(1, -(-(reset - req.now_ms) // 1000)))
            return Response(exc.status, exc.body(), headers)
        except Reject as exc:
            code, msg = _REJECTS.get(exc.kind, (-1102, exc.detail))
            return Response(400, {"code": code, "msg": msg}, headers)
        if (req.method, req.path) in (("POST", "/api/v3/order"), ("POST", "/api/v3/order/cancelReplace")):
            headers["X-MBX-ORDER-COUNT-10s"] = str(self._orders_10s.peek(req.now_ms))
            headers["X-MBX-ORDER-COUNT-1d"] = str(self._orders_day.peek(req.now_ms))
        return Response(200, payload, headers)

    def _too_much_weight(self, req: Request, headers: dict[str, str]) -> Response:
        retry_after = max(1, -(-(self._weight.reset_at_ms(req.now_ms) - req.now_ms) // 1000))
        headers["Retry-After"] = str(retry_after)
        msg = (f"Too much request weight used; current limit is {self.weight_per_minute} request weight per 1 "
               "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.")
        return Response(429, {"code": -1003, "msg": msg}, headers)

    def fault_response(self, rule: FaultRule, req: Request) -> Response:
        headers = {"X-MBX-USED-WEIGHT-1m": str(self._weight.peek(req.now_ms))}
        if rule.action in ("rate_limit_429", "ban_418"):
            banned = rule.action == "ban_418"
            retry_after = int(rule.params.get("retry_after", 120 if banned else 5))
            headers["Retry-After"] = str(retry_after)
            if banned:
                msg = (f"Way too much request weight used; IP banned until {req.now_ms + retry_after * 1000}. "
                       "Please use WebSocket Streams for live updates to avoid bans.")
                return Response(418, {"code": -1003, "msg": msg}, headers)
            msg = ("Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                   "Please use WebSocket Streams for live updates to avoid polling the API.")
            return Response(429, {"code": -1003, "msg": msg}, headers)
        status = int(rule.params["status"])
        if "body" in rule.params:
            return Response(status, rule.params["body"], headers)
        if rule.params.get("json"):
            return Response(status, {"code": -1001, "msg": "Internal error; unable to process your request. "
                                                           "Please try again."}, headers)
        return Response(status, http_error_page(status), headers)

    def set_rate_limit(self, config: dict[str, Any]) -> dict[str, Any]:
        if "weight_per_minute" in config:
            self.weight_per_minute = config["weight_per_minute"]
        if "orders_per_10s" in config:
            self.orders_per_10s = config["orders_per_10s"]
        return {"weight_per_minute": self.weight_per_minute, "orders_per_10s": self.orders_per_10s}

    def reset_limits(self) -> None:
        for window in (self._weight, self._orders_10s, self._orders_day):
            window.clear()
        self.weight_per_minute = DEFAULT_WEIGHT_PER_MINUTE
        self.orders_per_10s = DEFAULT_ORDERS_PER_10S

    def _authenticate(self, req: Request) -> None:
        key = req.headers.get("X-MBX-APIKEY")
        if not key or len(key) > 128 or not key.isprintable() or " " in key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.ctx.api_key):
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signature = req.params.get("signature")
        if not signature:
            raise _missing("signature")
        # Binance signs the query string followed, without separator, by the body.
        payload = _SIGNATURE_RE.sub("", req.raw_query) + _SIGNATURE_RE.sub("", req.raw_body.decode())
        expected = hmac.new(self.ctx.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        timestamp = _int(req, "timestamp")
        if timestamp is None:
            raise _missing("timestamp")
        recv_window = _int(req, "recvWindow") or 5000
        if recv_window > 60_000:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        if timestamp >= req.now_ms + 1000:
            raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if req.now_ms - timestamp > recv_window:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _market(self, req: Request) -> MarketSpec:
        symbol = req.params.get("symbol")
        if not symbol:
            raise _missing("symbol")
        try:
            return self.ctx.book.market(symbol)
        except Reject:
            raise BinanceError(400, -1121, "Invalid symbol.") from None

    # ------------------------------------------------------------------ market data
    def time(self, req: Request) -> dict[str, Any]:
        return {"serverTime": req.now_ms}

    def exchange_info(self, req: Request) -> dict[str, Any]:
        markets = list(self.ctx.book.markets.values())
        if req.params.get("symbol"):
            markets = [self._market(req)]
        return {
            "timezone": "UTC",
            "serverTime": req.now_ms,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_per_minute or 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                 "limit": self.orders_per_10s or 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_info(m) for m in markets],
        }

    @staticmethod
    def _symbol_info(m: MarketSpec) -> dict[str, Any]:
        return {
            "symbol": m.venue_id, "status": "TRADING", "baseAsset": m.base, "baseAssetPrecision": 8,
            "quoteAsset": m.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET",
                           *(("STOP_LOSS", "STOP_LOSS_LIMIT") if m.stop_orders else ()),
                           "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": fixed8(m.tick_size), "maxPrice": "1000000.00000000",
                 "tickSize": fixed8(m.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": fixed8(m.min_qty), "maxQty": fixed8(m.max_qty),
                 "stepSize": fixed8(m.lot_step)},
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": fixed8(m.max_qty),
                 "stepSize": "0.00000000"},
                {"filterType": "NOTIONAL", "minNotional": fixed8(m.min_notional), "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def klines(self, req: Request) -> list[list[Any]]:
        market = self._market(req)
        interval = req.params.get("interval")
        if not interval:
            raise _missing("interval")
        if interval not in INTERVAL_MS:
            raise BinanceError(400, -1120, "Invalid interval.")
        limit = min(max(_int(req, "limit") or 500, 1), 1000)
        rows = self.ctx.klines.query(
            market, interval, start=_int(req, "startTime"), end=_int(req, "endTime"), limit=limit,
            now_ms=req.now_ms, latest_first=False,
        )
        size = INTERVAL_MS[interval]
        return [
            [k.open_time, fixed8(k.open), fixed8(k.high), fixed8(k.low), fixed8(k.close), fixed8(k.volume),
             k.open_time + size - 1, fixed8(k.volume * k.close), 100 + k.open_time // size % 900,
             fixed8(k.volume / 2), fixed8(k.volume * k.close / 2), "0"]
            for k in rows
        ]

    def ticker_24hr(self, req: Request) -> Any:
        if not req.params.get("symbol"):
            return [self._ticker(m, req.now_ms) for m in self.ctx.book.markets.values()]
        return self._ticker(self._market(req), req.now_ms)

    @staticmethod
    def _ticker(m: MarketSpec, now: int) -> dict[str, Any]:
        change = m.price - m.anchor
        return {
            "symbol": m.venue_id, "priceChange": fixed8(change),
            "priceChangePercent": f"{(change / m.anchor * 100):.3f}", "weightedAvgPrice": fixed8(m.price),
            "prevClosePrice": fixed8(m.anchor), "lastPrice": fixed8(m.price), "lastQty": fixed8(m.lot_step),
            "bidPrice": fixed8(m.price - m.tick_size), "bidQty": "1.00000000",
            "askPrice": fixed8(m.price + m.tick_size), "askQty": "1.00000000",
            "openPrice": fixed8(m.anchor), "highPrice": fixed8(max(m.price, m.anchor)),
            "lowPrice": fixed8(min(m.price, m.anchor)), "volume": "1000.00000000",
            "quoteVolume": fixed8(m.price * 1000), "openTime": now - 86_400_000, "closeTime": now,
            "firstId": 1, "lastId": 1000, "count": 1000,
        }

    # ------------------------------------------------------------------ account & orders
    def account(self, req: Request) -> dict[str, Any]:
        rows = self.ctx.book.balance_rows()
        omit_zero = req.params.get("omitZeroBalances") == "true"
        rate = fixed8(self.ctx.book.fee_rate)
        return {
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": "0.00000000", "seller": "0.00000000"},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": req.now_ms,
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": fixed8(free), "locked": fixed8(locked)}
                for asset, (free, locked) in sorted(rows.items()) if not (omit_zero and free == locked == 0)
            ],
            "permissions": ["SPOT"], "uid": 354937868,
        }

    def create_order(self, req: Request) -> dict[str, Any]:
        market = self._market(req)
        side = req.params.get("side", "")
        if not side:
            raise _missing("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        order_type = req.params.get("type", "")
        if not order_type:
            raise _missing("type")
        if order_type not in _TYPES:
            raise BinanceError(400, -1116, "Invalid orderType.")
        client_id = req.params.get("newClientOrderId")
        if client_id is None:
            client_id = f"emu{req.now_ms}{next(self._cancel_ids)}"
        elif not CLIENT_ID_RE.match(client_id):
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal "
                                           "range is '^[a-zA-Z0-9-_]{1,36}$'.")
        qty = _decimal(req, "quantity")
        quote_qty = _decimal(req, "quoteOrderQty")
        price = _decimal(req, "price")
        stop_price = _decimal(req, "stopPrice")
        tif = req.params.get("timeInForce") or "GTC"
        if order_type == "LIMIT":
            if not req.params.get("timeInForce"):
                raise _missing("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(400, -1115, "Invalid timeInForce.")
            if qty is None:
                raise _missing("quantity")
            if price is None:
                raise _missing("price")
        elif order_type == "STOP_LOSS":
            if qty is None:
                raise _missing("quantity")
            if stop_price is None:
                raise _missing("stopPrice")
            if price is not None:
                raise BinanceError(400, -1106, "Parameter 'price' sent when not required.")
        elif qty is None and quote_qty is None:
            raise BinanceError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                                           "empty/null!")
        if self.orders_per_10s is not None and self._orders_10s.peek(req.now_ms) >= self.orders_per_10s:
            raise BinanceError(429, -1015, f"Too many new orders; current limit is {self.orders_per_10s} orders "
                                           "per 10 SECOND.")
        order = self.ctx.book.place(
            symbol=market.symbol, side=side.lower(), type=_TYPES[order_type], qty=qty,
            quote_qty=quote_qty if qty is None else None, price=price, client_id=client_id,
            time_in_force=tif, partial_fraction=req.effects.partial_fraction, force_duplicate=req.effects.duplicate,
            # A STOP_LOSS sell fires when the price falls to the stop, a buy when it rises to it.
            stop_price=stop_price, trigger_direction="fall" if side == "SELL" else "rise",
        )
        self._orders_10s.add(1, req.now_ms)
        self._orders_day.add(1, req.now_ms)
        if order.type == "limit" and tif in ("IOC", "FOK") and order.is_open:
            order = self.ctx.book.cancel(symbol=market.symbol, order_id=order.id, expire=True)
        resp_type = req.params.get("newOrderRespType") or "FULL"
        if resp_type == "ACK":
            return {"symbol": market.venue_id, "orderId": order.id, "orderListId": -1,
                    "clientOrderId": order.client_id, "transactTime": order.created_ms}
        body = self._order_json(order, market)
        for key in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty"):
            if not (key == "stopPrice" and order.type == "stop"):      # a conditional field: only on stops
                body.pop(key)
        body["transactTime"] = order.created_ms
        if resp_type == "FULL":
            body["fills"] = [self._fill_json(f) for f in order.fills]
        return body

    def query_order(self, req: Request) -> dict[str, Any]:
        market = self._market(req)
        order = self._lookup(req, market)
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return self._order_json(order, market)

    def cancel_order(self, req: Request) -> dict[str, Any]:
        market = self._market(req)
        order_id, client_id = self._ids(req)
        try:
            order = self.ctx.book.cancel(symbol=market.symbol, order_id=order_id, client_id=client_id)
        except Reject:
            raise BinanceError(400, -2011, "Unknown order sent.") from None
        body = self._order_json(order, market)
        for key in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty", "workingTime"):
            if not (key == "stopPrice" and order.type == "stop"):
                body.pop(key)
        # In a cancel answer clientOrderId is the *cancel request's* id; the original is origClientOrderId.
        body["origClientOrderId"] = order.client_id
        body["clientOrderId"] = req.params.get("newClientOrderId") or f"cancel{next(self._cancel_ids)}"
        body["transactTime"] = req.now_ms
        return body

    def cancel_replace(self, req: Request) -> dict[str, Any]:
        """``POST /api/v3/order/cancelReplace``: cancel one order and place another on the same symbol
        in one request. ``STOP_ON_FAILURE``: when the cancel fails the new order is not attempted
        (400, -2022); when the cancel succeeds and the new order fails the old one stays canceled
        (409, -2021). Each answer carries what happened to both halves under ``data``."""
        market = self._market(req)
        mode = req.params.get("cancelReplaceMode", "")
        if not mode:
            raise _missing("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise BinanceError(400, -1145, "Invalid cancelReplaceMode.")
        if not req.params.get("cancelOrigClientOrderId") and not req.params.get("cancelOrderId"):
            raise BinanceError(400, -1102, "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but "
                                           "both were empty/null!")
        cancel_params = {"symbol": req.params["symbol"],
                         "origClientOrderId": req.params.get("cancelOrigClientOrderId", ""),
                         "orderId": req.params.get("cancelOrderId", ""),
                         "newClientOrderId": req.params.get("cancelNewClientOrderId", "")}
        new_params = {k: v for k, v in req.params.items() if not k.startswith("cancel")}
        # Filters are evaluated before anything is canceled: a new order that breaks one leaves
        # the old order as it was (a plain -1013). What only the matching engine decides (would
        # trigger immediately, insufficient balance, a closed market) comes after the cancel.
        self._check_filters(market, new_params)
        cancel_response: dict[str, Any]
        try:
            cancel_response = self.cancel_order(replace(req, params={k: v for k, v in cancel_params.items() if v}))
            cancel_result = "SUCCESS"
        except BinanceError as exc:
            cancel_response, cancel_result = {"code": exc.code, "msg": exc.msg}, "FAILURE"
        if cancel_result == "FAILURE" and mode == "STOP_ON_FAILURE":
            raise BinanceError(400, -2022, "Order cancel-replace failed.", {
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED", "cancelResponse": cancel_response,
                "newOrderResponse": None})
        try:
            new_response = self.create_order(replace(req, params=new_params))
            new_result = "SUCCESS"
        except BinanceError as exc:
            new_response, new_result = {"code": exc.code, "msg": exc.msg}, "FAILURE"
        except Reject as exc:
            code, msg = _REJECTS.get(exc.kind, (-1102, exc.detail))
            new_response, new_result = {"code": code, "msg": msg}, "FAILURE"
        data = {"cancelResult": cancel_result, "newOrderResult": new_result, "cancelResponse": cancel_response,
                "newOrderResponse": new_response}
        if new_result == "FAILURE":
            if cancel_result == "FAILURE":
                raise BinanceError(400, -2022, "Order cancel-replace failed.", data)
            raise BinanceError(409, -2021, "Order cancel-replace partially failed.", data)
        return data

    @staticmethod
    def _check_filters(market: MarketSpec, params: dict[str, str]) -> None:
        try:
            qty = Decimal(params.get("quantity") or "0")
            stop = Decimal(params["stopPrice"]) if params.get("stopPrice") else None
            price = Decimal(params["price"]) if params.get("price") else None
        except InvalidOperation:
            raise BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
        for level in (stop, price):
            if level is not None and (level <= 0 or level % market.tick_size != 0):
                raise BinanceError(400, *_REJECTS["price_filter"])
        if qty < market.min_qty or qty % market.lot_step != 0:
            raise BinanceError(400, *_REJECTS["lot_size"])
        reference = stop or price or market.price
        if qty * reference < market.min_notional:
            raise BinanceError(400, *_REJECTS["min_notional"])

    def open_orders(self, req: Request) -> list[dict[str, Any]]:
        symbol = self._market(req).symbol if req.params.get("symbol") else None
        book = self.ctx.book
        return [self._order_json(o, book.market(o.symbol)) for o in book.open_orders(symbol)]

    def all_orders(self, req: Request) -> list[dict[str, Any]]:
        market = self._market(req)
        limit = min(max(_int(req, "limit") or 500, 1), 1000)
        orders = sorted(self.ctx.book.orders_for(market.symbol), key=lambda o: o.id)
        return [self._order_json(o, market) for o in orders[-limit:]]

    def my_trades(self, req: Request) -> list[dict[str, Any]]:
        market = self._market(req)
        limit = min(max(_int(req, "limit") or 500, 1), 1000)
        fills = self.ctx.book.fills_for(market.symbol)
        order_id = _int(req, "orderId")
        if order_id is not None:
            fills = [f for f in fills if f.order_id == order_id]
        from_id, start, end = _int(req, "fromId"), _int(req, "startTime"), _int(req, "endTime")
        if from_id is not None:
            fills = [f for f in fills if f.id >= from_id][:limit]
        elif start is not None or end is not None:
            fills = [f for f in fills if (start is None or f.time_ms >= start) and (end is None or f.time_ms <= end)]
            fills = fills[:limit] if start is not None else fills[-limit:]
        else:
            fills = fills[-limit:]
        return [self._trade_json(f, market) for f in fills]

    # ------------------------------------------------------------------ shapes
    def _ids(self, req: Request) -> tuple[int | None, str | None]:
        order_id = _int(req, "orderId")
        client_id = req.params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise BinanceError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                           "empty/null!")
        return order_id, client_id

    def _lookup(self, req: Request, market: MarketSpec) -> Order | None:
        order_id, client_id = self._ids(req)
        return self.ctx.book.get(symbol=market.symbol, order_id=order_id, client_id=client_id)

    @staticmethod
    def _order_json(o: Order, m: MarketSpec) -> dict[str, Any]:
        return {
            "symbol": m.venue_id, "orderId": o.id, "orderListId": -1, "clientOrderId": o.client_id,
            "price": fixed8(o.price or Decimal(0)), "origQty": fixed8(o.qty), "executedQty": fixed8(o.executed),
            "cummulativeQuoteQty": fixed8(o.cum_quote), "status": _STATUS[o.status],
            "timeInForce": o.time_in_force, "type": _WIRE_TYPES[o.type], "side": o.side.upper(),
            "stopPrice": fixed8(o.stop_price or Decimal(0)), "icebergQty": "0.00000000", "time": o.created_ms,
            "updateTime": o.updated_ms, "isWorking": o.type != "stop" or o.triggered, "workingTime": o.created_ms,
            "origQuoteOrderQty": fixed8(o.quote_qty or Decimal(0)), "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    @staticmethod
    def _fill_json(f: Fill) -> dict[str, Any]:
        return {"price": fixed8(f.price), "qty": fixed8(f.qty), "commission": fixed8(f.fee),
                "commissionAsset": f.fee_asset, "tradeId": f.id}

    @staticmethod
    def _trade_json(f: Fill, m: MarketSpec) -> dict[str, Any]:
        return {
            "symbol": m.venue_id, "id": f.id, "orderId": f.order_id, "orderListId": -1, "price": fixed8(f.price),
            "qty": fixed8(f.qty), "quoteQty": fixed8(f.quote_qty), "commission": fixed8(f.fee),
            "commissionAsset": f.fee_asset, "time": f.time_ms, "isBuyer": f.side == "buy",
            "isMaker": f.is_maker, "isBestMatch": True,
        }
