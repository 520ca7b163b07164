"""The emergency exit racing the rest of the money path (found by a hostile review; each test
failed before its fix): a worker claiming a pending exit while the emergency exit cancels it, and
the stop monitor selling while an emergency sell is in flight. Every sell is placed under one
lock per venue and symbol (``orders.order_place``), and an order a worker has claimed is never
written off as canceled by us — only the venue settles it.

Real PostgreSQL (two connections: two threads), real Redis, the real services; ModelVenue.
Only the venue is instrumented, to hold the two interleavings still.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from strategy.services.positions import stop_monitor_run
from tests.strategy.factories import open_position
from tests.support.venue_model import ModelVenue, default_markets
from trading.models import Order, OrderStatus
from trading.services.emergency import emergency_exit
from trading.services.orders import order_place
from trading.services.submission import order_submit

pytestmark = pytest.mark.django_db(transaction=True)

BTC = "BTC/USDT"


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_emergency_exit_does_not_write_off_an_exit_a_worker_is_sending(redis_client):
    # Given an account holding 1 BTC that is not ours, and 0.00999 BTC our entry bought
    venue = ModelVenue("binance", balances={"USDT": Decimal(100_000), "BTC": Decimal(1)}, markets=default_markets(),
                       prices={BTC: Decimal(30_000), "ETH/USDT": Decimal(2_000), "SOL/USDT": Decimal(150),
                               "BNB/USDT": Decimal(600), "XRP/USDT": Decimal("0.5")})

    def place(**kw) -> Order:
        order, _ = order_place(venue="binance", strategy="blite", symbol=BTC, type=kw.pop("type", "market"),
                               enqueue=False, **kw)
        return order

    entry = order_submit(order_id=place(side="buy", intent="entry", quantity=Decimal("0.01"), trace_id="t-e",
                                        tick_id="E1").pk, gateway=venue)
    assert entry.status == OrderStatus.FILLED
    # ... a resting limit buy of ours (accepted, open on the venue) ...
    resting = order_submit(order_id=place(side="buy", intent="entry", type="limit", price=Decimal(20_000),
                                          quantity=Decimal("0.001"), trace_id="t-l", tick_id="L1").pk, gateway=venue)
    assert resting.status == OrderStatus.ACCEPTED
    # ... and the stop monitor's exit of the position, committed, its submit task about to run
    stop_exit = place(side="sell", intent="stop_loss", quantity=Decimal("0.00999"), trace_id="t-x", tick_id="P1",
                      client_intent="exit0")

    real_create, real_cancel = venue.create_order, venue.cancel_order
    worker_error: list[BaseException] = []

    def slow_create(request):
        # The stop exit's send waits in the shared rate limiter (up to 10 s) while the
        # emergency exit does its work; the emergency exit's own sell goes straight through.
        if request.client_order_id == stop_exit.client_order_id:
            wait_for(lambda: Order.objects.filter(intent="emergency_exit", status=OrderStatus.FILLED).exists())
        return real_create(request)

    def worker():
        try:
            order_submit(order_id=stop_exit.pk, gateway=venue)
        except BaseException as exc:   # noqa: BLE001 - reported below
            worker_error.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)

    def cancel_while_the_worker_claims(symbol, client_order_id):
        # The emergency exit has listed our orders (the stop exit was PENDING then) and is
        # canceling the resting buy on the venue: meanwhile the worker claims the stop exit.
        if not thread.is_alive() and thread.ident is None:
            thread.start()
            assert wait_for(lambda: Order.objects.get(pk=stop_exit.pk).status == OrderStatus.SUBMITTED)
        return real_cancel(symbol, client_order_id)

    venue.create_order = slow_create
    venue.cancel_order = cancel_while_the_worker_claims

    # When an operator runs the emergency exit
    report = emergency_exit(actor="ops", source="cli", reason_code="INCIDENT", reason="attack", flatten_all=False,
                            trace_id="em-race", gateway=venue)
    thread.join(15)
    assert not worker_error, worker_error

    # Then BTC sold on the venue is at most what we held (0.00999), never the account's other coins
    sold = sum((o.filled for o in venue._orders if o.symbol == BTC and o.side.value == "sell"), Decimal(0))
    stop_exit.refresh_from_db()
    assert sold <= Decimal("0.00999"), (
        f"sold {sold} BTC for a 0.00999 BTC holding: the stop exit ({stop_exit.status} in the DB, "
        f"{venue.fetch_order(BTC, stop_exit.client_order_id).status.value} on the venue) and the emergency "
        f"sell both sold it; report {report.as_dict()}")


def test_the_stop_monitor_does_not_sell_what_an_emergency_sell_in_flight_is_selling(redis_client):
    # Given 1 BTC that is not ours, and a position of ours whose stop (29 000) the price (28 000) is below
    venue = ModelVenue("binance", balances={"USDT": Decimal(100_000), "BTC": Decimal(1)}, markets=default_markets(),
                       prices={BTC: Decimal(30_000), "ETH/USDT": Decimal(2_000), "SOL/USDT": Decimal(150),
                               "BNB/USDT": Decimal(600), "XRP/USDT": Decimal("0.5")})
    entry, _ = order_place(venue="binance", strategy="blite", symbol=BTC, side="buy", type="market", intent="entry",
                           quantity=Decimal("0.01"), trace_id="t-e", tick_id="E2", enqueue=False)
    entry = order_submit(order_id=entry.pk, gateway=venue)
    held = entry.filled_quantity - Decimal("0.00001")           # net of the base-asset fee
    open_position(entry, quantity=held)
    venue.set_price(BTC, Decimal(28_000))

    real_create = venue.create_order
    monitor_ran = []

    def create(request):
        # The operator's emergency sell is on its way (a venue call takes seconds); the stop
        # monitor's beat fires meanwhile, as it does every few seconds, halted or not.
        if request.client_order_id.startswith("AS1-ops-") and not monitor_ran:
            monitor_ran.append(stop_monitor_run(gateway=venue))
        return real_create(request)

    venue.create_order = create
    emergency_exit(actor="ops", source="cli", reason_code="INCIDENT", reason="attack", flatten_all=False,
                   trace_id="em-race-2", gateway=venue)
    # the stop exit's submit task, as its worker runs it
    for order in Order.objects.filter(intent="stop_loss"):
        order_submit(order_id=order.pk, gateway=venue)

    sold = sum((o.filled for o in venue._orders if o.symbol == BTC and o.side.value == "sell"), Decimal(0))
    assert sold <= held, (f"sold {sold} BTC for a {held} BTC position: emergency sell and stop exit "
                          f"{monitor_ran[0].as_dict() if monitor_ran else None} both sold it")
