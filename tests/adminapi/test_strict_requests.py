"""Requests are read as written: a boolean is a boolean, a name is a string, a field the endpoint
does not know is an error, a decimal is bounded. Each refusal names the field; nothing is written."""

from __future__ import annotations

import pytest

from infra.models import TelegramOutbox
from tests.adminapi.conftest import audit_count, config_rows, make_decision, who
from trading.selectors import is_halted

pytestmark = pytest.mark.django_db

CONFIRMED = {**who(reason_code="EMERGENCY", reason="venue incident"), "confirm": "EMERGENCY_EXIT"}


def written() -> tuple:
    return audit_count(), config_rows(), TelegramOutbox.objects.count()


@pytest.mark.parametrize("value", ["yes", "true", 1, "1", None, []])
def test_flatten_all_yes_is_not_true_and_the_emergency_exit_does_not_run(api, value):
    response = api.post("/admin/emergency_exit", {**CONFIRMED, "flatten_all": value}, format="json")
    assert response.status_code == 400
    fields = response.json()["fields"]
    assert list(fields) == ["flatten_all"]
    if value is not None:
        assert fields["flatten_all"] == ["must be true or false (a JSON boolean)"]
    assert written() == (0, {}, 0)
    assert is_halted().halted is False      # the exit (which halts first) never started


@pytest.mark.parametrize("confirm", [["EMERGENCY_EXIT"], True, 1])
def test_the_emergency_confirmation_must_be_the_string_itself(api, confirm):
    response = api.post("/admin/emergency_exit", {**CONFIRMED, "confirm": confirm}, format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"confirm"}
    assert written() == (0, {}, 0)


@pytest.mark.parametrize("by", [123, 1.5, True, ["alice"], {"name": "alice"}])
def test_by_must_be_a_json_string(api, by):
    response = api.post("/admin/halt", who(by=by), format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"by": ["must be a JSON string"]}
    assert written() == (0, {}, 0)


@pytest.mark.parametrize("by", ["", "   ", "\t\n", "al\x00ice", "al\x07ice"])
def test_by_must_name_someone_in_printable_characters(api, by):
    response = api.post("/admin/halt", who(by=by), format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"by"}
    assert written() == (0, {}, 0)


@pytest.mark.parametrize("reason", ["", "  \n ", "why\x00not"])
def test_reason_must_say_something_without_nul(api, reason):
    response = api.post("/admin/resume", who(reason=reason), format="json")
    assert response.status_code == 400 and set(response.json()["fields"]) == {"reason"}
    assert written() == (0, {}, 0)


@pytest.mark.parametrize(("path", "body"), [
    ("/admin/halt", who(duration_minutes=30)),
    ("/admin/resume", who(force=True)),
    ("/admin/update_config", {**who(), "changes": {"timeframe": "1h"}, "dry_run": True}),
    ("/admin/emergency_exit", {**CONFIRMED, "flaten_all": True}),
])
def test_an_unknown_body_field_is_a_400_naming_it(api, path, body):
    response = api.post(path, body, format="json")
    assert response.status_code == 400
    fields = response.json()["fields"]
    (unknown,) = set(body) - {"by", "reason_code", "reason", "changes", "confirm", "flatten_all"}
    assert list(fields) == [unknown]
    assert fields[unknown][0].startswith("unknown field; this endpoint takes: by, reason_code, reason")
    assert written() == (0, {}, 0)
    assert is_halted().halted is False


def test_a_49_digit_risk_per_trade_is_refused_not_stored(api):
    value = "0.0012345678901234567890123456789012345678901234567"
    assert len(value.replace("0.", "", 1)) == 49
    response = api.post("/admin/update_config", {**who(reason_code="TUNE"), "changes": {"risk_per_trade": value}},
                        format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["changes"] == {"risk_per_trade": ["must have at most 8 decimal places, got 49"]}
    assert written() == (0, {}, 0)


@pytest.mark.parametrize(("value", "fragment"), [
    (0.01, "must be a decimal string"),
    ("1e-2", "plain decimal"),
    (" 0.01", "plain decimal"),
    ("-0.01", "plain decimal"),
    ("0.060", "must be <= 0.05"),
])
def test_decimal_config_values_are_plain_strings_in_range(api, value, fragment):
    response = api.post("/admin/update_config", {**who(reason_code="TUNE"), "changes": {"risk_per_trade": value}},
                        format="json")
    assert response.status_code == 400
    assert fragment in response.json()["fields"]["changes"]["risk_per_trade"][0]
    assert written() == (0, {}, 0)


def test_an_exact_decimal_string_is_stored_as_written(api):
    response = api.post("/admin/update_config", {**who(reason_code="TUNE"),
                                                 "changes": {"risk_per_trade": "0.00250000"}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["changed"]["risk_per_trade"]["after"] == "0.00250000"


@pytest.mark.parametrize("query", ["intent=", "status=", "symbol=", "since=", "limit="])
def test_an_empty_order_filter_is_refused_not_ignored(api, query):
    response = api.get(f"/admin/orders?{query}")
    assert response.status_code == 400
    name = query.rstrip("=")
    assert response.json()["fields"] == {name: ["must not be empty; leave the parameter out to not filter by it"]}


@pytest.mark.parametrize("query", ["action=", "actor=", "actor=%00", "action=Trading.Halt"])
def test_a_bad_audit_filter_is_refused(api, query):
    response = api.get(f"/admin/audit?{query}")
    assert response.status_code == 400 and list(response.json()["fields"]) == [query.split("=")[0]]


def test_decision_filters_take_what_decisions_are_made_of(api):
    make_decision(tick_id="20250101T0015", reason_code="NO_BREAKOUT")
    assert len(api.get("/admin/decisions?tick_id=20250101T0015&reason_code=NO_BREAKOUT&decision=skip").json()) == 1
    for query in ("tick_id=%0A", "reason_code=no breakout", "decision=", "tick_id=a&tick_id=b"):
        response = api.get(f"/admin/decisions?{query}")
        assert response.status_code == 400, query


@pytest.mark.parametrize("limit", ["1.0", " 1", "1e2", "+5"])
def test_limit_is_written_in_digits(api, limit):
    response = api.get("/admin/orders", {"limit": limit})
    assert response.status_code == 400 and list(response.json()["fields"]) == ["limit"]
