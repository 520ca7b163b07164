"""Reconciliation of 10,000 orders over 50 symbols: venue requests per symbol and wall time.

Setup (fast, and consistent with the lifecycle):

* the Binance emulator runs in this process (``start_emulator``) so its book can be seeded
  directly: per symbol 200 orders of ours (``AS1-`` client ids), 90 % market buys that filled at
  once (one trade each) and 10 % limit buys resting below the market; creation times are spread
  over the last 23 h (the emulator clock is shifted while seeding), so trades fall inside
  reconciliation's 24 h first-pass look-back;
* PostgreSQL gets the same 10,000 orders and the events the lifecycle writes for them
  (CREATED, SUBMITTING, ACCEPTED, FILL with the venue trade id as idempotency key), bulk-inserted
  with ``execute_values`` - filled orders ``filled``, resting ones ``accepted``, venue ids set.

Then one ``reconcile(gateway=BinanceGateway(real ccxt -> HTTP -> emulator), symbols=<the 50>)``
pass is timed three times: the full pass a worker runs at start (no trade cursor in Redis, 24 h
look-back) - its wall time is ``reconcile_10k_s``; the light pass beat runs every minute - its
``venue_requests`` / symbols is ``reconcile_requests_per_symbol``; and the full pass beat runs
every ten minutes (cursor set). The emulator's request log is counted as a cross-check. The DB is in
agreement with the venue, so a correct pass changes nothing (checked).

Floor of ``reconcile_10k_s``: the venue requests of that pass (the emulator's log), each one
loopback HTTP round trip plus one ccxt build and sign, at p50. It is the venue's share only;
the rest is reading and comparing 10,000 orders in PostgreSQL and Python. The requests per
symbol are counts, the same on any machine.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from bench.b_floors import Crossing
from bench.common import Target, say
from bench.stack import EMULATOR_KEY, EMULATOR_SECRET

NAME = "reconcile"
TITLE = "reconcile pass over 10k orders / 50 symbols against the emulator"
TARGETS = [Target("reconcile_requests_per_symbol", "<=", 1.2, "req/symbol"),
           Target("reconcile_10k_s", "<=", 10, "s")]
N_SYMBOLS = 50
OPEN_SHARE = 10           # every 10th order rests open
DAY_MS = 23 * 3600 * 1000
NEEDS_FLOORS = True


def clean_orders() -> None:
    """Empty the order tables of this run's own database (order_events is append-only: a
    maintenance purge needs the triggers suspended, as the test suite's flush does)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("TRUNCATE order_events, orders, strategy_decisions, paper_trades, paper_orders RESTART IDENTITY "
                    "CASCADE")
        cur.execute("SET session_replication_role = DEFAULT")


