"""Template filters of the backtest pages: a stored metric as the report formats it."""

from __future__ import annotations

from django import template

from backtest.report import format_metric

register = template.Library()


@register.filter
def metric(metrics: dict | None, key: str) -> str:
    """``{{ run.metrics|metric:"sharpe" }}`` -> "1.23" (fractions in %, '-' when undefined)."""
    return format_metric(key, (metrics or {}).get(key))


SIGNED_METRICS = {"total_return", "cagr", "max_drawdown", "sharpe", "sortino", "calmar"}


@register.filter
def metric_class(metrics: dict | None, key: str) -> str:
    """``pos`` / ``neg`` for the metrics whose sign is the news (returns, risk-adjusted ratios)."""
    value = (metrics or {}).get(key) if key in SIGNED_METRICS else None
    if not isinstance(value, int | float) or value == 0:
        return ""
    return "pos" if value > 0 else "neg"


@register.filter
def parameters(overrides: dict | None) -> str:
    """The strategy parameters a run changed (its universe and timeframe have columns of their own)."""
    items = [f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in (overrides or {}).items()
             if k not in ("universe", "timeframe")]
    return " · ".join(items) or "as the live config"
