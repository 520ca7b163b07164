"""The benchmark floors and the crossings that turn a figure into a ratio.

Real PostgreSQL, real Redis, the emulator in its own process (as ``make bench`` runs it). No
assertion on how fast anything is: only that every floor is measured, that the commit floor
really commits, and that the floors a path is said to cross are the ones its code crosses.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from bench import b_floors, b_signal_to_wire
from bench.b_floors import FLOORS, Crossing, count_round_trips, peer_reference
from bench.stack import Stack


def _database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}{':' + s['PASSWORD'] if s['PASSWORD'] else ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_every_floor_is_measured_as_a_distribution_on_the_real_servers(tmp_path, redis_client):
    import os

    from django.conf import settings

    stack = Stack(env={**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": settings.REDIS_URL},
                  scratch=tmp_path, pg_version="", redis_version="")
    try:
        measured = b_floors.measure(stack, quick=True)
    finally:
        stack.stop_all()

    floors = measured["floors"]
    assert set(floors) == set(FLOORS)
    for name in FLOORS:
        assert floors[name]["count"] == b_floors.QUICK_SAMPLES[name], name
        assert 0 < floors[name]["p50"] <= floors[name]["p99"] <= floors[name]["max"], name
    settings_seen = measured["postgres_settings"]
    assert settings_seen["fsync"] in ("on", "off") and settings_seen["synchronous_commit"]
    durable = settings_seen["fsync"] == "on" and settings_seen["synchronous_commit"] != "off"
    assert settings_seen["durable_commit"] is durable
    assert ("NOT DURABLE" in floors["pg_commit"]["what"]) is (not durable)
    # The commit floor's table is its own and is gone afterwards; the emulator process is stopped.
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [b_floors.COMMIT_TABLE])
        assert cur.fetchone()[0] is None
    assert stack.procs == []


@pytest.mark.django_db(transaction=True)
def test_round_trips_are_counted_per_request_and_per_thread(redis_client):
    import redis
    from django.conf import settings
    from django.contrib.auth.models import User

    other_thread_done = threading.Event()
    other_client = redis.Redis.from_url(settings.REDIS_URL)
    other_client.ping()
    redis_client.ping()                 # connections open: their set-up round trips are not in the block

    def someone_else() -> None:          # e.g. the bench's heartbeat writer, running meanwhile
        for _ in range(50):
            other_client.ping()
        other_thread_done.set()

    with count_round_trips() as counted:
        worker = threading.Thread(target=someone_else)
        worker.start()
        redis_client.set("bench:test:a", "1")
        pipe = redis_client.pipeline()
        for i in range(5):
            pipe.incr(f"bench:test:{i}")
        pipe.execute()                                  # five commands, one round trip
        User.objects.filter(username="nobody").exists()
        list(User.objects.all()[:1])
        worker.join()

    assert other_thread_done.is_set()
    assert counted.as_dict() == {"pg_statements": 2, "redis_round_trips": 2}
    # Outside the block nothing is counted any more (the wrapper is gone).
    redis_client.ping()
    assert counted.redis_round_trips == 2


@pytest.mark.django_db(transaction=True)
def test_signal_to_wire_floors_are_the_ones_its_claim_and_send_cross(redis_client):
    """The claim statements and the limiter's round trips declared in b_signal_to_wire are what
    the worker's code does for the bench's order; change the path and this names the count."""
    from trading.exchanges.ratelimit import shared_rate_limiter
    from trading.services import lifecycle
    from trading.services.orders import order_place

    with transaction.atomic():
        order, *_ = order_place(venue="binance", strategy="bench", symbol="BTC/USDT", side="buy", type="limit",
                                intent="entry", quantity=Decimal("0.001"), price=Decimal("20000"),
                                trace_id="bench-floors-1", tick_id="s2w-test-1", reason_code="BENCH")
    limiter = shared_rate_limiter("binance", "bench-test-key")
    limiter.acquire_request("POST", "/api/v3/order", 1)          # scripts loaded, as in a warm worker

    with count_round_trips() as claim:
        claimed = lifecycle.order_mark_submitting(order_id=order.pk)
    with count_round_trips() as send_budget:
        limiter.acquire_request("POST", "/api/v3/order", 1)

    assert claimed is not None and claimed.status == "submitted"
    assert claim.as_dict() == {"pg_statements": b_signal_to_wire.CLAIM_STATEMENTS, "redis_round_trips": 0}
    assert send_budget.as_dict() == {"pg_statements": 0, "redis_round_trips": b_signal_to_wire.LIMITER_CALLS}
    declared = b_signal_to_wire.CROSSINGS["signal_to_wire_p50_ms"].counts
    assert declared["pg_roundtrip"] == 1 + b_signal_to_wire.CLAIM_STATEMENTS
    assert declared["redis_rtt"] == b_signal_to_wire.BROKER_HOPS + b_signal_to_wire.LIMITER_CALLS


@pytest.mark.django_db(transaction=True)
def test_the_bench_stack_answers_health_on_its_healthy_path(redis_client, client):
    """What the api benchmark prepares (heartbeats as the processes write them, one real market
    snapshot on the paper venue) is what /health needs for a 200 - so health_p99_ms is the
    healthy path. Without the venue's record it is the 503 the bench reports apart."""
    from bench import b_api
    from infra import heartbeat
    from syncer import selectors

    for process in heartbeat.PROCESSES:
        heartbeat.record(process)
    redis_client.delete(selectors.health_key("paper"))
    assert client.get("/health").status_code == 503

    b_api._venue_reported_healthy()
    answer = client.get("/health")
    assert answer.status_code == 200, answer.json()
    counted = b_api._counted("/health")
    assert counted["pg_statements"] >= 1 and counted["redis_round_trips"] >= 1


def test_a_ratio_is_the_figure_over_the_floors_it_crosses_at_the_same_percentile():
    floors = {name: {"p50": 0.5, "p99": 2.0} for name in FLOORS}
    path = Crossing({"pg_commit": 1, "redis_rtt": 4, "http_rtt": 1}, pct="p99")
    assert path.reference(42.0, floors) == {"kind": "floor", "floor_ms": 12.0, "ratio": 3.5,
                                            "basis": "1 pg_commit + 4 redis_rtt + 1 http_rtt (floors at p99)"}
    in_seconds = Crossing({"http_rtt": 100}, pct="p50", unit_ms=1000)
    assert in_seconds.reference(0.1, floors)["ratio"] == 2.0
    assert peer_reference(5000, 20000, unit="rows/s", basis="bare")["ratio"] == 0.25
    assert path.reference(None, floors)["ratio"] is None
    with pytest.raises(ValueError, match="unknown floor"):
        Crossing({"disk_seek": 1})
