"""Defects a hostile review proved in the venue-side protective stops (issue 14), on Binance and
Bybit through real ccxt against the emulator and on the paper venue: each test is a way the first
version lost money or told the operator something false, and failed until its fix. Each docstring
gives the scenario and the root cause that was fixed.

Races are made deterministic by pausing one real service inside a venue call of a thin gateway
wrapper (the call itself still goes to the emulator through real ccxt) while the other service
runs: nothing of the money path is replaced.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from emulator.core import OPEN_STATUSES
from infra.models import TelegramOutbox
from strategy.engines import PositionStop
from strategy.models import StrategyPosition
from strategy.services.positions import stop_monitor_run
from tests.integration.test_venue_stop_outage import (  # noqa: F401 (emulators: a fixture)
    Venue,
    emulators,
    open_positions_with_stops,
)
from trading.exchanges.errors import VenueError
from trading.models import TERMINAL_STATUSES, Order, OrderStatus
from trading.services.emergency import emergency_exit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
BTC = "BTC/USDT"
CENT = Decimal("0.01")


def state_of(position: StrategyPosition) -> PositionStop:
    position.refresh_from_db()
    return PositionStop.from_dict(position.stop_state)


def stops_of(position: StrategyPosition) -> list[Order]:
    return list(Order.objects.filter(type="stop_market", tick_id=f"P{position.pk}").order_by("id"))


def live(orders: list[Order]) -> list[Order]:
    return [o for o in orders if o.status not in TERMINAL_STATUSES]


# --- 1. two take-profits in one monitor pass: the second position is given up for good --------

@pytest.mark.parametrize("venue_name", ["paper", "binance", "bybit"])
def test_two_positions_taking_profit_in_one_pass_both_sell(
        venue_name, emulators, redis_client, celery_eager, monkeypatch):  # noqa: F811
    """Scenario: BTC and ETH are open, each with its stop resting on the venue (which reserves
    the coins: free balance 0). A rally lifts both above their take-profit; one monitor pass.

    The first position's exit clears its stop and calls ``held()``, which reads the free balances
    ONCE for the whole pass - while the second position's stop still reserves all its coins. The
    second position then clears its own stop, but ``position_check`` sees the cached free balance
    0 < remaining and concludes "the holding is gone": ``exit_attempt = MAX`` and an EXIT FAILED
    alert ("the venue holds only 0"). The monitor never sells it again (and from then on, see the
    paper test, cancels its protective stop whenever an exit is due).

    Root cause: ``_monitor``'s per-pass balance cache (``held``) is filled before other positions'
    venue stops are canceled in the same pass; a stop's reservation is read as a missing holding."""
    venue = Venue(venue_name, emulators)
    # An account that holds only what the bot bought (the emulator's default account also holds
    # some BTC and ETH of its own, which would hide the defect as a short first sell).
    venue.control.set_balances({"BTC": 0, "ETH": 0, "SOL": 0})
    positions = open_positions_with_stops(venue, monkeypatch)
    for position in positions:
        target = state_of(position).take_profit_price
        venue.control.set_price(position.symbol, (target + Decimal("0.50")).quantize(CENT))
    stop_monitor_run(gateway=venue.gateway)
    stop_monitor_run(gateway=venue.gateway)

    failed = list(TelegramOutbox.objects.filter(reason_code="EXIT_FAILED").values_list("text", flat=True))
    assert failed == [], failed
    for position in positions:
        position.refresh_from_db()
        assert (position.symbol, position.status, position.exit_reason) == (position.symbol, "closed",
                                                                             "TAKE_PROFIT")
    assert venue.resting() == []


# --- 2. Bybit: an amend the venue did but whose answer was lost --------------------------------

def test_a_bybit_stop_moved_but_unrecorded_fires_as_a_trailing_stop(
        emulators, redis_client, celery_eager, monkeypatch):  # noqa: F811
    """Scenario (Bybit, amend answered but lost): the trailing stop rises, the monitor amends the
    venue stop (``/v5/order/amend``); Bybit applies it but the connection drops before the answer
    (``accept_then_drop``). The price then falls through the NEW trigger (still above the initial
    stop); Bybit's stop sells. The position closes with ``STOP_LOSS`` - though it was stopped at
    the raised (trailing) level, above the initial stop - and our order row still says the stop
    triggers at the initial price.

    Root cause: the amend's unknown outcome is never resolved into the order row: ``_amend``
    returns on ``OutcomeUnknownError``, and neither ``_record`` / ``order_record_venue_state`` nor
    reconciliation copy the venue's ``stop_price`` into ``orders.stop_price`` - while
    ``stop_exit_reason`` (and the API/dashboard) read that column. (The same happens when the worker
    is killed between the amend and ``order_stop_moved``.)"""
    venue = Venue("bybit", emulators)
    positions = open_positions_with_stops(venue, monkeypatch)
    btc = next(p for p in positions if p.symbol == BTC)
    (stop,) = stops_of(btc)
    state = state_of(btc)
    high = (state.entry_price + state.trail_distance * 2).quantize(CENT)
    assert high < state.take_profit_price
    venue.control.set_price(BTC, high)
    venue.control.add_fault({"method": "POST", "path": "/v5/order/amend", "times": 1, "action": "accept_then_drop"})
    stop_monitor_run(gateway=venue.gateway)
    (on_venue,) = venue.control.orders(client_id=stop.client_order_id)
    moved_to = Decimal(on_venue["stop_price"])
    assert moved_to > stop.stop_price            # the premise: Bybit did move it

    # The price falls through the raised stop, not to the initial one: the venue's stop sells.
    venue.control.set_price(BTC, moved_to - Decimal("0.05"))
    stop_monitor_run(gateway=venue.gateway)
    stop_monitor_run(gateway=venue.gateway)
    btc.refresh_from_db()
    stop.refresh_from_db()
    assert stop.status == OrderStatus.FILLED and btc.status == "closed"
    assert Order.objects.filter(side="sell", symbol=BTC).exclude(filled_quantity=0).count() == 1
    assert btc.exit_reason == "TRAILING_STOP"
    assert stop.stop_price == moved_to, "orders.stop_price is not what rests (rested) on the venue"


