"""The B-lite backtest (``backtest.engine.run_backtest``) on 5 symbols x 1 year of 1-minute candles.

Data: ``SyntheticMarket(seed=7).candle_arrays`` for BTC / ETH / SOL / BNB / XRP, 525,600 decided
candles each (2.6 M) plus the 1,020 candles of warm-up the decision window needs; the paper
venue's defaults (10,000 USDT, 0.1 % fee, 5 bps slippage) and the default strategy config on 1m.

* **warm**: in this process, after one run (numba kernels loaded, caches warm): the median wall
  time of 3 runs -> candles/s (decided candles x symbols / s).
* **cold**: a fresh ``python -m bench.workers.backtest_run`` (Django set-up, imports, numba's
  on-disk cache, the first run): seconds to import, first-run seconds and peak RSS. ``cold start``
  = the process's wall time less the warm run time (what a first run costs beyond the work). And
  once more with an empty numba cache (``NUMBA_CACHE_DIR`` in a scratch directory): the one-off
  compile a fresh install pays.
* **peers**, same data, same run: backtesting.py (a ``Strategy`` with B-lite's entry rule from
  vectorised indicators, SL / TP and the trailing stop moved in ``next()``, ``trade_on_close``)
  and vectorbt (``Portfolio.from_signals`` with B-lite's entries, ``sl_stop`` / ``sl_trail`` /
  ``tp_stop`` from the entry's ATR), warm, signals included (the median of 3 calls after the
  first, which compiles). Both are installed from ``bench/requirements-bench.txt``
  when missing. Their rules are B-lite's entries and exits, not the live gates and Decimal sizing
  our engine runs: the ratio says what the full live-rule backtest costs against a vectorised one.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, Target, say

NAME = "backtest"
TITLE = "B-lite backtest, 5 symbols x 1 year of 1m candles (warm / cold / memory, vs backtesting.py and vectorbt)"
TARGETS = [
    Target("backtest_candles_per_s", ">=", 2_500_000, "candles/s"),
    Target("backtest_cold_start_s", "<=", 5, "s"),
    Target("backtest_peak_rss_mb", "<=", 1024, "MB"),
    Target("backtest_vs_vectorbt", "info", 0, "x"),
    Target("backtest_vs_backtesting_py", "info", 0, "x"),
]
UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
YEAR_MINUTES = 525_600
SEED = 7
TF = 60_000
FIELDS = ("open_time_ms", "open", "high", "low", "close", "volume")


def spec_for(universe: tuple[str, ...], start_ms: int, end_ms: int):
    """The benchmark's spec: default config on 1m, the paper venue's balances, fee and slippage."""
    import dataclasses

    from backtest.types import BacktestSpec
    from trading.config_schema import config_defaults

    cfg = dataclasses.replace(config_defaults(), universe=universe, timeframe="1m")
    return BacktestSpec(config=cfg, start_ms=start_ms, end_ms=end_ms, initial_balances={"USDT": Decimal(10_000)},
                        fee_rate=Decimal("0.001"), slippage_bps=Decimal(5))


def load_series(path: str) -> dict:
    from backtest.types import SymbolSeries

    data = np.load(path)
    return {s: SymbolSeries(s, *(data[f"{s}|{k}"] for k in FIELDS)) for s in UNIVERSE}


def _generate(path: Path, minutes: int) -> tuple[int, int, int]:
    from strategy.params import blite_params
    from trading.config_schema import config_defaults
    from trading.exchanges.paper.synthetic import SyntheticMarket

    warmup = blite_params(config_defaults()).history_candles - 1
    first = 1_704_067_200_000 - warmup * TF                      # decided candles from 2024-01-01 00:00 UTC
    market = SyntheticMarket(SEED)
    arrays = {}
    for symbol in UNIVERSE:
        a = market.candle_arrays(symbol, "1m", first, warmup + minutes)
        arrays.update({f"{symbol}|{k}": getattr(a, k) for k in FIELDS})
    np.savez(path, **arrays)
    start = first + warmup * TF
    return start, start + minutes * TF, warmup


def _cold(path: Path, start: int, end: int, env: dict[str, str], cache_dir: str | None) -> dict[str, Any]:
    env = {**env, "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "alphasniper_project.settings"}
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bench.workers.backtest_run", str(path), str(start), str(end)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=True)
    wall = time.perf_counter() - t0
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall_s": round(wall, 3)}


def _ensure_peers() -> dict[str, str]:
    """Install the peers from requirements-bench.txt if they are not importable; their versions."""
    missing = [m for m in ("backtesting", "vectorbt") if importlib.util.find_spec(m) is None]
    if missing:
        say(f"installing bench-only peers {missing} from bench/requirements-bench.txt")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r",
                        str(ROOT / "bench" / "requirements-bench.txt")], check=True, timeout=900)
    import backtesting
    import vectorbt

    return {"backtesting": backtesting.__version__, "vectorbt": vectorbt.__version__}


def _signals(s) -> dict[str, np.ndarray]:
    """B-lite's entry rule on the whole series with full-history indicators (what a vectorised
    peer computes), and the entry's stop distance (2 x ATR) and target distance (3 x R)."""
    import pandas as pd
    import talib

    h, lo, c, v = s.high, s.low, s.close, s.volume
    donchian = pd.Series(h).shift(1).rolling(20).max().to_numpy()
    vol_sma = pd.Series(v).rolling(20).mean().to_numpy()
    ema = talib.EMA(c, 200)
    atr = talib.ATR(h, lo, c, 14)
    with np.errstate(invalid="ignore"):
        entries = (c > donchian) & (v > 1.5 * vol_sma) & (c > ema) & (c - 2 * atr > 0)
    return {"entries": entries, "stop": 2 * atr, "target": 6 * atr}


