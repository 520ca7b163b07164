"""Backtest reads: runs newest first, one run with its trades, a sweep's progress and ranking."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from backtest.models import BacktestRun, BacktestSweep, BacktestTrade
from infra.clock import datetime_to_ms, ms_to_datetime
from trading.selectors import clamp_limit

__all__ = ["run_detail", "run_get", "run_summary", "run_trade_rows", "runs_list", "sweep_get", "sweep_progress",
           "sweep_ranking"]


def runs_list(*, limit: int | None = None, before: int | None = None, status: str | None = None,
              sweep: int | None = None) -> QuerySet[BacktestRun]:
    """Runs newest first; ``before`` (a run id) pages on: the next page starts below the last id seen."""
    qs = BacktestRun.objects.all()
    if before is not None:
        qs = qs.filter(pk__lt=before)
    if status:
        qs = qs.filter(status=status)
    if sweep is not None:
        qs = qs.filter(sweep_id=sweep)
    return qs.order_by("-id").defer("equity", "spec", "decisions")[: clamp_limit(limit)]


def run_summary(run: BacktestRun) -> dict[str, Any]:
    """A run as the list shows it (GET /admin/backtests, the dashboard's list)."""
    return {"id": run.pk, "status": run.status, "source": run.source, "created_by": run.created_by,
            "created_at": run.created_at, "finished_at": run.finished_at, "sweep_id": run.sweep_id,
            "segment": run.segment, "universe": run.universe, "timeframe": run.timeframe, "start_at": run.start_at,
            "end_at": run.end_at, "overrides": run.overrides, "data_source": run.data_source, "metrics": run.metrics,
            "error": run.error or None}


def run_detail(run: BacktestRun, *, max_points: int = 2000) -> dict[str, Any]:
    """A run with its spec, decisions, trades and equity curve (thinned to about ``max_points``)."""
    from backtest.report import equity_points

    curve = run.equity or []
    points = equity_points([p[0] for p in curve], [p[1] for p in curve], max_points=max_points)
    return {**run_summary(run), "spec": run.spec, "decisions": run.decisions,
            "candles_processed": run.candles_processed, "final_balances": run.final_balances,
            "trades": run_trade_rows(run=run),
            "equity": [{"t": ms_to_datetime(int(t)), "equity": f"{v:.8f}".rstrip("0").rstrip(".")}
                       for t, v in points]}


def run_get(*, run_id: int) -> BacktestRun:
    """Raises ``BacktestRun.DoesNotExist`` for an unknown id."""
    return BacktestRun.objects.get(pk=run_id)


def run_trade_rows(*, run: BacktestRun) -> list[dict[str, Any]]:
    """The run's trades in entry order, shaped like ``backtest.report.trade_rows`` (the charts
    and the report take either)."""
    rows = []
    for t in BacktestTrade.objects.filter(run=run).order_by("entry_time", "id"):
        cost = t.entry_price * t.quantity
        rows.append({
            "symbol": t.symbol, "entry_time_ms": datetime_to_ms(t.entry_time), "entry_time": t.entry_time,
            "entry_price": _plain(t.entry_price), "quantity": _plain(t.quantity), "stop_price": _plain(t.stop_price),
            "take_profit_price": _plain(t.take_profit_price), "exit_time_ms": datetime_to_ms(t.exit_time),
            "exit_time": t.exit_time, "exit_price": _plain(t.exit_price), "exit_reason": t.exit_reason,
            "fees_quote": _plain(t.fees_quote), "pnl_quote": _plain(t.pnl_quote),
            "return_pct": round(float(t.pnl_quote / cost * 100), 6) if cost else 0.0,
        })
    return rows


def _plain(value) -> str:
    """A stored decimal without the column's 18 trailing places (0.010000000000000000 -> 0.01)."""
    text = format(value.normalize(), "f")
    return text


def sweep_get(*, sweep_id: int) -> BacktestSweep:
    return BacktestSweep.objects.get(pk=sweep_id)


def sweep_progress(*, sweep: BacktestSweep) -> dict[str, int]:
    """How many of the sweep's runs are in each status, and ``finished`` (done + failed) of ``total``."""
    counts = dict.fromkeys(BacktestRun.Status.values, 0)
    for row in BacktestRun.objects.filter(sweep=sweep).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return {**counts, "finished": counts["done"] + counts["failed"], "total": sweep.total_runs}


def sweep_ranking(*, sweep: BacktestSweep) -> list[dict[str, Any]]:
    """One row per parameter set: its overrides, the run ids and metrics of each segment, best
    first by the sweep's metric in-sample (or over the full range without a split). Sets whose
    ranking run has not finished, or whose metric is undefined, come last."""
    ranked_segment = BacktestRun.Segment.IN_SAMPLE if sweep.split_ms is not None else BacktestRun.Segment.FULL
    sets: dict[int, dict[str, Any]] = {}
    runs = BacktestRun.objects.filter(sweep=sweep).order_by("parameter_set", "id").only(
        "id", "parameter_set", "segment", "status", "overrides", "metrics", "error")
    for run in runs:
        row = sets.setdefault(run.parameter_set, {"parameter_set": run.parameter_set, "overrides": run.overrides,
                                                  "segments": {}})
        row["segments"][run.segment] = {"run_id": run.pk, "status": run.status, "metrics": run.metrics,
                                        "error": run.error or None}
    metric = sweep.metric

    def key(row: dict[str, Any]):
        value = row["segments"].get(ranked_segment, {}).get("metrics", {}).get(metric)
        return (value is None, -(value or 0.0), row["parameter_set"])

    ranked = sorted(sets.values(), key=key)
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    return ranked
