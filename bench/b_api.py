"""API latency: ``/health`` and ``GET /admin/status`` at a fixed 200 requests/s, and ``/metrics``
with 1 M order events in PostgreSQL.

gunicorn is started exactly as ``infra.devstack.processes()["api"]`` does (gunicorn.conf.py: 2
workers x 4 threads, preload, PROMETHEUS_MULTIPROC_DIR set). Load: ``bench.loadgen`` (open loop,
200 req/s, keep-alive, latency from the scheduled send time) for 30 s per endpoint after a 2 s
warm-up.

``/health`` is measured on its healthy path, which is what it must be fast on: it answers 200
only when every process it watches has a fresh heartbeat and the data-syncer has reported the
venue healthy (``infra.health.check_health``). The bench writes what those processes write: the
heartbeats of beat / data-syncer / strategy-engine (``infra.heartbeat.record``, every 5 s, as
their heartbeat tasks do) and one real ``syncer.services.market_snapshot_sync()`` on the paper
venue (tickers, balances, the venue's health record). Every answer must be a 200 (the status
counts are in the file); otherwise the figure is withheld. The failure path (503, the venue's
record removed) is measured briefly afterwards and reported apart, never as ``health_p99_ms``.

Floors: the PostgreSQL statements and Redis round trips of one ``/health`` and one
``/admin/status`` are counted on a real in-process request (``bench.b_floors.count_round_trips``),
so the floor follows the code: 1 HTTP round trip + N statements + M Redis round trips at p99.

``/metrics``: 1 M ``order_events`` rows are added with one ``INSERT ... SELECT generate_series``
(spread over the orders present, 8 event types x 4 sources), then ANALYZE; the endpoint is
fetched 20 times in a row after one warm-up; ``metrics_ms`` is the median (p90 / max in the file).
Its peer: the same rows read with the one SELECT that dominates it (``event_type, source,
count(*) ... GROUP BY``) on a bare connection, 20 times, median.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from decimal import Decimal
from typing import Any

from bench.b_floors import Crossing, count_round_trips, peer_reference
from bench.common import Target, say, summary_stats
from bench.loadgen import run_load
from bench.stack import BENCH_ADMIN_TOKEN

NAME = "api"
TITLE = "/health and /admin/status at 200 req/s; /metrics with 1M events"
TARGETS = [Target("health_p99_ms", "<=", 20, "ms"), Target("admin_status_p99_ms", "<=", 20, "ms"),
           Target("metrics_ms", "<=", 100, "ms")]
RATE = 200
NEEDS_FLOORS = True
METRICS_SELECT = "SELECT event_type, source, count(*) FROM order_events GROUP BY event_type, source"


def _heartbeats(stop: threading.Event) -> None:
    from infra import heartbeat

    while not stop.is_set():
        for process in heartbeat.PROCESSES:
            heartbeat.record(process)
        stop.wait(5)


def _venue_reported_healthy() -> dict[str, Any]:
    """What the data-syncer does every minute: one market snapshot on the venue, which records
    the venue's health for /health. Then /health's own verdict, in this process, must be ok."""
    from infra.health import check_health
    from syncer.services import market_snapshot_sync

    report = market_snapshot_sync()
    healthy, health = check_health()
    if not healthy:
        raise RuntimeError(f"/health would not be healthy: failing {health['failing']} "
                           f"(market snapshot errors: {report.errors})")
    return {"venue": report.venue, "tickers": report.tickers, "balances": report.balances}


def _counted(path: str, headers: dict[str, str] | None = None) -> dict[str, int]:
    """PostgreSQL statements and Redis round trips of one real request, served in this process
    through the full middleware stack (after one uncounted request that opens the connections)."""
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1", **{f"HTTP_{k.upper()}": v for k, v in (headers or {}).items()})
    client.get(path)
    with count_round_trips() as counted:
        status = client.get(path).status_code
    if status != 200:
        raise RuntimeError(f"{path} answered {status} in process; its crossings cannot be counted")
    return counted.as_dict()


def _crossing(counted: dict[str, int], what: str) -> Crossing:
    return Crossing({"http_rtt": 1, "pg_roundtrip": counted["pg_statements"],
                     "redis_rtt": counted["redis_round_trips"]}, pct="p99",
                    note=f"statements and Redis round trips counted on one in-process {what} request in this run")


def _metrics_select_ms(database_url: str, repeats: int = 20) -> dict[str, Any]:
    import psycopg2

    conn = psycopg2.connect(database_url, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(METRICS_SELECT)
            cur.fetchall()
            timings = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                cur.execute(METRICS_SELECT)
                rows = cur.fetchall()
                timings.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return {"sql": METRICS_SELECT, "groups": len(rows), "latency_ms": summary_stats(timings)}


def _closed_loop(port: int, path: str, headers: dict[str, str] | None, n: int) -> dict[str, Any]:
    """One request at a time on one keep-alive connection: the service time without queueing,
    to tell a slow request from a server that cannot keep up with the open-loop rate."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    timings, statuses = [], {}
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            resp.read()
            timings.append((time.perf_counter() - t0) * 1000)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
    finally:
        conn.close()
    return {"requests": n, "statuses": statuses, "latency_ms": summary_stats(timings)}


