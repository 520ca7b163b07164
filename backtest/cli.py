"""The command line of ``tbot backtest`` and ``python manage.py backtest`` (the same arguments).

Django-free, so ``tbot --help`` answers without configuration (``adminapi.cli`` adds these
under ``tbot backtest``). The work is done in ``backtest.management.commands.backtest``.
"""

from __future__ import annotations

import argparse

RUN_HELP = "Backtest the strategy on stored, CSV or synthetic candles; store it and write its report."
SWEEP_HELP = ("Sweep parameters (grid or random), one Celery task per run on the backtest queue; rank the results, "
              "optionally in-sample vs out-of-sample.")
STATUS_HELP = "Progress and ranking of a sweep."
METRICS = ("sharpe", "sortino", "calmar", "total_return", "cagr", "profit_factor", "win_rate", "max_drawdown")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.add_argument("--universe", help="symbols, e.g. BTC/USDT,ETH/USDT (default: the live config's)")
    p.add_argument("--timeframe", help="1m, 5m, 15m or 1h (default: the live config's)")
    p.add_argument("--start", required=True, help="first candle decided on: a UTC date or ISO-8601 time")
    p.add_argument("--end", default=None, help="end (exclusive), UTC date or time (default: now)")
    p.add_argument("--balance", action="append", default=[], metavar="ASSET=AMOUNT",
                   help="initial balance, repeatable (default: PAPER_INITIAL_BALANCES, e.g. USDT=10000)")
    p.add_argument("--fee", default=None, help="fee rate per fill (default: PAPER_FEE_RATE, e.g. 0.001)")
    p.add_argument("--slippage-bps", default=None, help="slippage against us per fill, in bps "
                                                         "(default: PAPER_SLIPPAGE_BPS)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a strategy parameter for this run only, repeatable (the keys of `tbot config get`)")
    p.add_argument("--source", choices=["db", "csv", "synthetic"], default="db",
                   help="candles from the candles table (default), a CSV file, or the synthetic market")
    p.add_argument("--venue", default=None, help="venue of the stored candles (default: EXCHANGE)")
    p.add_argument("--csv", default=None, metavar="PATH", help="OHLCV file for --source csv")
    p.add_argument("--seed", type=int, default=None, help="synthetic market seed (default: MARKET_DATA_SEED)")
    p.add_argument("--by", default=None, help="who runs it (default: the OS user)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``run`` | ``sweep`` | ``sweep-status`` under ``parser``."""
    sub = parser.add_subparsers(dest="backtest_action", required=True, metavar="ACTION")
    run = sub.add_parser("run", help=RUN_HELP, description=RUN_HELP)
    _run_options(run)
    run.add_argument("--out", default="backtest-reports", help="directory for the report files "
                                                               "(a run-<id>/ folder is made in it)")
    bar = run.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None,
                     help="show a progress bar on stderr (default: only on a terminal)")
    bar.add_argument("--no-progress", action="store_false", dest="progress", help="never show the progress bar")

    sweep = sub.add_parser("sweep", help=SWEEP_HELP, description=SWEEP_HELP)
    _run_options(sweep)
    sweep.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2,...", dest="params",
                       help="values to try for one strategy parameter, repeatable")
    sweep.add_argument("--search", choices=["grid", "random"], default="grid")
    sweep.add_argument("--samples", type=int, default=None, help="parameter sets to draw (random search)")
    sweep.add_argument("--search-seed", type=int, default=0, help="seed of the random search")
    sweep.add_argument("--metric", choices=METRICS, default="sharpe", help="rank by this (in-sample) metric")
    split = sweep.add_mutually_exclusive_group()
    split.add_argument("--in-sample", type=float, default=None, metavar="FRACTION",
                       help="walk-forward: the first FRACTION of the range is in-sample, the rest out-of-sample")
    split.add_argument("--split-at", default=None, metavar="DATE", help="walk-forward: out-of-sample from DATE on")
    sweep.add_argument("--no-wait", action="store_true", help="queue the runs and return (see sweep-status)")
    sweep.add_argument("--wait-timeout", type=float, default=3600, help="seconds to wait for the runs (default 3600)")
    sweep.add_argument("--top", type=int, default=10, help="rows of the ranking to print")

    status = sub.add_parser("sweep-status", help=STATUS_HELP, description=STATUS_HELP)
    status.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    status.add_argument("sweep_id", type=int)
    status.add_argument("--top", type=int, default=10)