def _backtesting_py(series: dict, start_idx: int) -> tuple[float, int]:
    import pandas as pd
    from backtesting import Backtest, Strategy

    trades = 0
    elapsed = 0.0
    for s in series.values():
        sig = _signals(s)
        frame = pd.DataFrame({"Open": s.open, "High": s.high, "Low": s.low, "Close": s.close, "Volume": s.volume},
                             index=pd.to_datetime(s.open_time_ms, unit="ms"))

        class BLite(Strategy):
            signals = sig                       # bound now: one class per symbol

            def init(self) -> None:
                self.highest = 0.0
                self.distance = 0.0

            def next(self) -> None:
                i = len(self.data) - 1
                if self.position:
                    self.highest = max(self.highest, float(self.data.High[-1]))
                    trade = self.trades[0]
                    trade.sl = max(trade.sl, self.highest - self.distance)
                elif i >= start_idx and self.signals["entries"][i]:
                    close = float(self.data.Close[-1])
                    self.highest, self.distance = close, float(self.signals["stop"][i])
                    self.buy(size=0.1, sl=close - self.distance, tp=close + float(self.signals["target"][i]))

        t0 = time.perf_counter()
        stats = Backtest(frame, BLite, cash=1e9, commission=0.001, trade_on_close=True, finalize_trades=True).run()
        elapsed += time.perf_counter() - t0
        trades += int(stats["# Trades"])
    return elapsed, trades


def _vectorbt(series: dict, start_idx: int) -> tuple[float, float, int]:
    """(seconds for signals + portfolio, compile seconds of the first call, trades), warm: the
    median of 3 calls after the first."""
    import vectorbt as vbt

    cols = list(series.values())
    stack = {k: np.column_stack([getattr(s, k) for s in cols]) for k in ("open", "high", "low", "close")}

    def run() -> Any:
        sigs = [_signals(s) for s in cols]
        entries = np.column_stack([g["entries"] for g in sigs])
        entries[:start_idx] = False
        close = stack["close"]
        with np.errstate(invalid="ignore", divide="ignore"):
            sl = np.nan_to_num(np.column_stack([g["stop"] for g in sigs]) / close)
            tp = np.nan_to_num(np.column_stack([g["target"] for g in sigs]) / close)
        return vbt.Portfolio.from_signals(close, entries, open=stack["open"], high=stack["high"], low=stack["low"],
                                          sl_stop=sl, sl_trail=True, tp_stop=tp, fees=0.001, size=1000.0,
                                          size_type="value", init_cash=10_000.0, cash_sharing=False)
    t0 = time.perf_counter()
    run()                                           # numba compile
    first = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        pf = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first, int(pf.trades.count().sum())


