"""``python manage.py backtest run|sweep|sweep-status`` — the same command as ``tbot backtest``.

    backtest run --start 2024-01-01 --end 2024-03-01 [--universe BTC/USDT,ETH/USDT] [--timeframe 15m]
                 [--balance USDT=10000] [--fee 0.001] [--slippage-bps 5] [--set ema_trend=100 ...]
                 [--source db|csv|synthetic] [--csv FILE] [--seed N] [--out DIR] [--progress]
    backtest sweep ... --param ema_trend=50,100,200 --param take_profit_r=2,3 [--search random --samples 20]
                 [--metric sharpe] [--in-sample 0.7 | --split-at 2024-02-15] [--no-wait]
    backtest sweep-status SWEEP_ID

Strategy parameters start from the live config (``system_config``); ``--set`` / ``--universe`` /
``--timeframe`` / ``--param`` values are parsed and validated exactly as ``tbot config set``
does, so a bad value gets the same message. Bad input of any kind is ONE line on stderr naming
it, and exit code 2; nothing is stored or written. ``--json`` prints nothing but JSON on stdout.
Exit codes: 0 ok; 1 a sweep with failed runs, or one not finished within ``--wait-timeout``;
2 bad input.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from backtest import cli
from backtest.data import DataError, DataSource, utc_text
from backtest.report import METRIC_LABELS, format_metric
from backtest.services import BacktestInputError, backtest_run, parse_decimal, spec_build, sweep_create
from infra.clock import now_ms
from trading.config_schema import SCHEMA, ConfigValidationError, config_get

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
SUMMARY_KEYS = ("total_return", "cagr", "max_drawdown", "sharpe", "sortino", "calmar", "win_rate", "profit_factor",
                "exposure", "trades", "average_hold_hours", "fees_paid", "final_equity")


class BadInput(Exception):
    """One line for the operator; exit 2."""


class Command(BaseCommand):
    help = "Backtest the strategy: run | sweep | sweep-status (see --help of each)."
    requires_system_checks: list[str] = []
    prog = "backtest"

    def add_arguments(self, parser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args, **options) -> None:
        code = backtest_command(options, stdout=self.stdout, stderr=self.stderr, prog=self.prog)
        if code:
            raise SystemExit(code)


def backtest_command(options: dict[str, Any], *, stdout, stderr, prog: str) -> int:
    """Runs one ``backtest`` action (also ``tbot backtest``); returns the exit code."""
    as_json = bool(options.get("json"))
    action = options["backtest_action"]
    try:
        if action == "run":
            payload, text = _run(options, stderr=stderr, as_json=as_json)
            code = EXIT_OK
        elif action == "sweep":
            payload, text, code = _sweep(options, stderr=stderr, as_json=as_json)
        else:
            payload, text, code = _sweep_status(options)
    except ConfigValidationError as exc:    # the very message `tbot config set` gives
        problems = exc.problems
        return _fail(stdout, stderr, prog, as_json, problems,
                     "; ".join(f"{k}: {'; '.join(v)}" for k, v in problems.items()))
    except (BadInput, DataError, BacktestInputError) as exc:
        return _fail(stdout, stderr, prog, as_json, {"input": [str(exc)]}, str(exc))
    stdout.write(json.dumps(payload, default=str, sort_keys=True) if as_json else text)
    return code


def _fail(stdout, stderr, prog: str, as_json: bool, problems: dict, line: str) -> int:
    if as_json:
        stdout.write(json.dumps({"ok": False, "error": "invalid_input", "fields": problems}, sort_keys=True))
    else:
        stderr.write(f"{prog}: {line}")
    return EXIT_USAGE


# --- input --------------------------------------------------------------------------------------

def _parse_time(text: str, what: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{what} {text!r} is not a date or time (e.g. 2024-01-31 or 2024-01-31T12:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _overrides(options: dict[str, Any]) -> dict[str, Any]:
    """``--universe``, ``--timeframe`` and each ``--set KEY=VALUE`` as the JSON values
    ``config_validate`` takes, parsed by tbot's own ``config set`` parser."""
    from adminapi.management.commands.tbot import _parse_changes  # the one parser of KEY=VALUE words

    words = list(options["overrides"])
    if options.get("universe"):
        words.append(f"universe={options['universe']}")
    if options.get("timeframe"):
        words.append(f"timeframe={options['timeframe']}")
    changes, problems = _parse_changes(words)
    if problems:
        raise ConfigValidationError(problems)
    return changes


