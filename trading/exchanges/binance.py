"""Binance spot through ccxt (``/api/v3``)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import ccxt

from trading.exchanges.base import (
    Balance,
    Candle,
    MarketRules,
    OrderRequest,
    OrderType,
    StopReplacement,
    Ticker,
    VenueOrder,
    VenueOrderStatus,
    VenueTrade,
)
from trading.exchanges.ccxt_gateway import (
    CcxtGateway,
    HttpExchange,
    clean_decimal,
    positive_or_none,
    to_decimal,
)
from trading.exchanges.errors import (
    OrderNotFoundError,
    OutcomeUnknownError,
    RejectedError,
    StopReplaceHalfDoneError,
)

_STATUS = {
    "NEW": VenueOrderStatus.OPEN,
    "PENDING_NEW": VenueOrderStatus.OPEN,
    "PARTIALLY_FILLED": VenueOrderStatus.PARTIALLY_FILLED,
    "FILLED": VenueOrderStatus.FILLED,
    "CANCELED": VenueOrderStatus.CANCELED,
    "PENDING_CANCEL": VenueOrderStatus.CANCELED,
    "REJECTED": VenueOrderStatus.REJECTED,
    "EXPIRED": VenueOrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": VenueOrderStatus.EXPIRED,
}
# Binance order types as we see them; anything else (STOP_LOSS_LIMIT, TAKE_PROFIT...) carries a
# limit price and was not placed by us.
_TYPES = {"MARKET": OrderType.MARKET, "STOP_LOSS": OrderType.STOP_MARKET}
_MAX_KLINES = 1000
_MAX_TRADES = 1000


class BinanceGateway(CcxtGateway):
    name = "binance"
    ccxt_class = ccxt.binance
    clock_codes = frozenset({"-1021"})
    # -2015 is an auth failure even when ccxt calls it DDoSProtection (after an earlier success).
    auth_codes = frozenset({"-1022", "-2014", "-2015", "-2008"})
    # "Internal error", "unexpected response ... execution status unknown", "timeout ... send status
    # unknown", "server busy": Binance itself says it does not know what happened.
    unknown_outcome_codes = frozenset({"-1000", "-1001", "-1006", "-1007", "-1008"})
    not_found_codes = frozenset({"-2011", "-2013"})
    rate_limit_codes = frozenset({"-1003", "-1015"})

    def _ccxt_config(self) -> dict[str, Any]:
        return {
            "options": {
                # exchangeInfo only: no sapi currency/margin calls, no futures markets.
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "recvWindow": 10_000,
                "adjustForTimeDifference": False,
                "fetchOpenOrders": {"warnWithoutSymbol": False},
            },
        }

    # ------------------------------------------------------------------ errors
    def _venue_error(self, body: Any) -> tuple[str | None, str | None]:
        if isinstance(body, dict) and "code" in body and body.get("code") not in (0, "0", 200):
            return str(body["code"]), str(body.get("msg") or "")
        return None, None

    def _rate_limit(self, http: HttpExchange, code: str | None) -> tuple[float, bool] | None:
        if http.status not in (418, 429) and code not in self.rate_limit_codes:
            return None
        banned = http.status == 418
        retry_after = self.retry_after_header(http.headers)
        return (retry_after if retry_after is not None else (120.0 if banned else 1.0)), banned

    def _is_duplicate(self, code: str | None, message: str | None) -> bool:
        return code == "-2010" and "duplicate" in (message or "").lower()

    # ------------------------------------------------------------------ markets & data
    def _rules_from_market(self, market: dict[str, Any]) -> MarketRules | None:
        info = market.get("info") or {}
        if info.get("status") != "TRADING":
            return None
        filters = {f.get("filterType"): f for f in info.get("filters", [])}
        price_filter = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        return MarketRules(
            symbol=market["symbol"], venue_symbol=info["symbol"], base=info["baseAsset"],
            quote=info["quoteAsset"], tick_size=clean_decimal(price_filter.get("tickSize")),
            lot_step=clean_decimal(lot.get("stepSize")), min_qty=clean_decimal(lot.get("minQty")),
            min_notional=clean_decimal(notional.get("minNotional")),
            # Binance lists the order types per symbol; ccxt refuses a STOP_LOSS the list lacks.
            stop_orders="STOP_LOSS" in (info.get("orderTypes") or ()),
        )

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
    ) -> list[Candle]:
        interval_ms = self._interval_ms(timeframe)
        request_limit = min(limit + 1, _MAX_KLINES)    # +1: the forming candle is dropped
        params: dict[str, Any] = {"symbol": self._venue_symbol(symbol), "interval": self._ex.timeframes[timeframe],
                                  "limit": request_limit}
        if since_ms is not None:
            params["startTime"] = since_ms
            params["endTime"] = since_ms + request_limit * interval_ms - 1
        rows = self._call("fetch_closed_candles", lambda: self._ex.publicGetKlines(params))
        self._json_or_unknown("fetch_closed_candles", write=False)
        self._expect(rows, list, "klines")
        candles = [
            Candle(open_time_ms=int(r[0]), open=Decimal(r[1]), high=Decimal(r[2]), low=Decimal(r[3]),
                   close=Decimal(r[4]), volume=Decimal(r[5]))
            for r in rows
        ]
        return self._closed_window(candles, interval_ms=interval_ms, since_ms=since_ms, limit=limit)

    def fetch_ticker(self, symbol: str) -> Ticker:
        venue_symbol = self._venue_symbol(symbol)
        raw = self._call("fetch_ticker", lambda: self._ex.publicGetTicker24hr({"symbol": venue_symbol}))
        self._json_or_unknown("fetch_ticker", write=False)
        self._expect(raw, dict, "ticker")
        return self._ticker(symbol, raw.get("lastPrice"), raw.get("bidPrice"), raw.get("askPrice"),
                            raw.get("closeTime"))

    def fetch_balances(self) -> dict[str, Balance]:
        raw = self._call("fetch_balances", lambda: self._ex.privateGetAccount({"omitZeroBalances": "true"}))
        self._json_or_unknown("fetch_balances", write=False)
        return self._balances([
            (row["asset"], to_decimal(row.get("free")) or Decimal(0), to_decimal(row.get("locked")) or Decimal(0))
            for row in self._expect(raw["balances"], list, "account balances")
        ])

    def server_time_ms(self) -> int:
        raw = self._call("server_time_ms", lambda: self._ex.publicGetTime())
        self._json_or_unknown("server_time_ms", write=False)
        return int(raw["serverTime"])

    # ------------------------------------------------------------------ orders
    def create_order(self, request: OrderRequest) -> VenueOrder:
        self._check_order_request(request)
        price = str(request.price) if request.type is OrderType.LIMIT else None
        ccxt_type = request.type.value
        params = {"newClientOrderId": request.client_order_id}
        if request.type is OrderType.STOP_MARKET:
            # ccxt sends a spot market order with a stop price as type=STOP_LOSS&stopPrice=...
            # (and refuses it before sending if the symbol's orderTypes do not list STOP_LOSS).
            ccxt_type = "market"
            params["stopPrice"] = str(request.stop_price)
        self._call("create_order", lambda: self._ex.create_order(
            request.symbol, ccxt_type, request.side.value, str(request.quantity), price, params,
        ), write=True)
        raw = self._json_or_unknown("create_order", write=True)
        if not isinstance(raw, dict) or "orderId" not in raw:
            raise OutcomeUnknownError(f"create_order: unexpected answer {str(raw)[:200]}", venue=self.name)
        return self._parse_order(raw)

    # Binance cannot move a stop in place; it replaces one order by another in one request
    # (``cancelReplace``), the new order under a new client id. Callers move Binance stops that way.
    amends_stops = False
    replaces_stops = True

    def amend_stop(self, symbol: str, client_order_id: str, stop_price: Decimal) -> VenueOrder:
        raise NotImplementedError("binance cannot move a stop in place: replace_stop (cancelReplace) places the "
                                  "moved stop under a new client id")

    def replace_stop(self, symbol: str, cancel_client_order_id: str, request: OrderRequest) -> StopReplacement:
        """``POST /api/v3/order/cancelReplace`` with ``cancelReplaceMode=STOP_ON_FAILURE``: the new
        stop is placed only if the old one was canceled, both by the matching engine in one request."""
        self._check_order_request(request)
        if request.type is not OrderType.STOP_MARKET:
            raise RejectedError("replace_stop: only a stop-market order replaces a stop", venue=self.name,
                                code="stop_price")
        params = {"symbol": self._venue_symbol(symbol), "side": "SELL", "type": "STOP_LOSS",
                  "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrigClientOrderId": cancel_client_order_id,
                  "newClientOrderId": request.client_order_id, "quantity": str(request.quantity),
                  "stopPrice": str(request.stop_price), "newOrderRespType": "FULL"}
        try:
            self._call("replace_stop", lambda: self._ex.privatePostOrderCancelReplace(params), write=True)
        except RejectedError as exc:
            raise self._replace_failure(exc) from None
        raw = self._json_or_unknown("replace_stop", write=True)
        if not isinstance(raw, dict) or not isinstance(raw.get("newOrderResponse"), dict) \
                or not isinstance(raw.get("cancelResponse"), dict):
            raise OutcomeUnknownError(f"replace_stop: unexpected answer {str(raw)[:200]}", venue=self.name)
        return StopReplacement(canceled=self._parse_order(raw["cancelResponse"]),
                               placed=self._parse_order(raw["newOrderResponse"]))

    def _replace_failure(self, exc: RejectedError) -> RejectedError:
        """What a refused cancelReplace left behind, from the halves its answer reports (``data``)."""
        body = self._last.body if self._last is not None else None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return exc            # refused before either half ran (a filter, a bad parameter): nothing changed
        new_error = data.get("newOrderResponse") or {}
        if data.get("cancelResult") == "FAILURE":
            cancel_error = data.get("cancelResponse") or {}
            return OrderNotFoundError(f"replace_stop: the stop to replace is not open "
                                      f"({cancel_error.get('msg', exc.message)}); nothing placed",
                                      venue=self.name, code=str(cancel_error.get("code", exc.code)))
        canceled = data.get("cancelResponse")
        return StopReplaceHalfDoneError(
            f"replace_stop: the old stop was canceled but the new one refused: {new_error.get('msg', exc.message)}",
            venue=self.name, code=str(new_error.get("code", exc.code)),
            canceled=self._parse_order(canceled) if isinstance(canceled, dict) and "orderId" in canceled else None)

    def fetch_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        params = {"symbol": self._venue_symbol(symbol), "origClientOrderId": client_order_id}
        try:
            raw = self._call("fetch_order", lambda: self._ex.privateGetOrder(params))
        except OrderNotFoundError:
            return None
        self._json_or_unknown("fetch_order", write=False)
        return self._parse_order(raw)

    def cancel_order(self, symbol: str, client_order_id: str) -> VenueOrder:
        params = {"symbol": self._venue_symbol(symbol), "origClientOrderId": client_order_id}
        self._call("cancel_order", lambda: self._ex.privateDeleteOrder(params), write=True)
        raw = self._json_or_unknown("cancel_order", write=True)
        if not isinstance(raw, dict) or "orderId" not in raw:
            raise OutcomeUnknownError(f"cancel_order: unexpected answer {str(raw)[:200]}", venue=self.name)
        return self._parse_order(raw)

    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        params = {"symbol": self._venue_symbol(symbol)}
        rows = self._call("fetch_open_orders", lambda: self._ex.privateGetOpenOrders(params))
        self._json_or_unknown("fetch_open_orders", write=False)
        self._expect(rows, list, "open orders")
        return [self._parse_order(r) for r in rows]

    def fetch_my_trades(
        self, symbol: str, *, since_ms: int | None = None, limit: int = 1000,
    ) -> list[VenueTrade]:
        params: dict[str, Any] = {"symbol": self._venue_symbol(symbol), "limit": min(limit, _MAX_TRADES)}
        if since_ms is not None:
            params["startTime"] = since_ms
        rows = self._call("fetch_my_trades", lambda: self._ex.privateGetMyTrades(params))
        self._json_or_unknown("fetch_my_trades", write=False)
        self._expect(rows, list, "trades")
        trades = [
            self._trade(
                trade_id=r["id"], venue_order_id=r["orderId"], client_order_id=None,
                symbol=self._unified(r.get("symbol", "")), side="buy" if r.get("isBuyer") else "sell",
                price=r.get("price"), quantity=r.get("qty"), fee=r.get("commission"),
                fee_asset=r.get("commissionAsset"), timestamp_ms=r.get("time", 0), raw=r,
            )
            for r in rows
        ]
        return sorted(trades, key=lambda t: (t.timestamp_ms, int(t.trade_id)))

    def _parse_order(self, raw: dict[str, Any]) -> VenueOrder:
        filled = to_decimal(raw.get("executedQty")) or Decimal(0)
        quote = to_decimal(raw.get("cummulativeQuoteQty")) or Decimal(0)
        status = _STATUS.get(str(raw.get("status")), VenueOrderStatus.OPEN)
        if status is VenueOrderStatus.OPEN and filled > 0:
            status = VenueOrderStatus.PARTIALLY_FILLED
        order_type = _TYPES.get(str(raw.get("type")), OrderType.LIMIT)
        return self._order(
            # In a cancel answer clientOrderId is the cancel's own id; ours is origClientOrderId.
            client_order_id=raw.get("origClientOrderId") or raw.get("clientOrderId"),
            venue_order_id=raw["orderId"], symbol=self._unified(raw.get("symbol", "")),
            side=str(raw.get("side", "buy")), order_type=order_type, status=status,
            quantity=to_decimal(raw.get("origQty")) or Decimal(0), filled=filled,
            average=(quote / filled) if filled > 0 else None,
            price=positive_or_none(raw.get("price")) if order_type is OrderType.LIMIT else None,
            updated_at_ms=raw.get("updateTime") or raw.get("transactTime") or raw.get("time")
            or int(time.time() * 1000),
            raw=raw,
            stop_price=positive_or_none(raw.get("stopPrice")) if order_type is OrderType.STOP_MARKET else None,
        )
