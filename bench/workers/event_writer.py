"""One writer process of the event-append benchmark.

Spec (JSON): ``order_ids``, ``count``, ``prefix``, ``ready_key``, ``go_key``, ``batch``. Records
``count`` fills with distinct venue trade ids through ``trading.services.lifecycle.order_record_fills``
(one transaction per batch of an order's trades: row lock, one idempotency-key look-up, one
insert of the FILL events with their keys, one projection update), round-robin over its own
orders, then prints one JSON line with its timings. ``batch`` 1 is one transaction per fill.

With ``bare`` (the same-run peer): the same number of rows, ``batch`` per transaction, are
INSERTed into the plain table ``bare_table`` on a bare psycopg2 connection - no row lock, no
idempotency look-up, no projection update, no append-only trigger - what PostgreSQL alone costs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal


def main(raw: str) -> None:
    spec = json.loads(raw)
    if spec.get("bare"):
        bare(spec)
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alphasniper_project.settings")
    import django

    django.setup()
    from infra.redis import get_redis
    from trading.exchanges.base import Side, VenueTrade
    from trading.models import OrderEvent
    from trading.services.lifecycle import order_record_fills

    order_ids = spec["order_ids"]
    trades = [VenueTrade(trade_id=f"{spec['prefix']}-{i}", venue_order_id=f"v{order_ids[i % len(order_ids)]}",
                         client_order_id=None, symbol="BTC/USDT", side=Side.BUY, price=Decimal("30000.5"),
                         quantity=Decimal("0.00001"), fee=Decimal("0.00000001"), fee_asset="BTC",
                         timestamp_ms=1_700_000_000_000 + i, raw={"id": i})
              for i in range(spec["count"])]
    batch = int(spec.get("batch", 1))
    # Round-robin over the orders, ``batch`` consecutive trades of one order per transaction.
    by_order: dict[int, list] = {}
    for i, trade in enumerate(trades):
        by_order.setdefault(order_ids[i % len(order_ids)], []).append(trade)
    work = [(oid, ts[k:k + batch]) for k in range(0, max(len(t) for t in by_order.values()), batch)
            for oid, ts in by_order.items() if ts[k:k + batch]]
    _wait_for_go(get_redis(), spec)
    started, new = time.time(), 0
    for order_id, chunk in work:
        new += order_record_fills(order_id=order_id, trades=chunk, source=OrderEvent.Source.VENUE)
    finished = time.time()
    # Re-delivery: the same facts again must add nothing (measured separately, not in the rate).
    dup_n = min(len(trades), spec.get("duplicates", 0))
    dup_started, dup_new = time.time(), 0
    for i, trade in enumerate(trades[:dup_n]):
        dup_new += order_record_fills(order_id=order_ids[i % len(order_ids)], trades=[trade],
                                      source=OrderEvent.Source.VENUE)
    dup_finished = time.time()
    print(json.dumps({"batch": batch, "transactions": len(work), "started": started, "finished": finished,
                      "new": new, "count": len(trades),
                      "duplicates": dup_n, "duplicates_added": dup_new,
                      "duplicates_s": dup_finished - dup_started}), flush=True)


def _wait_for_go(redis, spec: dict) -> None:
    redis.incr(spec["ready_key"])
    deadline = time.monotonic() + 60
    while not redis.exists(spec["go_key"]):
        if time.monotonic() > deadline:
            raise SystemExit("never got the go signal")
        time.sleep(0.001)


def bare(spec: dict) -> None:
    import psycopg2
    import redis as redis_lib
    from psycopg2.extras import execute_values

    conn = psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=10)
    batch, count, table = int(spec["batch"]), int(spec["count"]), spec["bare_table"]
    rows = [(spec["order_ids"][i % len(spec["order_ids"])], "FILL", "venue",
             json.dumps({"trade_id": f"{spec['prefix']}-{i}", "price": "30000.5", "quantity": "0.00001"}),
             f"{spec['prefix']}-{i}") for i in range(count)]
    _wait_for_go(redis_lib.Redis.from_url(os.environ["REDIS_URL"]), spec)
    started = time.time()
    with conn.cursor() as cur:
        for k in range(0, count, batch):
            execute_values(cur, f"INSERT INTO {table} (order_id, event_type, source, payload, idempotency_key) "
                                "VALUES %s", rows[k:k + batch], page_size=batch)
            conn.commit()
    finished = time.time()
    conn.close()
    print(json.dumps({"batch": batch, "transactions": -(-count // batch), "started": started, "finished": finished,
                      "new": count, "count": count, "duplicates": 0, "duplicates_added": 0, "duplicates_s": 0}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
