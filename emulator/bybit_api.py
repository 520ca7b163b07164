"""Bybit v5 spot REST as ccxt 4.5.90 uses it: envelope, signing, retCodes, per-UID limits."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from emulator.core import Fill, MarketSpec, Order, Reject, plain
from emulator.faults import FaultRule
from emulator.klines import BYBIT_INTERVALS
from emulator.venue import Context, FixedWindow, Request, Response, VenueApi, http_error_page

CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
_SEVEN_DAYS_MS = 7 * 86_400_000
_REJECTS: dict[str, tuple[int, str]] = {
    "unknown_symbol": (170121, "Invalid symbol."),
    "duplicate": (170141, "Duplicate clientOrderId."),
    "lot_size": (170136, "Order quantity is lower than the minimum."),
    "price_filter": (170134, "Order price has too many decimals."),
    "min_notional": (170140, "Order value exceeded lower limit."),
    "insufficient": (170131, "Insufficient balance."),
    "bad_param": (10001, "params error"),
    "would_trigger": (10001, "params error: triggerPrice equals the last price"),
    # Which code Bybit gives a halted spot pair, or a pair without conditional orders, is not
    # documented; these are the Spot Trade table's nearest entries (error.mdx) [UNVERIFIED].
    "halted": (170151, "The trading pair is not open yet"),
    "stops_unsupported": (170227, "This feature is not supported."),
    # Amending an order that is no longer open (Spot Trade table).
    "filled": (170139, "Order has been filled."),
    "canceled": (170142, "Order has been canceled"),
    "not_found": (170213, "Order does not exist."),
    "not_amendable": (170312, "The current order does not support modification"),
}
_ORDER_FILTERS = ("Order", "StopOrder")   # active orders and spot conditional orders (tpsl/OCO: not emulated)
# Per-UID requests per second for spot (rate-limit.mdx); other private endpoints get the default.
DEFAULT_PER_SECOND: dict[str, int] = {
    "/v5/order/create": 20, "/v5/order/cancel": 20, "/v5/order/amend": 20, "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50, "/v5/account/wallet-balance": 50,
}
DEFAULT_PRIVATE_PER_SECOND = 50
IP_LIMIT_PER_5S = 600


class BybitError(Exception):
    def __init__(self, code: int, msg: str, *, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


@dataclass(frozen=True)
class _Route:
    fn: Callable[[Request, dict[str, Any]], Any]
    private: bool


def _params_error(detail: str) -> BybitError:
    return BybitError(10001, f"params error: {detail}")


def _decimal(params: dict[str, Any], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise _params_error(f"{name} invalid") from None
    if not value.is_finite() or value <= 0:
        raise _params_error(f"{name} invalid")
    return value


def _int(params: dict[str, Any], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise _params_error(f"{name} invalid") from None


class BybitApi(VenueApi):
    name = "bybit"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.per_second: int | None = None        # None: the per-endpoint defaults above
        self.limits_enabled = True
        self.ip_per_5s: int | None = IP_LIMIT_PER_5S
        self._windows: dict[str, FixedWindow] = {}
        self._ip_window = FixedWindow(5_000)
        self._link_ids = itertools.count(1)
        self.routes: dict[tuple[str, str], _Route] = {
            ("GET", "/v5/market/time"): _Route(self.time, False),
            ("GET", "/v5/market/instruments-info"): _Route(self.instruments, False),
            ("GET", "/v5/market/kline"): _Route(self.kline, False),
            ("GET", "/v5/market/tickers"): _Route(self.tickers, False),
            ("GET", "/v5/account/wallet-balance"): _Route(self.wallet_balance, True),
            ("GET", "/v5/account/info"): _Route(self.account_info, True),
            ("GET", "/v5/user/query-api"): _Route(self.query_api, True),
            ("POST", "/v5/order/create"): _Route(self.create_order, True),
            ("POST", "/v5/order/cancel"): _Route(self.cancel_order, True),
            ("POST", "/v5/order/amend"): _Route(self.amend_order, True),
            ("GET", "/v5/order/realtime"): _Route(self.realtime, True),
            ("GET", "/v5/order/history"): _Route(self.history, True),
            ("GET", "/v5/execution/list"): _Route(self.executions, True),
        }

    # ------------------------------------------------------------------ plumbing
    def _envelope(self, req: Request, result: Any, code: int = 0, msg: str = "OK") -> dict[str, Any]:
        return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": req.now_ms}

    def handle(self, req: Request) -> Response:
        route = self.routes.get((req.method, req.path))
        if route is None:
            return Response(404, http_error_page(404))
        if self.ip_per_5s is not None and self._ip_window.add(1, req.now_ms) > self.ip_per_5s:
            return Response(403, "access too frequent")
        headers: dict[str, str] = {}
        params: dict[str, Any] = req.body_json if req.method == "POST" else req.params
        try:
            if route.private:
                self._authenticate(req)
                if self._charge(req, headers):
                    return Response(200, self._envelope(req, {}, 10006, "Too many visits!"), headers)
            if not isinstance(params, dict):
                raise _params_error("request body must be a JSON object")
            result = route.fn(req, params)
        except BybitError as exc:
            return Response(exc.status, self._envelope(req, {}, exc.code, exc.msg), headers)
        except Reject as exc:
            code, msg = _REJECTS.get(exc.kind, (10001, exc.detail))
            return Response(200, self._envelope(req, {}, code, msg), headers)
        return Response(200, self._envelope(req, result), headers)

    def _charge(self, req: Request, headers: dict[str, str]) -> bool:
        """Count the request against its per-second limit; True when over it."""
        limit = self.per_second or DEFAULT_PER_SECOND.get(req.path, DEFAULT_PRIVATE_PER_SECOND)
        window = self._windows.setdefault(req.path, FixedWindow(1_000))
        used = window.add(1, req.now_ms)
        headers["X-Bapi-Limit"] = str(limit)
        headers["X-Bapi-Limit-Status"] = str(max(limit - used, 0))
        headers["X-Bapi-Limit-Reset-Timestamp"] = str(window.reset_at_ms(req.now_ms))
        return self.limits_enabled and used > limit

    def fault_response(self, rule: FaultRule, req: Request) -> Response:
        if rule.action == "rate_limit_429":
            retry_after = float(rule.params.get("retry_after", 5))
            headers = {"X-Bapi-Limit": str(DEFAULT_PER_SECOND.get(req.path, DEFAULT_PRIVATE_PER_SECOND)),
                       "X-Bapi-Limit-Status": "0",
                       "X-Bapi-Limit-Reset-Timestamp": str(req.now_ms + int(retry_after * 1000))}
            return Response(200, self._envelope(req, {}, 10006, "Too many visits!"), headers)
        if rule.action == "ban_418":
            # Bybit's IP ban is an HTTP 403 with a plain-text body (wait >= 10 minutes).
            headers = {"Retry-After": str(rule.params["retry_after"])} if "retry_after" in rule.params else {}
            return Response(403, "access too frequent", headers)
        status = int(rule.params["status"])
        if "body" in rule.params:
            return Response(status, rule.params["body"])
        if rule.params.get("json"):
            return Response(status, self._envelope(req, {}, 10016, "Internal server error."))
        return Response(status, http_error_page(status))

    def set_rate_limit(self, config: dict[str, Any]) -> dict[str, Any]:
        if "per_second" in config:
            value = config["per_second"]
            self.limits_enabled = value is not None
            self.per_second = value
        if "ip_per_5s" in config:
            self.ip_per_5s = config["ip_per_5s"]
        return {"per_second": self.per_second, "limits_enabled": self.limits_enabled, "ip_per_5s": self.ip_per_5s}

    def reset_limits(self) -> None:
        self._windows.clear()
        self._ip_window.clear()
        self.per_second, self.limits_enabled, self.ip_per_5s = None, True, IP_LIMIT_PER_5S

    def _authenticate(self, req: Request) -> None:
        key = req.headers.get("X-BAPI-API-KEY")
        if not key or not hmac.compare_digest(key, self.ctx.api_key):
            raise BybitError(10003, "API key is invalid.", status=401)
        timestamp = req.headers.get("X-BAPI-TIMESTAMP", "")
        recv_window = req.headers.get("X-BAPI-RECV-WINDOW") or "5000"
        sign = req.headers.get("X-BAPI-SIGN", "")
        # Signed bytes are the raw query (GET) or the raw body (POST), never a re-serialised copy.
        signed = req.raw_query if req.method == "GET" else req.raw_body.decode()
        expected = hmac.new(self.ctx.api_secret.encode(), f"{timestamp}{key}{recv_window}{signed}".encode(),
                            hashlib.sha256).hexdigest()
        if not sign or not hmac.compare_digest(expected, sign.lower()):
            raise BybitError(10004, "Error sign, please check your signature generation algorithm.")
        try:
            ts, window = int(timestamp), int(recv_window)
        except ValueError:
            raise BybitError(10002, "invalid request, please check your timestamp and recv_window param") from None
        if not (req.now_ms - window <= ts < req.now_ms + 1000):
            raise BybitError(10002, "invalid request, please check your server timestamp or recv_window param. "
                                    f"req_timestamp[{ts}],server_timestamp[{req.now_ms}],recv_window[{window}]")

    def _market(self, params: dict[str, Any]) -> MarketSpec:
        symbol = params.get("symbol")
        if not symbol:
            raise _params_error("symbol is required")
        try:
            return self.ctx.book.market(str(symbol))
        except Reject:
            raise BybitError(10001, "params error: symbol invalid") from None

    @staticmethod
    def _spot_only(params: dict[str, Any]) -> None:
        if params.get("category") != "spot":
            raise BybitError(10001, "params error: the emulator only serves category=spot")

    # ------------------------------------------------------------------ market data
    def time(self, req: Request, _params: dict[str, Any]) -> dict[str, Any]:
        return {"timeSecond": str(req.now_ms // 1000), "timeNano": str(req.now_ms * 1_000_000)}

    def instruments(self, _req: Request, params: dict[str, Any]) -> dict[str, Any]:
        category = params.get("category")
        if category != "spot":
            # ccxt only asks for spot when configured for it; other categories are simply empty here.
            return {"category": category or "", "list": [], "nextPageCursor": ""}
        markets = list(self.ctx.book.markets.values())
        if params.get("symbol"):
            markets = [self._market(params)]
        return {
            "category": "spot",
            "list": [
                {
                    "symbol": m.venue_id, "baseCoin": m.base, "quoteCoin": m.quote, "innovation": "0",
                    "status": "Trading", "marginTrading": "none", "stTag": "0",
                    "lotSizeFilter": {"basePrecision": plain(m.lot_step), "quotePrecision": "0.00000001",
                                      "minOrderQty": plain(m.min_qty), "maxOrderQty": plain(m.max_qty),
                                      "minOrderAmt": plain(m.min_notional), "maxOrderAmt": "2000000"},
                    "priceFilter": {"tickSize": plain(m.tick_size)},
                    "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
                }
                for m in markets
            ],
            "nextPageCursor": "",
        }

    def kline(self, req: Request, params: dict[str, Any]) -> dict[str, Any]:
        market = self._market(params)
        interval = BYBIT_INTERVALS.get(str(params.get("interval", "")))
        if interval is None:
            raise _params_error("interval invalid")
        limit = min(max(_int(params, "limit") or 200, 1), 1000)
        rows = self.ctx.klines.query(
            market, interval, start=_int(params, "start"), end=_int(params, "end"), limit=limit,
            now_ms=req.now_ms, latest_first=True,
        )
        return {
            "symbol": market.venue_id, "category": params.get("category", "spot"),
            "list": [
                [str(k.open_time), plain(k.open), plain(k.high), plain(k.low), plain(k.close), plain(k.volume),
                 plain(k.volume * k.close)]
                for k in reversed(rows)   # Bybit answers newest first
            ],
        }

    def tickers(self, _req: Request, params: dict[str, Any]) -> dict[str, Any]:
        self._spot_only(params)
        markets = [self._market(params)] if params.get("symbol") else list(self.ctx.book.markets.values())
        return {
            "category": "spot",
            "list": [
                {
                    "symbol": m.venue_id, "bid1Price": plain(m.price - m.tick_size), "bid1Size": "1",
                    "ask1Price": plain(m.price + m.tick_size), "ask1Size": "1", "lastPrice": plain(m.price),
                    "prevPrice24h": plain(m.anchor), "price24hPcnt": f"{(m.price - m.anchor) / m.anchor:.4f}",
                    "highPrice24h": plain(max(m.price, m.anchor)), "lowPrice24h": plain(min(m.price, m.anchor)),
                    "turnover24h": plain(m.price * 1000), "volume24h": "1000", "usdIndexPrice": plain(m.price),
                }
                for m in markets
            ],
        }

    # ------------------------------------------------------------------ account
    def wallet_balance(self, _req: Request, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("accountType") != "UNIFIED":
            raise BybitError(10001, "accountType only support UNIFIED.")
        wanted = {c for c in str(params.get("coin") or "").split(",") if c}
        coins = []
        for asset, (free, locked) in sorted(self.ctx.book.balance_rows().items()):
            if wanted and asset not in wanted:
                continue
            total = plain(free + locked)
            coins.append({
                "coin": asset, "walletBalance": total, "equity": total, "locked": plain(locked),
                "usdValue": total, "availableToWithdraw": "", "availableToBorrow": "", "borrowAmount": "0",
                "accruedInterest": "0", "totalOrderIM": "0", "totalPositionIM": "0", "totalPositionMM": "0",
                "unrealisedPnl": "0", "cumRealisedPnl": "0", "bonus": "0", "collateralSwitch": True,
                "marginCollateral": True, "spotHedgingQty": "0",
            })
        return {"list": [{
            "accountType": "UNIFIED", "totalEquity": "0", "totalWalletBalance": "0", "totalMarginBalance": "0",
            "totalAvailableBalance": "0", "totalPerpUPL": "0", "totalInitialMargin": "0",
            "totalMaintenanceMargin": "0", "accountIMRate": "0", "accountMMRate": "0", "accountLTV": "0",
            "coin": coins,
        }]}

    def account_info(self, req: Request, _params: dict[str, Any]) -> dict[str, Any]:
        return {"unifiedMarginStatus": 4, "marginMode": "REGULAR_MARGIN", "isMasterTrader": False,
                "spotHedgingStatus": "OFF", "updatedTime": str(req.now_ms), "dcpStatus": "OFF",
                "timeWindow": 10, "smpGroup": 0}

    def query_api(self, _req: Request, _params: dict[str, Any]) -> dict[str, Any]:
        return {"id": "1", "note": "emulator", "apiKey": self.ctx.api_key, "readOnly": 0, "secret": "",
                "permissions": {"Spot": ["SpotTrade"], "Wallet": ["AccountTransfer"]}, "ips": ["*"], "type": 1,
                "deadlineDay": -1, "expiredAt": "", "createdAt": "", "unified": 0, "uta": 1, "userID": 1,
                "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0,
                "rsaPublicKey": "", "isMaster": True}

    # ------------------------------------------------------------------ orders
    def create_order(self, req: Request, params: dict[str, Any]) -> dict[str, Any]:
        self._spot_only(params)
        market = self._market(params)
        side = params.get("side")
        if side not in ("Buy", "Sell"):
            raise _params_error("side invalid")
        order_type = params.get("orderType")
        if order_type not in ("Market", "Limit"):
            raise _params_error("orderType invalid")
        order_filter = params.get("orderFilter") or "Order"
        if order_filter not in _ORDER_FILTERS:
            raise _params_error(f"orderFilter {order_filter!r} is not emulated")
        trigger = _decimal(params, "triggerPrice")
        if order_filter == "StopOrder":
            if trigger is None:
                raise _params_error("triggerPrice is required for conditional orders")
            if order_type != "Market":
                raise _params_error("conditional limit orders are not emulated")
            if trigger % market.tick_size != 0:
                raise BybitError(170134, "Order price has too many decimals.")
        elif trigger is not None:
            raise _params_error("triggerPrice needs orderFilter=StopOrder on spot")
        link_id = params.get("orderLinkId")
        if link_id is None or link_id == "":
            link_id = f"emu-{req.now_ms}-{next(self._link_ids)}"
        elif not isinstance(link_id, str) or not CLIENT_ID_RE.match(link_id):
            raise _params_error("orderLinkId invalid")
        qty = _decimal(params, "qty")
        if qty is None:
            raise _params_error("qty is required")
        price = _decimal(params, "price") if order_type == "Limit" else None
        if order_type == "Limit" and price is None:
            raise _params_error("price is required for limit orders")
        if price is not None and price % market.tick_size != 0:
            raise BybitError(170134, "Order price has too many decimals.")
        market_unit = params.get("marketUnit") or ("quoteCoin" if side == "Buy" else "baseCoin")
        quote_qty = qty if order_type == "Market" and market_unit == "quoteCoin" else None
        base_qty = None if quote_qty is not None else qty
        if base_qty is not None and base_qty % market.lot_step != 0:
            raise BybitError(170137, "Order quantity has too many decimals.")
        tif = str(params.get("timeInForce") or ("IOC" if order_type == "Market" else "GTC"))
        order = self.ctx.book.place(
            symbol=market.symbol, side=side.lower(), type="stop" if trigger is not None else order_type.lower(),
            qty=base_qty, quote_qty=quote_qty, price=price, client_id=link_id, time_in_force=tif,
            partial_fraction=req.effects.partial_fraction, force_duplicate=req.effects.duplicate,
            # Spot takes no triggerDirection: Bybit reads it from where the trigger is against the market.
            stop_price=trigger, trigger_direction="rise" if trigger is not None and trigger > market.price else "fall",
        )
        if order.type == "limit" and tif in ("IOC", "FOK") and order.is_open:
            self.ctx.book.cancel(symbol=market.symbol, order_id=order.id, expire=True)
        return {"orderId": str(order.id), "orderLinkId": order.client_id}

    def cancel_order(self, _req: Request, params: dict[str, Any]) -> dict[str, Any]:
        self._spot_only(params)
        market = self._market(params)
        order_id, link_id = self._ids(params)
        if order_id is None and link_id is None:
            raise _params_error("orderId or orderLinkId is required")
        # Spot cancels look in one kind of order only: active ones unless orderFilter=StopOrder.
        wanted = params.get("orderFilter") or "Order"
        found = self.ctx.book.get(symbol=market.symbol, order_id=order_id, client_id=link_id)
        if found is not None and self._filter_of(found) != wanted:
            raise BybitError(170213, "Order does not exist.")
        try:
            order = self.ctx.book.cancel(symbol=market.symbol, order_id=order_id, client_id=link_id)
        except Reject:
            raise BybitError(170213, "Order does not exist.") from None
        return {"orderId": str(order.id), "orderLinkId": order.client_id}

    def amend_order(self, _req: Request, params: dict[str, Any]) -> dict[str, Any]:
        """Only a conditional order's ``triggerPrice`` is emulated (what moving a stop needs)."""
        self._spot_only(params)
        market = self._market(params)
        order_id, link_id = self._ids(params)
        if order_id is None and link_id is None:
            raise _params_error("orderId or orderLinkId is required")
        emulated = {"category", "symbol", "orderId", "orderLinkId", "triggerPrice"}
        others = sorted(k for k, v in params.items() if k not in emulated and v not in (None, ""))
        if others:
            raise _params_error(f"amending {', '.join(others)} is not emulated")
        trigger = _decimal(params, "triggerPrice")
        if trigger is None:
            raise _params_error("nothing to amend: triggerPrice is required")
        try:
            order = self.ctx.book.amend_stop(symbol=market.symbol, order_id=order_id, client_id=link_id,
                                             stop_price=trigger)
        except Reject as exc:
            if exc.kind == "price_filter":
                raise BybitError(170134, "Order price decimal too long.") from None
            if exc.kind == "would_trigger":
                # The UTA codes for a conditional order whose new trigger is already reached from
                # its direction (error.mdx 110092 / 110093) [UNVERIFIED for spot].
                found = self.ctx.book.get(symbol=market.symbol, order_id=order_id, client_id=link_id)
                rising = found is not None and found.trigger_direction == "rise"
                code, expect, relation = (110092, "Rising", "<=") if rising else (110093, "Falling", ">=")
                raise BybitError(code, f"expect {expect}, but trigger_price[{plain(trigger)}] {relation} "
                                       f"current[{plain(market.price)}]") from None
            raise
        return {"orderId": str(order.id), "orderLinkId": order.client_id}

    def realtime(self, _req: Request, params: dict[str, Any]) -> dict[str, Any]:
        self._spot_only(params)
        open_only = str(params.get("openOnly") or "0") == "0"
        by_id = any(self._ids(params))      # Bybit ignores openOnly when asked for one order by id
        orders = self._select_orders(params, lambda o: by_id or o.is_open == open_only)
        if not open_only:
            orders = orders[:500]
        return self._page(params, orders, self._order_json, default_limit=20, max_limit=50)

    def history(self, _req: Request, params: dict[str, Any]) -> dict[str, Any]:
        self._spot_only(params)
        status = params.get("orderStatus")
        orders = self._select_orders(
            params, lambda o: not o.is_open and (status is None or self._status(o) == status),
        )
        start, end = _int(params, "startTime"), _int(params, "endTime")
        orders = [o for o in orders
                  if (start is None or o.created_ms >= start) and (end is None or o.created_ms <= end)]
        return self._page(params, orders, self._order_json, default_limit=20, max_limit=50)

    def executions(self, req: Request, params: dict[str, Any]) -> dict[str, Any]:
        self._spot_only(params)
        exec_type = params.get("execType")
        if exec_type not in (None, "", "Trade"):
            fills: list[Fill] = []
        else:
            market = self._market(params) if params.get("symbol") else None
            symbols = [market.symbol] if market else list(self.ctx.book.markets)
            fills = [f for s in symbols for f in self.ctx.book.fills_for(s)]
        start, end = _int(params, "startTime"), _int(params, "endTime")
        # Bybit serves at most a 7-day window: only start -> [start, start+7d]; neither -> the last 7 days.
        if start is None and end is None:
            end = req.now_ms
        if start is None:
            assert end is not None
            start = end - _SEVEN_DAYS_MS
        if end is None:
            end = start + _SEVEN_DAYS_MS
        order_id, link_id = self._ids(params)
        fills = [
            f for f in fills
            if start <= f.time_ms <= end and (order_id is None or f.order_id == order_id)
            and (link_id is None or f.client_id == link_id)
        ]
        fills.sort(key=lambda f: (f.time_ms, f.id), reverse=True)
        return self._page(params, fills, self._exec_json, default_limit=50, max_limit=100)

    # ------------------------------------------------------------------ helpers & shapes
    @staticmethod
    def _ids(params: dict[str, Any]) -> tuple[int | None, str | None]:
        raw_id = params.get("orderId")
        order_id = None
        if raw_id not in (None, ""):
            try:
                order_id = int(str(raw_id))
            except ValueError:
                order_id = -1          # a well-formed request for an order that cannot exist
        link_id = params.get("orderLinkId") or None
        return order_id, (str(link_id) if link_id is not None else None)

    @staticmethod
    def _filter_of(o: Order) -> str:
        return "StopOrder" if o.type == "stop" else "Order"

    def _select_orders(self, params: dict[str, Any], keep: Callable[[Order], bool]) -> list[Order]:
        """Orders matching ids/symbol and ``keep``; a UTA query without orderFilter sees every kind."""
        book = self.ctx.book
        order_filter = params.get("orderFilter") or None
        order_id, link_id = self._ids(params)
        symbols = [self._market(params).symbol] if params.get("symbol") else list(book.markets)
        if order_id is not None or link_id is not None:
            found = [book.get(symbol=s, order_id=order_id, client_id=link_id) for s in symbols]
            candidates = [o for o in found if o is not None]
        else:
            candidates = [o for s in symbols for o in book.orders_for(s)]
        return sorted((o for o in candidates if keep(o) and order_filter in (None, self._filter_of(o))),
                      key=lambda o: o.id, reverse=True)

    @staticmethod
    def _page(params: dict[str, Any], rows: list[Any], shape: Callable[[Any], dict[str, Any]], *,
              default_limit: int, max_limit: int) -> dict[str, Any]:
        limit = min(max(_int(params, "limit") or default_limit, 1), max_limit)
        cursor = str(params.get("cursor") or "")
        offset = int(cursor[2:]) if cursor.startswith("p:") and cursor[2:].isdigit() else 0
        page = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return {"category": "spot", "list": [shape(r) for r in page],
                "nextPageCursor": f"p:{offset + limit}" if more else ""}

    @staticmethod
    def _status(o: Order) -> str:
        if o.status in ("canceled", "expired"):
            return "PartiallyFilledCanceled" if o.executed > 0 else "Cancelled"
        if o.type == "stop" and not o.triggered and o.status == "new":
            return "Untriggered"
        return {"new": "New", "partially_filled": "PartiallyFilled", "filled": "Filled"}[o.status]

    def _order_json(self, o: Order) -> dict[str, Any]:
        m = self.ctx.book.market(o.symbol)
        leaves = o.remaining if o.is_open else Decimal(0)
        stop = o.type == "stop" and o.stop_price is not None
        return {
            "orderId": str(o.id), "orderLinkId": o.client_id, "blockTradeId": "", "symbol": m.venue_id,
            "price": plain(o.price) if o.price is not None else "0", "qty": plain(o.qty),
            "side": o.side.capitalize(), "isLeverage": "0", "positionIdx": 0, "orderStatus": self._status(o),
            "cancelType": "CancelByUser" if o.status == "canceled" else "UNKNOWN",
            "rejectReason": "EC_NoError", "avgPrice": plain(o.avg_price) if o.executed else "",
            "leavesQty": plain(leaves), "leavesValue": plain(leaves * (o.price or o.lock_price)),
            "cumExecQty": plain(o.executed), "cumExecValue": plain(o.cum_quote), "cumExecFee": plain(o.cum_fee),
            "timeInForce": o.time_in_force, "orderType": "Limit" if o.type == "limit" else "Market",
            "stopOrderType": "Stop" if stop else "",
            "orderIv": "", "marketUnit": "" if o.type == "limit" else ("quoteCoin" if o.quote_qty else "baseCoin"),
            "triggerPrice": plain(o.stop_price) if stop else "0", "takeProfit": "0", "stopLoss": "0",
            "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": {"rise": 1, "fall": 2}.get(o.trigger_direction, 0),
            "triggerBy": "LastPrice" if stop else "", "lastPriceOnCreated": plain(o.lock_price),
            "reduceOnly": False, "closeOnTrigger": False, "smpType": "None", "smpGroup": 0, "smpOrderId": "",
            "tpslMode": "", "tpLimitPrice": "", "slLimitPrice": "", "placeType": "",
            "createdTime": str(o.created_ms), "updatedTime": str(o.updated_ms),
        }

    def _exec_json(self, f: Fill) -> dict[str, Any]:
        m = self.ctx.book.market(f.symbol)
        return {
            "symbol": m.venue_id, "orderId": str(f.order_id), "orderLinkId": f.client_id,
            "side": f.side.capitalize(), "orderPrice": plain(f.price), "orderQty": plain(f.qty), "leavesQty": "0",
            "createType": "CreateByUser", "orderType": "Market" if not f.is_maker else "Limit",
            "stopOrderType": "", "execFee": plain(f.fee), "execId": str(f.id), "execPrice": plain(f.price),
            "execQty": plain(f.qty), "execType": "Trade", "execValue": plain(f.quote_qty),
            "execTime": str(f.time_ms), "feeCurrency": f.fee_asset, "isMaker": f.is_maker,
            "feeRate": plain(self.ctx.book.fee_rate), "tradeIv": "", "markIv": "", "markPrice": "",
            "indexPrice": "", "underlyingPrice": "", "blockTradeId": "", "closedSize": "", "seq": f.id,
        }