def _balances(items: list[str]) -> dict[str, Decimal]:
    if not items:
        return dict(settings.PAPER_INITIAL_BALANCES)
    out: dict[str, Decimal] = {}
    for item in items:
        asset, sep, amount = item.partition("=")
        if not sep or not asset.strip().isalnum():
            raise BadInput(f"--balance {item!r} is not ASSET=AMOUNT (e.g. USDT=10000)")
        out[asset.strip().upper()] = parse_decimal(amount, f"--balance {asset.strip()}")
    return out


def _source(options: dict[str, Any]) -> DataSource:
    kind = options["source"]
    if kind == "csv":
        if not options.get("csv"):
            raise BadInput("--source csv needs --csv PATH")
        return DataSource("csv", path=str(Path(options["csv"]).resolve()))
    if options.get("csv"):
        raise BadInput(f"--csv is only read with --source csv (the source is {kind})")
    if kind == "synthetic":
        return DataSource("synthetic", seed=settings.MARKET_DATA_SEED if options.get("seed") is None
                          else options["seed"])
    return DataSource("db", venue=options.get("venue") or settings.VENUE.name)


def _spec(options: dict[str, Any]):
    overrides = _overrides(options)
    start = _parse_time(options["start"], "--start")
    end = _parse_time(options["end"], "--end") if options.get("end") else now_ms()
    if start >= end:
        raise BadInput(f"empty date range: --start {utc_text(start)} is not before --end {utc_text(end)}")
    fee = parse_decimal(options["fee"], "--fee") if options.get("fee") else settings.PAPER_FEE_RATE
    slippage = (parse_decimal(options["slippage_bps"], "--slippage-bps") if options.get("slippage_bps")
                else settings.PAPER_SLIPPAGE_BPS)
    spec = spec_build(base=config_get(), overrides=overrides, start_ms=start, end_ms=end,
                      initial_balances=_balances(options["balance"]), fee_rate=fee, slippage_bps=slippage)
    return spec, overrides


def _actor(options: dict[str, Any]) -> str:
    from adminapi.management.commands.tbot import default_actor

    return options.get("by") or default_actor()


# --- run ----------------------------------------------------------------------------------------

class _ProgressBar:
    """tqdm on stderr, fed by the engine's ``progress(done, total)``."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="candle", unit_scale=True, file=sys.stderr, desc="backtest",
                            dynamic_ncols=True, mininterval=0.2)
        self.bar.n = done
        self.bar.refresh()
        if done >= total:          # the engine is done; storing and writing the report follow
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _writable_dir(path: Path) -> Path:
    """The report directory, made if need be: checked before the run, so a run is never stored
    without the report it was asked for."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {path}: cannot create the report directory ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadInput(f"--out {path}: the report directory is not writable")
    return path


