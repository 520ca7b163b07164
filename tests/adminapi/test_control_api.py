"""Mutating endpoints: halt, resume, update_config, emergency_exit.

Every success writes exactly one audit row in the same transaction as the change; every
validation error is a 400 naming each bad field, and nothing at all is written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.models import TelegramOutbox
from tests.adminapi.conftest import audit_count, config_rows, who
from trading.config_schema import HALT_KEY, config_get, config_version
from trading.models import AuditLog, SystemConfig

pytestmark = pytest.mark.django_db


# --- halt / resume ------------------------------------------------------------------------

def test_halt_then_status_shows_halted_with_the_same_reason(api):
    # given trading runs
    assert api.get("/admin/status").json()["halted"] is False
    # when an operator halts it
    response = api.post("/admin/halt", who(reason="exchange maintenance at 02:00"), format="json",
                        HTTP_X_TRACE_ID="halttrace01")
    # then the answer and the status both show who halted and why
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["halted"] is True and body["trace_id"] == "halttrace01"
    status = api.get("/admin/status").json()
    assert status["halted"] is True
    assert status["halt"]["by"] == "alice"
    assert status["halt"]["reason_code"] == "MANUAL_HALT"
    assert status["halt"]["reason"] == "exchange maintenance at 02:00"
    assert status["halt"]["trace_id"] == "halttrace01"
    # and /metrics (which reads system_config.value->'halted' of trading.halt) agrees
    assert SystemConfig.objects.get(key=HALT_KEY).value["halted"] is True


def test_halt_writes_exactly_one_audit_row_with_before_after_and_trace_id(api):
    before = audit_count()
    response = api.post("/admin/halt", who(), format="json")
    assert audit_count() == before + 1
    row = AuditLog.objects.get()
    assert (row.action, row.actor, row.source, row.reason_code, row.reason) == (
        "trading.halt", "alice", "api", "MANUAL_HALT", "maintenance window")
    assert row.before["halted"] is False and row.after["halted"] is True
    assert row.trace_id == response["X-Trace-Id"] == response.json()["trace_id"]


def test_halting_twice_is_idempotent_keeps_the_first_reason_and_audits_both(api):
    # given trading was halted by alice
    api.post("/admin/halt", who(), format="json")
    version = SystemConfig.objects.get(key=HALT_KEY).version
    # when bob halts again with another reason
    response = api.post("/admin/halt", who(by="bob", reason_code="SECOND_HALT", reason="again"), format="json")
    # then it is still halted, still showing alice's halt, and both attempts are audited
    assert response.status_code == 200
    assert response.json()["halt"]["by"] == "alice"
    assert api.get("/admin/status").json()["halt"]["reason_code"] == "MANUAL_HALT"
    assert SystemConfig.objects.get(key=HALT_KEY).version == version
    second = AuditLog.objects.order_by("id").last()
    assert (second.actor, second.reason_code) == ("bob", "SECOND_HALT")
    assert second.before == second.after and second.after["halted"] is True
    assert audit_count() == 2


def test_resume_clears_the_halt_and_is_audited(api):
    api.post("/admin/halt", who(), format="json")
    response = api.post("/admin/resume", who(by="carol", reason_code="MAINTENANCE_OVER", reason="venue is back"),
                        format="json")
    assert response.status_code == 200, response.content
    status = api.get("/admin/status").json()
    assert status["halted"] is False
    assert (status["halt"]["by"], status["halt"]["reason_code"]) == ("carol", "MAINTENANCE_OVER")
    row = AuditLog.objects.order_by("id").last()
    assert row.action == "trading.resume" and row.before["halted"] is True and row.after["halted"] is False
    assert SystemConfig.objects.get(key=HALT_KEY).version == 2


def test_resume_while_running_changes_nothing_but_is_audited(api):
    response = api.post("/admin/resume", who(reason_code="CHECK"), format="json")
    assert response.status_code == 200
    assert response.json()["halted"] is False
    assert audit_count() == 1


@pytest.mark.parametrize("path", ["/admin/halt", "/admin/resume"])
def test_halt_and_resume_name_every_bad_field_and_write_nothing(api, path):
    before = (audit_count(), config_rows(), TelegramOutbox.objects.count())
    response = api.post(path, {"by": "", "reason_code": "lower-case", "reason": "   "}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert set(body["fields"]) == {"by", "reason_code", "reason"}
    assert "A-Z, 0-9 and _, starting with a letter" in body["fields"]["reason_code"][0]
    missing = api.post(path, {}, format="json").json()["fields"]
    assert set(missing) == {"by", "reason_code", "reason"}
    assert (audit_count(), config_rows(), TelegramOutbox.objects.count()) == before


@pytest.mark.parametrize("code", ["A", "1ABC", "AB-C", "A" * 65, "ab", 42, None, ["X_Y"]])
def test_reason_code_pattern_is_enforced(api, code):
    response = api.post("/admin/halt", who(reason_code=code), format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["reason_code"]


def test_halt_writes_a_telegram_outbox_row_with_trace_id_and_reason_code(api):
    response = api.post("/admin/halt", who(), format="json")
    row = TelegramOutbox.objects.get()
    assert row.trace_id == response.json()["trace_id"]
    assert row.reason_code == "MANUAL_HALT"
    assert "HALTED" in row.text and row.trace_id in row.text
    assert row.status == "skipped"   # Telegram is off in these tests


def test_halt_reaches_telegram_after_commit(api, fake_telegram, celery_eager, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/admin/halt", who(reason="fat finger on BTC"), format="json")
    trace_id = response.json()["trace_id"]
    assert len(fake_telegram.delivered) == 1
    text = fake_telegram.delivered[0]["text"]
    assert "HALTED" in text and "fat finger on BTC" in text and trace_id in text and "MANUAL_HALT" in text


# --- update_config ------------------------------------------------------------------------

def test_update_config_changes_values_bumps_versions_and_audits_before_after(api):
    # given the defaults
    assert config_version() == 0
    # when two keys are changed
    response = api.post("/admin/update_config", {
        **who(reason_code="TUNE_RISK", reason="smaller risk"),
        "changes": {"risk_per_trade": "0.0025", "universe": ["BTC/USDT", "ETH/USDT"], "max_open_positions": 3},
    }, format="json")
    # then the new values are in force, as Decimals where they are decimal
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["changed"] == {
        "risk_per_trade": {"before": "0.005", "after": "0.0025"},
        "universe": {"before": ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"],
                     "after": ["BTC/USDT", "ETH/USDT"]},
    }
    assert body["unchanged"] == ["max_open_positions"]
    cfg = config_get()
    assert cfg.risk_per_trade == Decimal("0.0025") and isinstance(cfg.risk_per_trade, Decimal)
    assert cfg.universe == ("BTC/USDT", "ETH/USDT")
    assert cfg.version == body["version"] == 2
    # and exactly one audit row holds the before/after of every key given
    row = AuditLog.objects.get()
    assert row.id == body["audit_id"] and row.action == "config.update" and row.source == "api"
    assert row.before["risk_per_trade"] == "0.005" and row.after["risk_per_trade"] == "0.0025"
    assert row.before["max_open_positions"] == row.after["max_open_positions"] == 3
    # and GET /admin/config shows the same
    config = api.get("/admin/config").json()
    assert config["version"] == 2 and config["values"]["risk_per_trade"] == "0.0025"
    by_key = {k["key"]: k for k in config["keys"]}
    assert by_key["risk_per_trade"]["source"] == "stored" and by_key["risk_per_trade"]["version"] == 1
    assert by_key["timeframe"]["source"] == "default" and by_key["timeframe"]["value"] == "15m"


def test_a_second_update_bumps_only_the_changed_rows_version(api):
    api.post("/admin/update_config", {**who(), "changes": {"timeframe": "1h", "atr_period": 10}}, format="json")
    api.post("/admin/update_config", {**who(), "changes": {"timeframe": "5m", "atr_period": 10}}, format="json")
    assert config_rows() == {"timeframe": ("5m", 2), "atr_period": (10, 1)}
    assert config_version() == 3
    assert audit_count() == 2


def test_a_no_op_update_is_audited_but_writes_no_version(api):
    api.post("/admin/update_config", {**who(), "changes": {"timeframe": "1h"}}, format="json")
    response = api.post("/admin/update_config", {**who(), "changes": {"timeframe": "1h", "volume_sma": 20}},
                        format="json")
    assert response.status_code == 200
    assert response.json()["changed"] == {}
    assert sorted(response.json()["unchanged"]) == ["timeframe", "volume_sma"]
    assert config_rows() == {"timeframe": ("1h", 1)}
    assert audit_count() == 2
    last = AuditLog.objects.order_by("id").last()
    assert last.before == last.after == {"timeframe": "1h", "volume_sma": 20}


def test_update_config_lists_every_problem_of_every_key_and_writes_nothing(api):
    # given one valid change among many invalid ones and a missing reason
    before = (audit_count(), config_rows(), TelegramOutbox.objects.count())
    response = api.post("/admin/update_config", {
        "by": "alice", "reason_code": "TUNE",
        "changes": {
            "timeframe": "1h",                                  # valid
            "risk_per_trade": "0.2",                            # out of range
            "breakout_lookback": "20",                          # wrong type
            "volume_multiplier": "0",                           # out of range (exclusive)
            "universe": ["BTC/USDT", "btc/usdt", "BTC/USDT", 7],  # bad format, duplicate, wrong type
            "max_open_positions": True,                         # a bool is not an int
            "cooldown_candles": -1,                             # below minimum
            "bogus_key": 1,                                     # unknown
            "trading.halt": {"halted": True},                   # not a config key
        },
    }, format="json")
    # then: 400 naming every bad key (under changes) and the missing reason
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert fields["reason"] == ["This field is required."]
    changes = fields["changes"]
    assert set(changes) == {"risk_per_trade", "breakout_lookback", "volume_multiplier", "universe",
                            "max_open_positions", "cooldown_candles", "bogus_key", "trading.halt"}
    assert "must be <= 0.05" in changes["risk_per_trade"][0]
    assert "integer" in changes["breakout_lookback"][0]
    assert "must be > 0" in changes["volume_multiplier"][0]
    assert len(changes["universe"]) == 3
    assert "unknown config key" in changes["bogus_key"][0]
    assert "halt/resume" in changes["trading.halt"][0]
    # and nothing was written: not the valid key, no audit row, no Telegram row
    assert (audit_count(), config_rows(), TelegramOutbox.objects.count()) == before


@pytest.mark.parametrize(("changes", "key", "fragment"), [
    ({"timeframe": "2h"}, "timeframe", "one of 1m, 5m, 15m, 1h"),
    ({"universe": []}, "universe", "must not be empty"),
    ({"universe": "BTC/USDT"}, "universe", "must be a list"),
    ({"risk_per_trade": "0"}, "risk_per_trade", "must be > 0"),
    ({"risk_per_trade": "NaN"}, "risk_per_trade", "plain decimal"),
    ({"daily_loss_limit": "abc"}, "daily_loss_limit", "decimal"),
    ({"max_submit_attempts": 0}, "max_submit_attempts", ">= 1"),
    ({"ema_trend": 2.5}, "ema_trend", "integer"),
])
def test_each_kind_of_config_error_is_named(api, changes, key, fragment):
    response = api.post("/admin/update_config", {**who(), "changes": changes}, format="json")
    assert response.status_code == 400
    assert fragment in " ".join(response.json()["fields"]["changes"][key])
    assert audit_count() == 0 and config_rows() == {}


def test_update_config_needs_at_least_one_change(api):
    response = api.post("/admin/update_config", {**who(), "changes": {}}, format="json")
    assert response.status_code == 400 and "changes" in response.json()["fields"]
    response = api.post("/admin/update_config", {**who(), "changes": ["timeframe"]}, format="json")
    assert response.status_code == 400 and "changes" in response.json()["fields"]
    assert audit_count() == 0


# --- emergency exit -----------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "bad"), [
    ({}, {"confirm"}),
    ({"confirm": "yes"}, {"confirm"}),
    ({"confirm": "emergency_exit"}, {"confirm"}),
    ({"confirm": "EMERGENCY_EXIT", "flatten_all": "maybe"}, {"flatten_all"}),
])
def test_emergency_exit_requires_the_exact_confirmation_and_writes_nothing(api, extra, bad):
    before = (audit_count(), config_rows())
    response = api.post("/admin/emergency_exit", {**who(reason_code="EMERGENCY"), **extra}, format="json")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == bad
    assert (audit_count(), config_rows()) == before


def test_emergency_exit_names_missing_who_and_why_together_with_confirm(api):
    response = api.post("/admin/emergency_exit", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"by", "reason_code", "reason", "confirm"}
    assert audit_count() == 0


def test_emergency_exit_end_to_end_halts_and_reports(api, celery_eager):
    # given a running system (the exit task runs in this process)
    # when the operator pulls the emergency exit
    response = api.post("/admin/emergency_exit", {**who(reason_code="EMERGENCY", reason="venue incident"),
                                                   "confirm": "EMERGENCY_EXIT", "flatten_all": False}, format="json")
    # then the report has the documented shape, trading is halted and the action is audited
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"canceled_orders", "exit_orders", "remaining", "unresolved_orders", "errors", "flat",
                         "already_flat", "trace_id"}
    assert isinstance(body["remaining"], dict) and body["flat"] is True
    status = api.get("/admin/status").json()
    assert status["halted"] is True and status["halt"]["reason_code"] == "EMERGENCY"
    # exactly one audit row for the whole action, carrying the request's trace id
    row = AuditLog.objects.get()
    assert (row.action, row.source, row.trace_id) == ("emergency_exit", "api", body["trace_id"])
    # a second pull finds nothing to do
    again = api.post("/admin/emergency_exit", {**who(reason_code="EMERGENCY", reason="venue incident"),
                                                "confirm": "EMERGENCY_EXIT"}, format="json").json()
    assert again["exit_orders"] == [] and again["canceled_orders"] == [] and again["already_flat"] is True


def test_emergency_exit_that_outlives_the_request_answers_202_and_its_report_is_fetched_later(api, monkeypatch):
    # Given no worker takes the task within the wait (the queued message is kept here, unconsumed)
    from trading.tasks import emergency_exit_run

    queued: list[dict] = []
    monkeypatch.setattr(emergency_exit_run, "delay", lambda **kw: queued.append(kw))
    monkeypatch.setattr("adminapi.views.EMERGENCY_EXIT_WAIT_S", 0.5)
    response = api.post("/admin/emergency_exit", {**who(reason_code="EMERGENCY", reason="venue incident"),
                                                   "confirm": "EMERGENCY_EXIT"}, format="json")
    # Then the operator is told it runs, and where its report will be
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "running" and body["report_url"] == f"/admin/emergency_exit/{body['trace_id']}"
    assert api.get(body["report_url"]).status_code == 404          # the worker has not even started it
    # When a worker runs it
    assert queued[0]["trace_id"] == body["trace_id"]
    emergency_exit_run.run(**queued[0])
    # Then the report is there, flat, and the action was audited once
    report = api.get(body["report_url"])
    assert report.status_code == 200 and report.json()["flat"] is True
    assert AuditLog.objects.filter(action="emergency_exit", trace_id=body["trace_id"]).count() == 1
