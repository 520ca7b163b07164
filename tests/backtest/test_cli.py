"""``tbot backtest run`` (and ``manage.py backtest run``) as an operator uses it: on the real
engine, from each data source; bad input is one line naming it, exit 2, and nothing stored."""

from __future__ import annotations

import csv
import json
from decimal import Decimal

import pytest

from backtest.data import DataSource, load_series, warmup_candles
from backtest.models import BacktestRun, BacktestTrade
from infra.clock import ms_to_datetime
from tests.support.cli import tbot
from trading.config_schema import config_defaults

pytestmark = pytest.mark.django_db
H = 3_600_000
OHLCV = ("open", "high", "low", "close", "volume")
START, END = "2024-03-01", "2024-03-15"
START_MS, END_MS = 1_709_251_200_000, 1_710_460_800_000
COMMON = ["--universe", "BTC/USDT,ETH/USDT", "--timeframe", "1h", "--start", START, "--end", END,
          "--balance", "USDT=10000", "--fee", "0.001", "--slippage-bps", "2", "--set", "ema_trend=50",
          "--set", "volume_multiplier=1.2"]




def run(capsys, *args):
    return tbot("backtest", "run", *args)


def series(seed=5):
    config = config_defaults()
    from dataclasses import replace

    config = replace(config, ema_trend=50, timeframe="1h")
    return load_series(DataSource("synthetic", seed=seed), symbols=["BTC/USDT", "ETH/USDT"], timeframe="1h",
                       start_ms=START_MS, end_ms=END_MS, warmup=warmup_candles(config))


def trades_of(run_id):
    return [(t.symbol, t.entry_time, t.entry_price, t.quantity, t.exit_time, t.exit_price, t.exit_reason)
            for t in BacktestTrade.objects.filter(run_id=run_id).order_by("entry_time", "symbol")]


def test_a_synthetic_run_is_stored_and_reported_with_the_summary_table(capsys, tmp_path):
    code, out, err = run(capsys, *COMMON, "--source", "synthetic", "--seed", "5", "--out", str(tmp_path))
    assert code == 0, err
    stored = BacktestRun.objects.get()
    assert stored.status == "done" and stored.overrides == {"ema_trend": 50, "volume_multiplier": "1.2",
                                                            "universe": ["BTC/USDT", "ETH/USDT"], "timeframe": "1h"}
    assert out.splitlines()[0].startswith(f"backtest #{stored.pk}: BTC/USDT, ETH/USDT · 1h · 2024-03-01 00:00 UTC")
    assert "Sharpe" in out and "Max drawdown" in out and f"run id: {stored.pk}" in out
    report_dir = tmp_path / f"run-{stored.pk}"
    assert f"report: {report_dir / 'report.html'}" in out
    document = json.loads((report_dir / "report.json").read_text())
    assert document["metrics"] == stored.metrics
    assert document["spec"]["slippage_bps"] == "2" and document["spec"]["config"]["ema_trend"] == 50
    assert len(document["trades"]) == stored.trades.count() == stored.metrics["trades"]
    assert len(list(csv.DictReader((report_dir / "trades.csv").open()))) == stored.metrics["trades"]
    assert stored.candles_processed > 0 and sum(stored.decisions.values()) > 0


def test_the_same_candles_from_a_csv_file_and_the_candles_table_give_the_same_trades(capsys, tmp_path):
    data = series()
    path = tmp_path / "ohlcv.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["symbol", "open_time", "open", "high", "low", "close", "volume"])
        for symbol, s in data.items():
            for i in range(len(s)):
                writer.writerow([symbol, int(s.open_time_ms[i]), *(repr(float(getattr(s, name)[i])) for name in OHLCV)])
    from syncer.models import Candle

    Candle.objects.bulk_create(
        Candle(venue="paper", symbol=symbol, timeframe="1h", open_time=ms_to_datetime(int(s.open_time_ms[i])),
               **{name: Decimal(repr(float(getattr(s, name)[i]))) for name in OHLCV})
        for symbol, s in data.items() for i in range(len(s)))
    results = []
    for source in (["--source", "synthetic", "--seed", "5"], ["--source", "csv", "--csv", str(path)],
                   ["--source", "db", "--venue", "paper"]):
        code, _out, err = run(capsys, *COMMON, *source, "--out", str(tmp_path), "--no-progress")
        assert code == 0, err
        results.append(BacktestRun.objects.order_by("-id").first())
    synthetic, from_csv, from_db = results
    assert synthetic.metrics["trades"] > 0, "the scene must trade to prove anything"
    assert trades_of(from_csv.pk) == trades_of(synthetic.pk) == trades_of(from_db.pk)
    assert from_csv.metrics == synthetic.metrics == from_db.metrics
    assert from_csv.data_source == {"kind": "csv", "path": str(path)}


