"""The backtest's fill model and risk rules, one hand-built market per rule.

Parameters small enough to script by hand: EMA 2, breakout over 2 candles, volume SMA 2,
ATR 1, so the decision window is 13 candles. A flat market (100) is broken by an entry candle
(open 100, high 110, low 100, close 110, volume 10): breakout, volume and trend pass, ATR = 10,
so the stop is 110 - 2 x 10 = 90 and the target 110 + 3 x 20 = 170 (R = 20). With 10,000 USDT
and 0.5 % risk the quantity is 50 / 20 = 2.5.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal as D

import numpy as np
import pytest

from backtest.engine import END_OF_DATA, run_backtest, simulate
from backtest.types import BacktestSpec, SymbolSeries
from trading.config_schema import config_defaults
from trading.exchanges.base import MarketRules

pytestmark = pytest.mark.django_db

TF = 60_000
T0 = int(datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp() * 1000)     # 20:00 HKT: one HK day ahead
WARMUP = 12
FLAT = (100.0, 100.0, 100.0, 100.0, 1.0)
ENTRY = (100.0, 110.0, 100.0, 110.0, 10.0)
HOLD = (110.0, 110.0, 109.0, 110.0, 1.0)          # no new high: the stop stays where it is


def rules(symbol: str) -> MarketRules:
    base, _, quote = symbol.partition("/")
    return MarketRules(symbol=symbol, venue_symbol=base + quote, base=base, quote=quote, tick_size=D("0.01"),
                       lot_step=D("0.001"), min_qty=D("0.001"), min_notional=D("5"))


def market(rows_by_symbol: dict[str, list[tuple]], **config) -> tuple[BacktestSpec, dict[str, SymbolSeries]]:
    """A spec deciding every scripted row (after WARMUP flat candles) of each symbol."""
    fees = {k: config.pop(k) for k in ("fee_rate", "slippage_bps") if k in config}
    config = {"ema_trend": 2, "breakout_lookback": 2, "volume_sma": 2, "atr_period": 1, "cooldown_candles": 0,
              **config}
    cfg = dataclasses.replace(config_defaults(), universe=tuple(rows_by_symbol), timeframe="1m", **config)
    series = {}
    n = None
    for symbol, rows in rows_by_symbol.items():
        allrows = [FLAT] * WARMUP + list(rows)
        n = len(rows)
        a = np.array(allrows, dtype=np.float64)
        series[symbol] = SymbolSeries(symbol, T0 + TF * np.arange(len(allrows), dtype=np.int64),
                                      a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4])
    start = T0 + WARMUP * TF
    spec = BacktestSpec(config=cfg, start_ms=start, end_ms=start + n * TF, initial_balances={"USDT": D(10_000)},
                        market_rules={s: rules(s) for s in rows_by_symbol}, **fees)
    return spec, series


def only_trade(rows: list[tuple], **config):
    spec, series = market({"AAA/USDT": rows}, **config)
    result = run_backtest(spec, series)
    assert len(result.trades) == 1
    return result.trades[0], result


def tick_ms(k: int) -> int:
    """Open time of scripted row ``k``."""
    return T0 + (WARMUP + k) * TF


# --- entries -----------------------------------------------------------------------------------

def test_entry_fills_at_the_decision_candles_close_with_the_live_stop_target_and_size() -> None:
    trade, _ = only_trade([FLAT, ENTRY, HOLD, (110.0, 111.0, 85.0, 100.0, 1.0)])
    assert (trade.entry_time_ms, trade.entry_price, trade.quantity) == (tick_ms(1), D("110.00"), D("2.500"))
    assert (trade.stop_price, trade.take_profit_price) == (D("90.00"), D("170.00"))


def test_slippage_is_against_us_on_both_sides_rounded_to_the_tick() -> None:
    trade, _ = only_trade([FLAT, ENTRY, (110.0, 111.0, 85.0, 100.0, 1.0)], slippage_bps=D(10))
    # Buy: 110 x 1.001 = 110.11 (rounded up); the stop follows the fill: 110.11 - 20 = 90.11;
    # sell at the stop less 0.1 %: 90.01989 rounded down to 90.01.
    assert (trade.entry_price, trade.stop_price, trade.exit_price) == (D("110.11"), D("90.11"), D("90.01"))


# --- exits: each rule of the fill model ------------------------------------------------------------

@pytest.mark.parametrize(("candle", "reason", "price"), [
    ((110.0, 111.0, 85.0, 100.0, 1.0), "STOP_LOSS", D("90.00")),       # low through the stop: at the stop
    ((80.0, 82.0, 75.0, 81.0, 1.0), "STOP_LOSS", D("80.00")),          # opens below it (gap): at the open
    ((110.0, 175.0, 105.0, 150.0, 1.0), "TAKE_PROFIT", D("170.00")),   # high through the target: at the target
    ((180.0, 185.0, 178.0, 182.0, 1.0), "TAKE_PROFIT", D("180.00")),   # opens above it (gap): at the open
    ((110.0, 175.0, 85.0, 100.0, 1.0), "STOP_LOSS", D("90.00")),       # touches both: the stop
])
def test_exit_rules(candle: tuple, reason: str, price: D) -> None:
    trade, _ = only_trade([FLAT, ENTRY, HOLD, candle, FLAT])
    assert (trade.exit_reason, trade.exit_price, trade.exit_time_ms) == (reason, price, tick_ms(3))


def test_the_trailing_stop_rises_with_a_high_from_the_next_candle_on() -> None:
    # The 130 high raises the stop to 130 - 20 = 110, but not for its own candle: its low of
    # 109 does not exit. The next candle's low of 105 does, at the raised stop.
    trade, _ = only_trade([FLAT, ENTRY, (110.0, 130.0, 109.0, 129.0, 1.0), (129.0, 129.5, 105.0, 106.0, 1.0)])
    assert (trade.exit_reason, trade.exit_price, trade.exit_time_ms) == ("TRAILING_STOP", D("110.00"), tick_ms(3))


def test_a_close_below_the_raised_stop_exits_at_the_next_open() -> None:
    # High 140 -> stop 120, and the candle closes at 115, under it: the next candle opens there.
    trade, _ = only_trade([FLAT, ENTRY, (110.0, 140.0, 109.0, 115.0, 1.0), (115.0, 118.0, 114.0, 117.0, 1.0)])
    assert (trade.exit_reason, trade.exit_price, trade.exit_time_ms) == ("TRAILING_STOP", D("115.00"), tick_ms(3))


def test_a_position_open_at_the_end_sells_at_the_last_close() -> None:
    trade, result = only_trade([FLAT, ENTRY, HOLD, (110.0, 112.0, 108.0, 111.5, 1.0)])
    assert (trade.exit_reason, trade.exit_price, trade.exit_time_ms) == (END_OF_DATA, D("111.50"), tick_ms(3))
    assert result.decisions["IN_POSITION"] == 2            # held at the two ticks after the entry


def test_fees_are_the_paper_venues_and_the_books_balance() -> None:
    trade, result = only_trade([FLAT, ENTRY, (110.0, 111.0, 85.0, 100.0, 1.0), FLAT])
    # The buy's fee is taken in the base asset: 2.5 x 0.1 % = 0.0025 AAA, so 2.4975 is held;
    # the exit sells 2.497 (the lot step) at 90 and pays 0.1 % of it in USDT; 0.0005 AAA stays.
    sold_net = D("2.497") * D("90.00") * (1 - D("0.001"))
    assert result.final_balances == {"USDT": D(10_000) - D("275.00") + sold_net, "AAA": D("0.0005")}
    entry_fee = D("0.0025") * D("110.00")
    assert trade.fees_quote == entry_fee + D("2.497") * D("90.00") * D("0.001")
    # PnL as the live position computes it: net proceeds less the sold part's cost and entry fee.
    assert trade.pnl_quote == sold_net - (D("110.00") * D("2.497") + entry_fee * D("2.497") / D("2.4975"))
    # Equity at every close: before the entry 10,000; at the entry's close the fee is gone; after the
    # exit, cash plus the dust at the last close.
    assert result.equity[0] == 10_000.0
    assert result.equity[1] == pytest.approx(10_000 - 0.0025 * 110)
    assert result.equity[-1] == pytest.approx(float(result.final_balances["USDT"]) + 0.0005 * 100)
    assert list(result.equity_time_ms) == [tick_ms(k) + TF for k in range(4)]


# --- gates -----------------------------------------------------------------------------------------

def test_max_open_positions_takes_the_universe_in_order() -> None:
    spec, series = market({"AAA/USDT": [FLAT, ENTRY, HOLD], "BBB/USDT": [FLAT, ENTRY, HOLD]}, max_open_positions=1)
    sim = simulate(spec, series)
    assert sim.decision("AAA/USDT", 1) == ("enter", "ENTRY_SIGNAL")
    assert sim.decision("BBB/USDT", 1) == ("blocked", "MAX_POSITIONS")
    assert sim.decision("AAA/USDT", 2) == ("hold", "IN_POSITION")
    assert sim.result.decisions == {"ENTRY_SIGNAL": 1, "MAX_POSITIONS": 1, "IN_POSITION": 1, "NO_BREAKOUT": 3}


@pytest.mark.parametrize(("after", "decision"), [(3, ("blocked", "COOLDOWN")), (4, ("enter", "ENTRY_SIGNAL"))])
def test_a_stop_blocks_re_entry_for_cooldown_candles(after: int, decision: tuple[str, str]) -> None:
    # Stopped out in row 2; an entry signal again ``after`` candles later, with a cooldown of 4.
    stop = (110.0, 110.0, 85.0, 100.0, 1.0)
    rows = [FLAT, ENTRY, stop] + [FLAT] * (after - 1) + [ENTRY, FLAT]
    spec, series = market({"AAA/USDT": rows}, cooldown_candles=4)
    sim = simulate(spec, series)
    assert sim.result.trades[0].exit_reason == "STOP_LOSS"
    assert sim.decision("AAA/USDT", 2 + after) == decision


def test_a_take_profit_is_no_stop_and_starts_no_cooldown() -> None:
    tp = (110.0, 175.0, 100.0, 100.0, 1.0)
    spec, series = market({"AAA/USDT": [FLAT, ENTRY, tp, FLAT, FLAT, ENTRY, FLAT]}, cooldown_candles=4)
    sim = simulate(spec, series)
    assert sim.result.trades[0].exit_reason == "TAKE_PROFIT"
    assert sim.decision("AAA/USDT", 5) == ("enter", "ENTRY_SIGNAL")


def test_the_daily_loss_limit_halts_entries_until_the_next_hong_kong_day() -> None:
    # AAA enters at row 1 (2.5 x 110) and gaps down to 20 in row 2: -225 USDT, past 2 % of 10,000.
    # BBB signals in that very row (DAILY_LOSS_LIMIT), again later the same HK day (HALTED), and
    # again after 00:00 HKT (16:00 UTC), when trading is back.
    crash = (20.0, 21.0, 19.0, 20.0, 1.0)
    day_rows = 4 * 60 - WARMUP - 2                  # from T0 + WARMUP to just before 16:00 UTC
    n = day_rows + 4
    a_rows = [FLAT, ENTRY, crash] + [(20.0, 20.0, 20.0, 20.0, 1.0)] * (n - 3)
    b_rows = [FLAT] * n
    for k in (2, 5, day_rows + 2):
        b_rows[k] = ENTRY
    spec, series = market({"AAA/USDT": a_rows, "BBB/USDT": b_rows}, daily_loss_limit=D("0.02"))
    sim = simulate(spec, series)
    assert tick_ms(day_rows + 2) + TF > int(datetime(2026, 3, 2, 16, 0, tzinfo=UTC).timestamp() * 1000)
    assert [sim.decision("BBB/USDT", k)[1] for k in (2, 5, day_rows + 2)] == [
        "DAILY_LOSS_LIMIT", "HALTED", "ENTRY_SIGNAL"]


# --- bad specs: one clear error each ---------------------------------------------------------------

def test_a_spec_the_candles_cannot_run_is_refused_naming_the_problem() -> None:
    spec, series = market({"AAA/USDT": [FLAT, ENTRY, HOLD]})
    with pytest.raises(ValueError, match="no candles for BBB/USDT"):
        run_backtest(dataclasses.replace(spec, config=dataclasses.replace(
            spec.config, universe=("AAA/USDT", "BBB/USDT"))), series)
    with pytest.raises(ValueError, match="AAA/USDT: 11 candles before the start; the decision window needs 12"):
        run_backtest(dataclasses.replace(spec, start_ms=spec.start_ms - TF), series)
    with pytest.raises(ValueError, match="do not cover the range"):
        run_backtest(dataclasses.replace(spec, end_ms=spec.end_ms + TF), series)
    with pytest.raises(ValueError, match="empty range"):
        run_backtest(dataclasses.replace(spec, end_ms=spec.start_ms), series)
    with pytest.raises(ValueError, match="initial_balances has no USDT"):
        run_backtest(dataclasses.replace(spec, initial_balances={"BTC": D(1)}), series)
    s = series["AAA/USDT"]
    holed = dataclasses.replace(s, open_time_ms=np.where(np.arange(len(s)) < 5, s.open_time_ms - TF, s.open_time_ms))
    with pytest.raises(ValueError, match="not evenly spaced"):
        run_backtest(spec, {"AAA/USDT": holed})


def test_progress_is_reported_from_zero_to_the_total() -> None:
    spec, series = market({"AAA/USDT": [FLAT, ENTRY] + [HOLD] * 300})
    calls: list[tuple[int, int]] = []
    run_backtest(spec, series, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 302) and calls[-1] == (302, 302)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_candle_without_a_price_marks_the_holding_at_its_last_price() -> None:
    # AAA holds through a candle with no close (bad data); BBB enters in that very candle, sized on
    # an equity that marks AAA at its last price, as the live tick falls back to the last known one.
    nan = float("nan")
    spec, series = market({"AAA/USDT": [FLAT, ENTRY, (110.0, 110.0, 109.0, nan, 1.0), HOLD, HOLD],
                           "BBB/USDT": [FLAT, FLAT, ENTRY, HOLD, HOLD]})
    sim = simulate(spec, series)
    assert sim.decision("AAA/USDT", 2) == ("hold", "IN_POSITION")
    assert sim.decision("BBB/USDT", 2) == ("enter", "ENTRY_SIGNAL")
    assert np.isfinite(sim.result.equity).all()
    # AAA still marked at 110: the equity only lost BBB's entry fee (taken in BBB, worth 110 each)
    bbb = next(t for t in sim.result.trades if t.symbol == "BBB/USDT")
    assert sim.result.equity[2] == pytest.approx(sim.result.equity[1] - float(bbb.quantity) * 0.001 * 110)
    assert [t.exit_reason for t in sim.result.trades] == [END_OF_DATA, END_OF_DATA]
