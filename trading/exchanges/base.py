"""The one gateway interface every venue implements (paper, Binance, Bybit).

Everything is Decimal for money and quantities, epoch milliseconds (UTC) for time, and
unified symbols like ``BTC/USDT``. Adapters translate venue wire formats and errors
(see ``errors.py``) so that the rest of the system never imports ccxt.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    # A protective sell: rests on the venue with the base quantity reserved and becomes a market
    # sell when the last price falls to ``stop_price`` (Binance STOP_LOSS, Bybit spot conditional
    # market order, the paper venue's own). Sell-only: this is a long-only spot system, and a
    # stop above the market would trigger at once (Binance refuses it; Bybit would read it as a
    # rising trigger), so every gateway refuses both the same way.
    STOP_MARKET = "stop_market"


class VenueOrderStatus(StrEnum):
    """The venue's view of an order, normalised across venues."""

    OPEN = "open"                      # accepted, nothing filled yet
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"              # includes "partially filled then canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True)
class MarketRules:
    symbol: str                        # unified, e.g. "BTC/USDT"
    venue_symbol: str                  # venue id, e.g. "BTCUSDT"
    base: str
    quote: str
    tick_size: Decimal                 # price increment
    lot_step: Decimal                  # quantity increment
    min_qty: Decimal
    min_notional: Decimal              # price * qty must be >= this
    # Whether this symbol takes stop-market sells (Binance lists them per symbol in exchangeInfo
    # ``orderTypes``; a symbol without STOP_LOSS is refused). Defaults to True so that rules
    # recorded before the field existed read as they behaved then.
    stop_orders: bool = True


# Precision for the step arithmetic: exact for any realistic value / step (a context object
# passed explicitly is much cheaper than entering ``localcontext`` on every call, and the
# backtest rounds several times per trade).
_STEP_CONTEXT = Context(prec=50)


@functools.lru_cache(maxsize=1024)
def _quantum_for_exponent(exponent: int) -> Decimal:
    return Decimal(1).scaleb(min(exponent, 0))


def _step_quantum(step: Decimal) -> Decimal:
    # Cached by the step's exponent, not the step: Decimal("0.01") == Decimal("0.0100") and they
    # hash alike, but round to 2 and to 4 places.
    return _quantum_for_exponent(step.as_tuple().exponent)  # type: ignore[arg-type]


def round_to_step(value: Decimal, step: Decimal, *, up: bool = False) -> Decimal:
    """Round to a multiple of ``step`` (down by default), keeping the step's exponent.

    ``round_to_step(Decimal("1.23456"), Decimal("0.01")) == Decimal("1.23")``.
    """
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    ctx = _STEP_CONTEXT
    units = ctx.divide(value, step).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR, context=ctx)
    # Show as many decimals as the step has (``0.010`` step -> 3 places), for clean strings in
    # orders and logs; exact, since the result is a multiple of step.
    return ctx.multiply(units, step).quantize(_step_quantum(step), context=ctx)


@dataclass(frozen=True)
class Candle:
    """One *closed* candle. ``open_time_ms`` is the candle's open time in UTC epoch ms."""

    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Ticker:
    symbol: str
    last: Decimal
    bid: Decimal | None
    ask: Decimal | None
    timestamp_ms: int


@dataclass(frozen=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True)
class OrderRequest:
    client_order_id: str               # ours, deterministic, <= 36 chars of [A-Za-z0-9_-]
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal                  # always in base units
    price: Decimal | None = None       # limit price; None for market and stop orders
    stop_price: Decimal | None = None  # trigger price of a STOP_MARKET order; None otherwise


@dataclass(frozen=True)
class VenueOrder:
    client_order_id: str | None        # None only for orders that were not ours
    venue_order_id: str
    symbol: str
    side: Side
    type: OrderType
    status: VenueOrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    average_price: Decimal | None
    price: Decimal | None
    updated_at_ms: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    stop_price: Decimal | None = None  # a STOP_MARKET order's trigger price


@dataclass(frozen=True)
class StopReplacement:
    """What a venue's cancel-replace did: the old order as canceled, the new one as placed."""

    canceled: VenueOrder
    placed: VenueOrder


@dataclass(frozen=True)
class VenueTrade:
    trade_id: str                      # venue's trade / execution id: the idempotency key of a fill
    venue_order_id: str
    client_order_id: str | None
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str | None
    timestamp_ms: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def stop_order_problem(request: OrderRequest, tick_size: Decimal) -> str | None:
    """Why the stop part of ``request`` cannot be sent, or None. Every gateway asks this before
    sending, so the three venues refuse the same requests with the same words."""
    if request.type is not OrderType.STOP_MARKET:
        return "only a stop order takes a stop price" if request.stop_price is not None else None
    if request.side is not Side.SELL:
        return "stop orders are sell-only (protective stops on spot holdings)"
    if request.price is not None:
        return "a stop-market order takes no limit price"
    return stop_price_problem(request.stop_price, tick_size)


def stop_price_problem(stop_price: Decimal | None, tick_size: Decimal) -> str | None:
    """Why ``stop_price`` cannot be a stop's trigger on a market with ``tick_size``, or None.
    Placing and amending a stop ask the same question."""
    if stop_price is None or stop_price <= 0 or stop_price % tick_size != 0:
        return f"stop price {stop_price} is not a positive multiple of the tick {tick_size}"
    return None


