"""The report's figures of merit, checked by hand on a small run, and its files."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from backtest.report import compute_metrics, equity_points, format_metric, periods_per_year, write_report
from backtest.types import BacktestResult, BacktestSpec, BacktestTrade, SymbolSeries
from trading.config_schema import config_defaults

H = 3_600_000
T0 = 1_704_067_200_000          # 2024-01-01 00:00 UTC


def trade(entry_candle, exit_candle, pnl, fees="1", symbol="BTC/USDT", reason="TAKE_PROFIT"):
    return BacktestTrade(symbol=symbol, entry_time_ms=T0 + entry_candle * H, entry_price=Decimal("100"),
                         quantity=Decimal("2"), stop_price=Decimal("95"), take_profit_price=Decimal("115"),
                         exit_time_ms=T0 + exit_candle * H, exit_price=Decimal("100") + Decimal(pnl) / 2,
                         exit_reason=reason, fees_quote=Decimal(fees), pnl_quote=Decimal(pnl))


def hand_built(equity, trades=(), timeframe="1h"):
    config = replace(config_defaults(), universe=("BTC/USDT",), timeframe=timeframe)
    spec = BacktestSpec(config=config, start_ms=T0, end_ms=T0 + len(equity) * H,
                        initial_balances={"USDT": Decimal("10000")})
    return BacktestResult(spec=spec, trades=tuple(trades),
                          equity_time_ms=np.array([T0 + (i + 1) * H for i in range(len(equity))], dtype=np.int64),
                          equity=np.array(equity, dtype=np.float64), decisions={"NO_BREAKOUT": 3, "ENTER": 2},
                          candles_processed=len(equity), final_balances={"USDT": Decimal(str(equity[-1]))})


def test_metrics_of_a_small_hourly_run_match_the_hand_computation():
    # 10,000 at the start; closes of four 1-hour candles. Two trades: +150 (held candles 1-2)
    # and -50 (held candle 3 only); fees 2 + 1.
    result = hand_built([10100.0, 9999.0, 10200.0, 10200.0],
                        trades=[trade(0, 2, "150", fees="2"), trade(2, 3, "-50", reason="STOP_LOSS")])
    m = compute_metrics(result)
    r = np.array([10100 / 10000 - 1, 9999 / 10100 - 1, 10200 / 9999 - 1, 0.0])
    year = 8760                                          # 1-hour candles in 365 days
    assert periods_per_year(H) == year
    assert m["total_return"] == pytest.approx(0.02)
    assert m["cagr"] == pytest.approx(1.02 ** (year / 4) - 1, rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(9999 / 10100 - 1)          # from the 10,100 peak
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(year))
    downside = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    assert m["sortino"] == pytest.approx(r.mean() * year / (downside * math.sqrt(year)))
    assert m["calmar"] == pytest.approx(m["cagr"] / abs(9999 / 10100 - 1))
    assert m["win_rate"] == 0.5
    assert m["profit_factor"] == pytest.approx(3.0)                      # 150 / 50
    assert m["exposure"] == pytest.approx(3 / 4)                         # candles 1, 2, 3 of 0..3
    assert m["average_hold_candles"] == pytest.approx(1.5)               # (2 + 1) / 2
    assert m["average_hold_hours"] == pytest.approx(1.5)
    assert m["fees_paid"] == "3" and m["trades"] == 2
    assert m["final_equity"] == "10200"


def test_the_annualisation_follows_the_candle_spacing():
    hourly = compute_metrics(hand_built([10100.0, 10000.0, 10200.0], timeframe="1h"))
    minutely = compute_metrics(hand_built([10100.0, 10000.0, 10200.0], timeframe="1m"))
    # the same per-candle returns: Sharpe scales with sqrt(candles per year), 60 x more of them
    assert minutely["sharpe"] / hourly["sharpe"] == pytest.approx(math.sqrt(60))


def test_a_run_without_trades_or_moves_has_no_ratios_rather_than_nan():
    m = compute_metrics(hand_built([10000.0, 10000.0, 10000.0]))
    assert m["total_return"] == 0.0 and m["max_drawdown"] == 0.0 and m["exposure"] == 0.0
    assert m["sharpe"] is m["sortino"] is m["calmar"] is m["win_rate"] is m["profit_factor"] is None
    assert format_metric("sharpe", None) == "-" and format_metric("total_return", 0.0123) == "+1.23%"


def test_a_long_curve_is_thinned_but_keeps_its_lowest_point():
    values = np.full(100_000, 10_000.0)
    values[54_321] = 7_000.0
    points = equity_points(np.arange(100_000) * 60_000, values, max_points=1000)
    assert len(points) <= 1002
    assert min(p[1] for p in points) == 7_000.0
    assert points[0][0] == 0 and points[-1][0] == 99_999 * 60_000


def test_the_report_files_are_self_contained_and_agree(tmp_path):
    from backtest.data import DataSource
    from backtest.services import _document

    result = hand_built([10100.0, 9999.0, 10200.0, 10200.0],
                        trades=[trade(0, 2, "150", fees="2"), trade(2, 3, "-50", reason="STOP_LOSS")])
    n = 300
    series = {"BTC/USDT": SymbolSeries("BTC/USDT", T0 - (n - 4) * H + np.arange(n, dtype=np.int64) * H,
                                       np.full(n, 100.0), np.full(n, 101.0), np.full(n, 99.0), np.full(n, 100.5),
                                       np.full(n, 3.0))}
    document = _document(result, source=DataSource("synthetic", seed=3), overrides={"ema_trend": 50})
    files = write_report(out_dir=tmp_path / "run-1", run_id=1, title="Backtest #1", document=document,
                         series=series)
    page = files.html.read_text()
    assert "<script src=" not in page                      # plotly.js is inlined: the file works offline
    assert "Plotly.newPlot" in page and len(page) > 1_000_000
    assert 'id="metric-profit_factor">3.00<' in page.replace("'", '"')
    assert "ema_trend=50" in page
    stored = json.loads(files.json.read_text())
    assert stored["run_id"] == 1 and stored["metrics"]["trades"] == 2
    assert stored["spec"]["config"]["timeframe"] == "1h"
    rows = list(csv.DictReader(files.trades_csv.open()))
    assert [(r["symbol"], r["exit_reason"], r["pnl_quote"]) for r in rows] == [
        ("BTC/USDT", "TAKE_PROFIT", "150"), ("BTC/USDT", "STOP_LOSS", "-50")]
    assert rows[0]["entry_time"] == "2024-01-01T00:00:00Z"
    equity_rows = list(csv.DictReader(files.equity_csv.open()))
    assert [float(r["equity"]) for r in equity_rows] == [10100.0, 9999.0, 10200.0, 10200.0]
