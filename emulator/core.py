"""Venue-neutral exchange state: markets, balances, orders, fills and the matching rules.

The venue front-ends (``binance_api``, ``bybit_api``) translate wire parameters into calls on
``Book`` and ``Reject`` kinds into the venue's own error codes. Every mutation happens under one
short ``threading.Lock``; nothing here sleeps, so latency faults never hold the lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

ZERO = Decimal(0)
FEE_QUANTUM = Decimal("0.00000001")


def dec(value: Any) -> Decimal:
    """Decimal from str/int/Decimal (floats go through str so 0.1 stays 0.1)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def plain(value: Decimal) -> str:
    """``Decimal`` as a plain string without exponent or trailing zeros (Bybit style)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def fixed8(value: Decimal) -> str:
    """Eight decimals, the way Binance prints every amount."""
    return format(value.quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP), "f")


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


class Clock:
    """Wall clock plus a settable offset (``clock_skew`` control)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self, extra_ms: int = 0) -> int:
        return int(time.time() * 1000) + self.offset_ms + extra_ms


@dataclass
class MarketSpec:
    symbol: str                # unified, "BTC/USDT"
    base: str
    quote: str
    tick_size: Decimal
    lot_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    price: Decimal             # current price, settable
    anchor: Decimal            # reference price of the generated klines; never changes after start
    stop_orders: bool = True   # takes stop-market orders (Binance STOP_LOSS, Bybit spot conditional)
    halted: bool = False       # trading halted: nothing matches, new orders and amends refused, cancels work

    @property
    def venue_id(self) -> str:
        return self.base + self.quote


# price, tick, lot step, min notional: close to the real venues' spot rules.
_DEFAULT_RULES: dict[str, tuple[str, str, str, str]] = {
    "BTC/USDT": ("30000", "0.01", "0.00001", "5"),
    "ETH/USDT": ("2000", "0.01", "0.0001", "5"),
    "SOL/USDT": ("100", "0.01", "0.001", "5"),
    "BNB/USDT": ("300", "0.01", "0.001", "5"),
    "XRP/USDT": ("0.5", "0.0001", "0.1", "5"),
    "DOGE/USDT": ("0.1", "0.00001", "1", "5"),
}
DEFAULT_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
DEFAULT_BALANCES = {"USDT": "100000", "BTC": "1", "ETH": "10", "SOL": "100"}
DEFAULT_FEE_RATE = Decimal("0.001")


def make_market(symbol: str) -> MarketSpec:
    base, _, quote = symbol.upper().partition("/")
    if not base or not quote:
        raise ValueError(f"symbol must look like BASE/QUOTE, got {symbol!r}")
    price, tick, step, notional = _DEFAULT_RULES.get(f"{base}/{quote}", ("100", "0.01", "0.001", "5"))
    return MarketSpec(
        symbol=f"{base}/{quote}", base=base, quote=quote, tick_size=Decimal(tick), lot_step=Decimal(step),
        min_qty=Decimal(step), max_qty=Decimal("9000000"), min_notional=Decimal(notional),
        price=Decimal(price), anchor=Decimal(price),
    )


