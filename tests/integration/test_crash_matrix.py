"""Kill -9 a real Celery worker at each step of the submit path, restart it, and check that
the system converges: exactly one venue order per client id, a complete event stream, and
our position equal to the venue's (ARCHITECTURE invariants 1-4).

Each case runs a real worker process (``--pool solo``, so the task runs in the process that
dies) against the test PostgreSQL and Redis, and a real venue: the paper venue, or real ccxt
against the Binance / Bybit emulator. The worker SIGKILLs itself at the chosen point
(``infra.faults.crash_point``); the restarted worker recovers through what runs at every
worker start — the sweeper and reconciliation — with no help from the test beyond letting
time pass (the order's ``updated_at`` is aged instead of sleeping 30 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from alphasniper_project.celery import app
from emulator import EmulatorControl, start_emulator
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
from infra.faults import POINTS
from tests.trading.factories import new_order
from trading.models import TERMINAL_STATUSES, OrderEvent, OrderStatus, PaperBalance, PaperOrder
from trading.services.lifecycle import order_create
from trading.tasks import submit_order

ROOT = Path(__file__).resolve().parents[2]
MATRIX = Path(os.environ.get("ALPHASNIPER_DATA_DIR", ROOT / ".data")) / "test" / "crash-matrix.jsonl"
VENUES = ("paper", "binance", "bybit")

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def emulators():
    from trading.config_schema import config_defaults

    universe = list(config_defaults().universe)
    handles = {venue: start_emulator(venue, port=0, rate_limits=False, symbols=universe)
               for venue in ("binance", "bybit")}
    yield handles
    for handle in handles.values():
        handle.stop()


def _worker_env(venue: str, emulators, crash_at: str | None, marker: Path,
                time_scale: dict[str, str] | None = None) -> dict[str, str]:
    from django.conf import settings

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "EXCHANGE": venue,
        "ALPHASNIPER_CRASH_MARKER": str(marker),
        "LOG_FORMAT": "text",
        **(time_scale or {}),
    }
    env.pop("ALPHASNIPER_CRASH_AT", None)
    if crash_at:
        env["ALPHASNIPER_CRASH_AT"] = crash_at
    if venue != "paper":
        prefix = venue.upper()
        env.update({f"{prefix}_API_KEY": DEFAULT_API_KEY, f"{prefix}_API_SECRET": DEFAULT_API_SECRET,
                    f"{prefix}_BASE_URL": emulators[venue].base_url})
    return env


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "alphasniper_project", "worker", "--pool", "solo",
             "-Q", "orders,sync", "-n", f"crash-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "INFO",
             "--without-heartbeat", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _venue_orders(venue: str, emulators, client_order_id: str) -> int:
    if venue == "paper":
        return PaperOrder.objects.filter(client_order_id=client_order_id).count()
    return len(EmulatorControl(emulators[venue].base_url).orders(client_id=client_order_id))


def _venue_base_holding(venue: str, emulators) -> Decimal:
    if venue == "paper":
        row = PaperBalance.objects.filter(asset="BTC").first()
        return row.free + row.locked if row else Decimal(0)
    balances = EmulatorControl(emulators[venue].base_url).balances()
    btc = balances.get("BTC", {"free": "0", "locked": "0"})
    return Decimal(btc["free"]) + Decimal(btc["locked"])


def _record(row: dict) -> None:
    MATRIX.parent.mkdir(parents=True, exist_ok=True)
    with MATRIX.open("a") as out:
        out.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize("crash_at", POINTS)
def test_kill_at_every_step_converges_to_one_order(venue, crash_at, emulators, tmp_path, _isolated_redis, redis_client):
    # redis_client: every case starts from an empty Redis (no rate-limit back-off or ban left by another test).
    if venue != "paper":
        EmulatorControl(emulators[venue].base_url).reset()
    assert not connection.in_atomic_block, "the worker could not see our writes from inside a transaction"
    holding_before = _venue_base_holding(venue, emulators)
    order, _ = order_create(new=new_order(venue=venue, tick=f"crash-{crash_at}"))
    marker, log = tmp_path / "crashed", tmp_path / "worker.log"

    # 1. A worker takes the submit task and dies at the crash point.
    worker = _start_worker(_worker_env(venue, emulators, crash_at, marker), log)
    with app.connection_for_write(_isolated_redis) as conn:
        submit_order.apply_async((order.pk,), connection=conn)
    try:
        assert worker.wait(timeout=60) == -9, log.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"worker never reached {crash_at}:\n{log.read_text()[-3000:]}")
    assert marker.exists()
    order.refresh_from_db()
    state_after_crash = order.status

    # 2. The crash left a "submitted" order that no live send owns. Its age is database time and
    # cannot be faked, so the restarted worker runs with the order path's windows scaled down
    # (safe here: the only sender is dead) ...
    scaled = {"ORDER_STALE_SUBMITTED_S": "1", "ORDER_RESEND_GRACE_S": "1"}
    # 3. ... and a worker starts again; what runs at every start must repair everything.
    worker = _start_worker(_worker_env(venue, emulators, None, marker, scaled), log)
    try:
        deadline = time.monotonic() + 180     # generous: on a loaded machine its full pass runs slowly
        while time.monotonic() < deadline:
            order.refresh_from_db()
            if order.status in TERMINAL_STATUSES and order.filled_quantity == order.quantity:
                break
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    venue_orders = _venue_orders(venue, emulators, order.client_order_id)
    events = list(OrderEvent.objects.filter(order=order).order_by("id").values_list("event_type", flat=True))
    fills = events.count("FILL")
    holding_delta = _venue_base_holding(venue, emulators) - holding_before
    # Binance and Bybit charge a buy's fee in the asset bought: our position is net of it.
    base_fees = sum((Decimal(e.payload["fee"]) for e in OrderEvent.objects.filter(order=order, event_type="FILL")
                     if e.payload.get("fee_asset") == "BTC"), Decimal(0))
    position = order.filled_quantity - base_fees
    _record({"venue": venue, "kill_point": crash_at, "state_after_crash": state_after_crash,
             "final_status": order.status, "venue_orders": venue_orders, "duplicate_orders": venue_orders - 1,
             "fill_events": fills, "lost_events": int(fills != 1 or "CREATED" not in events),
             "position_matches_venue": position == holding_delta})

    assert order.status == OrderStatus.FILLED, f"{events}\n{log.read_text()[-3000:]}"
    assert venue_orders == 1
    assert events[0] == "CREATED" and "SUBMITTING" in events and fills == 1
    assert order.filled_quantity == Decimal("0.01")
    assert position == holding_delta
