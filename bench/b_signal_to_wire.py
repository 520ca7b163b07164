"""Signal-to-wire: decision committed -> order request on the venue's wire.

Path measured (all real): this process commits ``order_create`` (Order PENDING + CREATED in one
transaction, exactly as the strategy tick does) -> on commit ``submit_order.delay`` to Redis ->
a Celery worker process (queue ``orders``, prefork, 2 children: the strategy-engine command of
``infra.devstack``) -> ``order_submit`` (claim PENDING -> SUBMITTED in PostgreSQL, the shared
Redis rate limiter) -> real ccxt -> HTTP -> the Binance emulator, in its own process with its
rate limits off.

Start stamp: ``time.time()`` in an ``on_commit`` callback registered *before* ``order_create``,
so it runs right after COMMIT returns and before the enqueue. End stamp: the emulator's request
log ``time_ms`` for ``POST /api/v3/order`` with that ``newClientOrderId`` (same host clock; the
log has 1 ms resolution and truncates, so each sample is up to 1 ms low).

Pacing: orders are committed at a fixed rate below the account's order budget (Binance: 100
orders / 10 s, of which our shared limiter uses 90 %), because a faster stream would measure the
limiter's queue, not the path. Orders are limit buys below the market (they rest, nothing
fills), so the worker's post-send work is the acceptance only; a market fill adds a myTrades read
(weight 20) after the send, which does not change the send but would cap the sustained rate at
~4 orders/s under the 6,000 weight/min budget.
"""

from __future__ import annotations

import os
import time
import uuid
from decimal import Decimal
from typing import Any

from bench.b_floors import Crossing
from bench.common import Target, say, summary_stats
from bench.stack import EMULATOR_KEY, EMULATOR_SECRET

NAME = "signal_to_wire"
TITLE = "decision commit -> order request at the venue, through Celery + ccxt"
TARGETS = [Target("signal_to_wire_p50_ms", "<=", 5, "ms"), Target("signal_to_wire_p99_ms", "<=", 25, "ms")]
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
PRICE = {"BTC/USDT": Decimal("20000.00"), "ETH/USDT": Decimal("1500.00"), "SOL/USDT": Decimal("80.00")}
QTY = {"BTC/USDT": Decimal("0.001"), "ETH/USDT": Decimal("0.01"), "SOL/USDT": Decimal("0.1")}
# The floors one order crosses between the start stamp (after the decision's COMMIT) and the end
# stamp (its request arriving at the emulator); bench/README.md "Floors" explains each.
# tests/bench/test_floors.py counts the claim's statements and the limiter's round trips on the
# real code; the broker hops were read off Redis MONITOR for one order (kombu's Redis transport).
CLAIM_STATEMENTS = 5    # lock the order row, the halt's shared advisory lock, read the halt, UPDATE, INSERT SUBMITTING
BROKER_HOPS = 4         # LPUSH; the waiting worker's BRPOP answer; unacked bookkeeping (MULTI/EXEC); task-received
LIMITER_CALLS = 1       # the shared rate limiter's acquire: one EVALSHA
PATH_FLOORS = {"pg_commit": 1,                          # the claim's COMMIT (WAL flush)
               "pg_roundtrip": 1 + CLAIM_STATEMENTS,    # its BEGIN and statements
               "redis_rtt": BROKER_HOPS + LIMITER_CALLS,
               "http_rtt": 1,                           # the request leg (the end stamp is its arrival)
               "ccxt_sign": 1}
CROSSINGS = {"signal_to_wire_p50_ms": Crossing(PATH_FLOORS, pct="p50"),
             "signal_to_wire_p99_ms": Crossing(PATH_FLOORS, pct="p99")}
RATE_PER_S = 7.5          # < 90 orders per 10.75 s, the limiter's orders_10s budget with its guard
WARMUP = 15


def _commit_order(i: int, run_id: str, stamps: dict[str, float]) -> str:
    from django.db import transaction

    from trading.client_ids import make_client_order_id
    from trading.models import Order
    from trading.services.orders import order_place

    symbol = SYMBOLS[i % len(SYMBOLS)]
    tick_id = f"s2w-{run_id}-{i}"
    cid = make_client_order_id(strategy="bench", symbol=symbol, tick_id=tick_id, intent="entry")
    with transaction.atomic():
        # Registered first, so it runs first after COMMIT (before order_place's enqueue).
        transaction.on_commit(lambda: stamps.__setitem__(cid, time.time() * 1000))
        order_place(venue="binance", strategy="bench", symbol=symbol, side=Order.Side.BUY, type=Order.Type.LIMIT,
                    intent=Order.Intent.ENTRY, quantity=QTY[symbol], price=PRICE[symbol],
                    trace_id=uuid.uuid4().hex[:16], tick_id=tick_id, reason_code="BENCH")
    return cid