def run(stack: Any, quick: bool) -> dict[str, Any]:
    from backtest.engine import run_backtest

    minutes = YEAR_MINUTES // 10 if quick else YEAR_MINUTES
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        path = Path(tmp) / "candles.npz"
        t0 = time.perf_counter()
        start, end, warmup = _generate(path, minutes)
        say(f"generated {len(UNIVERSE)} x {warmup + minutes:,} candles in {time.perf_counter() - t0:.1f}s")
        series = load_series(str(path))
        spec = spec_for(UNIVERSE, start, end)
        candles = minutes * len(UNIVERSE)

        # warm
        first = run_backtest(spec, series)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            result = run_backtest(spec, series)
            times.append(time.perf_counter() - t0)
        warm = statistics.median(times)
        assert result.candles_processed == candles
        say(f"warm: {warm:.2f}s median of {[round(x, 2) for x in times]} -> {candles / warm:,.0f} candles/s, "
            f"{len(result.trades):,} trades")

        # cold (numba cache on disk), and the one-off compile with an empty cache
        env = getattr(stack, "env", None) or dict(os.environ)
        cold = _cold(path, start, end, env, None)
        compile_run = _cold(path, start, end, env, str(Path(tmp) / "numba-cache"))
        cold_start = max(cold["wall_s"] - warm, 0.0)
        say(f"cold: {cold}; with an empty numba cache: {compile_run}")

        # peers
        peers: dict[str, Any] = {}
        try:
            peers["versions"] = _ensure_peers()
            bt_s, bt_trades = _backtesting_py(series, warmup)
            peers["backtesting_py"] = {"seconds": round(bt_s, 2), "candles_per_s": round(candles / bt_s),
                                       "trades": bt_trades}
            say(f"backtesting.py: {bt_s:.1f}s -> {candles / bt_s:,.0f} candles/s")
            vb_s, vb_first, vb_trades = _vectorbt(series, warmup)
            peers["vectorbt"] = {"seconds": round(vb_s, 3), "candles_per_s": round(candles / vb_s),
                                 "first_call_s": round(vb_first, 2), "trades": vb_trades}
            say(f"vectorbt: {vb_s:.2f}s -> {candles / vb_s:,.0f} candles/s")
        except Exception as exc:          # a peer that cannot be installed must not hide our figures
            peers["error"] = f"{type(exc).__name__}: {exc}"
            say(f"peers not measured: {peers['error']}")

    ours = candles / warm
    bt_rate = peers.get("backtesting_py", {}).get("candles_per_s")
    vb_rate = peers.get("vectorbt", {}).get("candles_per_s")
    return {
        "summary": {
            "backtest_candles_per_s": round(ours),
            "backtest_cold_start_s": round(cold_start, 2),
            "backtest_peak_rss_mb": cold["peak_rss_mb"],
            "backtest_vs_vectorbt": round(ours / vb_rate, 3) if vb_rate else None,
            "backtest_vs_backtesting_py": round(ours / bt_rate, 2) if bt_rate else None,
        },
        "method": "warm = median wall time of run_backtest over 3 runs after one; cold = a fresh process "
                  "(imports, numba on-disk cache, first run) less the warm time; peak RSS of that process; "
                  "peers on the same arrays in this process",
        "data": {"symbols": list(UNIVERSE), "decided_candles_per_symbol": minutes, "warmup_candles": warmup,
                 "seed": SEED, "candles": candles},
        "ours": {"warm_s": [round(x, 3) for x in times], "warm_median_s": round(warm, 3),
                 "trades": len(result.trades), "decisions": dict(result.decisions),
                 "final_equity": round(float(result.equity[-1]), 2), "same_result_every_run": first.trades ==
                 result.trades},
        "cold": cold, "compile_from_empty_cache": compile_run, "peers": peers,
    }
