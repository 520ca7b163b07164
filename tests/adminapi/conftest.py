"""Fixtures of the operator-surface tests: an authenticated API client, factories, a fake
Telegram server, and Celery in eager mode (so a delivery that would run on the data-syncer
runs in the test, against the fake server)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from strategy.models import StrategyDecision
from trading.models import AuditLog, Order, OrderEvent, SystemConfig

TOKEN = "test-admin-token-for-adminapi-0123456789"
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _operator_settings(settings):
    settings.ADMIN_TOKEN = TOKEN
    settings.TELEGRAM_BOT_TOKEN = ""      # disabled unless a test turns the fake server on
    settings.TELEGRAM_CHAT_ID = ""


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def make_order(**fields) -> Order:
    n = next(_seq)
    defaults = {
        "client_order_id": f"AS-t-{n}", "venue": "paper", "strategy": "blite", "symbol": "BTC/USDT", "side": "buy",
        "type": "market", "intent": "entry", "quantity": Decimal("0.01"), "trace_id": f"trace{n}",
    }
    return Order.objects.create(**{**defaults, **fields})


def make_event(order: Order, event_type: str = "CREATED", **fields) -> OrderEvent:
    defaults = {"source": "strategy", "trace_id": order.trace_id, "payload": {}}
    return OrderEvent.objects.create(order=order, event_type=event_type, **{**defaults, **fields})


def make_decision(**fields) -> StrategyDecision:
    n = next(_seq)
    defaults = {"strategy": "blite", "tick_id": f"20250101T{n:04d}", "symbol": "BTC/USDT", "decision": "skip",
                "reason_code": "NO_BREAKOUT", "trace_id": f"dtrace{n}"}
    return StrategyDecision.objects.create(**{**defaults, **fields})


def who(**overrides) -> dict:
    """A valid who/why body."""
    return {"by": "alice", "reason_code": "MANUAL_HALT", "reason": "maintenance window", **overrides}


def audit_count() -> int:
    return AuditLog.objects.count()


def config_rows() -> dict:
    return {r.key: (r.value, r.version) for r in SystemConfig.objects.all()}