def _run(options: dict[str, Any], *, stderr, as_json: bool) -> tuple[dict, str]:
    spec, overrides = _spec(options)
    source = _source(options)
    report_root = _writable_dir(Path(options["out"]))
    show = options.get("progress")
    if show is None:
        show = sys.stderr.isatty()
    bar = _ProgressBar() if show else None
    try:
        outcome = backtest_run(spec=spec, source=source, overrides=overrides, actor=_actor(options),
                               report_root=report_root, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    run, files, metrics = outcome.run, outcome.files, outcome.metrics
    payload = {"ok": True, "run_id": run.pk, "metrics": metrics,
               "report": {"html": str(files.html.resolve()), "json": str(files.json.resolve()),
                          "trades_csv": str(files.trades_csv.resolve()),
                          "equity_csv": str(files.equity_csv.resolve())}}
    config = spec.config
    lines = [f"backtest #{run.pk}: {', '.join(config.universe)} · {config.timeframe} · {utc_text(spec.start_ms)} -> "
             f"{utc_text(spec.end_ms)} · {source.label()}"
             + (f" · {', '.join(f'{k}={v}' for k, v in overrides.items() if k not in ('universe', 'timeframe'))}"
                if set(overrides) - {"universe", "timeframe"} else "")]
    lines += _metric_table(metrics)
    lines += [f"report: {files.html.resolve()}",
              f"        {files.json.resolve()}, {files.trades_csv.name}, {files.equity_csv.name}",
              f"run id: {run.pk}  (GET /admin/backtests/{run.pk}, /dashboard/backtests/{run.pk}/)"]
    return payload, "\n".join(lines)


def _metric_table(metrics: dict[str, Any]) -> list[str]:
    cells = [(METRIC_LABELS[k][0], format_metric(k, metrics.get(k))) for k in SUMMARY_KEYS]
    half = -(-len(cells) // 2)
    rows = []
    for left, right in zip(cells[:half], [*cells[half:], ("", "")], strict=True):
        rows.append(f"  {left[0]:<18}{left[1]:>12}    {right[0]:<18}{right[1]:>12}".rstrip())
    return rows


# --- sweeps -------------------------------------------------------------------------------------

def _space(items: list[str]) -> dict[str, list[Any]]:
    from adminapi.management.commands.tbot import _parse_changes

    space: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise BadInput(f"--param {item!r} is not KEY=V1,V2,... (e.g. ema_trend=50,100,200)")
        if key in space:
            raise BadInput(f"--param {key} given twice; list all its values in one")
        if key in SCHEMA and SCHEMA[key].kind == "symbols":
            raise BadInput(f"--param {key}: a universe is not swept; run one sweep per universe")
        values = []
        for piece in text.split(","):
            changes, problems = _parse_changes([f"{key}={piece.strip()}"])
            if problems:
                raise ConfigValidationError(problems)
            values.append(changes[key])
        space[key] = values
    return space


def _sweep(options: dict[str, Any], *, stderr, as_json: bool) -> tuple[dict, str, int]:
    from backtest.selectors import sweep_progress

    spec, overrides = _spec(options)
    source = _source(options)
    space = _space(options["params"])
    split_ms = None
    if options.get("in_sample") is not None:
        fraction = options["in_sample"]
        if not 0 < fraction < 1:
            raise BadInput(f"--in-sample {fraction} must be between 0 and 1 (e.g. 0.7)")
        split_ms = spec.start_ms + int((spec.end_ms - spec.start_ms) * fraction)
    elif options.get("split_at"):
        split_ms = _parse_time(options["split_at"], "--split-at")
    if split_ms is not None:
        from infra.clock import timeframe_ms

        tf = timeframe_ms(spec.config.timeframe)
        split_ms = split_ms // tf * tf          # on a candle boundary: no candle in both segments
    sweep = sweep_create(base_spec=spec, source=source, space=space, search=options["search"],
                         samples=options.get("samples"), seed=options["search_seed"], metric=options["metric"],
                         split_ms=split_ms, actor=_actor(options), base_overrides=overrides)
    if not as_json:
        stderr.write(f"sweep #{sweep.pk}: {sweep.total_runs} runs queued on the backtest queue "
                     f"(ranked by {sweep.metric}{', walk-forward split at ' + utc_text(split_ms) if split_ms else ''})")
    if options["no_wait"]:
        progress = sweep_progress(sweep=sweep)
        return ({"ok": True, "sweep_id": sweep.pk, "progress": progress},
                f"sweep #{sweep.pk} queued: {progress['total']} runs; `tbot backtest sweep-status {sweep.pk}`",
                EXIT_OK)
    deadline = time.monotonic() + options["wait_timeout"]
    bar = None
    if not as_json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=sweep.total_runs, unit="run", file=sys.stderr, desc=f"sweep #{sweep.pk}")
    try:
        while True:
            progress = sweep_progress(sweep=sweep)
            if bar is not None:
                bar.n = progress["finished"]
                bar.refresh()
            if progress["finished"] >= progress["total"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        if bar is not None:
            bar.close()
    return _sweep_report(sweep, top=options["top"])


def _sweep_status(options: dict[str, Any]) -> tuple[dict, str, int]:
    from backtest.models import BacktestSweep
    from backtest.selectors import sweep_get

    try:
        sweep = sweep_get(sweep_id=options["sweep_id"])
    except BacktestSweep.DoesNotExist:
        raise BadInput(f"no sweep #{options['sweep_id']}") from None
    return _sweep_report(sweep, top=options["top"])


def _sweep_report(sweep, *, top: int) -> tuple[dict, str, int]:
    from backtest.selectors import sweep_progress, sweep_ranking

    progress = sweep_progress(sweep=sweep)
    ranking = sweep_ranking(sweep=sweep)
    walk_forward = sweep.split_ms is not None
    first, second = ("in_sample", "out_of_sample") if walk_forward else ("full", None)
    metric = sweep.metric
    lines = [f"sweep #{sweep.pk}: {progress['finished']} of {progress['total']} runs finished "
             f"({progress['done']} done, {progress['failed']} failed, {progress['running']} running, "
             f"{progress['pending']} pending); ranked by {metric}"
             + (" in-sample" if walk_forward else "")]
    head = f"  {'#':>3}  {'parameters':<44}"
    head += (f"{'IS ' + metric:>16}{'OOS ' + metric:>17}{'IS return':>11}{'OOS return':>11}{'trades':>9}"
             if walk_forward else f"{metric:>14}{'return':>10}{'max dd':>9}{'trades':>8}")
    lines.append(head)
    for row in ranking[:max(1, top)]:
        params = ", ".join(f"{k}={v}" for k, v in row["overrides"].items() if k in sweep.space) or "-"
        a = row["segments"].get(first, {})
        am = a.get("metrics") or {}
        text = f"  {row['rank']:>3}  {params[:44]:<44}"
        if walk_forward:
            b = row["segments"].get(second, {})
            bm = b.get("metrics") or {}
            text += (f"{format_metric(metric, am.get(metric)):>16}{format_metric(metric, bm.get(metric)):>17}"
                     f"{format_metric('total_return', am.get('total_return')):>11}"
                     f"{format_metric('total_return', bm.get('total_return')):>11}"
                     f"{str(am.get('trades', '-')) + '/' + str(bm.get('trades', '-')):>9}")
        else:
            text += (f"{format_metric(metric, am.get(metric)):>14}"
                     f"{format_metric('total_return', am.get('total_return')):>10}"
                     f"{format_metric('max_drawdown', am.get('max_drawdown')):>9}{str(am.get('trades', '-')):>8}")
        errors = [s["error"] for s in row["segments"].values() if s.get("error")]
        lines.append(text + (f"  FAILED: {errors[0]}" if errors else ""))
    finished = progress["finished"] >= progress["total"]
    code = EXIT_OK if finished and not progress["failed"] else EXIT_PROBLEMS
    if not finished:
        lines.append(f"not finished yet: `tbot backtest sweep-status {sweep.pk}` later")
    payload = {"ok": code == EXIT_OK, "sweep_id": sweep.pk, "metric": metric, "walk_forward": walk_forward,
               "split_ms": sweep.split_ms, "progress": progress, "ranking": ranking}
    return payload, "\n".join(lines), code
