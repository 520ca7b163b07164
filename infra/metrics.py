"""Prometheus metrics.

``alphasniper_*`` metrics are computed at scrape time from PostgreSQL and Redis — the same
truth every process writes to — so they are complete however many gunicorn workers and
Celery processes run, and they survive restarts. Request metrics from django-prometheus are
per process; gunicorn gathers them through PROMETHEUS_MULTIPROC_DIR (see gunicorn.conf.py).
"""

from __future__ import annotations

import os

from django.db import connection
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from infra import heartbeat


class AlphaSniperCollector:
    """Reads the event stream and process state; never holds counters in memory."""

    def collect(self):
        up = GaugeMetricFamily("alphasniper_up", "1 while the API can read PostgreSQL")
        orders = GaugeMetricFamily("alphasniper_orders", "Orders by status", labels=["status"])
        events = CounterMetricFamily(
            "alphasniper_order_events", "Order events appended, by type and source", labels=["event_type", "source"],
        )
        fixes = CounterMetricFamily(
            "alphasniper_reconciliation_fixes", "Order events written by reconciliation (things it repaired)",
        )
        decisions = CounterMetricFamily(
            "alphasniper_strategy_decisions", "Strategy decisions by decision", labels=["decision"],
        )
        halted = GaugeMetricFamily("alphasniper_trading_halted", "1 when strategy entries are halted")
        beats = GaugeMetricFamily(
            "alphasniper_heartbeat_age_seconds", "Seconds since each process last beat (-1: never)", labels=["process"],
        )
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT status, count(*) FROM orders GROUP BY status")
                for status, n in cur.fetchall():
                    orders.add_metric([status], n)
                cur.execute("SELECT event_type, source, count(*) FROM order_events GROUP BY event_type, source")
                total_fixes = 0
                for event_type, source, n in cur.fetchall():
                    events.add_metric([event_type, source], n)
                    if source == "reconciliation":
                        total_fixes += n
                fixes.add_metric([], total_fixes)
                cur.execute("SELECT decision, count(*) FROM strategy_decisions GROUP BY decision")
                for decision, n in cur.fetchall():
                    decisions.add_metric([decision], n)
                cur.execute("SELECT value FROM system_config WHERE key = 'trading.halt'")
                row = cur.fetchone()
                is_halted = bool(row and _json(row[0]).get("halted"))
                halted.add_metric([], 1 if is_halted else 0)
            up.add_metric([], 1)
        except Exception:
            up.add_metric([], 0)
        try:
            for process, age in heartbeat.ages().items():
                beats.add_metric([process], -1 if age is None else age)
        except Exception:  # Redis down: /health says so; the DB-backed metrics above still count
            beats.add_metric(["redis-unavailable"], -1)
        yield from (up, orders, events, fixes, decisions, halted, beats, *_account_gauges())


def _account_gauges() -> list[GaugeMetricFamily]:
    """How the account is doing, computed at scrape time from the same read model as
    ``/admin/status`` - one definition of equity, the day's PnL and exposure. (infra imports the
    operator surface here, a higher layer, so that no second definition can drift from it.)"""
    equity = GaugeMetricFamily("alphasniper_equity", "Account equity in the quote asset (latest equity snapshot)")
    pnl = GaugeMetricFamily("alphasniper_pnl_today",
                            "Equity now minus equity at the start of the Hong Kong day, in the quote asset")
    positions = GaugeMetricFamily("alphasniper_open_positions", "Strategy positions still held (open or closing)")
    exposure = GaugeMetricFamily("alphasniper_open_exposure",
                                 "Held quantity of open positions at the last price, in the quote asset")
    try:
        from adminapi.selectors import cockpit_figures

        figures = cockpit_figures()
    except Exception:   # PostgreSQL down: alphasniper_up says so; no stale numbers
        return []
    if figures["equity"] is not None:
        equity.add_metric([], float(figures["equity"]))
    if figures["pnl_today"] is not None:
        pnl.add_metric([], float(figures["pnl_today"]))
    positions.add_metric([], figures["open_positions"])
    exposure.add_metric([], float(figures["open_exposure"]))
    return [equity, pnl, positions, exposure]


def _json(value):
    import json

    return json.loads(value) if isinstance(value, str) else (value or {})


_ours = CollectorRegistry(auto_describe=False)
_ours.register(AlphaSniperCollector())


def render() -> bytes:
    """Our metrics plus django-prometheus's (aggregated over processes when multiprocess mode is on)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process_registry = CollectorRegistry()
        MultiProcessCollector(process_registry)
    else:
        process_registry = REGISTRY
    return generate_latest(_ours) + generate_latest(process_registry)