def write_bad_csv(tmp_path, mutate):
    data = series()["BTC/USDT"]
    rows = [[int(data.open_time_ms[i]), data.open[i], data.high[i], data.low[i], data.close[i], data.volume[i]]
            for i in range(len(data))]
    rows = mutate(rows)
    path = tmp_path / "btc.csv"
    path.write_text("open_time,open,high,low,close,volume\n" + "\n".join(",".join(map(str, r)) for r in rows))
    return str(path)


BTC_ONLY = ["--universe", "BTC/USDT", "--timeframe", "1h", "--set", "ema_trend=50", "--start", START, "--end", END]


@pytest.mark.parametrize(("args", "line"), [
    (["--universe", "DOGE/USDT", "--timeframe", "1h", "--start", START, "--end", END, "--source", "db"],
     "tbot backtest: unknown symbol DOGE/USDT: no 1h candles stored for venue paper (fill them with `python "
     "manage.py sync_history`)"),
    ([*BTC_ONLY[:6], "--start", "2024-03-10", "--end", "2024-03-10", "--source", "synthetic"],
     "tbot backtest: empty date range: --start 2024-03-10 00:00 UTC is not before --end 2024-03-10 00:00 UTC"),
    ([*BTC_ONLY, "--set", "risk_per_trade=0.5", "--source", "synthetic"],
     "tbot backtest: risk_per_trade: must be <= 0.05, got 0.5"),
    ([*BTC_ONLY, "--set", "breakout_lookback=many", "--source", "synthetic"],
     "tbot backtest: breakout_lookback: must be an integer, got str 'many'"),
    ([*BTC_ONLY, "--set", "stop_loss=2", "--source", "synthetic"],
     "tbot backtest: stop_loss: unknown config key; known keys: universe, timeframe, breakout_lookback"),
    ([*BTC_ONLY, "--balance", "BTC=1", "--source", "synthetic"],
     "tbot backtest: initial balances hold no USDT, the universe's quote asset (e.g. --balance USDT=10000)"),
])
def test_bad_input_is_one_line_naming_it_exit_2_and_nothing_stored(capsys, tmp_path, args, line):
    code, out, err = run(capsys, *args, "--out", str(tmp_path))
    assert code == 2
    assert err.strip().splitlines()[0].startswith(line) and len(err.strip().splitlines()) == 1
    assert out == "" and not BacktestRun.objects.exists() and not any(tmp_path.iterdir())


def test_a_report_directory_that_cannot_be_written_is_refused_before_the_run(capsys, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    code, out, err = run(capsys, *BTC_ONLY, "--source", "synthetic", "--out", str(blocked / "reports"))
    assert code == 2 and out == ""
    assert err.strip() == (f"tbot backtest: --out {blocked / 'reports'}: cannot create the report directory "
                           f"(Not a directory)")
    assert not BacktestRun.objects.exists()


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda rows: rows[:40] + rows[43:], "btc.csv line 42: gap of 3 candle(s) after"),
    (lambda rows: rows[:40] + [rows[41], rows[40]] + rows[42:], "btc.csv line 43: open time"),
    (lambda rows: rows[:40] + [[*rows[40][:4], "NaN", rows[40][5]]] + rows[41:], "btc.csv line 42: close is nan"),
])
def test_a_csv_with_gaps_nan_or_unsorted_rows_is_refused_naming_the_line(capsys, tmp_path, mutate, problem):
    path = write_bad_csv(tmp_path, mutate)
    code, out, err = run(capsys, *BTC_ONLY, "--source", "csv", "--csv", path, "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith(f"tbot backtest: {problem}") and len(err.strip().splitlines()) == 1
    assert not BacktestRun.objects.exists()


def test_a_bad_parameter_gets_the_very_message_tbot_config_set_gives(capsys, tmp_path):
    code, _out, err = tbot("config", "set", "take_profit_r=-1", "--reason-code", "TUNE", "--reason", "try")
    assert code == 2
    config_set_says = err.strip().removeprefix("tbot: ")
    code, _out, err = run(capsys, *BTC_ONLY, "--set", "take_profit_r=-1", "--source", "synthetic")
    assert code == 2 and err.strip() == f"tbot backtest: {config_set_says}"


def test_json_output_and_the_progress_bar_when_asked(capsys, tmp_path):
    code, out, _err = tbot("--json", "backtest", "run", *BTC_ONLY, "--source", "synthetic", "--out", str(tmp_path),
                            "--progress")
    captured = capsys.readouterr()
    assert code == 0
    body = json.loads(out)
    assert body["ok"] is True and body["run_id"] == BacktestRun.objects.get().pk
    assert body["report"]["html"].endswith("report.html") and set(body["metrics"]) >= {"sharpe", "calmar", "exposure"}
    assert "backtest: 100%" in captured.err          # tqdm on stderr; stdout stays pure JSON
    code, out, _err = tbot("--json", "backtest", "run", *BTC_ONLY, "--set", "atr_period=0", "--source", "synthetic")
    body = json.loads(out)
    assert code == 2 and body == {"ok": False, "error": "invalid_input",
                                  "fields": {"atr_period": ["must be >= 1, got 0"]}}
