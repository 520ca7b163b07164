"""Schema-driven fuzzing of the live admin API (schemathesis): whatever a client sends, with a
valid token the server never answers 5xx, and always answers JSON. Both schema-conforming
(positive) and schema-violating (negative) requests are generated for every operation.

Runs against pytest-django's ``live_server`` (a real HTTP server on 127.0.0.1 and the test
database). ``emergency_exit`` is left out: a generated valid body would run a real emergency
exit, which has its own end-to-end tests.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.adminapi.conftest import TOKEN

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation.modes import GenerationMode  # noqa: E402

MAX_EXAMPLES = 40


@pytest.mark.django_db(transaction=True)
def test_no_generated_request_gets_a_server_error(live_server, redis_client):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/admin/schema?format=json")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path not in ("/admin/emergency_exit", "/admin/schema")]
    assert {op.path for op in operations} >= {"/admin/halt", "/admin/update_config", "/admin/orders"}
    tried: dict[tuple[str, str], int] = {}

    def fuzz(operation, mode) -> None:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode, headers=headers))
        def call(case):
            response = case.call(base_url=live_server.url, headers=headers, timeout=30)
            key = (case.operation.label, str(mode))
            tried[key] = tried.get(key, 0) + 1
            assert response.status_code < 500, (case.method, case.formatted_path, case.body, case.query,
                                                response.status_code, response.text[:500])
            content_type = response.headers.get("content-type", [""])[0]
            assert content_type.startswith("application/json"), (response.status_code, case.method, case.formatted_path)

        try:
            call()
        except Unsatisfiable:
            # an operation with no input (GET /admin/status) has nothing to get wrong
            assert mode == GenerationMode.NEGATIVE and not operation.query and not operation.body

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    positive = {label for label, mode in tried if mode == GenerationMode.POSITIVE}
    negative = {label for label, mode in tried if mode == GenerationMode.NEGATIVE}
    assert len(positive) == len(operations)
    assert {"POST /admin/halt", "POST /admin/update_config", "GET /admin/orders"} <= negative
