"""Fixtures for the venue gateway tests: emulators in threads, gateways, and venue harnesses.

No Django and no database here: run with
``.venv/bin/pytest -p no:django -p no:cacheprovider tests/exchanges -q``.

Adding a venue to the contract suite (e.g. ``paper``): write a factory
``(request: pytest.FixtureRequest) -> VenueHarness`` and add it to ``HARNESS_FACTORIES`` below
(the ``venue`` fixture is parametrised over that registry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from emulator import EmulatorControl, EmulatorHandle, start_emulator
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
from trading.exchanges.base import ExchangeGateway, MarketRules
from trading.exchanges.binance import BinanceGateway
from trading.exchanges.bybit import BybitGateway
from trading.exchanges.ccxt_gateway import CcxtGateway

GATEWAY_CLASSES: dict[str, type[CcxtGateway]] = {"binance": BinanceGateway, "bybit": BybitGateway}
EMULATED_VENUES = ("binance", "bybit")


def make_gateway(
    handle: EmulatorHandle, *, api_key: str = DEFAULT_API_KEY, api_secret: str = DEFAULT_API_SECRET,
    timeout_ms: int = 3000, rate_limiter: Any = None,
) -> CcxtGateway:
    return GATEWAY_CLASSES[handle.venue](
        api_key=api_key, api_secret=api_secret, base_url=handle.base_url, testnet=False,
        timeout_ms=timeout_ms, rate_limiter=rate_limiter,
    )


@pytest.fixture(scope="session")
def emulator_servers() -> Iterator[Callable[[str], EmulatorHandle]]:
    """One emulator thread per venue for the whole session, started on first use (port 0)."""
    handles: dict[str, EmulatorHandle] = {}

    def get(venue: str) -> EmulatorHandle:
        if venue not in handles:
            handles[venue] = start_emulator(venue, port=0)
        return handles[venue]

    yield get
    for handle in handles.values():
        handle.stop()


@pytest.fixture(params=EMULATED_VENUES)
def emulator(request: pytest.FixtureRequest, emulator_servers: Callable[[str], EmulatorHandle]) -> EmulatorHandle:
    """A freshly reset emulator; parametrised over the venues (use indirect=True to pick one)."""
    handle = emulator_servers(request.param)
    EmulatorControl(handle.base_url).reset()
    return handle


@pytest.fixture
def control(emulator: EmulatorHandle) -> EmulatorControl:
    return EmulatorControl(emulator.base_url)


@pytest.fixture
def gateway_factory() -> Callable[..., CcxtGateway]:
    """``gateway_factory(handle, api_key=..., api_secret=..., timeout_ms=..., rate_limiter=...)``."""
    return make_gateway


@pytest.fixture
def control_for(
    emulator_servers: Callable[[str], EmulatorHandle],
) -> Callable[[str], tuple[EmulatorHandle, EmulatorControl]]:
    """For venue-specific tests: ``handle, control = control_for("bybit")`` (reset)."""

    def get(venue: str) -> tuple[EmulatorHandle, EmulatorControl]:
        handle = emulator_servers(venue)
        ctl = EmulatorControl(handle.base_url)
        ctl.reset()
        return handle, ctl

    return get


@pytest.fixture
def gateway(emulator: EmulatorHandle) -> CcxtGateway:
    gw = make_gateway(emulator)
    gw.load_markets()
    return gw


# ---------------------------------------------------------------------- contract harness
@dataclass
class VenueHarness:
    """What the contract suite needs from a venue besides its gateway."""

    name: str
    gateway: ExchangeGateway
    fee_rate: Decimal
    set_price: Callable[[str, Decimal], None]
    set_balances: Callable[[dict[str, Decimal]], None]
    # rows (open_time_ms, open, high, low, close, volume) replace the (symbol, timeframe) series
    set_candles: Callable[[str, str, list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]], None]
    venue_order_count: Callable[[str], int]          # orders the venue holds with this client id
    fill_pending: Callable[[], None]
    expected_rules: dict[str, MarketRules]
    # Whether create_order's answer already carries the fill state (Bybit acknowledges ids only).
    create_returns_fill_state: bool = True


def _emulated_harness(venue: str) -> Callable[[pytest.FixtureRequest], VenueHarness]:
    def factory(request: pytest.FixtureRequest) -> VenueHarness:
        handle = request.getfixturevalue("emulator_servers")(venue)
        ctl = EmulatorControl(handle.base_url)
        ctl.reset()
        gw = make_gateway(handle)
        return VenueHarness(
            name=venue, gateway=gw, fee_rate=Decimal("0.001"),
            set_price=ctl.set_price,
            set_balances=lambda balances: ctl.set_balances(balances),
            set_candles=lambda symbol, tf, rows: ctl.set_klines(symbol, tf, rows),
            venue_order_count=lambda client_id: len(ctl.orders(client_id=client_id)),
            fill_pending=ctl.fill_pending,
            expected_rules={
                "BTC/USDT": MarketRules(symbol="BTC/USDT", venue_symbol="BTCUSDT", base="BTC", quote="USDT",
                                        tick_size=Decimal("0.01"), lot_step=Decimal("0.00001"),
                                        min_qty=Decimal("0.00001"), min_notional=Decimal("5")),
                "ETH/USDT": MarketRules(symbol="ETH/USDT", venue_symbol="ETHUSDT", base="ETH", quote="USDT",
                                        tick_size=Decimal("0.01"), lot_step=Decimal("0.0001"),
                                        min_qty=Decimal("0.0001"), min_notional=Decimal("5")),
            },
            create_returns_fill_state=venue != "bybit",
        )

    return factory


HARNESS_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], VenueHarness]] = {
    "binance": _emulated_harness("binance"),
    "bybit": _emulated_harness("bybit"),
}


@pytest.fixture(params=sorted(HARNESS_FACTORIES))
def venue(request: pytest.FixtureRequest) -> VenueHarness:
    return HARNESS_FACTORIES[request.param](request)
