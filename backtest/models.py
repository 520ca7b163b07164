"""Stored backtests: every run (from the CLI or a sweep) with its metrics and equity curve in
``backtest_runs``, its trades in ``backtest_trades``, and the sweeps that group runs in
``backtest_sweeps``. Written only by ``backtest.services``; read by ``backtest.selectors``."""

from __future__ import annotations

from django.db import models

from trading.models import MONEY


class BacktestSweep(models.Model):
    """A parameter search: one run per (parameter set, segment), each a Celery task on the
    ``backtest`` queue; its progress is the count of its runs by status."""

    class Search(models.TextChoices):
        GRID = "grid"
        RANDOM = "random"

    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=100)
    search = models.CharField(max_length=8, choices=Search.choices)
    metric = models.CharField(max_length=32)               # what the results are ranked by (in-sample)
    space = models.JSONField()                             # key -> list of values tried
    base_spec = models.JSONField()                         # the spec every run starts from
    data_source = models.JSONField()
    split_ms = models.BigIntegerField(null=True)           # walk-forward: in-sample before, out-of-sample after
    total_runs = models.PositiveIntegerField()

    class Meta:
        db_table = "backtest_sweeps"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"sweep #{self.pk} ({self.search}, {self.total_runs} runs, by {self.metric})"


class BacktestRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Segment(models.TextChoices):
        FULL = "full"
        IN_SAMPLE = "in_sample"
        OUT_OF_SAMPLE = "out_of_sample"

    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices)
    source = models.CharField(max_length=16)               # cli | sweep
    created_by = models.CharField(max_length=100)
    sweep = models.ForeignKey(BacktestSweep, null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    segment = models.CharField(max_length=16, choices=Segment.choices, default=Segment.FULL)
    parameter_set = models.PositiveIntegerField(null=True)  # within a sweep: runs of one set share it
    overrides = models.JSONField(default=dict)              # config keys changed from the live config
    spec = models.JSONField()                               # config, range, balances, fee, slippage
    data_source = models.JSONField()
    universe = models.JSONField()
    timeframe = models.CharField(max_length=8)
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    metrics = models.JSONField(default=dict)
    equity = models.JSONField(default=list)                 # [[close time ms, equity], ...], thinned
    decisions = models.JSONField(default=dict)              # reason code -> count
    candles_processed = models.BigIntegerField(default=0)
    final_balances = models.JSONField(default=dict)
    error = models.TextField(blank=True, default="")
    report_dir = models.TextField(blank=True, default="")
    trace_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "backtest_runs"
        ordering = ["-id"]
        indexes = [models.Index(fields=["sweep", "status"], name="backtest_run_sweep_status")]

    def __str__(self) -> str:
        return f"backtest #{self.pk} {self.timeframe} {self.status}"


class BacktestTrade(models.Model):
    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="trades")
    symbol = models.CharField(max_length=32)
    entry_time = models.DateTimeField()          # open time of the decision candle (entry at its close)
    entry_price = models.DecimalField(**MONEY)
    quantity = models.DecimalField(**MONEY)
    stop_price = models.DecimalField(**MONEY)
    take_profit_price = models.DecimalField(**MONEY)
    exit_time = models.DateTimeField()           # open time of the candle the exit filled in
    exit_price = models.DecimalField(**MONEY)
    exit_reason = models.CharField(max_length=16)
    fees_quote = models.DecimalField(**MONEY)
    pnl_quote = models.DecimalField(**MONEY)

    class Meta:
        db_table = "backtest_trades"
        ordering = ["run", "entry_time", "id"]

    def __str__(self) -> str:
        return f"{self.symbol} {self.entry_time:%Y-%m-%d %H:%M} {self.exit_reason} {self.pnl_quote}"
