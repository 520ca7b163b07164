"""Venues for order-path tests: the paper venue with prices a test sets, and the Binance /
Bybit emulators driven through real ccxt. Same shape for all three so a test can be
parametrised over venues and assert the same things."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from emulator import EmulatorControl, EmulatorHandle
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
from trading.exchanges.base import Candle, ExchangeGateway
from trading.exchanges.binance import BinanceGateway
from trading.exchanges.bybit import BybitGateway
from trading.exchanges.paper import PaperGateway
from trading.models import PaperOrder


@dataclass
class ManualPrices:
    """A market-data source whose prices the test sets (the paper venue fills at them)."""

    prices: dict[str, Decimal] = field(default_factory=lambda: {"BTC/USDT": Decimal("30000"),
                                                                "ETH/USDT": Decimal("2000")})

    def fetch_closed_candles(self, symbol, timeframe, *, since_ms=None, limit=500, now_ms) -> list[Candle]:
        return []

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        return self.prices[symbol]

    def tick_size(self, symbol: str) -> Decimal | None:
        return Decimal("0.01")


@dataclass
class Venue:
    name: str
    gateway: ExchangeGateway
    orders_with_client_id: Callable[[str], int]
    add_fault: Callable[..., None]
    set_price: Callable[[str, Decimal], None]
    control: EmulatorControl | None = None          # the emulator's control API (None on paper)


def paper_venue(balances: dict[str, Decimal] | None = None) -> Venue:
    prices = ManualPrices()
    gateway = PaperGateway(source=prices, fee_rate=Decimal("0.001"), slippage_bps=Decimal(0),
                           initial_balances=balances or {"USDT": Decimal("100000")},
                           universe=lambda: ["BTC/USDT", "ETH/USDT"])

    def no_faults(**rule) -> None:
        raise NotImplementedError("the paper venue takes no fault scripts")

    return Venue("paper", gateway, lambda cid: PaperOrder.objects.filter(client_order_id=cid).count(), no_faults,
                 lambda symbol, price: prices.prices.__setitem__(symbol, price))


def emulated_venue(handle: EmulatorHandle) -> Venue:
    control = EmulatorControl(handle.base_url)
    control.reset()
    cls = BinanceGateway if handle.venue == "binance" else BybitGateway
    gateway = cls(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, base_url=handle.base_url, testnet=False,
                  timeout_ms=2000)
    gateway.load_markets()
    return Venue(handle.venue, gateway, lambda cid: len(control.orders(client_id=cid)),
                 lambda **rule: control.add_fault(rule), control.set_price, control)