def run(stack: Any, quick: bool) -> dict[str, Any]:
    from emulator import EmulatorControl
    from trading.models import Order, OrderStatus

    n_orders = 200 if quick else 1000
    # The venue lists the whole default universe: workers refuse to start on a venue that does not.
    from trading.config_schema import config_defaults

    listed = sorted(set(SYMBOLS) | set(config_defaults().universe))
    emu_proc, base_url = stack.emulator("binance", symbols=listed, rate_limits=False)
    ctl = EmulatorControl(base_url)
    ctl.set_balances({"USDT": "100000000"})
    env = {**stack.env, "EXCHANGE": "binance", "BINANCE_API_KEY": EMULATOR_KEY,
           "BINANCE_API_SECRET": EMULATOR_SECRET, "BINANCE_BASE_URL": base_url}
    # BENCH_CELERY_APP / BENCH_PROBE_APP: try a candidate fix (a module exposing ``app``) without editing the
    # repo; see README "What-if runs". Unset, the worker is the unmodified alphasniper_project app.
    worker = stack.celery_worker("strategy-engine-orders", "orders", concurrency=2, env=env,
                                 app=os.environ.get("BENCH_CELERY_APP", "alphasniper_project"))
    run_id = uuid.uuid4().hex[:8]
    stamps: dict[str, float] = {}
    # Warm-up: each pool child loads markets (exchangeInfo) and opens its connections once.
    warm = [_commit_order(i, run_id + "w", stamps) for i in range(WARMUP)]
    _wait_sent(ctl, set(warm), timeout=60)
    ctl.clear_requests()
    stamps.clear()

    say(f"committing {n_orders} orders at {RATE_PER_S}/s")
    interval = 1 / RATE_PER_S
    start = time.monotonic()
    cids = []
    for i in range(n_orders):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        cids.append(_commit_order(i, run_id, stamps))
    wire = _wait_sent(ctl, set(cids), timeout=120)
    latencies = [wire[c] - stamps[c] for c in cids if c in wire and c in stamps]
    statuses = dict(Order.objects.filter(client_order_id__in=cids).values_list("status").order_by()
                    .annotate(n=__import__("django.db.models", fromlist=["Count"]).Count("id")))
    requests = ctl.requests()
    other = {}
    for r in requests:
        k = f"{r['method']} {r['path']}"
        other[k] = other.get(k, 0) + 1
    stack.stop(worker)
    stats = summary_stats(latencies)
    breakdown = _breakdown_pass(stack, env, ctl, run_id, n=60 if quick else 200)
    stack.stop(emu_proc)
    return {
        "summary": {"signal_to_wire_p50_ms": stats.get("p50"), "signal_to_wire_p99_ms": stats.get("p99")},
        "orders": n_orders, "reached_wire": len(latencies), "rate_per_s": RATE_PER_S,
        "latency_ms": stats, "final_statuses": statuses, "venue_requests_by_endpoint": other,
        "not_accepted": sum(v for k, v in statuses.items() if k != OrderStatus.ACCEPTED),
        "worker_app": os.environ.get("BENCH_CELERY_APP", "alphasniper_project"),
        "worker": "celery worker -Q orders --concurrency 2 (prefork), EXCHANGE=binance, real ccxt, shared limiter",
        "breakdown": breakdown,
        "clock_note": "emulator time_ms is integer ms (truncated): samples are up to 1 ms low",
    }


def _wait_sent(ctl, cids: set[str], *, timeout: float) -> dict[str, float]:
    """client id -> emulator arrival time (ms) for POST /api/v3/order, once all arrived (or timeout)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        for r in ctl.requests(path="/api/v3/order", method="POST"):
            cid = r["params"].get("newClientOrderId")
            if cid in cids and cid not in seen:
                seen[cid] = float(r["time_ms"])
        if len(seen) >= len(cids):
            break
        time.sleep(0.5)
    return seen


SEGMENTS = [("commit->received", "commit", "received"), ("received->prerun", "received", "prerun"),
            ("prerun->claimed", "prerun", "claimed"), ("claimed->acquired", "claimed", "acquired"),
            ("acquired->wire", "acquired", "wire"), ("commit->wire", "commit", "wire")]


def _breakdown_pass(stack: Any, env: dict[str, str], ctl, run_id: str, *, n: int) -> dict[str, Any]:
    """The same stream through a worker running ``bench.probe`` (the real app + timestamps)."""
    from infra.redis import get_redis
    from trading.models import Order

    worker = stack.celery_worker("strategy-engine-probe", "orders", concurrency=2, env=env,
                                 app=os.environ.get("BENCH_PROBE_APP", "bench.probe"))
    stamps: dict[str, float] = {}
    warm = [_commit_order(i, run_id + "pw", stamps) for i in range(WARMUP)]
    _wait_sent(ctl, set(warm), timeout=60)
    ctl.clear_requests()
    stamps.clear()
    start, cids = time.monotonic(), []
    for i in range(n):
        delay = start + i / RATE_PER_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        cids.append(_commit_order(i, run_id + "p", stamps))
    wire = _wait_sent(ctl, set(cids), timeout=120)
    time.sleep(1.0)
    ids = dict(Order.objects.filter(client_order_id__in=cids).values_list("client_order_id", "pk"))
    redis = get_redis()
    segments: dict[str, list[float]] = {name: [] for name, _, _ in SEGMENTS}
    for cid in cids:
        marks = {k: float(v) for k, v in redis.hgetall(f"bench:probe:{ids.get(cid)}").items()}
        marks.update({"commit": stamps.get(cid), "wire": wire.get(cid)})
        for name, a, b in SEGMENTS:
            if marks.get(a) is not None and marks.get(b) is not None:
                segments[name].append(marks[b] - marks[a])
    stack.stop(worker)
    return {"orders": n, "segments_ms": {k: summary_stats(v) for k, v in segments.items()},
            "note": "second pass with `celery -A bench.probe` (same app, signal handlers + wrappers that stamp "
                    "times); received = worker main process got the message, prerun = pool child starts the task, "
                    "claimed = PENDING->SUBMITTED committed, acquired = shared rate limiter granted, wire = "
                    "emulator log time (1 ms resolution)"}
