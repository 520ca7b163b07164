"""Fixtures of the stop-monitor and venue-stop tests: a paper venue on a scripted market whose
tick enters BTC, with the order path's Celery tasks run eagerly. A module sets ``venue_stops``
("on" / "off") to say whether positions keep a protective stop on the venue."""

from __future__ import annotations

import pytest

from infra.clock import ms_to_datetime, now_ms, tick_id_for
from strategy.models import StrategyPosition
from strategy.services.positions import stop_monitor_run
from strategy.services.tick import tick_run
from tests.strategy.test_tick import TF, UNIVERSE, configure, scripted_market
from tests.support.markets import ManualClock, paper_gateway
from trading.config_schema import config_get
from trading.models import Order, OrderStatus


@pytest.fixture
def venue_stops():
    return "on"


@pytest.fixture
def eager_celery():
    from alphasniper_project.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


@pytest.fixture
def venue(redis_client, monkeypatch, eager_celery, venue_stops):
    configure(universe=UNIVERSE, timeframe="1m", venue_stops=venue_stops)
    # The order path stamps fills with the venue's clock and looks them up from the order's
    # creation time (wall clock), so this market's time axis ends at the current minute.
    close = now_ms() // TF * TF
    clock = ManualClock(close + 1_000)
    source = scripted_market(close=close)
    gw = paper_gateway(source=source, clock=clock, universe=lambda: config_get().universe)
    monkeypatch.setattr("trading.exchanges.factory._gateway", gw)
    return gw, source, clock


@pytest.fixture
def opened(venue):
    """The tick enters BTC; the entry fills on submission, and its fills open the position at once
    (positions are a projection of fills); the monitor finds it open and nothing to sell."""
    gw, source, clock = venue
    tick_run(tick_id=tick_id_for(ms_to_datetime(clock() // TF * TF)), gateway=gw, now_ms=clock())
    entry = Order.objects.get(intent="entry")
    assert entry.status == OrderStatus.FILLED
    position = StrategyPosition.objects.get()
    assert position.status == "open" and position.quantity > 0
    report = stop_monitor_run(gateway=gw)
    assert report.opened == [] and report.exits == []
    return gw, source, clock, position


