"""One intent, one exchange order — on paper, Binance and Bybit alike (invariants 1 and 2)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from tests.trading.factories import create
from trading.models import Order, OrderEvent, OrderStatus
from trading.services.submission import order_resolve, order_submit

NO_GRACE = timedelta(0)


def event_types(order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).order_by("id").values_list("event_type", flat=True))


def test_market_buy_is_sent_once_and_its_fill_recorded(venue):
    order = create(venue=venue.name, quantity="0.01")
    order = order_submit(order_id=order.pk, gateway=venue.gateway)
    assert order.status == OrderStatus.FILLED
    assert order.filled_quantity == Decimal("0.01")
    assert venue.orders_with_client_id(order.client_order_id) == 1
    assert event_types(order) == ["CREATED", "SUBMITTING", "ACCEPTED", "FILL"]
    fill = OrderEvent.objects.get(order=order, event_type="FILL")
    assert fill.payload["to"] == "filled" and fill.idempotency_key.endswith(fill.payload["trade_id"])


def test_submitting_again_sends_nothing(venue):
    order = create(venue=venue.name)
    order_submit(order_id=order.pk, gateway=venue.gateway)
    order_submit(order_id=order.pk, gateway=venue.gateway)       # a re-delivered task
    assert venue.orders_with_client_id(order.client_order_id) == 1
    assert Order.objects.get(pk=order.pk).submit_attempts == 1


def test_two_workers_racing_send_one_order(venue):
    order = create(venue=venue.name)
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        try:
            order_submit(order_id=order.pk, gateway=venue.gateway)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert venue.orders_with_client_id(order.client_order_id) == 1
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FILLED


def test_venue_refusal_is_a_rejection_with_the_venue_code(venue):
    order = create(venue=venue.name, quantity="1000")               # 30 M USDT: far beyond the balance
    order = order_submit(order_id=order.pk, gateway=venue.gateway)
    assert order.status == OrderStatus.REJECTED
    rejected = OrderEvent.objects.get(order=order, event_type="REJECTED")
    assert rejected.payload["code"]
    assert "insufficient" in rejected.payload["message"].lower()
    assert venue.orders_with_client_id(order.client_order_id) == 0


@pytest.mark.parametrize("fault", [
    {"action": "http_status", "status": 503, "process": True},
    {"action": "http_status", "status": 502},
    {"action": "accept_then_drop"},
    {"action": "latency_ms", "ms": 2500},                           # beyond the 2 s client timeout
])
def test_unknown_outcome_is_resolved_by_asking_never_by_blind_resend(emulated, fault):
    path = "/api/v3/order" if emulated.name == "binance" else "/v5/order/create"
    emulated.add_fault(method="POST", path=path, times=1, **fault)
    order = create(venue=emulated.name)
    order = order_submit(order_id=order.pk, gateway=emulated.gateway)
    assert order.status == OrderStatus.SUBMIT_UNKNOWN
    unknown = OrderEvent.objects.get(order=order, event_type="SUBMIT_UNKNOWN")
    assert "OutcomeUnknownError" in unknown.payload["error"]

    # Ask until the venue has had time to show it (latency faults process after the sleep).
    outcome = order_resolve(order_id=order.pk, gateway=emulated.gateway, grace=timedelta(seconds=3))
    while outcome.retry_in_s is not None:
        import time

        time.sleep(outcome.retry_in_s)
        outcome = order_resolve(order_id=order.pk, gateway=emulated.gateway, grace=timedelta(seconds=3))
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert emulated.orders_with_client_id(order.client_order_id) == 1
    assert order.submit_attempts == (1 if fault.get("process") or fault["action"] != "http_status" else 2)


def test_a_stop_order_whose_send_was_dropped_is_found_resting_not_sent_again(emulated):
    path = "/api/v3/order" if emulated.name == "binance" else "/v5/order/create"
    emulated.add_fault(method="POST", path=path, times=1, action="accept_then_drop")
    order = create(venue=emulated.name, side="sell", type="stop_market", intent="stop_loss", quantity="0.01",
                   stop_price="25000.00")

    order = order_submit(order_id=order.pk, gateway=emulated.gateway)
    assert order.status == OrderStatus.SUBMIT_UNKNOWN
    outcome = order_resolve(order_id=order.pk, gateway=emulated.gateway, grace=NO_GRACE)

    order.refresh_from_db()
    assert (outcome.resent, order.status, order.submit_attempts) == (False, OrderStatus.ACCEPTED, 1)
    assert emulated.orders_with_client_id(order.client_order_id) == 1
    resting = emulated.gateway.fetch_order(order.symbol, order.client_order_id)
    assert resting is not None and resting.stop_price == Decimal("25000")


def test_a_send_that_never_lands_is_retried_a_bounded_number_of_times_then_alerted(emulated):
    path = "/api/v3/order" if emulated.name == "binance" else "/v5/order/create"
    emulated.add_fault(method="POST", path=path, action="http_status", status=503)   # every time
    order = create(venue=emulated.name)
    order_submit(order_id=order.pk, gateway=emulated.gateway)
    for _ in range(10):
        order_resolve(order_id=order.pk, gateway=emulated.gateway, max_attempts=3, grace=NO_GRACE)
    order.refresh_from_db()
    assert order.status == OrderStatus.SUBMIT_UNKNOWN
    assert order.submit_attempts == 3
    assert event_types(order).count("RESOLUTION_FAILED") == 1
    assert emulated.orders_with_client_id(order.client_order_id) == 0


def test_a_send_our_own_rate_limit_holds_back_goes_back_to_pending(emulators, transactional_db, redis_client):
    from emulator import EmulatorControl
    from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
    from trading.exchanges.binance import BinanceGateway
    from trading.exchanges.ratelimit import SharedRateLimiter

    EmulatorControl(emulators["binance"].base_url).reset()       # no fault scripts left by other tests
    # A budget of one order per 10 s, already spent, and no patience: the limiter refuses at once.
    limiter = SharedRateLimiter("binance", "held-back-test", budgets={"orders_per_10s": 1}, max_wait_s=0,
                                budget_fraction=1)
    gateway = BinanceGateway(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET,
                             base_url=emulators["binance"].base_url, testnet=False, rate_limiter=limiter)
    gateway.load_markets()
    first = order_submit(order_id=create(venue="binance", tick="h1").pk, gateway=gateway)
    assert first.status == OrderStatus.FILLED

    held = order_submit(order_id=create(venue="binance", tick="h2").pk, gateway=gateway)

    assert held.status == OrderStatus.PENDING            # nothing was sent, so nothing is unknown
    assert event_types(held) == ["CREATED", "SUBMITTING", "SEND_DEFERRED"]
    assert EmulatorControl(emulators["binance"].base_url).orders(client_id=held.client_order_id) == []


def test_two_resolvers_racing_never_send_twice(emulated):
    """Resolver B asks the venue, hears "no such order" — and before B claims the re-send,
    resolver A re-sends and ends up unknown again. B must not send a second time."""
    path = "/api/v3/order" if emulated.name == "binance" else "/v5/order/create"
    # Every create is answered 503 without being processed: each send ends "unknown", nothing lands.
    emulated.add_fault(method="POST", path=path, action="http_status", status=503)
    order = create(venue=emulated.name)
    order_submit(order_id=order.pk, gateway=emulated.gateway)            # attempt 1: unknown
    sends_before = len(emulated.control.requests(path=path, method="POST"))

    real_fetch = emulated.gateway.fetch_order
    raced = {"done": False}

    def fetch_then_lose_the_race(symbol, client_order_id):
        answer = real_fetch(symbol, client_order_id)                      # B hears "no such order"
        if not raced["done"]:
            raced["done"] = True
            order_resolve(order_id=order.pk, gateway=emulated.gateway, grace=NO_GRACE)   # A re-sends
        return answer

    emulated.gateway.fetch_order = fetch_then_lose_the_race
    try:
        order_resolve(order_id=order.pk, gateway=emulated.gateway, grace=NO_GRACE)       # B
    finally:
        emulated.gateway.fetch_order = real_fetch

    order.refresh_from_db()
    sends = len(emulated.control.requests(path=path, method="POST")) - sends_before
    assert sends == 1, f"{sends} re-sends for one unknown outcome"
    assert order.submit_attempts == 2
    assert event_types(order).count("SUBMITTING") == 2

