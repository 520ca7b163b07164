"""Read endpoints: status, config, orders (+ filters), order events, decisions, audit."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from infra import heartbeat
from tests.adminapi.conftest import audit_count, make_decision, make_event, make_order, who
from trading.models import Order

pytestmark = pytest.mark.django_db


# --- status -----------------------------------------------------------------------------------

def test_status_counts_open_and_unresolved_orders_and_shows_heartbeats_and_last_decision(api, redis_client, settings):
    # given orders in every kind of state, two heartbeats and a few decisions
    for status in ("pending", "submitted", "submit_unknown", "accepted", "partially_filled", "filled",
                   "canceled", "rejected", "expired"):
        make_order(status=status)
    heartbeat.record("beat")
    heartbeat.record("data-syncer")
    make_decision(tick_id="20250101T0800", symbol="ETH/USDT")
    make_decision(tick_id="20250101T0815", symbol="BTC/USDT", decision="enter", reason_code="BREAKOUT")
    # when the operator asks for the status
    body = api.get("/admin/status").json()
    # then
    assert body["venue"] == settings.VENUE.name
    assert body["open_orders"] == 5            # pending, submitted, submit_unknown, accepted, partially_filled
    assert body["unresolved_orders"] == 2      # submitted, submit_unknown
    assert body["heartbeats"]["beat"] < 5 and body["heartbeats"]["strategy-engine"] is None
    assert body["heartbeat_error"] is None
    assert body["last_decision"]["tick_id"] == "20250101T0815"
    assert body["last_decision"]["reason_code"] == "BREAKOUT"
    assert body["config_version"] == 0 and body["halted"] is False


def test_status_still_answers_when_redis_is_down(api, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = api.get("/admin/status")
    assert response.status_code == 200
    body = response.json()
    assert set(body["heartbeats"].values()) == {None}
    assert "Connection" in body["heartbeat_error"]


def test_config_lists_every_key_with_default_type_and_range(api):
    body = api.get("/admin/config").json()
    keys = {k["key"]: k for k in body["keys"]}
    assert set(keys) == {"universe", "timeframe", "breakout_lookback", "volume_sma", "volume_multiplier", "ema_trend",
                         "atr_period", "stop_atr_multiple", "take_profit_r", "risk_per_trade",
                         "max_position_notional", "max_open_positions", "daily_loss_limit", "cooldown_candles",
                         "stale_data_after_candles", "max_submit_attempts", "venue_stops",
                         "venue_stop_step_pct"}
    assert keys["risk_per_trade"]["value"] == "0.005"
    assert (keys["risk_per_trade"]["minimum"], keys["risk_per_trade"]["maximum"]) == ("0", "0.05")
    assert keys["risk_per_trade"]["exclusive_minimum"] is True
    assert keys["timeframe"]["choices"] == ["1m", "5m", "15m", "1h"]
    assert body["valid"] is True and body["halt"]["halted"] is False


def test_config_shows_a_stored_value_that_no_longer_validates_instead_of_crashing(api):
    from trading.models import SystemConfig

    SystemConfig.objects.create(key="risk_per_trade", value="0.9")   # written behind the services' back
    body = api.get("/admin/config").json()
    assert body["valid"] is False
    bad = next(k for k in body["keys"] if k["key"] == "risk_per_trade")
    assert bad["value"] == "0.9" and "must be <= 0.05" in bad["problems"][0]


# --- orders -----------------------------------------------------------------------------------

def test_orders_are_listed_newest_first_and_filtered(api):
    old = make_order(symbol="ETH/USDT", status="filled", intent="entry")
    Order.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    a = make_order(symbol="BTC/USDT", status="accepted", intent="entry")
    b = make_order(symbol="BTC/USDT", status="filled", intent="stop_loss")
    c = make_order(symbol="SOL/USDT", status="submit_unknown", intent="entry")

    def ids(query=""):
        response = api.get(f"/admin/orders{query}")
        assert response.status_code == 200, response.content
        return [o["client_order_id"] for o in response.json()]

    assert ids() == [c.client_order_id, b.client_order_id, a.client_order_id, old.client_order_id]
    assert ids("?status=filled") == [b.client_order_id, old.client_order_id]
    assert ids("?symbol=BTC/USDT") == [b.client_order_id, a.client_order_id]
    assert ids("?intent=stop_loss") == [b.client_order_id]
    assert ids("?symbol=BTC/USDT&status=accepted") == [a.client_order_id]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids("?" + urlencode({"since": since})) == [c.client_order_id, b.client_order_id, a.client_order_id]
    assert ids("?limit=2") == [c.client_order_id, b.client_order_id]


def test_order_fields_are_complete_and_decimals_are_strings(api):
    make_order(quantity="0.12345678", price="50000.5")
    order = api.get("/admin/orders").json()[0]
    assert order["quantity"] == "0.123456780000000000"
    assert order["price"] == "50000.500000000000000000"
    assert {"client_order_id", "status", "intent", "symbol", "trace_id", "filled_quantity", "created_at"} <= set(order)


def test_bad_order_filters_are_400_naming_each_parameter(api):
    response = api.get("/admin/orders?status=bogus&limit=0&since=yesterday&symbol=btcusdt&intent=x&colour=red")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"status", "limit", "since", "symbol", "intent", "colour"}
    assert "unknown query parameter" in response.json()["fields"]["colour"][0]
    assert api.get("/admin/orders?limit=1001").status_code == 400


def test_order_events_oldest_first_and_404_for_an_unknown_order(api):
    order = make_order(client_order_id="AS-ev-1")
    make_event(order, "CREATED")
    make_event(order, "ACCEPTED", source="venue", payload={"venue_order_id": "42"})
    make_event(order, "FILL", source="reconciliation", idempotency_key="fill-1", reason_code="BACKFILL")
    body = api.get("/admin/orders/AS-ev-1/events").json()
    assert body["order"]["client_order_id"] == "AS-ev-1"
    assert [e["event_type"] for e in body["events"]] == ["CREATED", "ACCEPTED", "FILL"]
    assert body["events"][1]["payload"] == {"venue_order_id": "42"}
    assert body["events"][2]["source"] == "reconciliation" and body["events"][2]["reason_code"] == "BACKFILL"

    missing = api.get("/admin/orders/AS-nope/events")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found" and "AS-nope" in missing.json()["detail"]


# --- decisions and audit -------------------------------------------------------------------------

def test_decisions_are_filtered_by_tick_symbol_decision_and_reason(api):
    make_decision(tick_id="T1", symbol="BTC/USDT", decision="skip", reason_code="NO_BREAKOUT")
    make_decision(tick_id="T1", symbol="ETH/USDT", decision="enter", reason_code="BREAKOUT")
    make_decision(tick_id="T2", symbol="BTC/USDT", decision="blocked", reason_code="HALTED")

    def rows(query):
        response = api.get(f"/admin/decisions{query}")
        assert response.status_code == 200, response.content
        return [(d["tick_id"], d["symbol"], d["reason_code"]) for d in response.json()]

    assert rows("") == [("T2", "BTC/USDT", "HALTED"), ("T1", "ETH/USDT", "BREAKOUT"), ("T1", "BTC/USDT", "NO_BREAKOUT")]
    assert rows("?tick_id=T1") == [("T1", "ETH/USDT", "BREAKOUT"), ("T1", "BTC/USDT", "NO_BREAKOUT")]
    assert rows("?symbol=BTC/USDT&decision=blocked") == [("T2", "BTC/USDT", "HALTED")]
    assert rows("?reason_code=BREAKOUT") == [("T1", "ETH/USDT", "BREAKOUT")]
    assert rows("?limit=1") == [("T2", "BTC/USDT", "HALTED")]
    bad = api.get("/admin/decisions?limit=abc&symbol=nope&tickid=T1")
    assert bad.status_code == 400 and set(bad.json()["fields"]) == {"limit", "symbol", "tickid"}


def test_audit_lists_operator_actions_newest_first_and_filters(api):
    api.post("/admin/halt", who(by="alice"), format="json")
    api.post("/admin/resume", who(by="bob", reason_code="BACK"), format="json")
    api.post("/admin/update_config", {**who(by="alice"), "changes": {"timeframe": "1h"}}, format="json")
    assert audit_count() == 3
    rows = api.get("/admin/audit").json()
    assert [r["action"] for r in rows] == ["config.update", "trading.resume", "trading.halt"]
    assert [r["action"] for r in api.get("/admin/audit?actor=alice").json()] == ["config.update", "trading.halt"]
    assert [r["actor"] for r in api.get("/admin/audit?action=trading.resume").json()] == ["bob"]
    assert len(api.get("/admin/audit?limit=1").json()) == 1
    assert api.get("/admin/audit?limit=-3").status_code == 400
    assert set(rows[0]) == {"id", "created_at", "actor", "source", "action", "reason_code", "reason", "before",
                            "after", "trace_id"}
