"""The strategy tick on real PostgreSQL and Redis with the paper venue: one decision per symbol
per tick, entries with deterministic client ids in the decision's transaction, idempotent under
re-runs and concurrent workers, and never an order on short, gappy, NaN or late data."""

from __future__ import annotations

import threading
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection

from infra.clock import ms_to_datetime, tick_id_for
from strategy.engines import BLiteParams
from strategy.models import StrategyDecision
from strategy.services import tick as tick_module
from strategy.services.tick import tick_run
from syncer.services import tick_sync_if_due
from tests.strategy.helpers import series
from tests.support.markets import ManualClock, ScriptedSource, find_synthetic_entries, paper_gateway, to_source_candles
from trading.client_ids import make_client_order_id
from trading.config_schema import config_get
from trading.exchanges.paper.feeds import SyntheticSource
from trading.exchanges.paper.synthetic import SyntheticMarket
from trading.models import Order
from trading.services.control import config_update

TF = 60_000
CLOSE = 1_700_000_040_000 + 300 * TF
TICK = tick_id_for(ms_to_datetime(CLOSE))
UNIVERSE = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def configure(**changes):
    config_update(changes=changes, actor="test", source="system", reason_code="TEST_SETUP", reason="test setup",
                  trace_id="test-setup")


def scripted_market(n: int = BLiteParams().history_candles + 39, *, entry: tuple[str, ...] = ("BTC/USDT",),
                    close: int = CLOSE) -> ScriptedSource:
    """Every symbol trends up for ``n`` candles up to ``close``; the ``entry`` symbols break out on
    double volume on the last candle, the others close just under their previous high."""
    src = ScriptedSource()
    t0 = close - n * TF
    for symbol in UNIVERSE:
        closes = list(np.linspace(110.0 - 10.0 * (n - 2) / 258, 110.0, n - 1))    # 10 per 258 candles
        if symbol in entry:
            closes.append(112.0)
            volumes = [100.0] * (n - 1) + [200.0]
        else:
            closes.append(closes[-1] - 0.2)
            volumes = [100.0] * n
        src.set_candles(symbol, "1m", to_source_candles(series(closes, volumes, t0=t0)))
    return src


@pytest.fixture
def world(db, redis_client, monkeypatch):
    """Paper venue on scripted candles; the clock sits 1 s after the tick's candle closed."""
    configure(universe=UNIVERSE, timeframe="1m")
    clock = ManualClock(CLOSE + 1_000)
    source = scripted_market()
    gw = paper_gateway(source=source, clock=clock, universe=lambda: config_get().universe)
    monkeypatch.setattr("trading.exchanges.factory._gateway", gw)
    return gw, source, clock


def run(gw, clock, tick_id=TICK, **kw):
    return tick_run(tick_id=tick_id, gateway=gw, now_ms=kw.pop("now_ms", clock()), **kw)


def decisions(tick_id=TICK) -> dict[str, StrategyDecision]:
    return {d.symbol: d for d in StrategyDecision.objects.filter(tick_id=tick_id)}


def test_a_tick_decides_every_symbol_and_enters_with_a_deterministic_client_id(world):
    gw, _, clock = world
    report = run(gw, clock)
    rows = decisions()
    assert sorted(rows) == UNIVERSE
    btc = rows["BTC/USDT"]
    assert (btc.decision, btc.reason_code) == ("enter", "ENTRY_SIGNAL")
    assert {rows[s].decision for s in ("ETH/USDT", "SOL/USDT")} == {"skip"}
    assert {rows[s].reason_code for s in ("ETH/USDT", "SOL/USDT")} == {"NO_BREAKOUT"}
    cid = make_client_order_id(strategy="blite", symbol="BTC/USDT", tick_id=TICK, intent="entry")
    order = Order.objects.get()
    assert report.orders == [cid] and order.client_order_id == cid
    assert (order.side, order.type, order.intent, order.tick_id) == ("buy", "market", "entry", TICK)
    assert order.trace_id == btc.trace_id                    # the decision and its order share a trace
    # The row explains itself: engine inputs, the sizing result, the account it was sized on.
    assert btc.inputs["engine"]["inputs"]["atr"] > 0 and btc.inputs["engine"]["inputs"]["candles_used"] == 1021
    assert Decimal(btc.inputs["sizing"]["quantity"]) == order.quantity
    assert btc.inputs["sizing"]["cap"] == "MAX_POSITION_NOTIONAL"
    assert Decimal(btc.inputs["sizing"]["notional"]) <= config_get().max_position_notional
    assert btc.inputs["account"]["equity"] == "10000" and btc.inputs["client_order_id"] == cid
    assert btc.inputs["market"]["stop_orders"] is True        # the venue offers stops on BTC/USDT
    assert len({d.trace_id for d in rows.values()}) == 3


def test_running_the_same_tick_again_changes_nothing(world):
    gw, _, clock = world
    run(gw, clock)
    before = list(StrategyDecision.objects.values_list("symbol", "decision", "trace_id"))
    again = run(gw, clock)
    assert again.status == "already_done"
    assert list(StrategyDecision.objects.values_list("symbol", "decision", "trace_id")) == before
    assert Order.objects.count() == 1


