"""The system trades end to end on Binance and Bybit (real ccxt against the emulator over HTTP)
exactly as on paper: a tick decides every symbol and enters on a breakout, the entry is sent
with its deterministic client id and fills, the stop monitor opens the position, a drop through
the stop sells it once and alerts with trace id and reason code, and the position closes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from emulator import EmulatorControl, start_emulator
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
from infra.clock import ms_to_datetime, now_ms, tick_id_for
from infra.models import TelegramOutbox
from strategy.engines import PositionStop
from strategy.models import StrategyDecision, StrategyPosition
from strategy.services.positions import stop_monitor_run
from strategy.services.tick import tick_run
from tests.support.markets import ScriptedSource, breakout_rows, current_minute, paper_gateway
from trading.client_ids import make_client_order_id
from trading.config_schema import config_get
from trading.exchanges.binance import BinanceGateway
from trading.exchanges.bybit import BybitGateway
from trading.models import Order, OrderStatus
from trading.services.control import config_update

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

UNIVERSE = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
TF = 60_000




class Venue:
    """The venue under test, with the two knobs the scenario needs: candles and the last price."""

    def __init__(self, name: str, emulator=None):
        self.name = name
        if name == "paper":
            self.source = ScriptedSource(tick=Decimal("0.01"))
            self.gateway = paper_gateway(source=self.source, clock=now_ms, universe=lambda: config_get().universe)
        else:
            self.control = EmulatorControl(emulator.base_url)
            self.control.reset()
            cls = BinanceGateway if name == "binance" else BybitGateway
            self.gateway = cls(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, base_url=emulator.base_url,
                               testnet=False)

    def set_market(self, rows: dict[str, list]) -> None:
        for symbol, candles in rows.items():
            if self.name == "paper":
                self.source.set_candles(symbol, "1m", candles)
            else:
                self.control.set_klines(symbol, "1m", [(c.open_time_ms, c.open, c.high, c.low, c.close, c.volume)
                                                       for c in candles])
            self.set_price(symbol, candles[-1].close)

    def set_price(self, symbol: str, price: Decimal) -> None:
        if self.name == "paper":
            self.source.prices[symbol] = price
        else:
            self.control.set_price(symbol, price)

    def orders_on_venue(self, client_order_id: str) -> int:
        if self.name == "paper":
            from trading.models import PaperOrder

            return PaperOrder.objects.filter(client_order_id=client_order_id).count()
        return len(self.control.orders(client_id=client_order_id))


@pytest.fixture(scope="module")
def emulators():
    handles = {v: start_emulator(v, port=0, rate_limits=False, symbols=UNIVERSE) for v in ("binance", "bybit")}
    yield handles
    for handle in handles.values():
        handle.stop()


@pytest.mark.parametrize("venue_name", ["paper", "binance", "bybit"])
def test_entry_fill_position_stop_exit_on_every_venue(venue_name, emulators, redis_client, celery_eager,
                                                      monkeypatch):
    config_update(changes={"universe": UNIVERSE, "timeframe": "1m"}, actor="test", source="system",
                  reason_code="TEST_SETUP", reason="end-to-end", trace_id="setup")
    venue = Venue(venue_name, emulators.get(venue_name))
    monkeypatch.setattr("trading.exchanges.factory._gateway", venue.gateway)   # what the order tasks use
    close = current_minute()
    venue.set_market(breakout_rows(close, universe=UNIVERSE, entering=("BTC/USDT",)))
    tick = tick_id_for(ms_to_datetime(close))

    # The tick decides every symbol and enters BTC; the submit task runs (eagerly) after commit.
    report = tick_run(tick_id=tick, gateway=venue.gateway, now_ms=now_ms())
    decisions = {d.symbol: d for d in StrategyDecision.objects.filter(tick_id=tick)}
    assert sorted(decisions) == UNIVERSE
    assert (decisions["BTC/USDT"].decision, decisions["BTC/USDT"].reason_code) == ("enter", "ENTRY_SIGNAL")
    entry_id = make_client_order_id(strategy="blite", symbol="BTC/USDT", tick_id=tick, intent="entry")
    assert report.orders == [entry_id]
    entry = Order.objects.get(client_order_id=entry_id)
    assert entry.status == OrderStatus.FILLED, entry.last_error
    assert venue.orders_on_venue(entry_id) == 1

    # The stop monitor opens the position, then a drop through the stop sells it once.
    stop_monitor_run(gateway=venue.gateway)
    position = StrategyPosition.objects.get()
    stop = PositionStop.from_dict(position.stop_state).stop_price
    venue.set_price("BTC/USDT", (stop - Decimal("0.5")).quantize(Decimal("0.01")))
    stop_monitor_run(gateway=venue.gateway)
    stop_monitor_run(gateway=venue.gateway)

    exit_order = Order.objects.get(intent="stop_loss")
    assert exit_order.status == OrderStatus.FILLED, exit_order.last_error
    assert venue.orders_on_venue(exit_order.client_order_id) == 1
    position.refresh_from_db()
    assert (position.status, position.exit_reason) == ("closed", "STOP_LOSS")
    assert position.realised_pnl < 0
    alert = TelegramOutbox.objects.filter(reason_code="STOP_LOSS").first()
    assert alert is not None and exit_order.trace_id in alert.text
    # Every status change of both orders is explained by an event.
    for order in (entry, exit_order):
        events = list(order.events.values_list("event_type", flat=True))
        assert events[:3] == ["CREATED", "SUBMITTING", "ACCEPTED"] and "FILL" in events
