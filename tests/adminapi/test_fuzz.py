"""The OpenAPI schema (GET /admin/schema) and the API agree, checked by schemathesis.

For every operation schemathesis generates schema-conforming (positive) and schema-violating
(negative) requests, sends them to the real Django app (WSGI, in-process, on the test
PostgreSQL and Redis) with a valid token, and runs all its checks on each answer: no 5xx,
the status code and content type are documented, the body matches its response schema, a
valid request is not refused and an invalid one is not accepted. The test fails listing every
distinct disagreement.

Bounded: ``MAX_EXAMPLES`` per operation and mode, a per-example deadline, and a fixed
derandomised seed, so the run is the same in CI and locally (about 30 s on a 2-core machine).
``emergency_exit`` gets negative data only: a valid body would run a real emergency exit,
which has its own end-to-end tests; invalid ones must all be refused before it starts.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.adminapi.conftest import TOKEN

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.core.failures import Failure, FailureGroup  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

MAX_EXAMPLES = 50
DEADLINE = timedelta(seconds=5)
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def wsgi_app():
    """The project's WSGI application, called in-process like Django's test client calls it:
    without closing the database connection after each request (that would end the test's
    transaction)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from alphasniper_project.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield application
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _failures(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, Failure):
        return [exc]
    inner = getattr(exc, "exceptions", None)
    if inner:
        return [f for e in inner for f in _failures(e)]
    return [exc]


@pytest.mark.django_db
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(wsgi_app, redis_client):
    schema = schemathesis.openapi.from_wsgi("/admin/schema?format=json", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path != "/admin/schema"]
    assert {op.path for op in operations} >= {"/admin/halt", "/admin/update_config", "/admin/orders",
                                              "/admin/emergency_exit", "/admin/orders/{client_order_id}/events"}
    tried: dict[tuple[str, GenerationMode], int] = {}
    problems: dict[tuple[str, str, str], str] = {}

    def fuzz(operation, mode: GenerationMode) -> None:
        @settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode, headers=HEADERS))
        def call(case):
            tried[(operation.label, mode)] = tried.get((operation.label, mode), 0) + 1
            try:
                case.call_and_validate(headers=HEADERS)
            except (Failure, FailureGroup) as exc:  # collect every distinct disagreement, not only the first
                for failure in _failures(exc):
                    title = getattr(failure, "title", type(failure).__name__)
                    key = (operation.label, mode.value, title)
                    problems.setdefault(key, f"{case.method} {case.formatted_path} query={case.query!r} "
                                             f"body={case.body!r}\n      {str(failure)[:400]}")

        try:
            call()
        except Unsatisfiable:
            # an operation with no input (GET /admin/status) cannot be sent an invalid one
            assert mode == GenerationMode.NEGATIVE and not operation.query and not operation.body

    for operation in operations:
        modes = [GenerationMode.NEGATIVE] if operation.path == "/admin/emergency_exit" else list(GenerationMode)
        for mode in modes:
            fuzz(operation, mode)

    report = "\n".join(f"- {label} [{mode}] {title}: {example}" for (label, mode, title), example in problems.items())
    assert not problems, f"{len(problems)} disagreement(s) between the schema and the API:\n{report}"
    assert {label for label, mode in tried if mode == GenerationMode.POSITIVE} == {
        op.label for op in operations if op.path != "/admin/emergency_exit"}
    negative = {label for label, mode in tried if mode == GenerationMode.NEGATIVE}
    assert {"POST /admin/halt", "POST /admin/update_config", "POST /admin/emergency_exit",
            "GET /admin/orders"} <= negative
