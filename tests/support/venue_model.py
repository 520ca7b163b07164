"""An in-memory model of a real spot venue, for deterministic simulation and property tests.

``ModelVenue`` implements the whole ``ExchangeGateway`` without a database, a server or ccxt,
and behaves like Binance or Bybit (``name``) in the ways our money path can get wrong. Each
feature below names the real behaviour it models; § numbers point into
``/work/shared/research/venue-wire-facts.md`` ("facts"). Where the facts do not settle a point
the docstring says so and the model takes the reading that is harder on our code.

* **Client-id de-duplication** (``create_order``).
  - binance: facts §1.3 quotes rest-api.md: newClientOrderId is "a unique id among open
    orders ... Orders with the same newClientOrderID can be accepted only when the previous one
    is filled". So an id whose order is still OPEN is refused (-2010 "Duplicate order sent."),
    but once that order is filled / canceled / expired the same id places a NEW order. This is
    how a blind re-send duplicates a market order that already filled. Scope: per symbol
    (orders, queries and cancels are all per symbol on Binance, facts §1.1, §3.1).
    ``fetch_order`` answers with the most recent order carrying the id.
  - bybit: facts §2.3: orderLinkId is "always unique" (110072 / 170141). Whether that lasts
    forever is [UNVERIFIED] there; the model takes the strict reading: never reusable.
  - ``orders_with_client_id(cid)`` counts every order ever created with the id (the invariant
    "at most one venue order per client id"); ``all_orders()`` / ``all_trades()`` list all.
* **Create answers.** Binance answers a create with the full order (newOrderRespType=FULL,
  facts §1.1): a market order comes back FILLED. Bybit answers with ids only (facts §2.1
  "Minimal create/cancel results"): status OPEN, nothing filled, whatever really happened.
* **Order types.** Market orders fill at once at the current price (taker). Limit orders
  reserve funds and rest; one that crosses on arrival fills at the current price, a resting one
  fills at its own limit when ``set_price`` crosses it. Stop-market orders are sell-only, rest
  with the base quantity reserved and fire as a market sell when the price falls to the stop; a
  stop at or above the market is refused ("Stop price would trigger immediately", as Binance
  -2010 and our gateways; ``trading/exchanges/base.py``). Status words follow facts §1.1 and
  §2.1: EXPIRED for a market order's unfilled rest, CANCELED even when partially filled.
* **Moving stops** (``amends_stops``, ``amend_stop``). bybit amends a conditional order's
  trigger in place (order/amend: same orderLinkId, same quantity); the price checks are
  ``BybitGateway``'s own before sending (off the tick, at/above the market), then the venue's
  codes: 170213 no such order, 170139 filled, 170142 canceled (all ``OrderNotFoundError``).
  binance has no in-place amend (cancelReplace makes a new client id): ``amends_stops`` is
  False and ``amend_stop`` raises ``NotImplementedError``, as ``BinanceGateway``.
* **Market conditions** (``set_market``, as the emulator's control). ``stop_orders=False``:
  binance's rules say so (``MarketRules.stop_orders``, from orderTypes) and a stop is refused
  before sending; bybit's rules cannot say it, the venue refuses (170227). ``halted=True``:
  new orders and amends refused (-2010 "Market is closed." / 170151), nothing trades until
  trading resumes, then resting orders fill at the price of the moment.
* **Balances.** free / locked per asset; placing reserves, filling and canceling release;
  a shortfall is ``InsufficientFundsError`` (Binance -2010 "Account has insufficient balance
  for requested action.", Bybit 170131; facts §1.4, §2.4). Filter failures use the venues'
  codes (-1013 LOT_SIZE / PRICE_FILTER / NOTIONAL, Bybit 170136 / 170134 / 170140).
* **Trades.** Each trade has ``trade_id`` (the fill's idempotency key), the venue order id
  and, on bybit only, the client id: Binance myTrades rows carry no client id (facts §1.1
  myTrades, and ``BinanceGateway.fetch_my_trades`` sets None); Bybit execution rows carry
  orderLinkId (facts §2.1). ``fetch_my_trades`` returns visible trades with
  ``timestamp_ms >= since_ms`` oldest first; a trade that becomes visible late still carries its
  EXECUTION time, so a cursor that has moved past that time never sees it.
* **Fees** (``set_fee_mode``): "default" = in the asset received (base on a buy, quote on a
  sell, as the venues charge spot fees; the emulator does the same), "quote" = always in
  quote, "BNB" = notional * rate / price(BNB/quote) taken from the BNB balance. The BNB mode
  models Binance's "use BNB for fees" setting, which is not in the facts file: when BNB is
  short (or unpriced) the fee falls back to the default asset [UNVERIFIED]. Fees are rounded
  down to 1e-8 so that balances never go negative by a rounding crumb.
* **Faults** (``script_next_create``, a FIFO consumed one per ``create_order``):
  - "timeout_before": nothing reaches the venue; ccxt would raise RequestTimeout (facts
    §3.5, §3.6) which our gateway maps to ``OutcomeUnknownError``.
  - "timeout_after": the venue processes the order now, the answer is lost.
  - "late": Binance -1007 "Timeout waiting for response from backend server. Send status
    unknown; execution status unknown." (facts §1.4, HTTP 408 -> RequestTimeout; 5XX "execution
    status UNKNOWN"; Bybit 10016 "Request timeout" in §2.4). The matching engine gets the order
    only at ``clock() + delay_s``: until then it is invisible to every read and to cancel; then
    it is processed exactly as a fresh create at that moment (a market order appears already
    filled at the price of that moment; a duplicate id or a shortfall then makes it vanish, as
    a venue-side reject nobody hears about, noted in ``journal``). ``slow_s`` makes the create
    call itself take that long before it raises.
  - "never": ``OutcomeUnknownError``, never processed.
  - "held_back": ``RateLimitHeldBackError`` (our own limiter refused; nothing sent).
  - "rate_limited": a 429 on the write (Binance -1003, Bybit 10006; facts §1.4, §2.4):
    ``RateLimitedError(retry_after_s=...)``, nothing placed.
  - "ban": a 418 IP ban (facts §1.4 "Bans last 2 minutes to 3 days"; Bybit 403 "access too
    frequent", §2.4): ``RateLimitedError(banned=True)`` for this and EVERY venue call until
    ``for_s`` seconds have passed.
  - "partial": a thin book. A market (or triggered stop) order fills ``fraction`` of its
    quantity and the rest is EXPIRED (``rest="expired"``, default) or CANCELED. On a limit
    order the first fill takes ``fraction`` and the rest keeps resting (``rest="open"``,
    default for limits) or ends expired / canceled.
  - "reject": ``RejectedError(code, message)``.
* **Late trades** (``script_trade_visibility_delay``): the next order that reaches the venue
  has its trades hidden from ``fetch_my_trades`` until ``delay_s`` after each execution, while
  ``fetch_order`` already reports the fill: the order query is ahead of the trade list, so fills
  can arrive after the order is terminal.
* **Time** is ``clock()`` in seconds (real time by default). Every call first runs one pass
  (``_enter``) that hands due late orders to the matching engine, so what is visible depends
  on time alone. ``settles_at()`` says when the last scripted delay will have played out.

Thread-safe: one re-entrant lock around all state; the scripted slow send sleeps outside it.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

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
    stop_price_problem,
)
from trading.exchanges.errors import (
    DuplicateClientOrderIdError,
    InsufficientFundsError,
    OrderNotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RateLimitHeldBackError,
    RejectedError,
)

ZERO = Decimal(0)
FEE_QUANTUM = Decimal("0.00000001")
FEE_MODES = ("default", "quote", "BNB")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_OPEN = frozenset({VenueOrderStatus.OPEN, VenueOrderStatus.PARTIALLY_FILLED})
_RESTS = {"expired": VenueOrderStatus.EXPIRED, "canceled": VenueOrderStatus.CANCELED, "open": None}

# kind -> (allowed keyword arguments, required ones)
_SCRIPTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "timeout_before": (frozenset({"slow_s"}), frozenset()),
    "timeout_after": (frozenset({"slow_s"}), frozenset()),
    "late": (frozenset({"delay_s", "slow_s"}), frozenset({"delay_s"})),
    "never": (frozenset({"slow_s"}), frozenset()),
    "held_back": (frozenset({"retry_after_s"}), frozenset()),
    "rate_limited": (frozenset({"retry_after_s"}), frozenset()),
    "ban": (frozenset({"for_s"}), frozenset({"for_s"})),
    "partial": (frozenset({"fraction", "rest"}), frozenset()),
    "reject": (frozenset({"code", "message"}), frozenset()),
}

# The venues' own code and words for each answer (facts §1.3, §1.4, §2.3, §2.4).
_WORDS: dict[str, dict[str, tuple[str | None, str]]] = {
    "binance": {
        "duplicate": ("-2010", "Duplicate order sent."),
        "insufficient": ("-2010", "Account has insufficient balance for requested action."),
        "not_found": ("-2011", "Unknown order sent."),
        "lot_size": ("-1013", "Filter failure: LOT_SIZE"),
        "price_filter": ("-1013", "Filter failure: PRICE_FILTER"),
        "min_notional": ("-1013", "Filter failure: NOTIONAL"),
        "would_trigger": ("-2010", "Stop price would trigger immediately."),
        "halted": ("-2010", "Market is closed."),
        # BinanceGateway refuses a stop on a symbol whose orderTypes lack STOP_LOSS before sending.
        "stops_unsupported": ("stop_orders", "binance does not offer stop orders on this symbol"),
        "bad_param": ("-1102", "Mandatory parameter was not sent, was empty/null, or malformed."),
        "bad_client_id": ("-1100", "Illegal characters found in parameter 'newClientOrderId'; "
                                   "legal range is '^[a-zA-Z0-9-_]{1,36}$'."),
        "bad_symbol": ("-1121", "Invalid symbol."),
        "late": ("-1007", "Timeout waiting for response from backend server. Send status unknown; "
                          "execution status unknown."),
        "timeout": (None, "RequestTimeout: no answer within the timeout"),
        "rate_limited": ("-1003", "Too much request weight used; current limit is 6000 request weight per "
                                  "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."),
        "banned": ("-1003", "Way too much request weight used; IP banned until {until_ms}."),
        "reject": ("-2010", "New order rejected."),
    },
    "bybit": {
        "duplicate": ("170141", "Duplicate clientOrderId"),
        "insufficient": ("170131", "Balance insufficient"),
        "not_found": ("170213", "Order does not exist."),
        "lot_size": ("170136", "Order quantity exceeded lower limit."),
        "price_filter": ("170134", "Order price has too many decimals."),
        "min_notional": ("170140", "Order value exceeded lower limit."),
        "would_trigger": ("would_trigger", "Stop price would trigger immediately."),
        "halted": ("170151", "The trading pair is not open yet"),
        "stops_unsupported": ("170227", "This feature is not supported."),
        "filled": ("170139", "Order has been filled."),
        "canceled": ("170142", "Order has been canceled"),
        "not_amendable": ("170312", "The current order does not support modification"),
        "bad_param": ("10001", "params error"),
        "bad_client_id": ("10001", "params error: orderLinkId"),
        "bad_symbol": ("10001", "params error: symbol invalid"),
        "late": ("10016", "Request timeout, please try again later"),
        "timeout": (None, "RequestTimeout: no answer within the timeout"),
        "rate_limited": ("10006", "Too many visits!"),
        "banned": ("403", "access too frequent (IP banned until {until_ms})"),
        "reject": ("170130", "Order rejected."),
    },
}

# tick, lot step, min qty, min notional: close to the real venues' spot rules (as the emulator's).
_DEFAULT_RULES = {
    "BTC/USDT": ("0.01", "0.00001", "0.00001", "5"),
    "ETH/USDT": ("0.01", "0.0001", "0.0001", "5"),
    "SOL/USDT": ("0.01", "0.001", "0.001", "5"),
    "BNB/USDT": ("0.01", "0.001", "0.001", "5"),
    "XRP/USDT": ("0.0001", "0.1", "0.1", "5"),
}


def default_markets() -> dict[str, MarketRules]:
    """The default universe (BTC, ETH, SOL, BNB, XRP against USDT) with venue-like increments."""
    markets = {}
    for symbol, (tick, step, min_qty, notional) in _DEFAULT_RULES.items():
        base, _, quote = symbol.partition("/")
        markets[symbol] = MarketRules(symbol=symbol, venue_symbol=base + quote, base=base, quote=quote,
                                      tick_size=Decimal(tick), lot_step=Decimal(step), min_qty=Decimal(min_qty),
                                      min_notional=Decimal(notional))
    return markets


def _floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _fee_round(value: Decimal) -> Decimal:
    return value.quantize(FEE_QUANTUM, rounding=ROUND_DOWN)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass
class _Order:
    seq: int
    venue_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    fee_mode: str
    lock_per_unit: Decimal             # reserved per unit of remaining quantity (quote on a buy, base on a sell)
    created_ms: int
    updated_ms: int
    trade_delay_s: float
    partial: tuple[Decimal, str | None] | None = None   # (fraction, rest) for the first fill
    status: VenueOrderStatus = VenueOrderStatus.OPEN
    filled: Decimal = ZERO
    cum_quote: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN


@dataclass
class _Trade:
    seq: int
    trade_id: str
    order: _Order
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    timestamp_ms: int                  # execution time
    visible_at: float                  # clock() seconds from which fetch_my_trades shows it


@dataclass
class _Late:
    process_at: float
    request: OrderRequest
    fee_mode: str
    trade_delay_s: float


class ModelVenue(ExchangeGateway):
    """See the module docstring. ``name`` ("binance" | "bybit") decides client-id semantics,
    create answers, trade client ids and error codes."""

    def __init__(
        self, name: str = "binance", *, balances: dict[str, Decimal], prices: dict[str, Decimal],
        markets: dict[str, MarketRules] | None = None, clock: Callable[[], float] = time.time,
        fee_rate: Decimal = Decimal("0.001"), rng_seed: int = 0, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if name not in _WORDS:
            raise ValueError(f"ModelVenue name must be 'binance' or 'bybit', not {name!r}")
        self.name = name
        self.clock = clock
        self.sleep = sleep                 # used only by a scripted slow send (``slow_s``)
        self.fee_rate = Decimal(str(fee_rate))
        self.rng = random.Random(rng_seed)  # bybit execution ids; a "partial" without a fraction
        self.journal: list[str] = []       # venue-side events nobody was told about (late rejects, faults)
        self._lock = threading.RLock()
        self._markets = dict(default_markets() if markets is None else markets)
        self._prices = {symbol: Decimal(str(price)) for symbol, price in prices.items()}
        self._balances: dict[str, list[Decimal]] = {a: [Decimal(str(v)), ZERO] for a, v in balances.items()}
        self._orders: list[_Order] = []
        self._by_client_id: dict[str, list[_Order]] = {}
        self._trades: list[_Trade] = []
        self._late: list[_Late] = []
        self._scripts: deque[tuple[str, dict[str, Any]]] = deque()
        self._fee_mode = "default"
        self._next_trade_delay_s: float | None = None
        self._banned_until: float | None = None
        self._halted: set[str] = set()
        # Symbols without stop orders. Binance lists that in the market rules (orderTypes) and its
        # gateway refuses before sending; Bybit lists nothing and refuses at the venue.
        self._no_stops = {symbol for symbol, rules in self._markets.items() if not rules.stop_orders}
        # Bybit moves a conditional order's trigger in place (order/amend); Binance cannot.
        self.amends_stops = name == "bybit"
        self._seq = itertools.count(1)
        self._order_ids = itertools.count(1_000 if name == "binance" else 1_900_000_000_000_000_001)
        self._trade_ids = itertools.count(5_000)

    # ------------------------------------------------------------------ test controls

    def set_price(self, symbol: str, price: Decimal) -> None:
        """The market moves: resting limit orders it crosses fill, stops it reaches fire."""
        with self._lock:
            now = self._enter(venue_call=False)
            self._rules(symbol)
            self._prices[symbol] = Decimal(str(price))
            self._match(symbol, now)

    def set_market(self, symbol: str, *, stop_orders: bool | None = None, halted: bool | None = None) -> None:
        """What a market offers from now on, as the emulator's control of the same name:
        ``stop_orders=False`` refuses stops on it (and Binance's rules say so); ``halted=True``
        refuses new orders and amends and trades nothing until ``halted=False`` resumes trading
        at the price of the moment."""
        with self._lock:
            now = self._enter(venue_call=False)
            self._rules(symbol)
            if stop_orders is not None:
                (self._no_stops.discard if stop_orders else self._no_stops.add)(symbol)
            if halted is not None:
                (self._halted.add if halted else self._halted.discard)(symbol)
                if not halted:
                    self._match(symbol, now)

    def set_fee_mode(self, mode: str) -> None:
        """Fee asset of orders created from now on: "default" | "quote" | "BNB"."""
        if mode not in FEE_MODES:
            raise ValueError(f"fee mode must be one of {FEE_MODES}, not {mode!r}")
        with self._lock:
            self._fee_mode = mode

    def script_next_create(self, kind: str, **kw: Any) -> None:
        """Queue a fault for the next ``create_order`` that has no earlier script (FIFO)."""
        if kind not in _SCRIPTS:
            raise ValueError(f"unknown script kind {kind!r}; known: {sorted(_SCRIPTS)}")
        allowed, required = _SCRIPTS[kind]
        if set(kw) - allowed or required - set(kw):
            raise ValueError(f"script {kind!r} takes {sorted(allowed)} (required {sorted(required)}), got {sorted(kw)}")
        if kind == "partial":
            if "fraction" in kw and not 0 <= Decimal(str(kw["fraction"])) <= 1:
                raise ValueError("partial fraction must be within [0, 1]")
            if kw.get("rest", "expired") not in _RESTS:
                raise ValueError(f"partial rest must be one of {sorted(_RESTS)}")
        with self._lock:
            self._scripts.append((kind, dict(kw)))

    def script_trade_visibility_delay(self, delay_s: float) -> None:
        """The next order that reaches the venue has each trade hidden from fetch_my_trades
        until ``delay_s`` after its execution (fetch_order shows the fill at once)."""
        with self._lock:
            self._next_trade_delay_s = float(delay_s)

    # ------------------------------------------------------------------ inspection (no faults)

    def orders_with_client_id(self, client_order_id: str) -> int:
        """How many venue orders were ever created with this client id (any symbol, any status)."""
        with self._lock:
            self._enter(venue_call=False)
            return len(self._by_client_id.get(client_order_id, ()))

    def all_orders(self) -> list[VenueOrder]:
        """Every order the venue has, in creation order (late orders once processed)."""
        with self._lock:
            self._enter(venue_call=False)
            return [self._venue_order(o) for o in self._orders]

    def all_trades(self) -> list[VenueTrade]:
        """Every trade, visible or not yet, in execution order. ``raw`` carries ``visible_at``
        (clock seconds) and ``order_client_id`` (also on binance, whose trades carry none)."""
        with self._lock:
            self._enter(venue_call=False)
            return [self._venue_trade(t) for t in self._trades]

    def balances(self) -> dict[str, Balance]:
        """fetch_balances without faults."""
        with self._lock:
            self._enter(venue_call=False)
            return self._balance_view()

    def price(self, symbol: str) -> Decimal:
        with self._lock:
            self._enter(venue_call=False)
            return self._price(symbol)

    def clear_scripts(self) -> None:
        """Drop scripted faults no create consumed (e.g. the claim was refused, nothing was sent)."""
        with self._lock:
            self._scripts.clear()

    def pending_scripts(self) -> int:
        with self._lock:
            return len(self._scripts)

    def settles_at(self) -> float | None:
        """The clock time after which no scripted delay changes what is visible any more
        (late orders processed, late trades shown, ban over), or None if that is already so."""
        with self._lock:
            now = self._enter(venue_call=False)
            times = [late.process_at for late in self._late]
            times += [t.visible_at for t in self._trades if t.visible_at > now]
            if self._banned_until is not None and self._banned_until > now:
                times.append(self._banned_until)
            return max(times) if times else None

    # ------------------------------------------------------------------ gateway: market data

    def load_markets(self) -> dict[str, MarketRules]:
        with self._lock:
            self._enter()
            return {symbol: replace(rules, stop_orders=self.name == "bybit" or symbol not in self._no_stops)
                    for symbol, rules in self._markets.items()}

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
    ) -> list[Candle]:
        with self._lock:
            self._enter()
            self._rules(symbol)
            return []

    def fetch_ticker(self, symbol: str) -> Ticker:
        with self._lock:
            now = self._enter()
            self._rules(symbol)
            price = self._price(symbol)
            return Ticker(symbol=symbol, last=price, bid=price, ask=price, timestamp_ms=_ms(now))

    def server_time_ms(self) -> int:
        with self._lock:
            return _ms(self._enter())

    # ------------------------------------------------------------------ gateway: account and orders

    def fetch_balances(self) -> dict[str, Balance]:
        with self._lock:
            self._enter()
            return self._balance_view()

    def create_order(self, request: OrderRequest) -> VenueOrder:
        # Like every gateway of ours: the sender's last look runs before the request leaves.
        last_look_veto(self.name)
        with self._lock:
            now = self._enter()
            kind, kw = self._scripts.popleft() if self._scripts else ("", {})
            if kind:
                self._note(now, f"create {request.client_order_id}: scripted {kind} {kw or ''}".rstrip())
            if kind == "held_back":
                raise RateLimitHeldBackError("create_order: held back by our own shared rate budget; nothing sent",
                                             venue=self.name, retry_after_s=float(kw.get("retry_after_s", 1.0)))
            if kind == "rate_limited":
                code, message = self._words("rate_limited")
                raise RateLimitedError(f"create_order: {message}", venue=self.name, code=code,
                                       retry_after_s=float(kw.get("retry_after_s", 1.0)))
            if kind == "ban":
                self._banned_until = now + float(kw["for_s"])
                raise self._ban_error(now)
            if kind == "reject":
                code, message = self._words("reject")
                raise RejectedError(str(kw.get("message", message)), venue=self.name,
                                    code=str(kw.get("code", code)))
            if kind in ("", "partial"):
                partial = None
                if kind == "partial":
                    fraction = kw.get("fraction")
                    fraction = Decimal(self.rng.randint(1, 9)) / 10 if fraction is None else Decimal(str(fraction))
                    partial = (fraction, kw.get("rest"))
                order = self._accept(request, now, self._fee_mode, self._take_trade_delay(), partial=partial)
                return self._create_answer(order)
            # Every other kind: the sender learns nothing.
            if kind == "timeout_after":
                try:
                    self._accept(request, now, self._fee_mode, self._take_trade_delay())
                except RejectedError as exc:
                    self._note(now, f"create {request.client_order_id}: processed, refused unheard: {exc}")
            elif kind == "late":
                self._late.append(_Late(now + float(kw["delay_s"]), request, self._fee_mode,
                                        self._take_trade_delay()))
            error = self._unknown("late" if kind == "late" else "timeout")
        slow_s = float(kw.get("slow_s", 0))
        if slow_s > 0:
            self.sleep(slow_s)             # outside the lock: other callers go on meanwhile
        raise error

    def fetch_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        with self._lock:
            self._enter()
            self._rules(symbol)
            mine = [o for o in self._by_client_id.get(client_order_id, ()) if o.symbol == symbol]
            return self._venue_order(mine[-1]) if mine else None

    def cancel_order(self, symbol: str, client_order_id: str) -> VenueOrder:
        with self._lock:
            now = self._enter()
            self._rules(symbol)
            order = next((o for o in self._by_client_id.get(client_order_id, ())
                          if o.symbol == symbol and o.is_open), None)
            if order is None:
                code, message = self._words("not_found")
                raise OrderNotFoundError(f"cancel_order: {message}", venue=self.name, code=code)
            self._finish(order, VenueOrderStatus.CANCELED, _ms(now))
            return self._venue_order(order)

    def amend_stop(self, symbol: str, client_order_id: str, stop_price: Decimal) -> VenueOrder:
        """Bybit's order/amend of a conditional order, as ``BybitGateway.amend_stop`` reports it:
        the price checks are the gateway's own (before sending), the rest the venue's codes."""
        if not self.amends_stops:
            raise NotImplementedError(f"{self.name} does not amend stops in place (amends_stops is False)")
        with self._lock:
            self._enter()
            rules = self._rules(symbol)
            problem = stop_price_problem(stop_price, rules.tick_size)
            if problem:
                raise self._reject("bad_param", problem)
            current = self._price(symbol)
            if current <= stop_price:
                raise self._reject("would_trigger", f"(stop {stop_price}, last {current})")
        last_look_veto(self.name)
        with self._lock:
            now = self._enter()
            mine = [o for o in self._by_client_id.get(client_order_id, ()) if o.symbol == symbol]
            order = mine[-1] if mine else None
            if order is None or not order.is_open:
                what = ("not_found" if order is None else
                        "filled" if order.status is VenueOrderStatus.FILLED else "canceled")
                code, message = self._words(what)
                raise OrderNotFoundError(f"amend_stop: {message}", venue=self.name, code=code)
            if order.type is not OrderType.STOP_MARKET:
                raise self._reject("not_amendable", client_order_id)
            if symbol in self._halted:
                raise self._reject("halted", symbol)
            if order.remaining * stop_price < rules.min_notional:
                raise self._reject("min_notional", f"(notional {order.remaining * stop_price}, "
                                                   f"min {rules.min_notional})")
            order.stop_price = stop_price
            order.updated_ms = _ms(now)
            return self._venue_order(order)

    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        with self._lock:
            self._enter()
            self._rules(symbol)
            return [self._venue_order(o) for o in self._orders if o.symbol == symbol and o.is_open]

    def fetch_my_trades(
        self, symbol: str, *, since_ms: int | None = None, limit: int = 1000,
    ) -> list[VenueTrade]:
        with self._lock:
            now = self._enter()
            self._rules(symbol)
            rows = [t for t in self._trades if t.order.symbol == symbol and t.visible_at <= now
                    and (since_ms is None or t.timestamp_ms >= since_ms)]
            rows.sort(key=lambda t: (t.timestamp_ms, t.seq))
            return [self._venue_trade(t) for t in rows[:limit]]

    # ------------------------------------------------------------------ internals (lock held)

    def _enter(self, *, venue_call: bool = True) -> float:
        """The one pass every call makes: read the clock, hand due late orders to the matching
        engine, and (for venue calls) refuse while an IP ban lasts."""
        now = float(self.clock())
        due = sorted((late for late in self._late if late.process_at <= now), key=lambda late: late.process_at)
        if due:
            self._late = [late for late in self._late if late.process_at > now]
            for late in due:
                try:
                    self._accept(late.request, late.process_at, late.fee_mode, late.trade_delay_s)
                    self._note(late.process_at, f"late create {late.request.client_order_id}: processed")
                except RejectedError as exc:
                    self._note(late.process_at, f"late create {late.request.client_order_id}: refused unheard: {exc}")
        if venue_call and self._banned_until is not None:
            if now < self._banned_until:
                raise self._ban_error(now)
            self._banned_until = None
        return now

    def _note(self, at: float, text: str) -> None:
        self.journal.append(f"{_ms(at)} {text}")

    def _words(self, what: str) -> tuple[str | None, str]:
        return _WORDS[self.name][what]

    def _reject(self, what: str, detail: str = "", cls: type[RejectedError] = RejectedError) -> RejectedError:
        code, message = self._words(what)
        return cls(f"{message} {detail}".strip(), venue=self.name, code=code)

    def _unknown(self, what: str) -> OutcomeUnknownError:
        code, message = self._words(what)
        return OutcomeUnknownError(f"create_order: {message}", venue=self.name, code=code)

    def _ban_error(self, now: float) -> RateLimitedError:
        assert self._banned_until is not None
        code, message = self._words("banned")
        return RateLimitedError(message.format(until_ms=_ms(self._banned_until)), venue=self.name, code=code,
                                retry_after_s=max(self._banned_until - now, 0.0), banned=True)

    def _take_trade_delay(self) -> float:
        delay, self._next_trade_delay_s = self._next_trade_delay_s, None
        return delay or 0.0

    def _rules(self, symbol: str) -> MarketRules:
        rules = self._markets.get(symbol)
        if rules is None:
            raise self._reject("bad_symbol", symbol)
        return rules

    def _price(self, symbol: str) -> Decimal:
        try:
            return self._prices[symbol]
        except KeyError:
            raise LookupError(f"ModelVenue has no price for {symbol}: pass it in prices= or call set_price") from None

    def _row(self, asset: str) -> list[Decimal]:
        return self._balances.setdefault(asset, [ZERO, ZERO])

    def _require(self, asset: str, amount: Decimal) -> None:
        free = self._row(asset)[0]
        if free < amount:
            raise self._reject("insufficient", f"(need {amount} {asset}, free {free})", InsufficientFundsError)

    def _balance_view(self) -> dict[str, Balance]:
        return {asset: Balance(asset, row[0], row[1]) for asset, row in self._balances.items()}

    def _validate(self, request: OrderRequest, rules: MarketRules) -> None:
        if not _CLIENT_ID.match(request.client_order_id or ""):
            raise self._reject("bad_client_id")
        problem = stop_order_problem(request, rules.tick_size)
        if problem:
            raise self._reject("bad_param", problem)
        qty = request.quantity
        if qty <= 0 or qty < rules.min_qty or qty % rules.lot_step != 0:
            raise self._reject("lot_size", f"(quantity {qty}, step {rules.lot_step}, min {rules.min_qty})")
        if request.type is OrderType.LIMIT:
            if request.price is None or request.price <= 0 or request.price % rules.tick_size != 0:
                raise self._reject("price_filter", f"(price {request.price}, tick {rules.tick_size})")
        elif request.price is not None:
            raise self._reject("bad_param", f"a {request.type.value} order takes no limit price")
        if request.symbol in self._halted:
            raise self._reject("halted", request.symbol)
        if request.type is OrderType.STOP_MARKET and request.symbol in self._no_stops:
            raise self._reject("stops_unsupported", request.symbol)
        current = self._price(request.symbol)
        if request.type is OrderType.STOP_MARKET and current <= request.stop_price:
            raise self._reject("would_trigger", f"(stop {request.stop_price}, last {current})")
        reference = request.price or request.stop_price or current
        if qty * reference < rules.min_notional:
            raise self._reject("min_notional", f"(notional {qty * reference}, min {rules.min_notional})")

    def _is_duplicate(self, request: OrderRequest) -> bool:
        same = self._by_client_id.get(request.client_order_id, ())
        if self.name == "bybit":
            return bool(same)                                     # never reusable
        return any(o.symbol == request.symbol and o.is_open for o in same)   # unique among OPEN orders

    def _accept(self, request: OrderRequest, at: float, fee_mode: str, trade_delay_s: float, *,
                partial: tuple[Decimal, str | None] | None = None) -> _Order:
        """What the matching engine does with a create at clock time ``at``."""
        rules = self._rules(request.symbol)
        self._validate(request, rules)
        if self._is_duplicate(request):
            raise self._reject("duplicate", request.client_order_id, DuplicateClientOrderIdError)
        current = self._price(request.symbol)
        buy = request.side is Side.BUY
        quote_fee = 1 + self.fee_rate if buy and fee_mode == "quote" else Decimal(1)
        if request.type is OrderType.MARKET:
            lock_per_unit = ZERO
            if buy:
                self._require(rules.quote, request.quantity * current * quote_fee)
            else:
                self._require(rules.base, request.quantity)
        else:
            lock_per_unit = request.price * quote_fee if buy else Decimal(1)
            asset = rules.quote if buy else rules.base
            self._require(asset, request.quantity * lock_per_unit)
            row = self._row(asset)
            row[0] -= request.quantity * lock_per_unit
            row[1] += request.quantity * lock_per_unit
        at_ms = _ms(at)
        order = _Order(
            seq=next(self._seq), venue_order_id=str(next(self._order_ids)), client_order_id=request.client_order_id,
            symbol=request.symbol, side=request.side, type=request.type, quantity=request.quantity,
            price=request.price if request.type is OrderType.LIMIT else None,
            stop_price=request.stop_price if request.type is OrderType.STOP_MARKET else None,
            fee_mode=fee_mode, lock_per_unit=lock_per_unit, created_ms=at_ms, updated_ms=at_ms,
            trade_delay_s=trade_delay_s, partial=partial,
        )
        self._orders.append(order)
        self._by_client_id.setdefault(order.client_order_id, []).append(order)
        if order.type is OrderType.MARKET:
            self._execute(order, current, at)
        elif order.type is OrderType.LIMIT and self._crosses(order, current):
            self._execute(order, current, at)          # takes liquidity at the price of the moment
        return order

    @staticmethod
    def _crosses(order: _Order, price: Decimal) -> bool:
        if order.type is OrderType.STOP_MARKET:
            return price <= order.stop_price
        assert order.price is not None
        return price <= order.price if order.side is Side.BUY else price >= order.price

    def _match(self, symbol: str, now: float) -> None:
        if symbol in self._halted:
            return                             # nothing trades on a halted market; resting orders wait
        price = self._prices[symbol]
        for order in [o for o in self._orders if o.symbol == symbol and o.is_open]:
            if order.type is OrderType.MARKET or not self._crosses(order, price):
                continue
            # A triggered stop is a market sell at the price of the moment; a resting limit
            # trades at its own price (maker).
            self._execute(order, price if order.type is OrderType.STOP_MARKET else order.price, now)

    def _execute(self, order: _Order, price: Decimal, at: float) -> None:
        """Fill what the book gives: all of the remainder, or a scripted fraction of it."""
        if order.partial is None:
            self._fill(order, order.remaining, price, at)
            return
        fraction, rest = order.partial
        order.partial = None
        if rest is None or (rest == "open" and order.type is not OrderType.LIMIT):
            rest = "open" if order.type is OrderType.LIMIT else "expired"
        qty = _floor_to_step(order.remaining * fraction, self._markets[order.symbol].lot_step)
        if qty > 0:
            self._fill(order, qty, price, at)
        final = _RESTS[rest]
        if final is not None and order.is_open:
            self._finish(order, final, _ms(at))

    def _fill(self, order: _Order, qty: Decimal, price: Decimal, at: float) -> None:
        rules = self._markets[order.symbol]
        base, quote = self._row(rules.base), self._row(rules.quote)
        notional = qty * price
        if order.lock_per_unit:
            held = quote if order.side is Side.BUY else base
            held[1] -= qty * order.lock_per_unit
            held[0] += qty * order.lock_per_unit     # a fill below the limit leaves the difference free
        if order.side is Side.BUY:
            quote[0] -= notional
            base[0] += qty
        else:
            base[0] -= qty
            quote[0] += notional
        fee, fee_asset = self._charge_fee(order, qty, notional, rules)
        at_ms = _ms(at)
        trade_id = (str(next(self._trade_ids)) if self.name == "binance"
                    else str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
        self._trades.append(_Trade(seq=next(self._seq), trade_id=trade_id, order=order, price=price, quantity=qty,
                                   fee=fee, fee_asset=fee_asset, timestamp_ms=at_ms,
                                   visible_at=at + order.trade_delay_s))
        order.filled += qty
        order.cum_quote += notional
        order.updated_ms = at_ms
        order.status = VenueOrderStatus.FILLED if order.remaining <= 0 else VenueOrderStatus.PARTIALLY_FILLED

    def _charge_fee(self, order: _Order, qty: Decimal, notional: Decimal, rules: MarketRules) -> tuple[Decimal, str]:
        if order.fee_mode == "BNB":
            bnb_price = self._prices.get(f"BNB/{rules.quote}")
            if bnb_price:
                fee = _fee_round(notional * self.fee_rate / bnb_price)
                bnb = self._row("BNB")
                if bnb[0] >= fee:
                    bnb[0] -= fee
                    return fee, "BNB"
            # BNB short or unpriced: charged as if BNB fees were off (below).
        if order.fee_mode == "quote" or order.side is Side.SELL:
            fee = _fee_round(notional * self.fee_rate)
            self._row(rules.quote)[0] -= fee
            return fee, rules.quote
        fee = _fee_round(qty * self.fee_rate)
        self._row(rules.base)[0] -= fee
        return fee, rules.base

    def _finish(self, order: _Order, status: VenueOrderStatus, at_ms: int) -> None:
        """End an open order (cancel, expiry of a market remainder): release what it holds."""
        if order.lock_per_unit:
            rules = self._markets[order.symbol]
            held = self._row(rules.quote if order.side is Side.BUY else rules.base)
            amount = order.remaining * order.lock_per_unit
            held[1] -= amount
            held[0] += amount
        order.status = status
        order.updated_ms = at_ms

    def _create_answer(self, order: _Order) -> VenueOrder:
        if self.name == "bybit":
            # Bybit answers a create with ids only; the fill state is learnt by asking.
            return VenueOrder(
                client_order_id=order.client_order_id, venue_order_id=order.venue_order_id, symbol=order.symbol,
                side=order.side, type=order.type, status=VenueOrderStatus.OPEN, quantity=order.quantity,
                filled_quantity=ZERO, average_price=None, price=order.price, updated_at_ms=order.created_ms,
                raw={"orderId": order.venue_order_id, "orderLinkId": order.client_order_id},
                stop_price=order.stop_price,
            )
        return self._venue_order(order)

    def _venue_order(self, order: _Order) -> VenueOrder:
        return VenueOrder(
            client_order_id=order.client_order_id, venue_order_id=order.venue_order_id, symbol=order.symbol,
            side=order.side, type=order.type, status=order.status, quantity=order.quantity,
            filled_quantity=order.filled, average_price=order.cum_quote / order.filled if order.filled else None,
            price=order.price, updated_at_ms=order.updated_ms, stop_price=order.stop_price,
            raw={"model": self.name, "orderId": order.venue_order_id, "clientOrderId": order.client_order_id,
                 "status": order.status.value, "executedQty": str(order.filled),
                 "cumQuote": str(order.cum_quote), "createdMs": order.created_ms, "feeMode": order.fee_mode},
        )

    def _venue_trade(self, trade: _Trade) -> VenueTrade:
        order = trade.order
        return VenueTrade(
            trade_id=trade.trade_id, venue_order_id=order.venue_order_id,
            client_order_id=order.client_order_id if self.name == "bybit" else None,
            symbol=order.symbol, side=order.side, price=trade.price, quantity=trade.quantity, fee=trade.fee,
            fee_asset=trade.fee_asset, timestamp_ms=trade.timestamp_ms,
            raw={"model": self.name, "id": trade.trade_id, "orderId": order.venue_order_id,
                 "order_client_id": order.client_order_id, "visible_at": trade.visible_at},
        )
