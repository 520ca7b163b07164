"""Parity with live: the live system trades a stretch of ticks on the paper venue; replaying the
candles it stored through the backtest gives the same decision for every symbol at every tick
as ``strategy_decisions``, and the same entry orders as ``orders``.

The market is the synthetic one (three symbols, one minute apart), with wickless candles
(open = previous close, high / low = the larger / smaller of open and close) and a venue that
prices at the last close. That is the one market where the live stop monitor - which looks at
the venue's price, here once per candle at its close - and the backtest's candle model
(``stops.candle_exit``) must see every stop, trailing stop and target in the same candle:
a stop is touched inside a candle exactly when the candle closes at or through it. Exits fill at
different prices (the monitor sells at the close, the backtest at the level), which moves the
quote balance but not the decisions, since the cap on position notional sizes every entry.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import numpy as np
import pytest

from backtest.engine import simulate
from backtest.types import BacktestSpec, SymbolSeries
from infra.clock import ms_to_datetime, now_ms, tick_id_for
from strategy.models import StrategyDecision
from strategy.params import blite_params
from strategy.services.positions import stop_monitor_run
from strategy.services.tick import tick_run
from syncer.models import Candle as StoredCandle
from tests.strategy.test_tick import configure
from tests.support.markets import ManualClock, ScriptedSource, paper_gateway
from trading.config_schema import config_get
from trading.exchanges.base import Candle, MarketRules
from trading.exchanges.paper.synthetic import SyntheticMarket
from trading.models import Order

pytestmark = pytest.mark.django_db(transaction=True)

TF = 60_000
UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
TICKS = 90
# A stretch of the synthetic market with entries, holds, a cooldown, a full book and every kind of exit.
SEED, SOURCE_START = 3, 1_767_225_600_000 + 222 * TF


class LastCloseSource(ScriptedSource):
    """Scripted candles; the ticker (and a market order's fill) is the close of the newest candle
    closed at that moment."""

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        rows = self.series[(symbol, "1m")]
        closed = [c for c in rows if c.open_time_ms + TF <= t_ms]
        return closed[-1].close


def wickless_market(first_close_ms: int, history: int) -> LastCloseSource:
    source = LastCloseSource(tick=Decimal("0.01"))
    synthetic = SyntheticMarket(SEED)
    count = history + TICKS
    shift = first_close_ms - TF * history - SOURCE_START          # re-timed to end at the test's ticks
    for symbol in UNIVERSE:
        a = synthetic.candle_arrays(symbol, "1m", SOURCE_START, count)
        rows = []
        prev = Decimal(repr(round(float(a.open[0]), 2)))          # every price on the venue's 0.01 tick
        for i in range(count):
            close = Decimal(repr(round(float(a.close[i]), 2)))
            rows.append(Candle(int(a.open_time_ms[i]) + shift, prev, max(prev, close), min(prev, close), close,
                               Decimal(repr(float(a.volume[i])))))
            prev = close
        source.set_candles(symbol, "1m", rows)
    return source


@pytest.fixture
def eager_celery():
    from alphasniper_project.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def stored_series(symbol: str) -> SymbolSeries:
    rows = list(StoredCandle.objects.filter(venue="paper", symbol=symbol, timeframe="1m").order_by("open_time")
                .values_list("open_time", "open", "high", "low", "close", "volume"))
    times = np.array([int(r[0].timestamp() * 1000) for r in rows], dtype=np.int64)
    cols = [np.array([float(r[k]) for r in rows]) for k in range(1, 6)]
    return SymbolSeries(symbol, times, *cols)


def test_a_replay_of_the_stored_candles_decides_and_orders_as_the_live_ticks_did(redis_client, monkeypatch,
                                                                                 eager_celery) -> None:
    # Given the live system on the paper venue, its clock at the ticks' candle closes (the order
    # path looks fills up around wall-clock time, so the stretch starts at this minute)
    configure(universe=UNIVERSE, timeframe="1m", cooldown_candles=3, max_open_positions=2)
    cfg = config_get()
    first_close = now_ms() // TF * TF + TF
    source = wickless_market(first_close, blite_params(cfg).history_candles + 40)
    clock = ManualClock(first_close)
    gw = paper_gateway(source=source, clock=clock, universe=lambda: config_get().universe)
    monkeypatch.setattr("trading.exchanges.factory._gateway", gw)

    # When it runs TICKS ticks: at each close the stop monitor looks at the price, then the tick
    # (candle sync, decisions, entries) runs a second later
    tick_ids = []
    for k in range(TICKS):
        close = first_close + k * TF
        clock.now_ms = close
        stop_monitor_run(gateway=gw, now=ms_to_datetime(close))
        clock.now_ms = close + 1_000
        tick_id = tick_id_for(ms_to_datetime(close))
        tick_run(tick_id=tick_id, gateway=gw, now_ms=clock.now_ms)
        tick_ids.append(tick_id)

    # Then replaying the candles it stored, with the market rules its decisions recorded
    live = {(d.tick_id, d.symbol): d for d in StrategyDecision.objects.all()}
    assert len(live) == TICKS * len(UNIVERSE)
    market = {s: live[(tick_ids[0], s)].inputs["market"] for s in UNIVERSE}
    rules = {s: MarketRules(symbol=s, venue_symbol=s.replace("/", ""), base=s.split("/")[0], quote="USDT",
                            **{k: Decimal(v) for k, v in m.items()}) for s, m in market.items()}
    spec = BacktestSpec(config=cfg, start_ms=first_close - TF, end_ms=first_close + (TICKS - 1) * TF,
                        initial_balances={"USDT": Decimal(10_000)}, fee_rate=Decimal("0.001"), market_rules=rules)
    sim = simulate(spec, {s: stored_series(s) for s in UNIVERSE})

    # gives the same decision and reason for every symbol at every tick
    replayed = {(tick_ids[k], s): sim.decision(s, k) for k in range(TICKS) for s in UNIVERSE}
    assert replayed == {key: (d.decision, d.reason_code) for key, d in live.items()}
    # and the same entry orders: symbol, tick, quantity and fill price
    orders = {(o.symbol, o.tick_id, o.filled_quantity, o.average_price)
              for o in Order.objects.filter(intent="entry", status="filled")}
    assert Order.objects.filter(intent="entry").count() == len(orders)
    assert {(s, tick_ids[t], q, p) for s, t, q, p in sim.entries} == orders
    # And the stretch was a real test: entries, holds, blocks, and exits of more than one kind
    reasons = Counter(reason for _, reason in replayed.values())
    assert reasons["ENTRY_SIGNAL"] >= 3 and reasons["IN_POSITION"] >= 5
    assert len({t.exit_reason for t in sim.result.trades} - {"END_OF_DATA"}) >= 2
