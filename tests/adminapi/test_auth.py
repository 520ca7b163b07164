"""Every /admin endpoint answers 401 without a token and 403 with a wrong one — and writes nothing."""

from __future__ import annotations

import pytest

from tests.adminapi.conftest import audit_count, config_rows, who

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("post", "/admin/halt", who()),
    ("post", "/admin/resume", who()),
    ("post", "/admin/emergency_exit", {**who(), "confirm": "EMERGENCY_EXIT"}),
    ("post", "/admin/update_config", {**who(), "changes": {"timeframe": "1h"}}),
    ("get", "/admin/status", None),
    ("get", "/admin/config", None),
    ("get", "/admin/orders", None),
    ("get", "/admin/orders/AS-x/events", None),
    ("get", "/admin/decisions", None),
    ("get", "/admin/audit", None),
]


def _call(client, method, path, body):
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_without_a_token_is_401_and_writes_nothing(anon, method, path, body):
    before = (audit_count(), config_rows())
    response = _call(anon, method, path, body)
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert (audit_count(), config_rows()) == before


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_with_a_wrong_token_is_403_and_writes_nothing(anon, method, path, body):
    anon.credentials(HTTP_AUTHORIZATION="Bearer not-the-right-token-at-all")
    before = (audit_count(), config_rows())
    response = _call(anon, method, path, body)
    assert response.status_code == 403, response.content
    assert response.json() == {"error": "permission_denied", "detail": "invalid admin token"}
    assert (audit_count(), config_rows()) == before


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Basic YWRtaW46YWRtaW4="])
def test_a_malformed_authorization_header_is_401(anon, header):
    anon.credentials(HTTP_AUTHORIZATION=header)
    response = anon.post("/admin/halt", who(), format="json")
    assert response.status_code == 401
    assert audit_count() == 0


def test_when_the_server_has_no_admin_token_every_call_is_refused(anon, settings):
    settings.ADMIN_TOKEN = ""
    anon.credentials(HTTP_AUTHORIZATION="Bearer anything-at-all-0123456789")
    response = anon.post("/admin/halt", who(), format="json")
    assert response.status_code == 403
    assert "ADMIN_TOKEN is not configured" in response.json()["detail"]
    assert audit_count() == 0


def test_the_schema_is_public_and_describes_every_endpoint_and_the_bearer_auth(anon):
    response = anon.get("/admin/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    paths = set(schema["paths"])
    assert {p for _m, p, _b in ENDPOINTS if "AS-x" not in p} | {"/admin/orders/{client_order_id}/events"} <= paths
    assert schema["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer <ADMIN_TOKEN>"}
    halt_body = schema["components"]["schemas"]["OperatorAction"]
    assert set(halt_body["required"]) == {"by", "reason_code", "reason"}
    changes = schema["components"]["schemas"]["UpdateConfig"]["properties"]["changes"]
    assert "risk_per_trade" in changes["properties"] and changes["additionalProperties"] is False
