"""Shared machinery of the ccxt-backed gateways (Binance, Bybit).

What lives here and why:

* **Pointing ccxt somewhere.** ``base_url`` replaces the scheme/host/port of *every* entry of
  ``urls['api']`` (ccxt deep-merges constructor URLs, so overriding only ``public``/``private``
  would leave ``sapi``/``fapi``/... aimed at the real hosts).
* **One hook per HTTP request.** ccxt's ``fetch`` and ``on_rest_response`` are wrapped on the
  instance, so the rate limiter sees every request (``acquire`` / ``observe``) and the error
  translator knows, for *this* request, whether it was sent and what status/headers/body came
  back. ccxt itself neither reads Retry-After nor keeps the status code.
* **Error translation** into ``errors.py``, by the venue's code first (ccxt's class depends on
  the URL prefix and on state such as ``hasAlreadyAuthenticatedSuccessfully``), then by
  HTTP status, then by ccxt class. Writes that may have reached the venue and got no definite
  answer become ``OutcomeUnknownError``; reads become ``TransientError``.
* **Parsing from the venue's raw strings** to ``Decimal``: ccxt's unified structures are floats.

An instance is not meant to be shared between threads; calls are serialised by a lock anyway
because the per-request record lives on the instance.
"""

from __future__ import annotations

import abc
import functools
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from trading.exchanges.base import (
    Balance,
    Candle,
    ExchangeGateway,
    MarketRules,
    OrderRequest,
    OrderType,
    Side,
    Ticker,
    VenueOrder,
    VenueOrderStatus,
    VenueTrade,
    last_look_veto,
    stop_order_problem,
)
from trading.exchanges.errors import (
    AuthError,
    ClockSkewError,
    DuplicateClientOrderIdError,
    InsufficientFundsError,
    OrderNotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RejectedError,
    TransientError,
    VenueError,
)
from trading.exchanges.ratelimit_protocol import RateLimiter, request_weight

T = TypeVar("T")
CLIENT_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def to_decimal(value: Any) -> Decimal | None:
    """Venue string -> Decimal; None for missing/empty/unparseable."""
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def clean_decimal(value: Any) -> Decimal:
    """Like ``to_decimal`` but for rule fields: '0.01000000' -> Decimal('0.01'), missing -> 0."""
    result = to_decimal(value)
    if result is None:
        return Decimal(0)
    return result.quantize(Decimal(1)) if result == result.to_integral_value() else result.normalize()


def positive_or_none(value: Any) -> Decimal | None:
    result = to_decimal(value)
    return result if result is not None and result > 0 else None


_NETWORK_REASON = re.compile(r"\[Errno -?\d+\] [^'\"()\[\]]+|Read timed out|timed out|Connection aborted|"
                             r"RemoteDisconnected[^'\"()]*|certificate verify failed")


def network_reason(exc: BaseException) -> str | None:
    """The operator-readable reason under a ccxt NetworkError (its own text is only "GET <url>"),
    e.g. "[Errno 111] Connection refused" or "Read timed out"."""
    seen: BaseException | None = exc
    texts: list[str] = []
    while seen is not None and len(texts) < 8:
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    for text in reversed(texts):
        match = _NETWORK_REASON.search(text)
        if match:
            return match.group(0).strip()
    return None


@dataclass
class HttpExchange:
    """What happened on the wire for the most recent request of a call."""

    method: str
    path: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None                   # parsed JSON, or None when the body was not JSON
    text: str | None = None

    @property
    def responded(self) -> bool:
        return self.status is not None


# What parsing an answer of an unexpected shape raises (missing key, list for dict, None, bad number).
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, ArithmeticError)
_GUARDED_READS = ("load_markets", "fetch_closed_candles", "fetch_ticker", "fetch_balances", "fetch_order",
                  "fetch_open_orders", "fetch_my_trades", "server_time_ms")
_GUARDED_WRITES = ("create_order", "cancel_order", "amend_stop", "replace_stop")