def _seed(emulator, symbols: list[str], per_symbol: int) -> tuple[list[tuple], list[tuple]]:
    """Place the orders on the emulator; return (order rows, event rows) for PostgreSQL."""
    from trading.client_ids import make_client_order_id

    book = emulator.book
    now = int(time.time() * 1000)
    orders, events = [], []
    qty = Decimal("0.1")
    for j in range(per_symbol):
        emulator.clock.offset_ms = -DAY_MS + j * (DAY_MS // per_symbol)
        created_ms = now + emulator.clock.offset_ms
        for symbol in symbols:
            cid = make_client_order_id(strategy="bench", symbol=symbol, tick_id=f"rc-{j}", intent="entry")
            resting = j % OPEN_SHARE == 0
            vo = book.place(symbol=symbol, side="buy", type="limit" if resting else "market", qty=qty,
                            quote_qty=None, price=Decimal("50.00") if resting else None, client_id=cid,
                            time_in_force="GTC")
            trace = uuid.uuid4().hex[:16]
            fill = vo.fills[0] if vo.fills else None
            status = "filled" if fill else "accepted"
            orders.append((cid, "binance", str(vo.id), "bench", symbol, "buy", "limit" if resting else "market",
                           "entry", qty, Decimal("50.00") if resting else None, status,
                           fill.qty if fill else Decimal(0), fill.qty * fill.price if fill else Decimal(0),
                           fill.fee * fill.price if fill else Decimal(0), f"rc-{j}", trace, "BENCH", 1, "", created_ms))
            created = {"quantity": "0.1", "side": "buy", "type": vo.type, "intent": "entry"}
            evs = [("CREATED", "strategy", created, None),
                   ("SUBMITTING", "system", {"from": "pending", "to": "submitted", "attempt": 1}, None),
                   ("ACCEPTED", "venue", {"from": "submitted", "to": "accepted", "venue_order_id": str(vo.id),
                                          "venue_status": "open"}, None)]
            if fill:
                evs.append(("FILL", "venue", {"from": "accepted", "to": "filled", "trade_id": str(fill.id),
                                              "price": str(fill.price), "quantity": str(fill.qty),
                                              "fee": str(fill.fee), "fee_asset": fill.fee_asset,
                                              "timestamp_ms": fill.time_ms, "filled_quantity": str(fill.qty)},
                            f"binance:{symbol}:fill:{fill.id}"))
            events.append((cid, trace, created_ms, evs))
    emulator.clock.offset_ms = 0
    return orders, events


def _bulk_insert(orders: list[tuple], events: list[tuple]) -> None:
    import json

    from django.db import connection
    from psycopg2.extras import execute_values

    with connection.cursor() as cur:
        raw = cur.cursor
        execute_values(raw, """
            INSERT INTO orders (client_order_id, venue, venue_order_id, strategy, symbol, side, type, intent, quantity,
                price, status, filled_quantity, filled_quote, fee_quote, tick_id, trace_id, reason_code,
                submit_attempts, last_error, created_at, updated_at, venue_filled_quantity, fee_unvalued)
            SELECT v.cid, v.venue, v.vid, v.strategy, v.symbol, v.side, v.type, v.intent, v.qty::numeric,
                v.price::numeric, v.status, v.fq::numeric, v.fquote::numeric, v.fee::numeric, v.tick, v.trace,
                v.reason, v.attempts, v.err, to_timestamp(v.created / 1000.0), to_timestamp(v.created / 1000.0),
                v.fq::numeric, '{}'::jsonb
            FROM (VALUES %s) AS v(cid, venue, vid, strategy, symbol, side, type, intent, qty, price, status, fq,
                fquote, fee, tick, trace, reason, attempts, err, created)""",
                       [tuple(str(x) if isinstance(x, Decimal) else x for x in row) for row in orders], page_size=2000)
        cur.execute("SELECT client_order_id, id FROM orders WHERE strategy = 'bench'")
        ids = dict(cur.fetchall())
        rows = [(ids[cid], et, src, json.dumps(payload), trace, "", key, created_ms)
                for cid, trace, created_ms, evs in events for et, src, payload, key in evs]
        execute_values(raw, """
            INSERT INTO order_events (order_id, event_type, source, payload, trace_id, reason_code, idempotency_key,
                created_at)
            SELECT v.oid, v.et, v.src, v.payload::jsonb, v.trace, v.reason, v.key, to_timestamp(v.created / 1000.0)
            FROM (VALUES %s) AS v(oid, et, src, payload, trace, reason, key, created)""", rows, page_size=5000)
        cur.execute("ANALYZE orders")
        cur.execute("ANALYZE order_events")


def run(stack: Any, quick: bool) -> dict[str, Any]:
    from emulator import EmulatorControl, start_emulator
    from infra.redis import get_redis
    from trading.exchanges.binance import BinanceGateway
    from trading.models import Order, OrderEvent
    from trading.services.reconciliation import reconcile

    per_symbol = 40 if quick else 200
    symbols = [f"R{i:02d}X/USDT" for i in range(N_SYMBOLS)]
    clean_orders()
    for k in get_redis().scan_iter("alphasniper:reconcile:*"):
        get_redis().delete(k)
    handle = start_emulator("binance", port=0, rate_limits=False, symbols=symbols,
                            balances={"USDT": "1000000000"})
    try:
        t0 = time.monotonic()
        orders, events = _seed(handle.emulator, symbols, per_symbol)
        _bulk_insert(orders, events)
        say(f"seeded {len(orders)} orders ({sum(len(e[3]) for e in events)} events) in {time.monotonic() - t0:.1f}s")
        ctl = EmulatorControl(handle.base_url)
        gateway = BinanceGateway(api_key=EMULATOR_KEY, api_secret=EMULATOR_SECRET, base_url=handle.base_url)
        gateway.load_markets()
        events_before = OrderEvent.objects.count()
        passes = []
        for label, full in (("full (worker start: no cursor, 24 h look-back)", True),
                            ("periodic (every minute)", False), ("full again (every 10 min, cursor set)", True)):
            ctl.clear_requests()
            t = time.perf_counter()
            report = reconcile(gateway=gateway, symbols=symbols, full=full)
            wall = time.perf_counter() - t
            log = ctl.requests()
            by_endpoint: dict[str, int] = {}
            for r in log:
                by_endpoint[f"{r['method']} {r['path']}"] = by_endpoint.get(f"{r['method']} {r['path']}", 0) + 1
            passes.append({"pass": label, "wall_s": round(wall, 3), "venue_requests": report.venue_requests,
                           "emulator_requests": len(log), "requests_by_endpoint": by_endpoint,
                           "changed": report.changed, "errors": report.errors, "drift": report.drift,
                           "fills_added": report.fills_added, "imported": len(report.imported),
                           "statuses_repaired": len(report.statuses_repaired)})
        first, periodic = passes[0], passes[1]
        reference = {}
        if stack.floors is not None:
            venue = Crossing({"http_rtt": first["emulator_requests"], "ccxt_sign": first["emulator_requests"]},
                             pct="p50", unit_ms=1000,
                             note="the venue requests of the pass only; the emulator runs in this process here")
            reference["reconcile_10k_s"] = venue.reference(first["wall_s"], stack.floors["floors"])
        return {
            "reference": reference,
            # Per pass that repeats (every minute); the start-up full pass is reported beside it.
            "summary": {"reconcile_requests_per_symbol": round(periodic["venue_requests"] / N_SYMBOLS, 3),
                        "reconcile_full_requests_per_symbol": round(first["venue_requests"] / N_SYMBOLS, 3),
                        "reconcile_10k_s": first["wall_s"]},
            "orders": Order.objects.count(), "symbols": N_SYMBOLS, "orders_per_symbol": per_symbol,
            "open_orders": sum(1 for o in orders if o[10] == "accepted"), "passes": passes,
            "events_written_by_reconcile": OrderEvent.objects.count() - events_before,
        }
    finally:
        handle.stop()
