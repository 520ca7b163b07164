"""Event append throughput: two writer processes recording fills through the lifecycle.

Each writer is its own process (``bench.workers.event_writer``) with its own PostgreSQL
connection, recording fills with distinct venue trade ids on its own 20 orders via
``order_record_fills``: lock the order row, look up the idempotency keys, INSERT the FILL events
with ``idempotency_key`` (unique in PostgreSQL), UPDATE the projection, COMMIT. Measured twice:
one transaction per fill (how a live fill arrives) and 50 fills of an order per transaction
(how fill sync and reconciliation deliver a page of trades); the summary key is the latter.
Both writers start together (a Redis go key). events/s = events added by
both / (last finish - first start). Afterwards each writer re-sends part of its fills, which
must add nothing (idempotency), and the DB count is checked.

Peer, same run, same PostgreSQL, same two processes and batch sizes: the same number of rows
INSERTed and COMMITted into a plain table on bare connections (``bench.workers.event_writer``
with ``bare``). The ratio events/s / bare rows/s is what the lifecycle's guarantees cost
relative to what the server and disk allow, and holds from one machine to the next far better
than events/s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

from bench.b_floors import peer_reference
from bench.common import ROOT, Target, say

NAME = "events"
TITLE = "order event append throughput, 2 writer processes, idempotency keys"
TARGETS = [Target("event_append_per_s", ">=", 5000, "events/s")]
WRITERS = 2
ORDERS_PER_WRITER = 20
BARE_TABLE = "bench_bare_events"


def _accepted_orders(n: int, tag: str) -> list[int]:
    from trading.exchanges.base import OrderType, Side, VenueOrder, VenueOrderStatus
    from trading.models import Order
    from trading.services.lifecycle import NewOrder, order_apply_venue_order, order_create, order_mark_submitting

    ids = []
    for i in range(n):
        order, _ = order_create(new=NewOrder(
            client_order_id=f"AS1-bench-ev{tag}{i}", venue="binance", strategy="bench", symbol="BTC/USDT",
            side=Order.Side.BUY, type=Order.Type.LIMIT, intent=Order.Intent.ENTRY, quantity=Decimal("1000000"),
            price=Decimal("30000.5"), trace_id=uuid.uuid4().hex[:16], reason_code="BENCH"))
        order_mark_submitting(order_id=order.pk)
        order_apply_venue_order(order_id=order.pk, source="venue", venue_order=VenueOrder(
            client_order_id=order.client_order_id, venue_order_id=f"v{order.pk}", symbol="BTC/USDT", side=Side.BUY,
            type=OrderType.LIMIT, status=VenueOrderStatus.OPEN, quantity=order.quantity,
            filled_quantity=Decimal(0), average_price=None, price=order.price, updated_at_ms=0))
        ids.append(order.pk)
    return ids


BATCHES = (1, 50)   # one transaction per fill (a live fill) / per page of an order's trades (sync, reconciliation)


def run(stack: Any, quick: bool) -> dict[str, Any]:
    runs: dict[int, dict[str, Any]] = {}
    bare: dict[int, dict[str, Any]] = {}
    for batch in BATCHES:           # each peer right after its figure: a load change hits both alike
        runs[batch] = _measure(stack, quick, batch)
        bare[batch] = _measure_bare(stack, quick, batch)
    best, best_bare = runs[max(BATCHES)], bare[max(BATCHES)]
    say(f"events/s {best['events_per_s']:,} vs bare inserts {best_bare['rows_per_s']:,} rows/s (batch {max(BATCHES)})")
    return {**best, "summary": {"event_append_per_s": best["events_per_s"]},
            "reference": {"event_append_per_s": peer_reference(
                best["events_per_s"], best_bare["rows_per_s"], unit="rows/s",
                basis=f"bare INSERT + COMMIT of the same rows into a plain table, {WRITERS} processes, "
                      f"{max(BATCHES)} rows per transaction, same PostgreSQL, same run")},
            "by_batch": {str(b): {**{k: r[k] for k in ("events_per_s", "wall_s", "consistent")},
                                  "bare_rows_per_s": bare[b]["rows_per_s"],
                                  "share_of_bare": round(r["events_per_s"] / bare[b]["rows_per_s"], 3)}
                         for b, r in runs.items()},
            "bare_peer": bare}


def _measure_bare(stack: Any, quick: bool, batch: int) -> dict[str, Any]:
    """The peer: what the same two processes get from PostgreSQL with nothing but INSERT + COMMIT."""
    from django.db import connection

    per_writer = 2000 if quick else 10000
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {BARE_TABLE}")
        cur.execute(f"CREATE TABLE {BARE_TABLE} (id bigserial PRIMARY KEY, order_id bigint NOT NULL, "
                    "event_type varchar(32) NOT NULL, source varchar(16) NOT NULL, payload jsonb NOT NULL, "
                    "idempotency_key varchar(128), created_at timestamptz NOT NULL DEFAULT now())")
    try:
        results = _writers(stack, [{"order_ids": list(range(1, ORDERS_PER_WRITER + 1)), "count": per_writer,
                                    "prefix": f"bare-w{w}", "batch": batch, "bare": True,
                                    "bare_table": BARE_TABLE} for w in range(WRITERS)])
        with connection.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {BARE_TABLE}")
            rows = cur.fetchone()[0]
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {BARE_TABLE}")
    wall = max(r["finished"] for r in results) - min(r["started"] for r in results)
    if rows != WRITERS * per_writer:
        raise RuntimeError(f"bare peer wrote {rows} rows, expected {WRITERS * per_writer}")
    return {"rows_per_s": round(rows / wall), "rows": rows, "batch": batch, "wall_s": round(wall, 3)}


def _writers(stack: Any, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one writer process per spec, release them together, collect their JSON lines."""
    from infra.redis import get_redis

    tag = uuid.uuid4().hex[:6]
    ready_key, go_key = f"bench:events:{tag}:ready", f"bench:events:{tag}:go"
    procs = []
    for spec in specs:
        spec = {**spec, "ready_key": ready_key, "go_key": go_key}
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.workers.event_writer", json.dumps(spec)],
                                      cwd=ROOT, env={**stack.env, "LOG_LEVEL": "WARNING"}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    redis = get_redis()
    deadline = time.monotonic() + 90
    while int(redis.get(ready_key) or 0) < len(specs):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError("a writer died before the start: " + " ".join(p.stderr.read()[-1500:] for p in procs
                                                                              if p.poll() is not None))
        time.sleep(0.02)
    redis.set(go_key, "1")
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"writer failed: {err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _measure(stack: Any, quick: bool, batch: int) -> dict[str, Any]:
    from trading.models import OrderEvent

    per_writer = 2000 if quick else 10000
    tag = uuid.uuid4().hex[:6]
    before = OrderEvent.objects.filter(event_type="FILL").count()
    results = _writers(stack, [{"order_ids": _accepted_orders(ORDERS_PER_WRITER, f"{tag}w{w}"), "count": per_writer,
                                "prefix": f"{tag}-w{w}", "duplicates": per_writer // 10, "batch": batch}
                               for w in range(WRITERS)])
    added = OrderEvent.objects.filter(event_type="FILL").count() - before
    total_new = sum(r["new"] for r in results)
    wall = max(r["finished"] for r in results) - min(r["started"] for r in results)
    per_s = total_new / wall
    dup_rate = sum(r["duplicates"] for r in results) / max(sum(r["duplicates_s"] for r in results) / WRITERS, 1e-9)
    return {
        "events_per_s": round(per_s), "batch": batch,
        "writers": WRITERS, "events_per_writer": per_writer, "orders_per_writer": ORDERS_PER_WRITER,
        "events_added": total_new, "fill_rows_in_db": added, "wall_s": round(wall, 3),
        "per_writer": [{"events_per_s": round(r["new"] / (r["finished"] - r["started"])),
                        "duplicates_sent": r["duplicates"], "duplicates_added": r["duplicates_added"]}
                       for r in results],
        "duplicate_check_per_s": round(dup_rate),
        "consistent": added == total_new == WRITERS * per_writer and all(r["duplicates_added"] == 0 for r in results),
    }
