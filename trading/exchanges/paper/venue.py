"""The paper venue: an exchange that lives in our PostgreSQL (tables ``paper_*``).

It implements the same ``ExchangeGateway`` as Binance and Bybit and behaves like them where
it matters to exactly-once: it commits in its own transactions (a crash of the caller after
the paper venue accepted an order leaves the order on the "venue", as with a real one), it
rejects a second order with a client id it already has, and it answers lookups by client id.
Balances, orders and fills survive restarts.

Prices come from a market-data source (``trading.exchanges.paper.feeds``): the seeded synthetic market
by default, a replay file, or live public data. Market orders fill at once at the source
price with slippage; limit orders rest and fill when the price crosses them; stop orders rest
with their quantity reserved and, once the price falls to the stop, fill like a market sell.
Resting orders are matched lazily, at the price of the moment, whenever the venue is asked about
that symbol and on every ticker sync: a dip that recovers between two looks goes unseen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from django.db import IntegrityError, transaction

from infra.clock import now_ms as clock_now_ms
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
    RejectedError,
)
from trading.exchanges.paper.feeds import MarketDataSource
from trading.models import PaperBalance, PaperOrder, PaperTrade

VENUE = "paper"
MIN_NOTIONAL = Decimal("5")
_OPEN = (VenueOrderStatus.OPEN, VenueOrderStatus.PARTIALLY_FILLED)
_RESTING_TYPES = (OrderType.LIMIT, OrderType.STOP_MARKET)


def rules_for(symbol: str, reference_price: Decimal, tick_size: Decimal | None = None) -> MarketRules:
    """Exchange-like increments from the price level: ~7 significant digits of price, and a
    lot step worth between 0.1 and 1 quote units (as Binance sets them for majors)."""
    base, _, quote = symbol.partition("/")
    magnitude = math.floor(math.log10(float(reference_price))) if reference_price > 0 else 0
    tick = tick_size or Decimal(1).scaleb(magnitude - 6)
    lot = Decimal(1).scaleb(-(magnitude + 1))
    return MarketRules(symbol=symbol, venue_symbol=f"{base}{quote}", base=base, quote=quote, tick_size=tick,
                       lot_step=lot, min_qty=lot, min_notional=MIN_NOTIONAL)


class PaperGateway(ExchangeGateway):
    name = VENUE

    def __init__(
        self, *, source: MarketDataSource, fee_rate: Decimal, slippage_bps: Decimal,
        initial_balances: dict[str, Decimal], universe: Callable[[], Iterable[str]],
        clock: Callable[[], int] = clock_now_ms,
    ) -> None:
        self.source = source
        self.fee_rate = fee_rate
        self.slippage = slippage_bps / Decimal(10_000)
        self.initial_balances = initial_balances
        self.universe = universe
        self.clock = clock
        self._rules: dict[str, MarketRules] = {}

    # --- market data -----------------------------------------------------------------------

    def rules(self, symbol: str) -> MarketRules:
        if symbol not in self._rules:
            if "/" not in symbol:
                raise RejectedError(f"unknown symbol {symbol!r}", venue=VENUE, code="UNKNOWN_SYMBOL")
            price = self.source.price_at(symbol, self.clock())
            self._rules[symbol] = rules_for(symbol, price, self.source.tick_size(symbol))
        return self._rules[symbol]

    def load_markets(self) -> dict[str, MarketRules]:
        return {symbol: self.rules(symbol) for symbol in self.universe()}

    def listed_markets(self, symbols: Iterable[str]) -> dict[str, MarketRules]:
        """A symbol is listed here when the price source can price it (the synthetic market
        prices any symbol; a replay directory only the ones it has files for). ``load_markets``
        is the configured universe, so it cannot answer this for a universe not yet stored."""
        listed = {}
        for symbol in symbols:
            try:
                listed[symbol] = self.rules(symbol)
            except (RejectedError, LookupError, ValueError):   # unknown to the venue / the price source
                continue
        return listed

    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None,
                             limit: int = 500) -> list[Candle]:
        candles = self.source.fetch_closed_candles(symbol, timeframe, since_ms=since_ms, limit=limit,
                                                   now_ms=self.clock())
        return list(candles)

    def fetch_ticker(self, symbol: str) -> Ticker:
        now = self.clock()
        price = self.source.price_at(symbol, now)
        return Ticker(symbol=symbol, last=price, bid=price, ask=price, timestamp_ms=now)

    def server_time_ms(self) -> int:
        return self.clock()

    # --- account ---------------------------------------------------------------------------

    def _seed_balances(self) -> None:
        if not PaperBalance.objects.exists():
            for asset, amount in self.initial_balances.items():
                PaperBalance.objects.get_or_create(asset=asset, defaults={"free": amount})

    def fetch_balances(self) -> dict[str, Balance]:
        self._seed_balances()
        return {b.asset: Balance(b.asset, b.free, b.locked) for b in PaperBalance.objects.all()}

    def _locked_balances(self, *assets: str) -> dict[str, PaperBalance]:
        self._seed_balances()
        for asset in assets:
            PaperBalance.objects.get_or_create(asset=asset)
        # Lock in a fixed order so two orders on the same pair cannot deadlock.
        rows = PaperBalance.objects.select_for_update().filter(asset__in=assets).order_by("asset")
        return {b.asset: b for b in rows}

    # --- orders ----------------------------------------------------------------------------

    def create_order(self, request: OrderRequest) -> VenueOrder:
        rules = self.rules(request.symbol)
        self._validate(request, rules)
        last_look_veto(VENUE)
        try:
            with transaction.atomic():
                if PaperOrder.objects.filter(client_order_id=request.client_order_id).exists():
                    raise DuplicateClientOrderIdError("Duplicate clientOrderId", venue=VENUE, code="DUPLICATE")
                order = self._place(request, rules)
        except IntegrityError:
            raise DuplicateClientOrderIdError("Duplicate clientOrderId", venue=VENUE, code="DUPLICATE") from None
        return self._to_venue_order(order)

    def _validate(self, request: OrderRequest, rules: MarketRules) -> None:
        qty = request.quantity
        if qty <= 0 or qty % rules.lot_step != 0 or qty < rules.min_qty:
            raise RejectedError(f"quantity {qty} breaks lot step {rules.lot_step} / min {rules.min_qty}",
                                venue=VENUE, code="LOT_SIZE")
        if request.type == OrderType.LIMIT:
            if request.price is None or request.price <= 0 or request.price % rules.tick_size != 0:
                raise RejectedError(f"price {request.price} breaks tick size {rules.tick_size}", venue=VENUE,
                                    code="PRICE_FILTER")
        problem = stop_order_problem(request, rules.tick_size)
        if problem:
            raise RejectedError(problem, venue=VENUE, code="STOP_PRICE")
        if request.type == OrderType.STOP_MARKET:
            current = self.source.price_at(request.symbol, self.clock())
            if current <= request.stop_price:
                # As Binance: a sell stop at or above the market would be a market sell in disguise.
                raise RejectedError(f"Stop price would trigger immediately: stop {request.stop_price}, "
                                    f"last {current}", venue=VENUE, code="WOULD_TRIGGER_IMMEDIATELY")
        # The price source may be a live venue: read it only when the request carries no price.
        reference = request.price or request.stop_price or self.source.price_at(request.symbol, self.clock())
        if qty * reference < rules.min_notional:
            raise RejectedError(f"notional {qty * reference} below {rules.min_notional}", venue=VENUE,
                                code="MIN_NOTIONAL")

    def _place(self, request: OrderRequest, rules: MarketRules) -> PaperOrder:
        balances = self._locked_balances(rules.base, rules.quote)
        base, quote = balances[rules.base], balances[rules.quote]
        qty = request.quantity
        if request.type == OrderType.MARKET:
            fill_price = self._market_fill_price(request.symbol, request.side, rules)
            order = PaperOrder.objects.create(
                client_order_id=request.client_order_id, symbol=request.symbol, side=request.side, type=request.type,
                quantity=qty, status=VenueOrderStatus.OPEN)
            self._fill(order, fill_price, base, quote, from_locked=False)
            return order
        # Limit and stop: reserve what the order may consume, then let the matcher fill it.
        if request.side == Side.BUY:
            need = qty * request.price
            self._require(quote, need)
            quote.free -= need
            quote.locked += need
        else:
            need = qty
            self._require(base, need)
            base.free -= need
            base.locked += need
        PaperBalance.objects.bulk_update([base, quote], ["free", "locked"])
        order = PaperOrder.objects.create(
            client_order_id=request.client_order_id, symbol=request.symbol, side=request.side, type=request.type,
            quantity=qty, price=request.price, stop_price=request.stop_price, status=VenueOrderStatus.OPEN,
            locked_amount=need)
        # A marketable limit takes liquidity at the current price (never worse than its limit);
        # a stop cannot be triggered on arrival (refused above).
        price = self.source.price_at(request.symbol, self.clock())
        if request.type == OrderType.LIMIT and self._crosses(order, price):
            self._fill(order, price, base, quote, from_locked=True)
        return order

    def _market_fill_price(self, symbol: str, side: str, rules: MarketRules) -> Decimal:
        """Slippage always works against us: buys round up to the tick, sells round down."""
        price = self.source.price_at(symbol, self.clock())
        if side == Side.BUY:
            ticks = (price * (1 + self.slippage) / rules.tick_size).to_integral_value(rounding=ROUND_UP)
        else:
            ticks = (price * (1 - self.slippage) / rules.tick_size).to_integral_value(rounding=ROUND_DOWN)
        return ticks * rules.tick_size

    @staticmethod
    def _require(balance: PaperBalance, amount: Decimal) -> None:
        if balance.free < amount:
            raise InsufficientFundsError(
                f"Account has insufficient balance for requested action: need {amount} {balance.asset}, "
                f"free {balance.free}", venue=VENUE, code="INSUFFICIENT_BALANCE")

    def _fill(self, order: PaperOrder, price: Decimal, base: PaperBalance, quote: PaperBalance, *,
              from_locked: bool) -> None:
        """Fill the whole remainder at ``price``. As on Binance and Bybit, the fee is taken from
        the asset received: base for a buy, quote for a sell."""
        qty = order.quantity - order.filled_quantity
        notional = qty * price
        if order.side == Side.BUY:
            fee, fee_asset = qty * self.fee_rate, base.asset
            if from_locked:
                quote.locked -= order.locked_amount
                quote.free += order.locked_amount - notional     # a fill below the limit frees the rest
            else:
                self._require(quote, notional)
                quote.free -= notional
            base.free += qty - fee
        else:
            fee, fee_asset = notional * self.fee_rate, quote.asset
            if from_locked:
                base.locked -= order.locked_amount
            else:
                self._require(base, qty)
                base.free -= qty
            quote.free += notional - fee
        PaperBalance.objects.bulk_update([base, quote], ["free", "locked"])
        PaperTrade.objects.create(order=order, symbol=order.symbol, side=order.side, price=price, quantity=qty,
                                  fee=fee, fee_asset=fee_asset, executed_at_ms=self.clock())
        order.filled_quantity += qty
        order.filled_quote += notional
        order.locked_amount = Decimal(0)
        order.status = VenueOrderStatus.FILLED
        order.save(update_fields=["filled_quantity", "filled_quote", "locked_amount", "status", "updated_at"])

    @staticmethod
    def _crosses(order: PaperOrder, price: Decimal) -> bool:
        return price <= order.price if order.side == Side.BUY else price >= order.price

    def _match_one(self, order: PaperOrder, price: Decimal, rules: MarketRules, base: PaperBalance,
                   quote: PaperBalance) -> bool:
        """A resting limit order the market trades through fills at its own limit price, as a maker.
        A triggered stop becomes a market sell: the current price less slippage, as a taker."""
        if order.type == OrderType.STOP_MARKET:
            if price > order.stop_price:
                return False
            self._fill(order, self._market_fill_price(order.symbol, Side.SELL, rules), base, quote, from_locked=True)
            return True
        if self._crosses(order, price):
            self._fill(order, order.price, base, quote, from_locked=True)
            return True
        return False

    def match_resting_orders(self, symbols: Iterable[str]) -> int:
        """Fill resting limit orders the current price crosses and stops it reaches. Returns how many filled."""
        filled = 0
        for symbol in symbols:
            with transaction.atomic():
                resting = list(PaperOrder.objects.select_for_update(skip_locked=True)
                               .filter(symbol=symbol, status__in=_OPEN, type__in=_RESTING_TYPES).order_by("id"))
                if not resting:
                    continue
                rules = self.rules(symbol)
                balances = self._locked_balances(rules.base, rules.quote)
                price = self.source.price_at(symbol, self.clock())
                filled += sum(self._match_one(o, price, rules, balances[rules.base], balances[rules.quote])
                              for o in resting)
        return filled

    def fetch_order(self, symbol: str, client_order_id: str) -> VenueOrder | None:
        self.match_resting_orders([symbol])
        order = PaperOrder.objects.filter(client_order_id=client_order_id, symbol=symbol).first()
        return self._to_venue_order(order) if order else None

    def cancel_order(self, symbol: str, client_order_id: str) -> VenueOrder:
        self.match_resting_orders([symbol])
        with transaction.atomic():
            order = PaperOrder.objects.select_for_update().filter(
                client_order_id=client_order_id, symbol=symbol).first()
            if order is None or order.status not in _OPEN:
                raise OrderNotFoundError(f"Unknown order sent: {client_order_id}", venue=VENUE, code="UNKNOWN_ORDER")
            rules = self.rules(symbol)
            balances = self._locked_balances(rules.base, rules.quote)
            held = balances[rules.quote] if order.side == Side.BUY else balances[rules.base]
            held.locked -= order.locked_amount
            held.free += order.locked_amount
            held.save(update_fields=["free", "locked"])
            order.locked_amount = Decimal(0)
            order.status = VenueOrderStatus.CANCELED
            order.save(update_fields=["locked_amount", "status", "updated_at"])
        return self._to_venue_order(order)

    amends_stops = True

    def amend_stop(self, symbol: str, client_order_id: str, stop_price: Decimal) -> VenueOrder:
        """Move a resting stop's trigger in place; the same checks as placing one."""
        # A stop the market has already reached fires first: it is then filled, not amended.
        self.match_resting_orders([symbol])
        rules = self.rules(symbol)
        problem = stop_price_problem(stop_price, rules.tick_size)
        if problem:
            raise RejectedError(problem, venue=VENUE, code="STOP_PRICE")
        current = self.source.price_at(symbol, self.clock())
        if current <= stop_price:
            raise RejectedError(f"Stop price would trigger immediately: stop {stop_price}, last {current}",
                                venue=VENUE, code="WOULD_TRIGGER_IMMEDIATELY")
        last_look_veto(VENUE)
        with transaction.atomic():
            order = PaperOrder.objects.select_for_update().filter(
                client_order_id=client_order_id, symbol=symbol).first()
            if order is None or order.status not in _OPEN:
                raise OrderNotFoundError(f"Unknown order sent: {client_order_id}", venue=VENUE, code="UNKNOWN_ORDER")
            if order.type != OrderType.STOP_MARKET:
                raise RejectedError(f"{client_order_id} is a {order.type} order: only a stop's trigger can be "
                                    "amended", venue=VENUE, code="NOT_A_STOP")
            if order.quantity * stop_price < rules.min_notional:
                raise RejectedError(f"notional {order.quantity * stop_price} below {rules.min_notional}",
                                    venue=VENUE, code="MIN_NOTIONAL")
            order.stop_price = stop_price
            order.save(update_fields=["stop_price", "updated_at"])
        return self._to_venue_order(order)

    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        self.match_resting_orders([symbol])
        return [self._to_venue_order(o) for o in PaperOrder.objects.filter(symbol=symbol, status__in=_OPEN)]

    def fetch_my_trades(self, symbol: str, *, since_ms: int | None = None, limit: int = 1000) -> list[VenueTrade]:
        self.match_resting_orders([symbol])
        trades = PaperTrade.objects.filter(symbol=symbol).select_related("order").order_by("id")
        if since_ms is not None:
            trades = trades.filter(executed_at_ms__gte=since_ms)
        return [
            VenueTrade(trade_id=f"PT{t.pk}", venue_order_id=f"P{t.order_id}", client_order_id=t.order.client_order_id,
                       symbol=t.symbol, side=Side(t.side), price=t.price, quantity=t.quantity, fee=t.fee,
                       fee_asset=t.fee_asset, timestamp_ms=t.executed_at_ms)
            for t in trades[:limit]
        ]

    @staticmethod
    def _to_venue_order(order: PaperOrder) -> VenueOrder:
        average = order.filled_quote / order.filled_quantity if order.filled_quantity else None
        return VenueOrder(
            client_order_id=order.client_order_id, venue_order_id=f"P{order.pk}", symbol=order.symbol,
            side=Side(order.side), type=OrderType(order.type), status=VenueOrderStatus(order.status),
            quantity=order.quantity, filled_quantity=order.filled_quantity, average_price=average, price=order.price,
            stop_price=order.stop_price, updated_at_ms=int(order.updated_at.timestamp() * 1000),
            raw={"paper_order_id": order.pk, "status": order.status},
        )
