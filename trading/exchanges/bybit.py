"""Bybit v5 spot (unified trading account) through ccxt."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ccxt

from trading.exchanges.base import (
    Balance,
    Candle,
    MarketRules,
    OrderRequest,
    OrderType,
    Ticker,
    VenueOrder,
    VenueOrderStatus,
    VenueTrade,
    stop_price_problem,
)
from trading.exchanges.ccxt_gateway import (
    CcxtGateway,
    HttpExchange,
    clean_decimal,
    positive_or_none,
    to_decimal,
)
from trading.exchanges.errors import OrderNotFoundError, OutcomeUnknownError, RejectedError, TransientError

_STATUS = {
    "New": VenueOrderStatus.OPEN,
    "Created": VenueOrderStatus.OPEN,
    "Untriggered": VenueOrderStatus.OPEN,
    "Triggered": VenueOrderStatus.OPEN,
    "Active": VenueOrderStatus.OPEN,
    "PartiallyFilled": VenueOrderStatus.PARTIALLY_FILLED,
    "Filled": VenueOrderStatus.FILLED,
    "Cancelled": VenueOrderStatus.CANCELED,
    "PartiallyFilledCanceled": VenueOrderStatus.CANCELED,   # ccxt says "closed"; for us it is canceled
    "Deactivated": VenueOrderStatus.CANCELED,
    "Rejected": VenueOrderStatus.REJECTED,
}
_MAX_KLINES = 1000
_MAX_EXECUTIONS = 100
_MAX_ORDERS_PAGE = 50
_MAX_PAGES = 20          # safety stop when following nextPageCursor
_IP_BAN_S = 600.0        # Bybit: after a 403 "access too frequent", wait at least 10 minutes


class BybitGateway(CcxtGateway):
    name = "bybit"
    ccxt_class = ccxt.bybit
    clock_codes = frozenset({"10002"})
    auth_codes = frozenset({"10003", "10004", "10005", "10007", "10009", "10010", "33004"})
    # 10000 "server timeout", 10016 "server error": Bybit does not know the outcome either.
    unknown_outcome_codes = frozenset({"10000", "10016"})
    insufficient_codes = frozenset({"110004", "110007", "110012", "170131", "170033"})
    # 170139 "Order has been filled." / 170142 "Order has been canceled": an amend (or cancel) of
    # an order that is no longer open - for us, no open order with that id.
    not_found_codes = frozenset({"110001", "170213", "170139", "170142"})
    rate_limit_codes = frozenset({"10006", "10018"})
    duplicate_codes = frozenset({"110072", "170141"})

    def _ccxt_config(self) -> dict[str, Any]:
        return {
            # ccxt only fetches currencies (a signed extra call) when has['fetchCurrencies'] is True.
            "has": {"fetchCurrencies": False},
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                # Preset so the first private call does not add /v5/user/query-api + /v5/account/info.
                "enableUnifiedAccount": True,
                "enableUnifiedMargin": False,
                "recvWindow": 5000,
                "adjustForTimeDifference": False,
            },
        }

    # ------------------------------------------------------------------ errors
    def _venue_error(self, body: Any) -> tuple[str | None, str | None]:
        if isinstance(body, dict):
            code = body.get("retCode", body.get("ret_code"))
            if code is not None and str(code) != "0":
                return str(code), str(body.get("retMsg") or body.get("ret_msg") or "")
        return None, None

    def _rate_limit(self, http: HttpExchange, code: str | None) -> tuple[float, bool] | None:
        banned = http.status == 403     # Bybit's IP limit: plain 403 "access too frequent"
        if not banned and http.status != 429 and code not in self.rate_limit_codes:
            return None
        retry_after = self.retry_after_header(http.headers)
        if retry_after is None:
            reset = next((v for k, v in http.headers.items() if k.lower() == "x-bapi-limit-reset-timestamp"), None)
            reset_ms = to_decimal(reset)
            if reset_ms is not None:
                retry_after = max(float(reset_ms) / 1000 - time.time(), 0.0)
        if retry_after is None:
            retry_after = _IP_BAN_S if banned else 1.0
        return retry_after, banned

    def _is_duplicate(self, code: str | None, message: str | None) -> bool:
        return code in self.duplicate_codes

    # ------------------------------------------------------------------ markets & data
    def _rules_from_market(self, market: dict[str, Any]) -> MarketRules | None:
        info = market.get("info") or {}
        if info.get("status") != "Trading":
            return None
        lot = info.get("lotSizeFilter") or {}
        return MarketRules(
            symbol=market["symbol"], venue_symbol=info["symbol"], base=info["baseCoin"], quote=info["quoteCoin"],
            tick_size=clean_decimal((info.get("priceFilter") or {}).get("tickSize")),
            lot_step=clean_decimal(lot.get("basePrecision")), min_qty=clean_decimal(lot.get("minOrderQty")),
            min_notional=clean_decimal(lot.get("minOrderAmt")),
        )

    def _result(self, operation: str, *, write: bool = False) -> dict[str, Any]:
        body = self._json_or_unknown(operation, write=write)
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            cls = OutcomeUnknownError if write else TransientError
            raise cls(f"{operation}: answer without a result object", venue=self.name)
        return result

    def _rows(self, result: dict[str, Any]) -> list[Any]:
        """``result.list``, which every v5 answer we read carries (an absent one is not "empty")."""
        return self._expect(result["list"], list, "result.list")

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
    ) -> list[Candle]:
        interval_ms = self._interval_ms(timeframe)
        request_limit = min(limit + 1, _MAX_KLINES)      # +1: the forming candle is dropped
        params: dict[str, Any] = {"category": "spot", "symbol": self._venue_symbol(symbol),
                                  "interval": self._ex.timeframes[timeframe], "limit": request_limit}
        if since_ms is not None:
            # Bybit answers the *newest* candles of [start, end]; bounding end makes that the ones we want.
            params["start"] = since_ms
            params["end"] = since_ms + request_limit * interval_ms - 1
        self._call("fetch_closed_candles", lambda: self._ex.publicGetV5MarketKline(params))
        rows = self._rows(self._result("fetch_closed_candles"))
        candles = [
            Candle(open_time_ms=int(r[0]), open=Decimal(r[1]), high=Decimal(r[2]), low=Decimal(r[3]),
                   close=Decimal(r[4]), volume=Decimal(r[5]))
            for r in rows
        ]
        return self._closed_window(candles, interval_ms=interval_ms, since_ms=since_ms, limit=limit)

    def fetch_ticker(self, symbol: str) -> Ticker:
        params = {"category": "spot", "symbol": self._venue_symbol(symbol)}
        self._call("fetch_ticker", lambda: self._ex.publicGetV5MarketTickers(params))
        body = self._json_or_unknown("fetch_ticker", write=False)
        rows = self._rows(self._result("fetch_ticker"))
        if not rows:
            raise TransientError(f"fetch_ticker: no ticker for {symbol}", venue=self.name)
        row = rows[0]
        return self._ticker(symbol, row.get("lastPrice"), row.get("bid1Price"), row.get("ask1Price"),
                            body.get("time"))

    def fetch_balances(self) -> dict[str, Balance]:
        self._call("fetch_balances", lambda: self._ex.privateGetV5AccountWalletBalance({"accountType": "UNIFIED"}))
        accounts = self._rows(self._result("fetch_balances"))
        rows: list[tuple[str, Decimal, Decimal]] = []
        for coin in self._expect(accounts[0]["coin"], list, "wallet coins"):
            total = to_decimal(coin.get("walletBalance")) or Decimal(0)
            locked = to_decimal(coin.get("locked")) or Decimal(0)
            rows.append((coin["coin"], total - locked, locked))
        return self._balances(rows)

    def server_time_ms(self) -> int:
        self._call("server_time_ms", lambda: self._ex.publicGetV5MarketTime())
        body = self._json_or_unknown("server_time_ms", write=False)
        nanos = to_decimal((body.get("result") or {}).get("timeNano"))
        return int(nanos // 1_000_000) if nanos is not None else int(body["time"])

    # ------------------------------------------------------------------ orders
    def create_order(self, request: OrderRequest) -> VenueOrder:
        self._check_order_request(request)
        # price=None keeps a market order in base units (ccxt sends marketUnit=baseCoin).
        price = str(request.price) if request.type is OrderType.LIMIT else None
        ccxt_type = request.type.value
        params = {"orderLinkId": request.client_order_id}
        if request.type is OrderType.STOP_MARKET:
            self._refuse_stop_at_or_above_market(request.symbol, request.stop_price)
            # ccxt sends a spot market order with a trigger price as a conditional order
            # (orderFilter=StopOrder&triggerPrice=...); Bybit picks its direction itself.
            ccxt_type = "market"
            params["triggerPrice"] = str(request.stop_price)
        self._call("create_order", lambda: self._ex.create_order(
            request.symbol, ccxt_type, request.side.value, str(request.quantity), price, params,
        ), write=True)
        result = self._result("create_order", write=True)
        if not result.get("orderId"):
            raise OutcomeUnknownError(f"create_order: answer without orderId: {result}", venue=self.name)
        # Bybit acknowledges with ids only; the fill state is learnt from fetch_order / trades.
        return self._order(
            client_order_id=result.get("orderLinkId") or request.client_order_id,
            venue_order_id=result["orderId"], symbol=request.symbol, side=request.side.value,
            order_type=request.type, status=VenueOrderStatus.OPEN, quantity=request.quantity,
            filled=Decimal(0), average=None, price=request.price, updated_at_ms=int(time.time() * 1000),
            raw=result, stop_price=request.stop_price,
        )

    def _refuse_stop_at_or_above_market(self, symbol: str, stop_price: Decimal | None) -> None:
        """Binance refuses a sell stop that would trigger at once; Bybit would instead read a
        trigger above the market as "when the price rises to" — a different order. Refuse it
        here, as Binance and the paper venue do. One extra read; stops are not latency-bound."""
        last = self.fetch_ticker(symbol).last
        if stop_price is not None and last <= stop_price:
            raise RejectedError(f"Stop price would trigger immediately: stop {stop_price}, last {last}",
                                venue=self.name, code="would_trigger")

    amends_stops = True

    def amend_stop(self, symbol: str, client_order_id: str, stop_price: Decimal) -> VenueOrder:
        """``POST /v5/order/amend`` with the new ``triggerPrice``: the conditional order keeps its
        orderLinkId and quantity. Bybit answers with ids only, so the order is read back."""
        rule = self._rule(symbol)
        problem = stop_price_problem(stop_price, rule.tick_size)
        if problem:
            raise RejectedError(problem, venue=self.name, code="stop_price")
        # Bybit keeps a conditional order's direction on amend, so a trigger moved to or above the
        # market would fire at once (or be refused); refuse it here, as when placing.
        self._refuse_stop_at_or_above_market(symbol, stop_price)
        params = {"category": "spot", "symbol": rule.venue_symbol, "orderLinkId": client_order_id,
                  "triggerPrice": str(stop_price)}
        self._call("amend_stop", lambda: self._ex.privatePostV5OrderAmend(params), write=True)
        result = self._result("amend_stop", write=True)
        if not result.get("orderId"):
            raise OutcomeUnknownError(f"amend_stop: answer without orderId: {str(result)[:200]}", venue=self.name)
        try:
            order = self.fetch_order(symbol, client_order_id)
        except TransientError as exc:
            # The amend was accepted, but what the order looks like now (it may even have fired
            # since) is unknown until it is read: the caller resolves it by fetch_order.
            raise OutcomeUnknownError(f"amend_stop: accepted, but reading the order back failed: {exc}",
                                      venue=self.name) from exc
        if order is None:
            raise OutcomeUnknownError(f"amend_stop: accepted, but the venue then listed no order {client_order_id}",
                                      venue=self.name)
        return order

    def fetch_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        # Open orders are in "realtime", finished ones in "history". Orders only move from open to
        # finished, so asking in this order cannot miss an order that existed before the call.
        params = {"category": "spot", "symbol": self._venue_symbol(symbol), "orderLinkId": client_order_id}
        for operation, endpoint in (("fetch_order", self._ex.privateGetV5OrderRealtime),
                                    ("fetch_order", self._ex.privateGetV5OrderHistory)):
            self._call(operation, lambda endpoint=endpoint: endpoint(params))
            rows = self._rows(self._result(operation))
            for row in rows:
                if row.get("orderLinkId") == client_order_id:
                    return self._parse_order(row)
        return None

    def cancel_order(self, symbol: str, client_order_id: str) -> VenueOrder:
        params = {"category": "spot", "symbol": self._venue_symbol(symbol), "orderLinkId": client_order_id}
        try:
            self._call("cancel_order", lambda: self._ex.privatePostV5OrderCancel(params), write=True)
        except OrderNotFoundError:
            # Spot conditional (stop) orders are only found by a cancel that says so; Bybit
            # answered "no such order" definitely, so asking again cannot cancel twice.
            stop_params = {**params, "orderFilter": "StopOrder"}
            self._call("cancel_order", lambda: self._ex.privatePostV5OrderCancel(stop_params), write=True)
        result = self._result("cancel_order", write=True)
        if not result.get("orderId"):
            raise OutcomeUnknownError(f"cancel_order: answer without orderId: {str(result)[:200]}", venue=self.name)
        # The cancel answer is ids only; read the order back for its final fill state.
        try:
            order = self.fetch_order(symbol, client_order_id)
        except TransientError:
            order = None
        if order is not None:
            return order
        return self._order(
            client_order_id=client_order_id, venue_order_id=result.get("orderId", ""), symbol=symbol,
            side="buy", order_type=OrderType.LIMIT, status=VenueOrderStatus.CANCELED, quantity=Decimal(0),
            filled=Decimal(0), average=None, price=None, updated_at_ms=int(time.time() * 1000),
            raw={**result, "ack_only": True},
        )

    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        params = {"category": "spot", "symbol": self._venue_symbol(symbol), "openOnly": 0,
                  "limit": _MAX_ORDERS_PAGE}
        rows = self._paged("fetch_open_orders", self._ex.privateGetV5OrderRealtime, params, enough=None)
        return sorted((self._parse_order(r) for r in rows), key=lambda o: int(o.venue_order_id))

    def fetch_my_trades(
        self, symbol: str, *, since_ms: int | None = None, limit: int = 1000,
    ) -> list[VenueTrade]:
        params: dict[str, Any] = {"category": "spot", "symbol": self._venue_symbol(symbol), "execType": "Trade",
                                  "limit": min(limit, _MAX_EXECUTIONS)}
        if since_ms is not None:
            params["startTime"] = since_ms
        # Bybit pages newest first, so one page of a busy window would skip the *oldest* fills after
        # the cursor; a full page is therefore followed (rare: 100 fills per symbol between polls).
        # Without a cursor the newest page is exactly "the most recent N".
        enough = limit if since_ms is None else None
        rows = self._paged("fetch_my_trades", self._ex.privateGetV5ExecutionList, params, enough=enough)
        trades = [
            self._trade(
                trade_id=r["execId"], venue_order_id=r["orderId"], client_order_id=r.get("orderLinkId"),
                symbol=self._unified(r.get("symbol", "")), side=str(r.get("side", "buy")),
                price=r.get("execPrice"), quantity=r.get("execQty"), fee=r.get("execFee"),
                fee_asset=r.get("feeCurrency"), timestamp_ms=r.get("execTime", 0), raw=r,
            )
            for r in rows
        ]
        trades.sort(key=lambda t: (t.timestamp_ms, t.trade_id))
        return trades[:limit] if since_ms is not None else trades[-limit:]

    def _paged(self, operation: str, endpoint: Callable[[dict[str, Any]], Any], params: dict[str, Any], *,
               enough: int | None) -> list[dict[str, Any]]:
        """Follow ``nextPageCursor`` until the end (or until ``enough`` rows)."""
        rows: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(_MAX_PAGES):
            page_params = {**params, "cursor": cursor} if cursor else params
            self._call(operation, lambda page_params=page_params: endpoint(page_params))
            result = self._result(operation)
            rows.extend(self._rows(result))
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor or (enough is not None and len(rows) >= enough):
                break
        return rows

    def _parse_order(self, raw: dict[str, Any]) -> VenueOrder:
        filled = to_decimal(raw.get("cumExecQty")) or Decimal(0)
        status = _STATUS.get(str(raw.get("orderStatus")), VenueOrderStatus.OPEN)
        stop_price = positive_or_none(raw.get("triggerPrice"))
        if raw.get("orderType") == "Market":
            order_type = OrderType.STOP_MARKET if stop_price is not None else OrderType.MARKET
        else:
            order_type = OrderType.LIMIT
        quantity = to_decimal(raw.get("qty")) or Decimal(0)
        if raw.get("marketUnit") == "quoteCoin":
            quantity = filled            # qty was in quote units; not one of ours (we send base units)
        average = positive_or_none(raw.get("avgPrice"))
        if average is None and filled > 0:
            average = (to_decimal(raw.get("cumExecValue")) or Decimal(0)) / filled
        return self._order(
            client_order_id=raw.get("orderLinkId"), venue_order_id=raw["orderId"],
            symbol=self._unified(raw.get("symbol", "")), side=str(raw.get("side", "Buy")), order_type=order_type,
            status=status, quantity=quantity, filled=filled, average=average,
            price=positive_or_none(raw.get("price")) if order_type is OrderType.LIMIT else None,
            updated_at_ms=raw.get("updatedTime") or raw.get("createdTime") or int(time.time() * 1000), raw=raw,
            stop_price=stop_price if order_type is OrderType.STOP_MARKET else None,
        )