# --- the last look before an order leaves ------------------------------------------------------
# A send may wait in the shared rate limiter for seconds after it was claimed. Whoever sends can
# install a check that every gateway runs after that wait, just before the request's bytes go:
# if it names a reason (e.g. trading was halted meanwhile and this is an entry), the gateway
# raises ``SendVetoedError`` and nothing reaches the venue.

_last_look: ContextVar[Callable[[], str | None] | None] = ContextVar("last_look", default=None)


@contextmanager
def last_look(check: Callable[[], str | None] | None) -> Iterator[None]:
    token = _last_look.set(check)
    try:
        yield
    finally:
        _last_look.reset(token)


def last_look_veto(venue: str) -> None:
    """Run the installed check; raise ``SendVetoedError`` if it says not to send. Gateways call
    this right before a request leaves (after any rate-limit wait)."""
    check = _last_look.get()
    reason = check() if check is not None else None
    if reason:
        from trading.exchanges.errors import SendVetoedError

        raise SendVetoedError(reason, venue=venue)


class ExchangeGateway(abc.ABC):
    """What the system needs from a venue. One instance per process, for the venue in EXCHANGE."""

    name: str

    @abc.abstractmethod
    def load_markets(self) -> dict[str, MarketRules]:
        """Spot markets keyed by unified symbol. One request to the venue."""

    def listed_markets(self, symbols: Iterable[str]) -> dict[str, MarketRules]:
        """The rules of those ``symbols`` the venue lists as spot markets; the others are absent.

        For checking a proposed universe before it is stored. One ``load_markets`` request here;
        the paper venue overrides it (its own listing is whatever its price source can price)."""
        markets = self.load_markets()
        return {symbol: markets[symbol] for symbol in symbols if symbol in markets}

    @abc.abstractmethod
    def fetch_closed_candles(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
    ) -> list[Candle]:
        """Closed candles, oldest first, open_time >= since_ms. The still-forming candle is dropped."""

    @abc.abstractmethod
    def fetch_ticker(self, symbol: str) -> Ticker: ...

    @abc.abstractmethod
    def fetch_balances(self) -> dict[str, Balance]:
        """Signed read. Also how credentials are checked."""

    @abc.abstractmethod
    def create_order(self, request: OrderRequest) -> VenueOrder:
        """Send one order with our client id. Raises OutcomeUnknownError when the result is unknown."""

    @abc.abstractmethod
    def fetch_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        """The venue's order with this client id (open or closed), or None if the venue has none."""

    @abc.abstractmethod
    def cancel_order(self, symbol: str, client_order_id: str) -> VenueOrder:
        """Cancel by client id. Raises OrderNotFoundError if the venue has no open order with it."""

    @abc.abstractmethod
    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        """All open orders on one symbol: one request (reconciliation batches per symbol)."""

    @abc.abstractmethod
    def fetch_my_trades(
        self, symbol: str, *, since_ms: int | None = None, limit: int = 1000,
    ) -> list[VenueTrade]:
        """Our fills on one symbol since a cursor, oldest first: one request."""

    @abc.abstractmethod
    def server_time_ms(self) -> int:
        """The venue's clock, for skew checks."""

    # Whether ``amend_stop`` moves a resting stop in place on this venue. Where it does not
    # (Binance: cancelReplace gives the new order a new client id), a stop is moved by a cancel
    # and a new order with a new client id.
    amends_stops: bool = False

    def amend_stop(self, symbol: str, client_order_id: str, stop_price: Decimal) -> VenueOrder:
        """Move the trigger of a resting stop-market sell IN PLACE: same client id, same quantity.

        Returns the venue's order after the change (``stop_price`` is the new one). The same
        checks as placing a stop: a price off the tick, or at/above the market (it would trigger
        at once), is ``RejectedError``. An order that is not open any more (filled, canceled) or
        never existed is ``OrderNotFoundError``; an unknown outcome is ``OutcomeUnknownError``.
        Only where ``amends_stops`` is True; elsewhere ``NotImplementedError``.
        """
        raise NotImplementedError(f"{self.name} does not amend stops in place (amends_stops is False)")

    # Whether the venue replaces an order by another in one request (Binance ``cancelReplace``):
    # the old order is canceled and the new one placed by the venue, with no moment between the
    # two requests of a cancel-then-place.
    replaces_stops: bool = False

    def replace_stop(self, symbol: str, cancel_client_order_id: str, request: OrderRequest) -> StopReplacement:
        """Cancel the resting stop ``cancel_client_order_id`` and place ``request`` (a stop-market sell
        under a new client id) in ONE venue request; the new order is attempted only if the cancel
        succeeded. ``OrderNotFoundError``: the old order was not open (filled, canceled) and nothing
        was placed. ``StopReplaceHalfDoneError``: the old one was canceled, the new one refused.
        Any other ``RejectedError``: nothing changed. ``OutcomeUnknownError``: resolve by querying
        both client ids. Only where ``replaces_stops`` is True; elsewhere ``NotImplementedError``."""
        raise NotImplementedError(f"{self.name} does not replace orders in one request (replaces_stops is False)")
