"""/health names what is down or stale; /metrics exposes alphasniper_* from the shared truth."""

from __future__ import annotations

import time

import pytest

from infra import heartbeat
from syncer.services import venue_health_record
from trading.models import Order, OrderEvent


@pytest.fixture
def all_processes_alive(redis_client, settings):
    for process in heartbeat.PROCESSES:
        heartbeat.record(process)
    venue_health_record(venue=settings.VENUE.name, op="market_snapshot", ok=True)


def test_health_is_200_when_everything_is_fresh(client, db, all_processes_alive):
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["components"]) == {"database", "redis", "broker", "venue"}
    assert all(p["heartbeat_age_s"] < 5 for p in body["processes"].values())


def test_health_names_missing_and_stale_heartbeats(client, db, redis_client, settings):
    venue_health_record(venue=settings.VENUE.name, op="market_snapshot", ok=True)
    heartbeat.record("beat")
    heartbeat.record("data-syncer", at=time.time() - heartbeat.STALE_AFTER_S - 30)
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 503
    assert body["failing"] == ["data-syncer", "strategy-engine"]
    assert "old" in body["processes"]["data-syncer"]["error"]
    assert body["processes"]["strategy-engine"]["error"] == "no heartbeat yet"


def test_health_names_redis_and_broker_when_they_are_down(client, db, all_processes_alive, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 503
    assert {"redis", "broker"} <= set(body["failing"])
    assert "Connection" in body["components"]["redis"]["error"]


def test_health_names_the_venue_when_the_syncer_cannot_reach_it_or_it_bans_us(client, db, all_processes_alive,
                                                                              settings, redis_client):
    venue_health_record(venue=settings.VENUE.name, op="market_snapshot", ok=False, error="connection refused")
    body = client.get("/health").json()
    assert body["failing"] == ["venue"] and body["components"]["venue"]["error"] == "last market_snapshot failed"

    venue_health_record(venue=settings.VENUE.name, op="market_snapshot", ok=True)
    redis_client.set(f"alphasniper:venue:banned:{settings.VENUE.name}", '{"venue": "paper"}', ex=120)
    response = client.get("/health")
    assert response.status_code == 503
    assert "banned by the venue" in response.json()["components"]["venue"]["error"]


def test_metrics_count_orders_and_events_from_the_database(client, db, all_processes_alive):
    order = Order.objects.create(client_order_id="AS-m-1", venue="paper", strategy="blite", symbol="BTC/USDT",
                                 side="buy", type="market", intent="entry", quantity="1", trace_id="t")
    OrderEvent.objects.create(order=order, event_type="CREATED", source="strategy", trace_id="t")
    OrderEvent.objects.create(order=order, event_type="FILL", source="reconciliation", trace_id="t")
    response = client.get("/metrics")
    text = response.content.decode()
    assert response.status_code == 200
    assert 'alphasniper_orders{status="pending"} 1.0' in text
    assert 'alphasniper_order_events_total{event_type="CREATED",source="strategy"} 1.0' in text
    assert "alphasniper_reconciliation_fixes_total 1.0" in text
    assert "alphasniper_up 1.0" in text
    assert 'alphasniper_heartbeat_age_seconds{process="beat"}' in text
    assert "django_http_requests" in text   # django-prometheus metrics are there too
