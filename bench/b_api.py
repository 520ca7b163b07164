"""API latency: ``/health`` and ``GET /admin/status`` at a fixed 200 requests/s, and ``/metrics``
with 1 M order events in PostgreSQL.

gunicorn is started exactly as ``infra.devstack.processes()["api"]`` does (gunicorn.conf.py: 2
workers x 4 threads, preload, PROMETHEUS_MULTIPROC_DIR set). Heartbeats of beat / data-syncer /
strategy-engine are written to Redis meanwhile so that ``/health`` answers 200 (its full work:
database, Redis and broker checks, heartbeat ages). Load: ``bench.loadgen`` (open loop, 200 req/s,
keep-alive, latency from the scheduled send time) for 30 s per endpoint after a 2 s warm-up.

``/metrics``: 1 M ``order_events`` rows are added with one ``INSERT ... SELECT generate_series``
(spread over the orders present, 8 event types x 4 sources), then ANALYZE; the endpoint is
fetched 20 times in a row after one warm-up; ``metrics_ms`` is the median (p90 / max in the file).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any

from bench.common import Target, say, summary_stats
from bench.loadgen import run_load
from bench.stack import BENCH_ADMIN_TOKEN

NAME = "api"
TITLE = "/health and /admin/status at 200 req/s; /metrics with 1M events"
TARGETS = [Target("health_p99_ms", "<=", 20, "ms"), Target("admin_status_p99_ms", "<=", 20, "ms"),
           Target("metrics_ms", "<=", 100, "ms")]
RATE = 200


def _heartbeats(stop: threading.Event) -> None:
    from infra import heartbeat

    while not stop.is_set():
        for process in heartbeat.PROCESSES:
            heartbeat.record(process)
        stop.wait(5)


def _endpoint(port: int, path: str, duration: float, headers: dict[str, str] | None = None) -> dict[str, Any]:
    run_load("127.0.0.1", port, path, rate=RATE, duration_s=2, headers=headers)          # warm-up
    res = run_load("127.0.0.1", port, path, rate=RATE, duration_s=duration, headers=headers)
    return {"path": path, "rate_per_s": RATE, "duration_s": duration, "sent": res.sent,
            "statuses": res.statuses, "errors": res.errors[:10], "error_count": len(res.errors),
            "generator_late_sends": res.late_sends, "latency_ms": summary_stats(res.latencies_ms)}


def _insert_events(n: int) -> float:
    from django.db import connection

    t0 = time.monotonic()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        if cur.fetchone()[0] == 0:
            cur.execute("""
                INSERT INTO orders (client_order_id, venue, strategy, symbol, side, type, intent, quantity, status,
                    filled_quantity, filled_quote, fee_quote, tick_id, trace_id, reason_code, submit_attempts,
                    last_error, created_at, updated_at)
                SELECT 'AS1-bench-m' || g, 'binance', 'bench', 'BTC/USDT', 'buy', 'market', 'entry', 0.1, 'filled',
                    0.1, 3000, 0, '', md5(g::text), '', 1, '', now(), now() FROM generate_series(1, 10000) g""")
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
    from bench.common import load_average
    from infra.devstack import _free_port

    duration = 5.0 if quick else 30.0
    n_events = 100_000 if quick else 1_000_000
    prom = stack.scratch / "prometheus"
    prom.mkdir(exist_ok=True)
    port = _free_port()
    env = {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(prom), "LOG_LEVEL": "WARNING"}
    stop = threading.Event()
    beats = threading.Thread(target=_heartbeats, args=(stop,), daemon=True)
    beats.start()
    api = stack.gunicorn(port, env=env)
    out: dict[str, Any] = {"gunicorn": "python -m gunicorn alphasniper_project.wsgi -c gunicorn.conf.py "
                                       "(2 workers x 4 threads)", "load_generator": "bench.loadgen (open loop)"}
    try:
        out["health"] = _endpoint(port, "/health", duration)
        say(f"/health p99 {out['health']['latency_ms'].get('p99')} ms {out['health']['statuses']}")
        out["load_average_during_health"] = load_average()
        status_headers = {"Authorization": f"Bearer {BENCH_ADMIN_TOKEN}"}
        probe = urllib.request.Request(f"http://127.0.0.1:{port}/admin/status", headers=status_headers)
        try:
            code = urllib.request.urlopen(probe, timeout=5).status  # noqa: S310 - loopback
        except urllib.error.HTTPError as exc:
            code = exc.code
        if code == 404:
            out["admin_status"] = {"skipped": "GET /admin/status answers 404 (the admin API is not there yet)"}
        else:
            out["admin_status"] = _endpoint(port, "/admin/status", duration, headers=status_headers)
            say(f"/admin/status p99 {out['admin_status']['latency_ms'].get('p99')} ms "
                f"{out['admin_status']['statuses']}")
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
    finally:
        stop.set()
        stack.stop(api)
    status = out["admin_status"]
    return {
        "summary": {"health_p99_ms": out["health"]["latency_ms"].get("p99"),
                    "admin_status_p99_ms": None if "skipped" in status else status["latency_ms"].get("p99"),
                    "metrics_ms": out["metrics"]["latency_ms"]["p50"]},
        **({"skipped": status["skipped"]} if "skipped" in status else {}),
        **out,
    }
