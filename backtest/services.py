"""Backtest writes: build a spec from the live config and an operator's overrides, run it on the
engine, store it (``backtest_runs`` + ``backtest_trades`` in one transaction), write its report
files; create a sweep and enqueue its runs; execute one stored run (what a sweep task does).

The engine (``backtest.engine.run_backtest``) is a pure function; everything with I/O is here.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.db import transaction

from backtest import report
from backtest.data import DataError, DataSource, load_series, utc_text, warmup_candles
from backtest.models import BacktestRun, BacktestSweep, BacktestTrade
from backtest.types import BacktestResult, BacktestSpec, SymbolSeries
from infra.clock import ms_to_datetime, now_utc, timeframe_ms
from trading.config_schema import SCHEMA, ConfigValidationError, StrategyConfig, config_from_values, config_validate

log = logging.getLogger(__name__)

__all__ = [
    "RANKING_METRICS", "BacktestInputError", "RunOutcome", "backtest_result_store", "backtest_run", "spec_build",
    "spec_from_json", "spec_to_json", "stored_run_execute", "sweep_create",
]

# Metrics a sweep may rank by; higher is better for each (max_drawdown is a negative fraction).
RANKING_METRICS = ("sharpe", "sortino", "calmar", "total_return", "cagr", "profit_factor", "win_rate", "max_drawdown")
MAX_SWEEP_RUNS = 2000


class BacktestInputError(ValueError):
    """A spec, a data source or a sweep that cannot run: one line naming the problem."""


# --- specs --------------------------------------------------------------------------------------

def spec_build(*, base: StrategyConfig, overrides: Mapping[str, Any], start_ms: int, end_ms: int,
               initial_balances: Mapping[str, Decimal], fee_rate: Decimal, slippage_bps: Decimal) -> BacktestSpec:
    """``base`` (normally the live config) with ``overrides`` applied, validated by the same
    rules and messages as ``tbot config set`` / ``POST /admin/update_config`` (strict: decimals
    as strings). Raises ``ConfigValidationError`` or ``BacktestInputError``."""
    values = config_validate(dict(overrides), strict=True) if overrides else {}
    config = replace(base, **values)
    tf = timeframe_ms(config.timeframe)
    start_ms, end_ms = -(-start_ms // tf) * tf, end_ms // tf * tf      # whole candles only
    if start_ms >= end_ms:
        raise BacktestInputError(f"empty date range: no whole {config.timeframe} candle between "
                                 f"{utc_text(start_ms)} and {utc_text(end_ms)}")
    quotes = {s.split("/", 1)[1] for s in config.universe}
    if len(quotes) != 1:
        raise BacktestInputError(f"universe {','.join(config.universe)} mixes quote assets "
                                 f"({', '.join(sorted(quotes))}); a backtest accounts in one")
    quote = quotes.pop()
    if Decimal(initial_balances.get(quote, 0)) <= 0:
        raise BacktestInputError(f"initial balances hold no {quote}, the universe's quote asset "
                                 f"(e.g. --balance {quote}=10000)")
    if any(Decimal(v) < 0 for v in initial_balances.values()):
        raise BacktestInputError("initial balances must not be negative")
    if not Decimal(0) <= fee_rate < Decimal("0.1"):
        raise BacktestInputError(f"fee rate {fee_rate} must be between 0 and 0.1 (0.001 is 0.1 %)")
    if not Decimal(0) <= slippage_bps <= Decimal(1000):
        raise BacktestInputError(f"slippage {slippage_bps} bps must be between 0 and 1000")
    return BacktestSpec(config=config, start_ms=start_ms, end_ms=end_ms,
                        initial_balances={k: Decimal(v) for k, v in initial_balances.items()},
                        fee_rate=fee_rate, slippage_bps=slippage_bps)


def spec_to_json(spec: BacktestSpec) -> dict[str, Any]:
    return {"config": spec.config.as_json(), "config_version": spec.config.version, "start_ms": spec.start_ms,
            "end_ms": spec.end_ms, "initial_balances": {k: str(v) for k, v in spec.initial_balances.items()},
            "fee_rate": str(spec.fee_rate), "slippage_bps": str(spec.slippage_bps)}


def spec_from_json(value: Mapping[str, Any]) -> BacktestSpec:
    return BacktestSpec(config=config_from_values(value["config"], version=value.get("config_version", 0)),
                        start_ms=int(value["start_ms"]), end_ms=int(value["end_ms"]),
                        initial_balances={k: Decimal(v) for k, v in value["initial_balances"].items()},
                        fee_rate=Decimal(value["fee_rate"]), slippage_bps=Decimal(value["slippage_bps"]))


# --- one run ------------------------------------------------------------------------------------

def _execute(spec: BacktestSpec, source: DataSource, progress: Callable[[int, int], None] | None
             ) -> tuple[BacktestResult, dict[str, SymbolSeries]]:
    series = load_series(source, symbols=spec.config.universe, timeframe=spec.config.timeframe,
                         start_ms=spec.start_ms, end_ms=spec.end_ms, warmup=warmup_candles(spec.config))
    from backtest.engine import run_backtest

    try:
        return run_backtest(spec, series, progress=progress), series
    except ValueError as exc:        # the engine names what it cannot run
        raise BacktestInputError(str(exc).strip().splitlines()[0]) from None


def _document(result: BacktestResult, *, source: DataSource, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """What a run produced, JSON-ready: stored in ``backtest_runs`` and written as report.json."""
    return {
        "spec": spec_to_json(result.spec), "overrides": dict(overrides), "data_source": source.as_json(),
        "data_source_label": source.label(), "metrics": report.compute_metrics(result),
        "decisions": dict(result.decisions), "candles_processed": int(result.candles_processed),
        "final_balances": {k: str(v) for k, v in result.final_balances.items()},
        "trades": report.trade_rows(result.trades),
        "equity": report.equity_points(result.equity_time_ms, result.equity),
    }


def _store(run: BacktestRun, result: BacktestResult, document: Mapping[str, Any]) -> None:
    """Metrics, curve and trades of ``run`` in one transaction (a re-delivered task replaces them)."""
    with transaction.atomic():
        run.metrics, run.equity, run.decisions = document["metrics"], document["equity"], document["decisions"]
        run.candles_processed, run.final_balances = document["candles_processed"], document["final_balances"]
        run.status, run.finished_at, run.error = BacktestRun.Status.DONE, now_utc(), ""
        run.save()
        BacktestTrade.objects.filter(run=run).delete()
        BacktestTrade.objects.bulk_create(BacktestTrade(
            run=run, symbol=t.symbol, entry_time=ms_to_datetime(t.entry_time_ms), entry_price=t.entry_price,
            quantity=t.quantity, stop_price=t.stop_price, take_profit_price=t.take_profit_price,
            exit_time=ms_to_datetime(t.exit_time_ms), exit_price=t.exit_price, exit_reason=t.exit_reason,
            fees_quote=t.fees_quote, pnl_quote=t.pnl_quote) for t in result.trades)


def _new_run(*, spec: BacktestSpec, source: DataSource, overrides: Mapping[str, Any], origin: str, actor: str,
             status: str, sweep: BacktestSweep | None = None, segment: str = BacktestRun.Segment.FULL,
             parameter_set: int | None = None, trace_id: str = "") -> BacktestRun:
    return BacktestRun(created_at=now_utc(), status=status, source=origin, created_by=actor, sweep=sweep,
                       segment=segment, parameter_set=parameter_set, overrides=dict(overrides),
                       spec=spec_to_json(spec), data_source=source.as_json(), universe=list(spec.config.universe),
                       timeframe=spec.config.timeframe, start_at=ms_to_datetime(spec.start_ms),
                       end_at=ms_to_datetime(spec.end_ms), trace_id=trace_id)


@dataclass(frozen=True)
class RunOutcome:
    run: BacktestRun
    files: report.ReportFiles
    metrics: dict[str, Any]


def backtest_run(*, spec: BacktestSpec, source: DataSource, overrides: Mapping[str, Any], actor: str,
                 report_root: Path, progress: Callable[[int, int], None] | None = None,
                 trace_id: str = "") -> RunOutcome:
    """Run ``spec`` on ``source``'s candles, store it, write its report into
    ``report_root/run-<id>/``. Bad input raises ``DataError`` / ``BacktestInputError`` before
    anything is written."""
    result, series = _execute(spec, source, progress)
    run, document = backtest_result_store(result=result, source=source, overrides=overrides, actor=actor,
                                          trace_id=trace_id)
    out_dir = Path(report_root) / f"run-{run.pk}"
    files = report.write_report(out_dir=out_dir, run_id=run.pk, title=f"Backtest #{run.pk}", document=document,
                                series=series)
    run.report_dir = str(out_dir.resolve())
    BacktestRun.objects.filter(pk=run.pk).update(report_dir=run.report_dir)
    return RunOutcome(run=run, files=files, metrics=document["metrics"])


def backtest_result_store(*, result: BacktestResult, source: DataSource, overrides: Mapping[str, Any], actor: str,
                          trace_id: str = "") -> tuple[BacktestRun, dict[str, Any]]:
    """Store a finished run (run row, metrics, curve, trades) in one transaction."""
    document = _document(result, source=source, overrides=overrides)
    run = _new_run(spec=result.spec, source=source, overrides=overrides, origin="cli", actor=actor,
                   status=BacktestRun.Status.RUNNING, trace_id=trace_id)
    with transaction.atomic():
        run.save()
        _store(run, result, document)
    return run, document


def stored_run_execute(*, run_id: int) -> str:
    """Execute a stored (sweep) run: what the ``backtest.run`` task does. Idempotent: a run
    already done is left alone; a re-delivered one (its worker died) runs again and replaces
    its results. Bad input marks the run failed with the one-line reason. Returns the status."""
    with transaction.atomic():
        run = BacktestRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:       # its sweep was deleted while the task waited in the queue
            log.warning("backtest run %s no longer exists; nothing to do", run_id)
            return "missing"
        if run.status in (BacktestRun.Status.DONE, BacktestRun.Status.FAILED):
            return run.status
        run.status, run.started_at = BacktestRun.Status.RUNNING, now_utc()
        run.save(update_fields=["status", "started_at"])
    try:
        result, _series = _execute(spec_from_json(run.spec), DataSource.from_json(run.data_source), None)
    except (DataError, BacktestInputError, ConfigValidationError) as exc:
        _fail(run_id, str(exc))
        return BacktestRun.Status.FAILED
    except BaseException as exc:      # a bug or a time limit: the sweep must still finish counting
        _fail(run_id, f"{type(exc).__name__}: {exc}")
        raise
    _store(run, result, _document(result, source=DataSource.from_json(run.data_source), overrides=run.overrides))
    return BacktestRun.Status.DONE


def _fail(run_id: int, error: str) -> None:
    BacktestRun.objects.filter(pk=run_id).update(status=BacktestRun.Status.FAILED, finished_at=now_utc(),
                                                  error=error[:2000])


# --- sweeps -------------------------------------------------------------------------------------

def _parameter_sets(space: Mapping[str, Sequence[Any]], search: str, samples: int | None,
                    seed: int) -> list[dict[str, Any]]:
    keys = list(space)
    grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[k] for k in keys))]
    if search == BacktestSweep.Search.GRID:
        return grid
    if not samples or samples < 1:
        raise BacktestInputError("a random search needs --samples N (N >= 1)")
    return random.Random(seed).sample(grid, min(samples, len(grid)))


def sweep_create(*, base_spec: BacktestSpec, source: DataSource, space: Mapping[str, Sequence[Any]],
                 search: str = BacktestSweep.Search.GRID, samples: int | None = None, seed: int = 0,
                 metric: str = "sharpe", split_ms: int | None = None, actor: str,
                 base_overrides: Mapping[str, Any] | None = None) -> BacktestSweep:
    """Store a sweep and one pending run per (parameter set, segment); after commit enqueue one
    ``backtest.run`` task per run on the ``backtest`` queue (a Celery group: any number of
    workers on any machines take them). With ``split_ms`` every set runs twice: in-sample
    [start, split) and out-of-sample [split, end) - walk-forward, so an overfitted set shows."""
    if source.kind == "csv":
        raise BacktestInputError("a sweep's workers load the candles themselves, possibly on other machines: "
                                 "use --source db or --source synthetic, not a CSV file")
    if metric not in RANKING_METRICS:
        raise BacktestInputError(f"unknown metric {metric!r}; rank by one of {', '.join(RANKING_METRICS)}")
    if search not in BacktestSweep.Search.values:
        raise BacktestInputError(f"unknown search {search!r}; use grid or random")
    if not space:
        raise BacktestInputError("a sweep needs at least one --param KEY=V1,V2,...")
    problems: dict[str, list[str]] = {}
    for key, values in space.items():
        if key not in SCHEMA:
            problems[key] = [f"unknown config key; known keys: {', '.join(SCHEMA)}"]
            continue
        if not values:
            problems[key] = ["give at least one value"]
        for value in values:
            try:
                config_validate({key: value}, strict=True)
            except ConfigValidationError as exc:
                problems.setdefault(key, []).extend(exc.problems[key])
    if problems:
        raise ConfigValidationError(problems)
    if split_ms is not None and not base_spec.start_ms < split_ms < base_spec.end_ms:
        raise BacktestInputError("the walk-forward split must fall strictly between start and end")
    sets = _parameter_sets(space, search, samples, seed)
    segments = ([(BacktestRun.Segment.IN_SAMPLE, base_spec.start_ms, split_ms),
                 (BacktestRun.Segment.OUT_OF_SAMPLE, split_ms, base_spec.end_ms)] if split_ms is not None
                else [(BacktestRun.Segment.FULL, base_spec.start_ms, base_spec.end_ms)])
    total = len(sets) * len(segments)
    if total > MAX_SWEEP_RUNS:
        raise BacktestInputError(f"{total} runs is more than {MAX_SWEEP_RUNS}: narrow the grid or use a random "
                                 "search with --samples")
    with transaction.atomic():
        sweep = BacktestSweep.objects.create(
            created_at=now_utc(), created_by=actor, search=search, metric=metric,
            space={k: list(v) for k, v in space.items()}, base_spec=spec_to_json(base_spec),
            data_source=source.as_json(), split_ms=split_ms, total_runs=total)
        runs = []
        for index, values in enumerate(sets):
            config = replace(base_spec.config, **config_validate(values, strict=True))
            overrides = {**(base_overrides or {}), **values}
            for segment, start, end in segments:
                spec = replace(base_spec, config=config, start_ms=start, end_ms=end)
                runs.append(_new_run(spec=spec, source=source, overrides=overrides, origin="sweep", actor=actor,
                                     status=BacktestRun.Status.PENDING, sweep=sweep, segment=segment,
                                     parameter_set=index))
        BacktestRun.objects.bulk_create(runs)
        ids = list(BacktestRun.objects.filter(sweep=sweep).order_by("id").values_list("id", flat=True))
        transaction.on_commit(lambda: _enqueue(ids))
    return sweep


def _enqueue(run_ids: list[int]) -> None:
    from celery import group

    from backtest.tasks import backtest_run_task

    group(backtest_run_task.si(run_id) for run_id in run_ids).apply_async()


def parse_decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise BacktestInputError(f"{what} {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise BacktestInputError(f"{what} {text!r} is not a finite number")
    return value