def _endpoint(port: int, path: str, duration: float, headers: dict[str, str] | None = None) -> dict[str, Any]:
    run_load("127.0.0.1", port, path, rate=RATE, duration_s=2, headers=headers)          # warm-up
    closed = _closed_loop(port, path, headers, 50 if duration < 10 else 200)
    res = run_load("127.0.0.1", port, path, rate=RATE, duration_s=duration, headers=headers)
    return {"path": path, "closed_loop": closed, "rate_per_s": RATE, "duration_s": duration, "sent": res.sent,
            "statuses": res.statuses, "all_200": set(res.statuses) == {200} and not res.errors,
            "errors": res.errors[:10], "error_count": len(res.errors),
            "generator_late_sends": res.late_sends, "latency_ms": summary_stats(res.latencies_ms)}


def _insert_events(n: int) -> float:
    from django.db import connection

    from trading.models import Order

    t0 = time.monotonic()
    if not Order.objects.exists():
        # Through the model, so that every column the schema has gained since gets its default.
        Order.objects.bulk_create([
            Order(client_order_id=f"AS1-bench-m{i}", venue="binance", strategy="bench", symbol="BTC/USDT",
                  side=Order.Side.BUY, type=Order.Type.MARKET, intent=Order.Intent.ENTRY, quantity=Decimal("0.1"),
                  status="filled", filled_quantity=Decimal("0.1"), filled_quote=Decimal("3000"),
                  trace_id=f"{i:016x}", submit_attempts=1)
            for i in range(1, 10_001)], batch_size=2000)
    with connection.cursor() as cur:
        cur.execute("""
            INSERT INTO order_events (order_id, event_type, source, payload, trace_id, reason_code, created_at)
            SELECT o.ids[1 + mod(g, array_length(o.ids, 1))],
                   (ARRAY['CREATED','SUBMITTING','ACCEPTED','FILL','CANCELED','REJECTED','SUBMIT_UNKNOWN',
                          'STATUS_REPAIRED'])[1 + mod(g, 8)],
                   (ARRAY['strategy','venue','reconciliation','system'])[1 + mod(g, 4)],
                   '{}'::jsonb, substr(md5(g::text), 1, 16), '', now() - (g || ' seconds')::interval
            FROM generate_series(1, %s) g, (SELECT array_agg(id) AS ids FROM orders) o""", [n])
        cur.execute("ANALYZE order_events")
    return time.monotonic() - t0


