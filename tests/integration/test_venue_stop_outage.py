"""Stops that survive our own outage (issue 14): positions are open with their protective stops
resting on the venue, every process of ours is SIGKILLed, the price moves at the venue, and the
system starts again.

* price through the stops while we are down: each position is closed exactly once, by the venue's
  stop, with the PnL and fees of the venue's fills; no second sell; nothing left resting.
* price dips towards the stops and recovers to a new high while we are down: nothing fires, each
  stop is still resting, and after the restart it is moved up in step with the trailing stop.

On Binance and Bybit (real ccxt against the emulator, which keeps running: it is the venue) and on
the paper venue, whose prices come from the emulator's public market data as a paper run can take
them from a real venue's. The paper venue is part of our system: while it is down nothing
matches, so it fills a stop the price went through when it is up again, at the price then - the
gap fill a venue gives a stop whose level was jumped.

"The system" here is its Celery workers (the strategy-engine on ``strategy,orders``, the
data-syncer on ``sync``) as real processes; the test sends the periodic tasks beat would send.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from alphasniper_project.celery import app
from emulator import EmulatorControl, start_emulator
from emulator.core import OPEN_STATUSES
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
from infra.clock import ms_to_datetime, now_ms, tick_id_for
from infra.models import TelegramOutbox
from strategy.engines import PositionStop
from strategy.models import StrategyPosition
from strategy.services.tick import tick_run
from tests.integration.test_crash_matrix import _worker_env
from tests.support.markets import breakout_rows, current_minute
from trading.config_schema import config_get
from trading.exchanges.binance import BinanceGateway
from trading.exchanges.bybit import BybitGateway
from trading.models import TERMINAL_STATUSES, Order, OrderStatus, PaperOrder
from trading.services.control import config_update

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
UNIVERSE = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
ENTERS = ("BTC/USDT", "ETH/USDT")
TF = 60_000




@pytest.fixture(scope="module")
def emulators():
    handles = {v: start_emulator(v, port=0, rate_limits=False, symbols=UNIVERSE) for v in ("binance", "bybit")}
    yield handles
    for handle in handles.values():
        handle.stop()


class Venue:
    """The venue under test; its prices always come from an emulator (paper: Binance's public data)."""

    def __init__(self, name: str, emulators):
        self.name = name
        market = emulators["bybit" if name == "bybit" else "binance"]
        self.control = EmulatorControl(market.base_url)
        self.control.reset()
        if name == "paper":
            from trading.exchanges.paper import PaperGateway
            from trading.exchanges.paper.feeds import PublicVenueSource

            source = PublicVenueSource("binance", base_url=market.base_url, rate_limiter=None)
            self.gateway = PaperGateway(source=source, fee_rate=settings.PAPER_FEE_RATE,
                                        slippage_bps=settings.PAPER_SLIPPAGE_BPS,
                                        initial_balances=settings.PAPER_INITIAL_BALANCES,
                                        universe=lambda: config_get().universe)
        else:
            cls = BinanceGateway if name == "binance" else BybitGateway
            self.gateway = cls(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, base_url=market.base_url,
                               testnet=False)
        self.env = {**_worker_env(name, emulators, None, Path("/nonexistent")), "LOG_FORMAT": "text"}
        if name == "paper":
            self.env.update({"MARKET_DATA_SOURCE": "binance", "MARKET_DATA_BASE_URL": market.base_url})

    def set_market(self, rows: dict[str, list]) -> None:
        for symbol, candles in rows.items():
            self.control.set_klines(symbol, "1m", [(c.open_time_ms, c.open, c.high, c.low, c.close, c.volume)
                                                   for c in candles])
            self.control.set_price(symbol, candles[-1].close)

    def resting(self) -> list[str]:
        """Client ids of the orders resting on the venue now."""
        if self.name == "paper":
            return list(PaperOrder.objects.filter(status="open").values_list("client_order_id", flat=True))
        return [o["client_id"] for o in self.control.orders() if o["status"] in OPEN_STATUSES]

    def sells_filled(self) -> list[str]:
        if self.name == "paper":
            return list(PaperOrder.objects.filter(side="sell", filled_quantity__gt=0)
                        .values_list("client_order_id", flat=True))
        return [o["client_id"] for o in self.control.orders() if o["side"] == "sell"
                and Decimal(o["executed"]) > 0]


class System:
    """Our worker processes, started and SIGKILLed as a whole."""

    def __init__(self, env: dict[str, str], log: Path, broker_url: str):
        self.env, self.log, self.broker_url = env, log, broker_url
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        ready_before = self.log.read_text().count(" ready.") if self.log.exists() else 0
        self.procs = []
        for queues in ("strategy,orders", "sync"):
            out = self.log.open("a")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "alphasniper_project", "worker", "--pool", "solo",
                 "-Q", queues, "-n", f"outage-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "INFO",
                 "--without-heartbeat", "--without-mingle", "--without-gossip"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 60
        while self.log.read_text().count(" ready.") < ready_before + len(self.procs):
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            assert all(p.poll() is None for p in self.procs), self.log.read_text()[-3000:]
            time.sleep(0.2)

    def send(self, task: str, **kwargs) -> None:
        with app.connection_for_write(self.broker_url) as conn:
            app.send_task(task, kwargs=kwargs, connection=conn)

    def kill_all(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=30)
            assert proc.returncode == -9

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def wait_for(predicate, system: System, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen:\n{system.log.read_text()[-4000:]}")
        system.send("strategy.stop_monitor")     # what beat sends every 20 s
        time.sleep(1.0)


def open_positions(venue: Venue, monkeypatch) -> list[StrategyPosition]:
    """A tick on the venue enters BTC and ETH; the entries fill (sends run eagerly) and open positions."""
    config_update(changes={"universe": UNIVERSE, "timeframe": "1m"}, actor="test", source="system",
                  reason_code="TEST_SETUP", reason="outage", trace_id="setup")
    monkeypatch.setattr("trading.exchanges.factory._gateway", venue.gateway)
    close = current_minute()
    venue.set_market(breakout_rows(close, universe=UNIVERSE, entering=ENTERS))
    tick_run(tick_id=tick_id_for(ms_to_datetime(close)), gateway=venue.gateway, now_ms=now_ms())
    positions = list(StrategyPosition.objects.order_by("symbol"))
    assert [p.symbol for p in positions] == sorted(ENTERS)
    return positions


def open_positions_with_stops(venue: Venue, monkeypatch) -> list[StrategyPosition]:
    """As ``open_positions``, and each position's stop rests on the venue at once."""
    positions = open_positions(venue, monkeypatch)
    stops = {p.pk: Order.objects.get(type="stop_market", tick_id=f"P{p.pk}") for p in positions}
    assert all(s.status == OrderStatus.ACCEPTED for s in stops.values()), [s.last_error for s in stops.values()]
    assert sorted(venue.resting()) == sorted(s.client_order_id for s in stops.values())
    return positions


@pytest.mark.parametrize("venue_name", ["paper", "binance", "bybit"])
def test_price_through_the_stops_while_everything_is_down(venue_name, emulators, tmp_path, _isolated_redis,
                                                          redis_client, celery_eager, monkeypatch):
    venue = Venue(venue_name, emulators)
    positions = open_positions_with_stops(venue, monkeypatch)
    stops = {p.pk: Order.objects.get(type="stop_market", tick_id=f"P{p.pk}") for p in positions}
    system = System(venue.env, tmp_path / "workers.log", _isolated_redis)
    system.start()
    try:
        system.send("strategy.stop_monitor")
        time.sleep(2)
        system.kill_all()

        # Down: the market falls through both stops (BTC just through, ETH gaps far below).
        venue.control.set_price("BTC/USDT", stops[positions[0].pk].stop_price - Decimal("0.05"))
        venue.control.set_price("ETH/USDT", stops[positions[1].pk].stop_price - Decimal("3"))

        system.start()
        wait_for(lambda: all(p.status == "closed" for p in StrategyPosition.objects.all()), system,
                 "every position closed")
        system.send("strategy.stop_monitor")
        system.send("trading.reconcile", full=True)
        time.sleep(3)
    finally:
        system.stop()

    for position in StrategyPosition.objects.order_by("symbol"):
        stop = Order.objects.get(pk=stops[position.pk].pk)
        assert stop.status == OrderStatus.FILLED and stop.filled_quantity == stop.quantity
        assert (position.status, position.exit_reason, position.exit_order_id) == ("closed", "STOP_LOSS", stop.pk)
        sold = stop.filled_quantity
        expected = (stop.filled_quote - stop.fee_quote) - (position.entry_price * sold
                                                           + position.entry_fee * sold / position.quantity)
        assert abs(position.realised_pnl - expected) < Decimal("1e-12") and position.realised_pnl < 0
        assert stop.fee_quote > 0 or stop.fee_unvalued
        alert = TelegramOutbox.objects.get(text__contains=f"position #{position.pk} ", reason_code="STOP_LOSS")
        assert stop.trace_id in alert.text
    # Exactly one sell per position, by its stop; no order of ours left resting or unresolved.
    assert sorted(venue.sells_filled()) == sorted(s.client_order_id for s in stops.values())
    assert Order.objects.filter(side="sell").count() == 2
    assert venue.resting() == []
    assert not Order.objects.exclude(status__in=TERMINAL_STATUSES).exists()


@pytest.mark.parametrize("venue_name", ["paper", "binance", "bybit"])
def test_price_recovering_before_the_restart_fires_nothing_and_the_stop_follows(
        venue_name, emulators, tmp_path, _isolated_redis, redis_client, celery_eager, monkeypatch):
    venue = Venue(venue_name, emulators)
    positions = open_positions_with_stops(venue, monkeypatch)
    btc = positions[0]
    stop = Order.objects.get(type="stop_market", tick_id=f"P{btc.pk}")
    state = PositionStop.from_dict(btc.stop_state)
    system = System(venue.env, tmp_path / "workers.log", _isolated_redis)
    system.start()
    try:
        system.kill_all()
        # Down: BTC dips to just above its stop, then rallies to a new high (below the target).
        venue.control.set_price("BTC/USDT", stop.stop_price + Decimal("0.01"))
        high = (state.entry_price + state.trail_distance * 2).quantize(Decimal("0.01"))
        venue.control.set_price("BTC/USDT", high)

        system.start()
        expected_stop = (high - state.trail_distance).quantize(Decimal("0.01"), rounding="ROUND_DOWN")

        def followed() -> bool:
            live = [o for o in Order.objects.filter(type="stop_market", tick_id=f"P{btc.pk}")
                    if o.status not in TERMINAL_STATUSES]
            return len(live) == 1 and live[0].status == OrderStatus.ACCEPTED and live[0].stop_price == expected_stop

        wait_for(followed, system, f"the venue stop moved up to {expected_stop}")
    finally:
        system.stop()

    assert StrategyPosition.objects.filter(status="open").count() == 2
    assert venue.sells_filled() == []
    live = [o for o in Order.objects.filter(type="stop_market") if o.status not in TERMINAL_STATUSES]
    assert sorted(venue.resting()) == sorted(o.client_order_id for o in live) and len(live) == 2
    btc_stop = next(o for o in live if o.symbol == "BTC/USDT")
    assert btc_stop.stop_price == expected_stop
    if venue.gateway.amends_stops:      # moved in place: the same order and client id
        assert btc_stop.pk == stop.pk
        assert Order.objects.get(pk=stop.pk).events.filter(event_type="STOP_MOVED").count() == 1
    else:                               # Binance: replaced by the next version in ONE request
        assert Order.objects.get(pk=stop.pk).status == OrderStatus.CANCELED
        assert btc_stop.replaces_id == stop.pk
        assert venue.control.request_count("/api/v3/order/cancelReplace") == 1
        assert venue.control.request_count("/api/v3/order", method="DELETE") == 0