class Reject(Exception):  # noqa: N818 - a venue answer, not a programming error
    """The book refused a request. ``kind`` is venue-neutral; front-ends map it to codes."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


OPEN_STATUSES = frozenset({"new", "partially_filled"})


@dataclass
class Order:
    id: int
    client_id: str
    symbol: str
    side: str                          # "buy" | "sell"
    type: str                          # "market" | "limit" | "stop" (a market order once triggered)
    qty: Decimal                       # base units
    price: Decimal | None              # limit price
    time_in_force: str
    created_ms: int
    updated_ms: int
    lock_price: Decimal                # price used to reserve quote for buys
    quote_qty: Decimal | None = None   # Binance quoteOrderQty / Bybit marketUnit=quoteCoin, as sent
    status: str = "new"                # new | partially_filled | filled | canceled | expired
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    cum_fee: Decimal = ZERO
    fee_asset: str = ""
    hold: bool = False                 # partial_fill fault: the rest waits for the next match pass
    stop_price: Decimal | None = None  # stop orders: the trigger
    trigger_direction: str = ""        # stop orders: "fall" (price <= stop) or "rise" (price >= stop)
    triggered: bool = False
    fills: list[Fill] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed if self.executed else ZERO

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "client_id": self.client_id, "symbol": self.symbol, "side": self.side,
            "type": self.type, "qty": plain(self.qty), "price": None if self.price is None else plain(self.price),
            "stop_price": None if self.stop_price is None else plain(self.stop_price),
            "triggered": self.triggered,
            "status": self.status, "executed": plain(self.executed), "cum_quote": plain(self.cum_quote),
            "created_ms": self.created_ms, "updated_ms": self.updated_ms,
            "fill_ids": [f.id for f in self.fills],
        }


@dataclass(frozen=True)
class Fill:
    id: int
    order_id: int
    client_id: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    time_ms: int
    is_maker: bool

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "order_id": self.order_id, "client_id": self.client_id, "symbol": self.symbol,
            "side": self.side, "price": plain(self.price), "qty": plain(self.qty), "fee": plain(self.fee),
            "fee_asset": self.fee_asset, "time_ms": self.time_ms, "is_maker": self.is_maker,
        }


class Book:
    """All mutable exchange state for one venue."""

    def __init__(
        self, *, symbols: list[str] | tuple[str, ...], balances: dict[str, Any], fee_rate: Decimal,
        clock: Clock,
    ) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self._symbols = tuple(symbols)
        self._initial_balances = {k.upper(): dec(v) for k, v in balances.items()}
        self._initial_fee_rate = fee_rate
        self.reset()

    # ------------------------------------------------------------------ setup
    def reset(self) -> None:
        with self.lock:
            self.markets: dict[str, MarketSpec] = {s.symbol: s for s in map(make_market, self._symbols)}
            self.by_venue_id = {m.venue_id: m for m in self.markets.values()}
            self.balances: dict[str, list[Decimal]] = {
                asset: [amount, ZERO] for asset, amount in self._initial_balances.items()
            }
            self.fee_rate = self._initial_fee_rate
            self.orders: dict[int, Order] = {}
            self.by_client_id: dict[str, Order] = {}
            self.open_by_symbol: dict[str, dict[int, Order]] = {s: {} for s in self.markets}
            self.fills_by_symbol: dict[str, list[Fill]] = {s: [] for s in self.markets}
            self._next_order_id = 1000
            self._next_fill_id = 5000

    def market(self, symbol: str) -> MarketSpec:
        """Market by unified symbol or venue id."""
        found = self.markets.get(symbol) or self.by_venue_id.get(symbol.upper())
        if found is None:
            raise Reject("unknown_symbol", symbol)
        return found

    def set_balances(self, balances: dict[str, Any], *, replace: bool = False) -> None:
        with self.lock:
            if replace:
                self.balances = {}
            for asset, amount in balances.items():
                row = self.balances.setdefault(asset.upper(), [ZERO, ZERO])
                row[0] = dec(amount)

    def set_fee_rate(self, rate: Decimal) -> None:
        with self.lock:
            self.fee_rate = rate

    def set_prices(self, prices: dict[str, Any]) -> None:
        with self.lock:
            now = self.clock.now_ms()
            for symbol, price in prices.items():
                market = self.market(symbol)
                market.price = dec(price)
                self._match(market, now)

    def set_market(self, symbol: str, *, stop_orders: bool | None = None, halted: bool | None = None) -> MarketSpec:
        """Change what a market offers: stop orders at all, trading at all (a halt)."""
        market = self.market(symbol)
        with self.lock:
            if stop_orders is not None:
                market.stop_orders = stop_orders
            if halted is not None:
                market.halted = halted
                if not halted:
                    # Trading resumes at the price of the moment: whatever it reached fills now.
                    self._match(market, self.clock.now_ms())
            return market

    def match_all(self) -> None:
        """Fill whatever crosses at the current prices, including held partial-fill remainders."""
        with self.lock:
            now = self.clock.now_ms()
            for market in self.markets.values():
                self._match(market, now)

    # ------------------------------------------------------------------ orders
    def place(
        self, *, symbol: str, side: str, type: str, qty: Decimal | None, quote_qty: Decimal | None,
        price: Decimal | None, client_id: str, time_in_force: str, partial_fraction: float | None = None,
        force_duplicate: bool = False, stop_price: Decimal | None = None, trigger_direction: str = "",
    ) -> Order:
        """``type="stop"``: a market order that waits until the price reaches ``stop_price`` from
        ``trigger_direction`` ("fall" or "rise"); one that would trigger at once is refused."""
        market = self.market(symbol)
        with self.lock:
            now = self.clock.now_ms()
            if force_duplicate or client_id in self.by_client_id:
                raise Reject("duplicate", client_id)
            if market.halted:
                raise Reject("halted", market.symbol)
            if type == "stop" and not market.stop_orders:
                raise Reject("stops_unsupported", market.symbol)
            if type == "limit":
                if price is None or qty is None:
                    raise Reject("bad_param", "limit orders need price and quantity")
                if price <= 0 or price % market.tick_size != 0:
                    raise Reject("price_filter", f"price {price} is not a multiple of {market.tick_size}")
            if type == "stop":
                if stop_price is None or qty is None or trigger_direction not in ("fall", "rise"):
                    raise Reject("bad_param", "stop orders need a stop price, a direction and a quantity")
                if stop_price <= 0 or stop_price % market.tick_size != 0:
                    raise Reject("price_filter", f"stop price {stop_price} is not a multiple of {market.tick_size}")
                if market.price <= stop_price if trigger_direction == "fall" else market.price >= stop_price:
                    raise Reject("would_trigger", f"stop {stop_price}, last {market.price}")
            exec_ref = {"market": market.price, "stop": stop_price}.get(type, price)
            assert exec_ref is not None
            if qty is None:
                if quote_qty is None or quote_qty <= 0:
                    raise Reject("bad_param", "quantity or quote quantity required")
                qty = floor_to_step(quote_qty / market.price, market.lot_step)
            if qty < market.min_qty or qty > market.max_qty or qty % market.lot_step != 0:
                raise Reject("lot_size", f"quantity {qty} breaks min {market.min_qty} / step {market.lot_step}")
            if qty * exec_ref < market.min_notional:
                raise Reject("min_notional", f"notional {qty * exec_ref} below {market.min_notional}")
            self._reserve(market, side, qty * exec_ref if side == "buy" else qty)
            order = Order(
                id=self._next_order_id, client_id=client_id, symbol=market.symbol, side=side, type=type,
                qty=qty, price=price if type == "limit" else None, time_in_force=time_in_force,
                created_ms=now, updated_ms=now, lock_price=exec_ref, quote_qty=quote_qty,
                fee_asset=market.base if side == "buy" else market.quote,
                stop_price=stop_price if type == "stop" else None,
                trigger_direction=trigger_direction if type == "stop" else "",
            )
            self._next_order_id += 1
            self.orders[order.id] = order
            self.by_client_id[client_id] = order
            self.open_by_symbol[market.symbol][order.id] = order
            if self._crosses(order, market):
                fill_qty = order.qty
                if partial_fraction is not None:
                    fill_qty = floor_to_step(order.qty * dec(partial_fraction), market.lot_step)
                    order.hold = True
                if fill_qty > 0:
                    # An incoming order that crosses trades at the current price (taker).
                    self._fill(order, market, fill_qty, market.price, is_maker=False, now=now)
            return order

    def cancel(
        self, *, symbol: str, order_id: int | None = None, client_id: str | None = None, expire: bool = False,
    ) -> Order:
        """Cancel an open order (``expire=True``: the venue's own IOC/FOK expiry, not a user cancel)."""
        market = self.market(symbol)
        with self.lock:
            order = self._find(market, order_id, client_id)
            if order is None or not order.is_open:
                raise Reject("not_found", f"order {order_id or client_id}")
            remaining = order.remaining
            self._release(market, order.side, remaining * order.lock_price if order.side == "buy" else remaining)
            order.status = "expired" if expire else "canceled"
            order.updated_ms = self.clock.now_ms()
            self.open_by_symbol[market.symbol].pop(order.id, None)
            return order

    def amend_stop(
        self, *, symbol: str, stop_price: Decimal, order_id: int | None = None, client_id: str | None = None,
    ) -> Order:
        """Move a resting stop's trigger in place: same ids, same quantity, same direction. A
        trigger the price has already reached from that direction is refused, as when placing."""
        market = self.market(symbol)
        with self.lock:
            order = self._find(market, order_id, client_id)
            if order is None:
                raise Reject("not_found", f"order {order_id or client_id}")
            if order.status == "filled":
                raise Reject("filled", f"order {order.id}")
            if not order.is_open:
                raise Reject("canceled", f"order {order.id}")
            if order.type != "stop" or order.triggered:
                raise Reject("not_amendable", f"order {order.id} is not a resting stop")
            if market.halted:
                raise Reject("halted", market.symbol)
            if stop_price <= 0 or stop_price % market.tick_size != 0:
                raise Reject("price_filter", f"stop price {stop_price} is not a multiple of {market.tick_size}")
            if market.price <= stop_price if order.trigger_direction == "fall" else market.price >= stop_price:
                raise Reject("would_trigger", f"{order.trigger_direction}: stop {stop_price}, last {market.price}")
            if order.remaining * stop_price < market.min_notional:
                raise Reject("min_notional", f"notional {order.remaining * stop_price} below {market.min_notional}")
            if order.side == "buy":
                # A buy stop reserves quote at its trigger price: move the reservation with it.
                difference = order.remaining * (stop_price - order.lock_price)
                if difference > 0:
                    self._reserve(market, "buy", difference)
                else:
                    self._release(market, "buy", -difference)
                order.lock_price = stop_price
            order.stop_price = stop_price
            order.updated_ms = self.clock.now_ms()
            return order

    def get(self, *, symbol: str, order_id: int | None = None, client_id: str | None = None) -> Order | None:
        market = self.market(symbol)
        with self.lock:
            return self._find(market, order_id, client_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        with self.lock:
            if symbol is None:
                return sorted((o for book in self.open_by_symbol.values() for o in book.values()),
                              key=lambda o: o.id)
            return sorted(self.open_by_symbol[self.market(symbol).symbol].values(), key=lambda o: o.id)

    def orders_for(self, symbol: str) -> list[Order]:
        market = self.market(symbol)
        with self.lock:
            return [o for o in self.orders.values() if o.symbol == market.symbol]

    def fills_for(self, symbol: str) -> list[Fill]:
        market = self.market(symbol)
        with self.lock:
            return list(self.fills_by_symbol[market.symbol])

    def balance_rows(self) -> dict[str, tuple[Decimal, Decimal]]:
        with self.lock:
            return {asset: (row[0], row[1]) for asset, row in self.balances.items()}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "orders": [o.as_dict() for o in sorted(self.orders.values(), key=lambda o: o.id)],
                "trades": [f.as_dict() for fills in self.fills_by_symbol.values() for f in fills],
                "balances": {a: {"free": plain(r[0]), "locked": plain(r[1])} for a, r in self.balances.items()},
                "prices": {s: plain(m.price) for s, m in self.markets.items()},
                "markets": {s: {"stop_orders": m.stop_orders, "halted": m.halted} for s, m in self.markets.items()},
                "fee_rate": plain(self.fee_rate),
            }

    # ------------------------------------------------------------------ internals (lock held)
    def _find(self, market: MarketSpec, order_id: int | None, client_id: str | None) -> Order | None:
        order = self.orders.get(order_id) if order_id is not None else self.by_client_id.get(client_id or "")
        if order is None or order.symbol != market.symbol:
            return None
        return order

    @staticmethod
    def _crosses(order: Order, market: MarketSpec) -> bool:
        if order.type == "market":
            return True
        if order.type == "stop":
            assert order.stop_price is not None
            if order.triggered:
                return True
            return (market.price <= order.stop_price if order.trigger_direction == "fall"
                    else market.price >= order.stop_price)
        assert order.price is not None
        return market.price <= order.price if order.side == "buy" else market.price >= order.price

    def _reserve(self, market: MarketSpec, side: str, amount: Decimal) -> None:
        asset = market.quote if side == "buy" else market.base
        row = self.balances.setdefault(asset, [ZERO, ZERO])
        if row[0] < amount:
            raise Reject("insufficient", f"{asset} free {row[0]} < {amount}")
        row[0] -= amount
        row[1] += amount

    def _release(self, market: MarketSpec, side: str, amount: Decimal) -> None:
        row = self.balances.setdefault(market.quote if side == "buy" else market.base, [ZERO, ZERO])
        row[1] -= amount
        row[0] += amount

    def _fill(self, order: Order, market: MarketSpec, qty: Decimal, price: Decimal, *, is_maker: bool,
              now: int) -> None:
        quote_amount = qty * price
        base_row = self.balances.setdefault(market.base, [ZERO, ZERO])
        quote_row = self.balances.setdefault(market.quote, [ZERO, ZERO])
        if order.side == "buy":
            reserved = qty * order.lock_price
            quote_row[1] -= reserved
            quote_row[0] += reserved - quote_amount   # a better price hands the difference back
            fee = (qty * self.fee_rate).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)
            base_row[0] += qty - fee
        else:
            base_row[1] -= qty
            fee = (quote_amount * self.fee_rate).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)
            quote_row[0] += quote_amount - fee
        fill = Fill(
            id=self._next_fill_id, order_id=order.id, client_id=order.client_id, symbol=market.symbol,
            side=order.side, price=price, qty=qty, fee=fee, fee_asset=order.fee_asset, time_ms=now,
            is_maker=is_maker,
        )
        self._next_fill_id += 1
        self.fills_by_symbol[market.symbol].append(fill)
        order.fills.append(fill)
        order.executed += qty
        order.cum_quote += quote_amount
        order.cum_fee += fee
        order.updated_ms = now
        if order.executed >= order.qty:
            order.status = "filled"
            self.open_by_symbol[market.symbol].pop(order.id, None)
        else:
            order.status = "partially_filled"

    def _match(self, market: MarketSpec, now: int) -> None:
        if market.halted:
            return                  # nothing trades on a halted market; resting orders wait
        for order in sorted(self.open_by_symbol[market.symbol].values(), key=lambda o: o.id):
            if not self._crosses(order, market):
                continue
            held, order.hold = order.hold, False
            if order.type == "stop":
                # Triggered: from now on a market order, filled at the price of the moment.
                order.triggered = True
                self._fill(order, market, order.remaining, market.price, is_maker=False, now=now)
            elif order.type == "market":
                self._fill(order, market, order.remaining, market.price, is_maker=False, now=now)
            else:
                # A resting order trades at its own limit price; a held remainder of a crossing
                # order keeps the taker price it would have had.
                assert order.price is not None
                price = market.price if held else order.price
                self._fill(order, market, order.remaining, price, is_maker=not held, now=now)
