"""Fixtures for the venue gateway tests: emulators in threads, gateways, and venue harnesses.

The emulated venues need no Django and no database (``-p no:django`` runs them alone); the
paper venue lives in PostgreSQL, and the shared rate limiter in Redis, so their tests run under
``make test`` / ``python -m infra.devstack test`` and are skipped without the Django plugin.

The contract suite runs once per entry of ``HARNESS_FACTORIES`` (binance, bybit, paper): a
factory ``(request: pytest.FixtureRequest) -> VenueHarness``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
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
    control: EmulatorControl | None = None           # the emulator's control API; None on paper


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
            expected_rules=EXPECTED_RULES,
            create_returns_fill_state=venue != "bybit",
            control=ctl,
        )

    return factory


# The emulator's BTC/ETH markets; the paper venue derives the same from a 0.01 tick at 30000 / 2000.
EXPECTED_RULES = {
    "BTC/USDT": MarketRules(symbol="BTC/USDT", venue_symbol="BTCUSDT", base="BTC", quote="USDT",
                            tick_size=Decimal("0.01"), lot_step=Decimal("0.00001"),
                            min_qty=Decimal("0.00001"), min_notional=Decimal("5")),
    "ETH/USDT": MarketRules(symbol="ETH/USDT", venue_symbol="ETHUSDT", base="ETH", quote="USDT",
                            tick_size=Decimal("0.01"), lot_step=Decimal("0.0001"),
                            min_qty=Decimal("0.0001"), min_notional=Decimal("5")),
}
PAPER_UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START_BALANCES = {"USDT": Decimal("100000"), "BTC": Decimal("1"), "ETH": Decimal("10"), "SOL": Decimal("100")}


class SettableMarket:
    """The paper venue's market-data source in the contract suite.

    The paper venue's contract is "fills at the source price", so prices are whatever the test
    sets (the emulator's start prices by default). Candles come from the production sources:
    the seeded synthetic market, or the replay source over CSV files that ``set_candles`` writes.
    """

    def __init__(self, candle_dir: Path) -> None:
        from trading.exchanges.paper.feeds import SyntheticSource

        self.prices = {"BTC/USDT": Decimal("30000"), "ETH/USDT": Decimal("2000"), "SOL/USDT": Decimal("100")}
        self.synthetic = SyntheticSource(seed=7)
        self.candle_dir = candle_dir
        self.replayed: set[tuple[str, str]] = set()
        self.replay: Any = None

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.prices[symbol] = Decimal(price)

    def set_candles(self, symbol: str, timeframe: str, rows: list[tuple[Any, ...]]) -> None:
        from trading.exchanges.paper.replay import COLUMNS, ReplaySource, replay_file_name

        with (self.candle_dir / replay_file_name(symbol, timeframe)).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows([int(r[0]), *(str(v) for v in r[1:6])] for r in rows)
        self.replayed.add((symbol, timeframe))
        self.replay = ReplaySource(self.candle_dir)         # fresh: the replay source caches files

    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[Any]:
        source = self.replay if (symbol, timeframe) in self.replayed else self.synthetic
        return source.fetch_closed_candles(symbol, timeframe, since_ms=since_ms, limit=limit, now_ms=now_ms)

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        return self.prices[symbol]

    def tick_size(self, symbol: str) -> Decimal | None:
        return Decimal("0.01")


def make_paper_gateway(market: SettableMarket, *, universe: tuple[str, ...] = PAPER_UNIVERSE) -> ExchangeGateway:
    from trading.exchanges.paper import PaperGateway

    return PaperGateway(source=market, fee_rate=Decimal("0.001"), slippage_bps=Decimal(0),
                        initial_balances=dict(START_BALANCES), universe=lambda: list(universe))


def _paper_harness(request: pytest.FixtureRequest) -> VenueHarness:
    if not request.config.pluginmanager.hasplugin("django"):
        pytest.skip("the paper venue lives in PostgreSQL: run under make test")
    request.getfixturevalue("db")
    from trading.models import PaperBalance, PaperOrder

    market = SettableMarket(request.getfixturevalue("tmp_path"))
    gw = make_paper_gateway(market)

    def set_balances(balances: dict[str, Decimal]) -> None:
        gw.fetch_balances()                                   # seeds the start balances first
        for asset, amount in balances.items():
            PaperBalance.objects.update_or_create(asset=asset, defaults={"free": Decimal(amount)})

    return VenueHarness(
        name="paper", gateway=gw, fee_rate=Decimal("0.001"),
        set_price=market.set_price, set_balances=set_balances, set_candles=market.set_candles,
        venue_order_count=lambda client_id: PaperOrder.objects.filter(client_order_id=client_id).count(),
        fill_pending=lambda: gw.match_resting_orders(PAPER_UNIVERSE),
        expected_rules=EXPECTED_RULES,
        create_returns_fill_state=True,
    )


HARNESS_FACTORIES: dict[str, Callable[[pytest.FixtureRequest], VenueHarness]] = {
    "binance": _emulated_harness("binance"),
    "bybit": _emulated_harness("bybit"),
    "paper": _paper_harness,
}


_SERVER_FIXTURES = frozenset({"db", "transactional_db", "redis_client", "settings"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Paper contract tests use the database: mark them, so pytest-django creates the test
    database (it only sets up databases that collected tests are marked or declared for).
    Without the Django plugin (``-p no:django``) tests needing PostgreSQL or Redis are skipped."""
    with_django = config.pluginmanager.hasplugin("django")
    skip = pytest.mark.skip(reason="needs PostgreSQL / Redis: run under make test")
    here = Path(__file__).parent
    for item in items:
        # A conftest's collection hook sees the whole session's items: touch only our own.
        if here not in item.path.parents:
            continue
        callspec = getattr(item, "callspec", None)
        paper = callspec is not None and callspec.params.get("venue") == "paper"
        if with_django and paper:
            item.add_marker(pytest.mark.django_db)
        elif not with_django and (paper or _SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))):
            item.add_marker(skip)




@pytest.fixture(params=sorted(HARNESS_FACTORIES))
def venue(request: pytest.FixtureRequest) -> VenueHarness:
    return HARNESS_FACTORIES[request.param](request)
