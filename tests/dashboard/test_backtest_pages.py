"""The backtest pages of the dashboard: the list of runs and one run's report, in a real browser."""

from __future__ import annotations

import os
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from backtest.data import DataSource, load_series
from backtest.services import backtest_result_store
from backtest.types import BacktestResult, BacktestSpec, BacktestTrade
from tests.dashboard.conftest import STAFF_PASSWORD, STAFF_USER
from trading.config_schema import config_defaults

pytestmark = pytest.mark.django_db(transaction=True)
M15 = 900_000
T0 = 1_704_067_200_000          # 2024-01-01 00:00 UTC
SOURCE = DataSource("synthetic", seed=11)


def stored_run(*, by="olivia", ema_trend=200):
    """A run on the synthetic market's real candles: two trades at candle closes."""
    config = replace(config_defaults(), universe=("ETH/USDT",), timeframe="15m", ema_trend=ema_trend)
    spec = BacktestSpec(config=config, start_ms=T0, end_ms=T0 + 96 * M15, initial_balances={"USDT": Decimal(10000)})
    s = load_series(SOURCE, symbols=["ETH/USDT"], timeframe="15m", start_ms=T0, end_ms=spec.end_ms,
                    warmup=0)["ETH/USDT"]

    def trade(i, j, reason):
        entry, exit_ = Decimal(str(s.close[i])), Decimal(str(s.close[j]))
        fees = (entry + exit_) * Decimal("0.1") * Decimal("0.001")
        return BacktestTrade("ETH/USDT", int(s.open_time_ms[i]), entry, Decimal("0.1"), entry - 20, entry + 60,
                             int(s.open_time_ms[j]), exit_, reason, fees, (exit_ - entry) * Decimal("0.1") - fees)

    trades = (trade(10, 14, "STOP_LOSS"), trade(50, 53, "TAKE_PROFIT"))
    equity = np.full(96, 10000.0)
    equity[14:] += float(trades[0].pnl_quote)
    equity[53:] += float(trades[1].pnl_quote)
    result = BacktestResult(spec=spec, trades=trades, equity_time_ms=s.open_time_ms + M15, equity=equity,
                            decisions={"NO_BREAKOUT": 94, "ENTER": 2}, candles_processed=96,
                            final_balances={"USDT": Decimal(str(equity[-1]))})
    run, _ = backtest_result_store(result=result, source=SOURCE, overrides={"ema_trend": ema_trend}, actor=by)
    return run, trades


def test_the_list_and_the_report_of_a_run_for_a_staff_user(client, staff_user):
    run, trades = stored_run()
    older, _ = stored_run(ema_trend=100)
    assert client.get("/dashboard/backtests/").status_code == 302          # staff only: to the login page
    client.login(username=STAFF_USER, password=STAFF_PASSWORD)
    page = client.get("/dashboard/backtests/").content.decode()
    assert page.index(f'data-run="{older.pk}"') < page.index(f'data-run="{run.pk}"')   # newest first
    assert "ema_trend=200" in page
    report = client.get(f"/dashboard/backtests/{run.pk}/").content.decode()
    assert "Backtest #" in report and "TAKE_PROFIT" in report and "STOP_LOSS" in report
    assert 'id="chart-ethusdt"' in report and "Candles not shown" not in report
    assert 'id="metric-trades">2<' in report
    assert client.get("/dashboard/backtests/999999/").status_code == 404


def test_a_runs_report_page_draws_the_equity_and_the_candles_with_their_markers(browser, live_server, staff_user):
    run, trades = stored_run()
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/dashboard/backtests/")
    page.fill("#id_username", STAFF_USER)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#backtests-table")
    page.click(f"tr[data-run='{run.pk}'] a")
    page.wait_for_selector("#chart-ethusdt")
    page.wait_for_function("document.getElementById('chart-ethusdt').data !== undefined")
    traces = page.evaluate("document.getElementById('chart-ethusdt').data.map(t => [t.name, t.type, t.y])")
    by_name = {name: (kind, y) for name, kind, y in traces}
    assert by_name["candles"][0] == "candlestick"
    assert by_name["entry"][1] == [float(t.entry_price) for t in trades]
    assert by_name["exit"][1] == [float(t.exit_price) for t in trades]
    equity = page.evaluate("document.getElementById('chart-equity').data.map(t => t.name)")
    assert equity == ["equity", "drawdown"]
    assert page.locator("#trades-table tbody tr").count() == 2
    assert page.locator("#metric-trades").inner_text() == "2"
    assert page.locator("#chart-ethusdt .legendtext", has_text="entry").count() == 1     # drawn, not only data
    out = Path(os.environ.get("ALPHASNIPER_SCREENSHOTS") or "/tmp")
    page.screenshot(path=str(out / "dashboard-backtest.png"), full_page=True)
    assert (out / "dashboard-backtest.png").stat().st_size > 10_000
    context.close()
