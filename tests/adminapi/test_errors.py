"""Whatever reaches /admin/ — a hostile body, a strange path, a bug — the answer is a JSON error
naming the problem with the right status, and nothing is written."""

from __future__ import annotations

import logging

import pytest

from infra.models import TelegramOutbox
from tests.adminapi.conftest import audit_count, config_rows, make_order, who

pytestmark = pytest.mark.django_db

POST_ENDPOINTS = ["/admin/halt", "/admin/resume", "/admin/update_config", "/admin/emergency_exit"]


def written() -> tuple:
    return audit_count(), config_rows(), TelegramOutbox.objects.count()


@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_a_4kb_body_of_1000_nested_arrays_is_a_400_on_every_post_endpoint(api, path):
    before = written()
    body = "[" * 1000 + "]" * 1000
    response = api.post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"error": "parse_error", "detail": "JSON body is nested more than 32 levels deep"}
    assert written() == before


def test_nesting_inside_an_otherwise_valid_body_is_refused_too(api):
    deep = "[" * 40 + "]" * 40
    response = api.post("/admin/update_config", f'{{"by": "alice", "reason_code": "TUNE", "reason": "x", '
                        f'"changes": {{"universe": {deep}}}}}', content_type="application/json")
    assert response.status_code == 400 and "nested more than 32 levels" in response.json()["detail"]
    assert written() == (0, {}, 0)


def test_a_nul_in_the_order_id_of_the_path_is_a_404_naming_the_rule(api):
    make_order(client_order_id="AS-real-1")
    response = api.get("/admin/orders/%00/events")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "1-36 characters of A-Z, a-z, 0-9, _ and -" in response.json()["detail"]


def test_a_body_over_the_size_limit_is_a_413_json_and_logs_no_error(api, settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    with caplog.at_level(logging.WARNING):
        response = api.post("/admin/halt", who(reason="x" * 2000), format="json")
    assert response.status_code == 413
    assert response.json() == {"error": "request_too_large", "detail": "request body is larger than 1000 bytes"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert written() == (0, {}, 0)


@pytest.mark.parametrize("path", ["/admin/nope", "/admin/halt/", "/admin/orders/AS-1", "/admin/"])
def test_an_unknown_admin_path_is_a_json_404_pointing_at_the_schema(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "not_found" and "GET /admin/schema" in body["detail"] and path in body["detail"]


def test_unknown_paths_outside_the_api_keep_django_pages(client):
    assert client.get("/nope")["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("fmt", ["multipart", "form"])
def test_form_and_multipart_bodies_are_a_415_and_write_nothing(api, fmt):
    if fmt == "multipart":
        response = api.post("/admin/halt", who())          # Django's test client: multipart/form-data
    else:
        response = api.post("/admin/halt", "by=alice&reason_code=MANUAL_HALT&reason=x",
                            content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert written() == (0, {}, 0)


def test_a_browser_asking_for_html_gets_json(api):
    response = api.get("/admin/status", HTTP_ACCEPT="text/html")
    assert response["Content-Type"].startswith("application/json")


def test_a_bug_is_a_json_500_with_the_trace_id_and_is_logged(api, monkeypatch, caplog):
    def broken():
        raise RuntimeError("selector exploded")

    monkeypatch.setattr("adminapi.selectors.system_status", broken)
    api.raise_request_exception = False
    with caplog.at_level(logging.ERROR):
        response = api.get("/admin/status", HTTP_X_TRACE_ID="bugtrace01")
    assert response.status_code == 500
    assert response.json() == {"error": "server_error",
                               "detail": "internal error (trace_id bugtrace01); it is logged with that id"}
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged and logged[0].exc_info[0] is RuntimeError