def test_a_tick_interrupted_midway_finishes_the_missing_symbols_only(world):
    gw, _, clock = world
    run(gw, clock)
    StrategyDecision.objects.filter(symbol="SOL/USDT").delete()
    report = run(gw, clock)
    assert list(report.decisions) == ["SOL/USDT"] and report.orders == []
    assert StrategyDecision.objects.count() == 3 and Order.objects.count() == 1


def test_a_tick_that_finds_no_sync_syncs_first(world):
    gw, source, clock = world
    run(gw, clock)                                  # no syncer.tick ran: the tick synced itself
    assert source.requests and decisions()["BTC/USDT"].inputs["sync"]["lag_candles"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("with_lock", [True, False], ids=["redis-lock", "db-uniqueness-only"])
def test_two_workers_running_the_same_tick_at_once_write_one_decision_per_symbol_and_one_order(
        world, monkeypatch, with_lock):
    gw, _, clock = world
    barrier = threading.Barrier(2, timeout=20)
    if not with_lock:
        # Without the Redis lock both workers really race to the decision rows: the database
        # alone must keep it at one decision per symbol and one order per intent.
        import contextlib

        monkeypatch.setattr(tick_module, "redis_lock", lambda *a, **k: contextlib.nullcontext())
        real_context = tick_module._context

        def context_then_wait(*args, **kwargs):
            ctx = real_context(*args, **kwargs)
            barrier.wait()
            return ctx

        monkeypatch.setattr(tick_module, "_context", context_then_wait)
    results, errors = [], []

    def worker():
        try:
            results.append(run(gw, clock))
        except Exception as exc:           # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert StrategyDecision.objects.filter(tick_id=TICK).count() == 3
    assert Order.objects.filter(intent="entry").count() == 1
    written = sum(len(r.decisions) for r in results)
    assert written == 3                                     # each symbol decided by exactly one worker
    if not with_lock:
        assert sum(len(r.raced) for r in results) == 3      # the loser saw every symbol taken


@pytest.mark.django_db
def test_a_full_tick_on_the_synthetic_market(redis_client, monkeypatch):
    # Given the seeded offline market and a minute at which B-lite enters on it
    universe = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"]
    configure(universe=universe, timeframe="1m")
    market = SyntheticMarket(42)
    start = 1_760_000_000_000 // TF * TF
    found = find_synthetic_entries(market, universe, start_close_ms=start, minutes=240, params=BLiteParams())
    assert found, "the synthetic market gives ~6 entries an hour"
    close_ms, entering = found[0]
    clock = ManualClock(close_ms + 700)
    gw = paper_gateway(source=SyntheticSource(42), clock=clock, universe=lambda: config_get().universe)
    monkeypatch.setattr("trading.exchanges.factory._gateway", gw)
    # When the minute beat syncs that tick and the strategy runs it
    synced = tick_sync_if_due(now=ms_to_datetime(clock()), gateway=gw, sleep=lambda s: None)
    assert synced is not None and synced.report.ok
    report = tick_run(tick_id=synced.tick_id, gateway=gw, now_ms=clock())
    # Then every symbol has one decision and every entry signal became one order
    rows = decisions(synced.tick_id)
    assert sorted(rows) == sorted(universe)
    entered = sorted(s for s, d in rows.items() if d.decision == "enter")
    assert entered == sorted(entering)[:3]                  # at most max_open_positions
    assert sorted(Order.objects.values_list("client_order_id", flat=True)) == sorted(
        make_client_order_id(strategy="blite", symbol=s, tick_id=synced.tick_id, intent="entry") for s in entered)
    assert set(report.orders) == set(Order.objects.values_list("client_order_id", flat=True))


# --- data faults never trade -------------------------------------------------------------------

def test_a_venue_returning_fewer_candles_than_needed_gives_no_order(world):
    gw, source, clock = world
    for symbol in UNIVERSE:
        rows = source.series[(symbol, "1m")]
        source.set_candles(symbol, "1m", rows[-100:])
    run(gw, clock)
    assert {d.reason_code for d in decisions().values()} == {"INSUFFICIENT_HISTORY"}
    assert not Order.objects.exists()


def test_a_gap_in_the_window_gives_no_order(world):
    gw, source, clock = world
    rows = source.series[("BTC/USDT", "1m")]
    source.set_candles("BTC/USDT", "1m", rows[:-30] + rows[-29:])
    run(gw, clock)
    assert decisions()["BTC/USDT"].reason_code == "GAP_IN_DATA"
    assert not Order.objects.exists()


def test_a_nan_candle_gives_no_order(world):
    gw, source, clock = world
    rows = source.series[("BTC/USDT", "1m")]
    bad = rows[-5]
    rows[-5] = bad.__class__(bad.open_time_ms, bad.open, bad.high, bad.low, Decimal("NaN"), bad.volume)
    run(gw, clock)
    assert decisions()["BTC/USDT"].reason_code in ("GAP_IN_DATA", "BAD_DATA")
    assert not Order.objects.exists()


def test_a_venue_that_has_not_published_the_tick_candle_gives_no_order(world):
    gw, source, clock = world
    rows = source.series[("BTC/USDT", "1m")]
    source.set_candles("BTC/USDT", "1m", rows[:-1])
    run(gw, clock)
    assert decisions()["BTC/USDT"].reason_code == "STALE_DATA"
    assert not Order.objects.exists()