def _shape_guard(fn: Callable[..., T], operation: str, *, write: bool) -> Callable[..., T]:
    """Turn a parse failure of a venue answer into our taxonomy instead of a raw KeyError.

    Only when an answer actually came back in this call: an exception before anything was
    received is a bug on our side and must surface as one.
    """

    @functools.wraps(fn)
    def guarded(self: CcxtGateway, *args: Any, **kwargs: Any) -> T:
        self._last = None
        try:
            return fn(self, *args, **kwargs)
        except _SHAPE_ERRORS as exc:
            http = self._last
            if http is None or not http.responded:
                raise
            cls = OutcomeUnknownError if write else TransientError
            raise cls(f"{operation}: unexpected answer from the venue (HTTP {http.status}, {type(exc).__name__}: "
                      f"{exc}): {(http.text or '')[:200]}", venue=self.name) from exc

    guarded._shape_guarded = True  # type: ignore[attr-defined]
    return guarded


class CcxtGateway(ExchangeGateway, abc.ABC):
    """Base of the ccxt gateways. Subclasses describe the venue and parse its raw shapes.

    Every gateway method of a subclass is wrapped by ``_shape_guard`` (``__init_subclass__``), so
    an answer of a shape nobody expected surfaces as ``TransientError`` (reads) or
    ``OutcomeUnknownError`` (writes), never as a raw KeyError/TypeError from ccxt or our parsing.
    """

    name: str = ""
    ccxt_class: type[ccxt.Exchange]
    # Venue codes (as strings) with a fixed meaning; see the subclasses.
    clock_codes: frozenset[str] = frozenset()
    auth_codes: frozenset[str] = frozenset()
    unknown_outcome_codes: frozenset[str] = frozenset()
    insufficient_codes: frozenset[str] = frozenset()
    not_found_codes: frozenset[str] = frozenset()
    rate_limit_codes: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in (*_GUARDED_READS, *_GUARDED_WRITES):
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_shape_guarded", False):
                setattr(cls, name, _shape_guard(fn, name, write=name in _GUARDED_WRITES))

    def __init__(
        self, *, api_key: str, api_secret: str, base_url: str | None = None, testnet: bool = False,
        timeout_ms: int = 10_000, rate_limiter: RateLimiter | None = None,
    ) -> None:
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")
        self._limiter = rate_limiter
        self._lock = threading.RLock()
        self._last: HttpExchange | None = None
        self._rules: dict[str, MarketRules] = {}
        self._symbol_by_id: dict[str, str] = {}
        config = self._ccxt_config()
        config.update({"apiKey": api_key, "secret": api_secret, "enableRateLimit": False, "timeout": timeout_ms})
        self._ex: ccxt.Exchange = self.ccxt_class(config)
        if testnet:
            self._ex.set_sandbox_mode(True)
        if base_url:
            self._point_at(base_url)
        self._install_hooks()

    @property
    def rest_endpoints(self) -> dict[str, str]:
        """Where each ccxt API group points (diagnostics, and proof that nothing aims elsewhere)."""
        return {k: v for k, v in self._ex.urls["api"].items() if isinstance(v, str)}

    # ------------------------------------------------------------------ venue description
    @abc.abstractmethod
    def _ccxt_config(self) -> dict[str, Any]:
        """Constructor options making ``load_markets`` a single spot request."""

    @abc.abstractmethod
    def _venue_error(self, body: Any) -> tuple[str | None, str | None]:
        """(code, message) of a venue error body, or (None, None) if the body is not an error."""

    @abc.abstractmethod
    def _rate_limit(self, http: HttpExchange, code: str | None) -> tuple[float, bool] | None:
        """(retry_after_s, banned) when this answer means "slow down", else None."""

    @abc.abstractmethod
    def _is_duplicate(self, code: str | None, message: str | None) -> bool: ...

    @abc.abstractmethod
    def _rules_from_market(self, market: dict[str, Any]) -> MarketRules | None: ...

    # ------------------------------------------------------------------ wiring
    def _point_at(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
                or parts.query or parts.fragment:
            raise ValueError(f"base_url must be scheme://host[:port] only, got {base_url!r}")
        root = f"{parts.scheme}://{parts.netloc}"
        api = self._ex.urls["api"]
        for key, url in list(api.items()):
            # Keep the venue's own path (/api/v3, /sapi/v1, ...); replace everything before it.
            api[key] = root + urlsplit(url).path.rstrip("/") if isinstance(url, str) else root

    def _install_hooks(self) -> None:
        ex = self._ex
        original_fetch = ex.fetch
        original_on_response = ex.on_rest_response
        limiter = self._limiter

        # A limiter may budget per endpoint (Binance's order count, Bybit's per-endpoint limits):
        # then it offers acquire_request / observe_response, which are preferred.
        acquire_request = getattr(limiter, "acquire_request", None)
        observe_response = getattr(limiter, "observe_response", None)

        def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            path = urlsplit(url).path
            if limiter is not None:
                weight = request_weight(self.name, method, path)
                if acquire_request is not None:
                    acquire_request(method, path, weight)
                else:
                    limiter.acquire(weight)
            last_look_veto(self.name)    # after any wait: the sender may no longer want this sent
            self._last = HttpExchange(method=method, path=path)
            return original_fetch(url, method, headers, body)

        def on_rest_response(code: int, reason: str, url: str, method: str, response_headers: Any,
                             response_body: str, request_headers: Any, request_body: Any) -> Any:
            record = self._last
            if record is not None:
                record.status = int(code)
                record.headers = {str(k): str(v) for k, v in dict(response_headers).items()}
                record.text = response_body
                try:
                    record.body = json.loads(response_body) if response_body else None
                except ValueError:
                    record.body = None
            if limiter is not None:
                if observe_response is not None:
                    observe_response(method, urlsplit(url).path, dict(response_headers))
                else:
                    limiter.observe(dict(response_headers))
            return original_on_response(code, reason, url, method, response_headers, response_body,
                                        request_headers, request_body)

        ex.fetch = fetch
        ex.on_rest_response = on_rest_response

    # ------------------------------------------------------------------ calling ccxt
    def _call(self, operation: str, fn: Callable[[], T], *, write: bool = False) -> T:
        """Run one ccxt call (one HTTP request); translate anything it raises."""
        with self._lock:
            self._last = None
            try:
                return fn()
            except VenueError:
                raise
            except ccxt.BaseError as exc:
                error = self._translate(operation, exc, write=write)
            except Exception as exc:
                if not write or self._last is None:
                    raise
                # The request went out and something unexpected happened: we cannot know.
                error = OutcomeUnknownError(f"{operation}: {type(exc).__name__}: {exc}", venue=self.name)
            if isinstance(error, RateLimitedError) and self._limiter is not None:
                self._limiter.penalize(error.retry_after_s, error.banned)
            raise error from None

    def _translate(self, operation: str, exc: ccxt.BaseError, *, write: bool) -> VenueError:
        http = self._last
        code, venue_message = self._venue_error(http.body) if http is not None else (None, None)
        message = f"{operation}: {venue_message or str(exc) or type(exc).__name__}"
        kw: dict[str, Any] = {"venue": self.name, "code": code}

        def unknown() -> VenueError:
            cls = OutcomeUnknownError if write else TransientError
            if http is not None and http.responded:
                return cls(f"{message} ({type(exc).__name__}, HTTP {http.status})", **kw)
            reason = network_reason(exc)
            return cls(f"{message} ({type(exc).__name__}, no answer{': ' + reason if reason else ''})", **kw)

        if code in self.clock_codes:
            return ClockSkewError(message, **kw)
        if code in self.auth_codes:
            return AuthError(message, **kw)
        if http is not None:
            limited = self._rate_limit(http, code)
            if limited is not None:
                return RateLimitedError(message, retry_after_s=limited[0], banned=limited[1], **kw)
        if self._is_duplicate(code, venue_message):
            return DuplicateClientOrderIdError(message, **kw)
        if http is None:
            # ccxt refused before sending anything: nothing reached the venue.
            if isinstance(exc, ccxt.AuthenticationError):
                return AuthError(message, **kw)
            if isinstance(exc, ccxt.NetworkError):
                return unknown()
            return RejectedError(message, **kw)
        if not http.responded or http.status >= 500 or code in self.unknown_outcome_codes:
            return unknown()
        if code is None and http.body is None:
            return unknown()          # a non-JSON answer (gateway page, WAF): nothing definite
        if code in self.insufficient_codes or isinstance(exc, ccxt.InsufficientFunds):
            return InsufficientFundsError(message, **kw)
        if code in self.not_found_codes or isinstance(exc, ccxt.OrderNotFound):
            return OrderNotFoundError(message, **kw)
        if isinstance(exc, ccxt.AuthenticationError):
            return AuthError(message, **kw)
        if isinstance(exc, ccxt.InvalidNonce):
            return ClockSkewError(message, **kw)
        if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
            return RateLimitedError(message, retry_after_s=1.0, **kw)
        if code is not None:
            return RejectedError(message, **kw)
        return unknown()

    def _json_or_unknown(self, operation: str, *, write: bool) -> Any:
        """The parsed body of the last response; a 200 without JSON is not an answer."""
        http = self._last
        if http is None or http.body is None or not isinstance(http.body, dict | list):
            cls = OutcomeUnknownError if write else TransientError
            raise cls(f"{operation}: the venue answered HTTP {http.status if http else None} without JSON",
                      venue=self.name)
        return http.body

    @staticmethod
    def _expect(value: Any, kind: type, what: str) -> Any:
        """``value`` if it has the shape we parse; else a TypeError, which the shape guard turns into
        TransientError / OutcomeUnknownError. Without it ``{}`` iterates as "no open orders"."""
        if not isinstance(value, kind):
            raise TypeError(f"{what} is {type(value).__name__}, expected {kind.__name__}")
        return value

    @staticmethod
    def retry_after_header(headers: Mapping[str, str]) -> float | None:
        for key, value in headers.items():
            if key.lower() == "retry-after":
                parsed = to_decimal(value)
                return float(parsed) if parsed is not None else None
        return None

    # ------------------------------------------------------------------ markets
    def _load_markets(self) -> dict[str, MarketRules]:
        self._call("load_markets", lambda: self._ex.load_markets(True))
        if not self._ex.markets:
            # ccxt reads a market list it does not recognise as "no markets"; no venue has none.
            raise TypeError("the answer lists no market at all")
        rules: dict[str, MarketRules] = {}
        for market in self._ex.markets.values():
            if market.get("spot") and market.get("active") is not False:
                parsed = self._rules_from_market(market)
                if parsed is not None:
                    rules[parsed.symbol] = parsed
        with self._lock:
            self._rules = rules
            self._symbol_by_id = {r.venue_symbol: r.symbol for r in rules.values()}
        return dict(rules)

    load_markets = _shape_guard(_load_markets, "load_markets", write=False)

    def _ensure_markets(self) -> None:
        if not self._rules:
            self.load_markets()

    def _rule(self, symbol: str) -> MarketRules:
        self._ensure_markets()
        rule = self._rules.get(symbol)
        if rule is None:
            raise RejectedError(f"unknown or inactive spot market {symbol!r}", venue=self.name, code="symbol")
        return rule

    def _venue_symbol(self, symbol: str) -> str:
        return self._rule(symbol).venue_symbol

    def _unified(self, venue_symbol: str) -> str:
        return self._symbol_by_id.get(venue_symbol, venue_symbol)

    def _check_order_request(self, request: OrderRequest) -> MarketRules:
        """Refuse locally what ccxt would silently alter (it truncates amounts to the step)."""
        rule = self._rule(request.symbol)
        if not CLIENT_ORDER_ID_RE.match(request.client_order_id):
            raise RejectedError(f"client order id {request.client_order_id!r} is not 1-36 chars of "
                                "[A-Za-z0-9_-]", venue=self.name, code="client_order_id")
        if request.quantity <= 0 or request.quantity % rule.lot_step != 0:
            raise RejectedError(f"quantity {request.quantity} is not a positive multiple of the lot step "
                                f"{rule.lot_step}", venue=self.name, code="lot_step")
        problem = stop_order_problem(request, rule.tick_size)
        if problem:
            raise RejectedError(problem, venue=self.name, code="stop_price")
        if request.type is OrderType.STOP_MARKET and not rule.stop_orders:
            raise RejectedError(f"{self.name} does not offer stop orders on {request.symbol}", venue=self.name,
                                code="stop_orders")
        if request.type is OrderType.LIMIT:
            if request.price is None or request.price <= 0 or request.price % rule.tick_size != 0:
                raise RejectedError(f"limit price {request.price} is not a positive multiple of the tick "
                                    f"{rule.tick_size}", venue=self.name, code="tick_size")
        elif request.price is not None:
            # A price on a market order turns it into a quote-quantity order in ccxt (both venues).
            raise RejectedError(f"{request.type.value} orders take no price (quantity is in base units)",
                                venue=self.name, code="market_price")
        return rule

    # ------------------------------------------------------------------ candles
    def _interval_ms(self, timeframe: str) -> int:
        if timeframe not in self._ex.timeframes:
            raise RejectedError(f"timeframe {timeframe!r} not supported", venue=self.name, code="timeframe")
        return int(self._ex.parse_timeframe(timeframe) * 1000)

    @staticmethod
    def _closed_window(
        rows: list[Candle], *, interval_ms: int, since_ms: int | None, limit: int,
    ) -> list[Candle]:
        """Oldest first, ``open_time >= since``, without the still-forming candle, at most ``limit``."""
        now_ms = int(time.time() * 1000)
        closed = sorted(
            (c for c in rows if c.open_time_ms + interval_ms <= now_ms
             and (since_ms is None or c.open_time_ms >= since_ms)),
            key=lambda c: c.open_time_ms,
        )
        return closed[:limit] if since_ms is not None else closed[-limit:]

    # ------------------------------------------------------------------ shared shapes
    @staticmethod
    def _order(
        *, client_order_id: str | None, venue_order_id: Any, symbol: str, side: str, order_type: OrderType,
        status: VenueOrderStatus, quantity: Decimal, filled: Decimal, average: Decimal | None,
        price: Decimal | None, updated_at_ms: Any, raw: dict[str, Any], stop_price: Decimal | None = None,
    ) -> VenueOrder:
        return VenueOrder(
            client_order_id=client_order_id or None, venue_order_id=str(venue_order_id), symbol=symbol,
            side=Side(side.lower()), type=order_type, status=status, quantity=quantity, filled_quantity=filled,
            average_price=average, price=price, updated_at_ms=int(updated_at_ms or 0), raw=raw,
            stop_price=stop_price,
        )

    @staticmethod
    def _balances(rows: list[tuple[str, Decimal, Decimal]]) -> dict[str, Balance]:
        """Zero rows are left out (Binance lists hundreds of assets): a missing asset means zero."""
        return {asset: Balance(asset=asset, free=free, locked=locked)
                for asset, free, locked in rows if free != 0 or locked != 0}

    def _ticker(self, symbol: str, last: Any, bid: Any, ask: Any, timestamp_ms: Any) -> Ticker:
        last_price = to_decimal(last)
        if last_price is None:
            raise TransientError(f"ticker for {symbol} has no last price", venue=self.name)
        return Ticker(symbol=symbol, last=last_price, bid=positive_or_none(bid), ask=positive_or_none(ask),
                      timestamp_ms=int(timestamp_ms or time.time() * 1000))

    @staticmethod
    def _trade(
        *, trade_id: Any, venue_order_id: Any, client_order_id: str | None, symbol: str, side: str,
        price: Any, quantity: Any, fee: Any, fee_asset: str | None, timestamp_ms: Any, raw: dict[str, Any],
    ) -> VenueTrade:
        return VenueTrade(
            trade_id=str(trade_id), venue_order_id=str(venue_order_id), client_order_id=client_order_id or None,
            symbol=symbol, side=Side(side.lower()), price=to_decimal(price) or Decimal(0),
            quantity=to_decimal(quantity) or Decimal(0), fee=to_decimal(fee) or Decimal(0),
            fee_asset=fee_asset or None, timestamp_ms=int(timestamp_ms), raw=raw,
        )