def run(stack: Any, quick: bool) -> dict[str, Any]:
    from django.conf import settings

    from bench.common import load_average
    from infra.devstack import _free_port
    from infra.redis import get_redis
    from syncer import selectors as syncer_selectors

    duration = 5.0 if quick else 30.0
    n_events = 100_000 if quick else 1_000_000
    prom = stack.scratch / "prometheus"
    prom.mkdir(exist_ok=True)
    port = _free_port()
    env = {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(prom), "LOG_LEVEL": "WARNING"}
    stop = threading.Event()
    beats = threading.Thread(target=_heartbeats, args=(stop,), daemon=True)
    beats.start()
    status_headers = {"Authorization": f"Bearer {BENCH_ADMIN_TOKEN}"}
    out: dict[str, Any] = {"gunicorn": "python -m gunicorn alphasniper_project.wsgi -c gunicorn.conf.py "
                                       "(2 workers x 4 threads)", "load_generator": "bench.loadgen (open loop)"}
    api = None
    try:
        time.sleep(0.2)                                   # the first heartbeats are written
        out["venue_snapshot"] = _venue_reported_healthy()
        out["crossings_counted"] = {"health": _counted("/health")}
        api = stack.gunicorn(port, env=env)
        out["health"] = _endpoint(port, "/health", duration)
        say(f"/health p99 {out['health']['latency_ms'].get('p99')} ms {out['health']['statuses']}")
        out["load_average_during_health"] = load_average()
        probe = urllib.request.Request(f"http://127.0.0.1:{port}/admin/status", headers=status_headers)
        try:
            code = urllib.request.urlopen(probe, timeout=5).status  # noqa: S310 - loopback
        except urllib.error.HTTPError as exc:
            code = exc.code
        if code == 404:
            out["admin_status"] = {"skipped": "GET /admin/status answers 404 (the admin API is not there yet)"}
        else:
            out["crossings_counted"]["admin_status"] = _counted("/admin/status", status_headers)
            out["admin_status"] = _endpoint(port, "/admin/status", duration, headers=status_headers)
            say(f"/admin/status p99 {out['admin_status']['latency_ms'].get('p99')} ms "
                f"{out['admin_status']['statuses']}")
        # The failure path, briefly and apart: the venue's health record gone -> 503 "venue".
        get_redis().delete(syncer_selectors.health_key(settings.VENUE.name))
        out["health_failure_path"] = {"label": "/health answering 503 (venue never reported); NOT health_p99_ms",
                                      **_endpoint(port, "/health", 2.0 if quick else 5.0)}
        say(f"/health failure path p99 {out['health_failure_path']['latency_ms'].get('p99')} ms "
            f"{out['health_failure_path']['statuses']}")
        say(f"inserting {n_events:,} order events")
        out["events_inserted"] = n_events
        out["insert_s"] = round(_insert_events(n_events), 1)
        timings = []
        url = f"http://127.0.0.1:{port}/metrics"
        urllib.request.urlopen(url, timeout=30).read()  # noqa: S310 - loopback, warm-up
        for _ in range(20):
            t0 = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=30).read()  # noqa: S310
            timings.append((time.perf_counter() - t0) * 1000)
        out["metrics"] = {"requests": 20, "latency_ms": summary_stats(timings), "bytes": len(body),
                          "has_events_metric": b"alphasniper_order_events" in body}
        out["metrics_peer"] = _metrics_select_ms(stack.env["DATABASE_URL"])
    finally:
        stop.set()
        if api is not None:
            stack.stop(api)
    return _result(out, stack.floors)


def _result(out: dict[str, Any], floors: dict[str, Any] | None) -> dict[str, Any]:
    status = out["admin_status"]
    health = out["health"]
    summary = {"health_p99_ms": health["latency_ms"].get("p99") if health["all_200"] else None,
               "admin_status_p99_ms": None if "skipped" in status else status["latency_ms"].get("p99"),
               "metrics_ms": out["metrics"]["latency_ms"]["p50"]}
    reference: dict[str, Any] = {
        "metrics_ms": peer_reference(summary["metrics_ms"], out["metrics_peer"]["latency_ms"]["p50"], unit="ms",
                                     basis="the same order_events rows read with one GROUP BY SELECT on a bare "
                                           "connection (median of 20)")}
    if floors is not None:
        reference["health_p99_ms"] = _crossing(out["crossings_counted"]["health"], "/health").reference(
            summary["health_p99_ms"], floors["floors"])
        if "admin_status" in out["crossings_counted"]:
            reference["admin_status_p99_ms"] = _crossing(
                out["crossings_counted"]["admin_status"], "/admin/status").reference(
                summary["admin_status_p99_ms"], floors["floors"])
    errors = []
    if not health["all_200"]:
        errors.append(f"/health answered {health['statuses']} ({health['error_count']} errors), not only 200: "
                      "the healthy path was not measured")
    return {"summary": summary, "reference": reference,
            **({"skipped": status["skipped"]} if "skipped" in status else {}),
            **({"error": "; ".join(errors)} if errors else {}),
            **out}