# --- 3. Binance: the monitor moves a stop while an emergency exit runs -------------------------

class _Paused:
    """A gateway as it is, except that chosen calls first run ``before`` / afterwards ``after``
    (to interleave two real services deterministically)."""

    def __init__(self, inner, *, before: dict | None = None, after: dict | None = None):
        self._inner, self._before, self._after = inner, before or {}, after or {}

    def __getattr__(self, name):
        value = getattr(self._inner, name)
        if not callable(value) or (name not in self._before and name not in self._after):
            return value

        def call(*args, **kwargs):
            if name in self._before:
                self._before.pop(name)()
            result = value(*args, **kwargs)
            if name in self._after:
                self._after.pop(name)()
            return result

        return call


class _MonitorGateway(_Paused):
    """The monitor's gateway: reading ``replaces_stops`` is the moment ``venue_stop_follow`` has
    read the live stop and decided to move it, just before ``_replace`` takes the row lock."""

    def __init__(self, inner, on_decided, **kwargs):
        super().__init__(inner, **kwargs)
        self._on_decided = on_decided

    @property
    def replaces_stops(self):
        if self._on_decided is not None:
            self._on_decided()
            self._on_decided = None
        return self._inner.replaces_stops


def test_an_emergency_exit_is_not_undone_by_a_stop_move_of_the_monitor(
        emulators, redis_client, celery_eager, monkeypatch):  # noqa: F811
    """Scenario (Binance): the trailing stop of BTC has risen; the stop monitor (one worker) reads
    the live stop and decides to move it. Meanwhile an operator's emergency exit (another worker)
    cancels every open order of ours. The monitor then runs ``_replace``: ``order_place`` excludes
    the replaced stop from the sell lock, and ``_send_replacement`` - finding the replaced stop
    already canceled - PLACES THE NEW STOP PLAINLY. The emergency exit, at its sell step, finds
    that sell in flight and does not sell BTC: ``flat: false``, BTC still held, a fresh stop of
    ours resting on a halted system.

    Root cause: ``_emergency_exit_running()`` holds back only ``venue_stop_ensure``; the move path
    (``venue_stop_follow`` -> ``_replace`` -> ``_send_replacement``) neither checks it nor re-checks
    under the row lock that the stop it replaces is still live, and a replacement of a stop that is
    no longer live becomes a plain new stop."""
    venue = Venue("binance", emulators)
    venue.control.set_balances({"BTC": 0, "ETH": 0, "SOL": 0})    # the account holds only what the bot buys
    positions = open_positions_with_stops(venue, monkeypatch)
    btc = next(p for p in positions if p.symbol == BTC)
    state = state_of(btc)
    venue.control.set_price(BTC, (state.entry_price + state.trail_distance * 2).quantize(CENT))

    decided, canceled, moved = threading.Event(), threading.Event(), threading.Event()
    outcome: dict = {}

    def pause_monitor():
        decided.set()
        assert canceled.wait(60)

    def monitor():
        try:
            gateway = _MonitorGateway(venue.gateway, pause_monitor,
                                      after={"create_order": moved.set, "replace_stop": moved.set})
            outcome["monitor"] = stop_monitor_run(gateway=gateway)
        finally:
            moved.set()
            connection.close()

    def pause_emergency():
        canceled.set()         # every open order of ours is canceled; the sell step starts now
        moved.wait(60)

    def operator():
        try:
            assert decided.wait(60)
            gateway = _Paused(venue.gateway, before={"fetch_balances": pause_emergency})
            outcome["report"] = emergency_exit(actor="ops", source="api", reason_code="MANUAL", reason="review",
                                               flatten_all=False, trace_id="emergency-review", gateway=gateway)
        finally:
            canceled.set()
            connection.close()

    threads = [threading.Thread(target=monitor), threading.Thread(target=operator)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    report = outcome["report"]
    assert live(stops_of(btc)) == [], [(o.client_order_id, o.status) for o in stops_of(btc)]
    assert [o["client_id"] for o in venue.control.orders() if o["status"] in OPEN_STATUSES] == []
    assert report.flat, report.as_dict()
    btc.refresh_from_db()
    assert (btc.status, btc.exit_reason) == ("closed", "EMERGENCY_EXIT")


# --- 4. an emergency exit that fails half way leaves positions bare, shown as protected ------

def test_an_emergency_exit_that_fails_half_way_does_not_leave_positions_bare_and_shown_protected(
        emulators, redis_client, celery_eager, monkeypatch):  # noqa: F811
    """Scenario (Binance): the operator's emergency exit cancels every stop, then its first
    balance read (``_flatten``) meets one HTTP 503. ``emergency_exit`` raises; its
    ``EmergencyExitRun`` is never finished. For the next 10 minutes (``EMERGENCY_RUN_HOLDS_FOR``)
    ``venue_stop_ensure`` returns early on ``_emergency_exit_running()`` - placing nothing and
    without updating ``venue_stop``: every position still says ``protected`` / ``pending`` (so ``/health``,
    ``tbot diagnose`` and the dashboard warn of nothing) while no stop of ours rests on the venue,
    nothing was sold, and the venue would take the stops.

    Root cause: an unfinished run (crash or a single transient venue error - ``_flatten`` does not
    catch ``fetch_balances`` errors) is treated as a live one for 10 minutes, and the early return
    in ``venue_stop_ensure`` sits before any ``_mark``, so the displayed state goes stale."""
    venue = Venue("binance", emulators)
    positions = open_positions_with_stops(venue, monkeypatch)
    venue.control.add_fault({"method": "GET", "path": "/api/v3/account", "times": 1, "action": "http_status",
                             "status": 503})
    try:
        emergency_exit(actor="ops", source="api", reason_code="MANUAL", reason="review", flatten_all=False,
                       trace_id="emergency-half", gateway=venue.gateway)
    except VenueError:
        pass                       # what the Celery task would log; the operator sees no report
    venue.control.clear_faults()
    stop_monitor_run(gateway=venue.gateway)
    stop_monitor_run(gateway=venue.gateway)

    resting = set(venue.resting())
    for position in positions:
        position.refresh_from_db()
        assert position.status == "open"
        protected_on_venue = any(o.client_order_id in resting for o in stops_of(position))
        assert protected_on_venue or position.venue_stop == "unprotected", (
            f"{position.symbol}: venue_stop={position.venue_stop!r} but no stop rests on the venue "
            f"(resting: {sorted(resting)})")


# --- 5. Binance: a move of unknown outcome; the monitor then strips the stop that still rests --

def test_a_stop_move_of_unknown_outcome_does_not_leave_the_position_naked(
        emulators, redis_client, celery_eager, monkeypatch):  # noqa: F811
    """Scenario (Binance): the monitor moves the stop up by ``cancelReplace``; the venue answers
    HTTP 503 without doing anything, so the new version is ``submit_unknown`` and the old one
    still rests. The price falls below the bot-side stop (the new level) but stays above the old
    stop. The monitor's exit: ``venue_stop_clear`` CANCELS the old stop - the one order that was
    protecting the position - and then returns False for the unknown version, so nothing is sold.
    Every following pass does the same (nothing sells) until the resolver's grace (60 s) has
    passed; meanwhile the price falls through the old stop's level and no stop of ours rests on
    the venue.

    Root cause: ``venue_stop_clear`` cancels the resting versions before it knows whether every
    version can be cleared; the monitor then neither sells nor puts a stop back (and does not
    resolve the unknown version by asking the venue, as the emergency exit does)."""
    venue = Venue("binance", emulators)
    positions = open_positions_with_stops(venue, monkeypatch)
    btc = next(p for p in positions if p.symbol == BTC)
    (old,) = stops_of(btc)
    state = state_of(btc)
    venue.control.set_price(BTC, (state.entry_price + state.trail_distance * 2).quantize(CENT))
    venue.control.add_fault({"method": "POST", "path": "/api/v3/order/cancelReplace", "times": 1,
                             "action": "http_status", "status": 503})
    stop_monitor_run(gateway=venue.gateway)
    old.refresh_from_db()
    new = stops_of(btc)[-1]
    assert new.replaces_id == old.pk and new.status == OrderStatus.SUBMIT_UNKNOWN
    assert old.status == OrderStatus.ACCEPTED and old.client_order_id in venue.resting()   # still protects

    # Below the bot-side stop, above the old venue stop: the bot-side stop is hit.
    bot_stop = state_of(btc).stop_price
    venue.control.set_price(BTC, ((bot_stop + old.stop_price) / 2).quantize(CENT))
    for _ in range(3):                               # a minute of monitor passes
        stop_monitor_run(gateway=venue.gateway)
    btc.refresh_from_db()
    sold = btc.status == "closed"
    protected = any(o.client_order_id in venue.resting() for o in stops_of(btc))
    assert sold or protected, (f"bot-side stop hit, nothing sold and nothing resting: "
                               f"{[(o.client_order_id, o.status) for o in stops_of(btc)]}")
