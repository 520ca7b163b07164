"""Test harness: real PostgreSQL and real Redis, always.

`make test` (python -m infra.devstack test) starts embedded servers when DATABASE_URL /
REDIS_URL are unset and passes their URLs in; running pytest directly needs those URLs.
"""

from __future__ import annotations

import os
import socket

import pytest

_WITH_DJANGO = True


def pytest_configure(config):
    global _WITH_DJANGO
    # Pure suites (engines, emulator) may run with `-p no:django` and need no servers.
    _WITH_DJANGO = config.pluginmanager.hasplugin("django")
    if _WITH_DJANGO and not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        pytest.exit("DATABASE_URL / REDIS_URL are unset: run `make test`, which starts real PostgreSQL and Redis", 2)


def pytest_report_header(config):
    servers = os.environ.get("ALPHASNIPER_TEST_SERVERS", "given by DATABASE_URL / REDIS_URL")
    return f"alphasniper test servers: {servers}"


# --- No internet: any connection to a non-loopback address fails the test loudly. ----------
_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise RuntimeError(f"test tried to reach the network ({address!r}); tests must stay on 127.0.0.1")
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect


# --- Redis: one logical database per xdist worker, emptied at session start. ----------------
@pytest.fixture(scope="session", autouse=True)
def _isolated_redis():
    if not _WITH_DJANGO:
        yield None
        return
    from django.conf import settings

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base, _, db = settings.REDIS_URL.rpartition("/")
    # REDIS_URL's own database number (when not 0) is where this run starts, so two runs given
    # different numbers on one server never share a broker queue or flush each other's keys.
    first = int(db) if db.isdigit() and int(db) > 0 else 1
    index = first + int(worker.removeprefix("gw") or 0) % 14
    settings.REDIS_URL = f"{base}/{index}"
    os.environ["REDIS_URL"] = settings.REDIS_URL
    from infra.redis import get_redis

    get_redis().flushdb()
    yield settings.REDIS_URL


@pytest.fixture
def redis_client(_isolated_redis):
    from infra.redis import get_redis

    client = get_redis()
    client.flushdb()
    return client


# --- order_events is append-only even against TRUNCATE, so transactional tests flush it -----
# --- as a superuser with triggers suspended (what a real maintenance purge would need too). --
@pytest.fixture(scope="session", autouse=True)
def _flush_past_append_only_trigger():
    if not _WITH_DJANGO:
        yield
        return
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        statements = original(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        if not statements:
            return statements
        return ["SET session_replication_role = replica", *statements, "SET session_replication_role = DEFAULT"]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = original


@pytest.fixture
def celery_eager():
    """Run Celery tasks in the test (e.g. a Telegram delivery that would run on the data-syncer)."""
    from alphasniper_project.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = old


@pytest.fixture
def fake_telegram(settings):
    """A local Telegram Bot API on 127.0.0.1 that records what it is sent."""
    from tests.support.fake_telegram import FakeTelegram

    server = FakeTelegram().start()
    settings.TELEGRAM_API_URL = server.url
    settings.TELEGRAM_BOT_TOKEN = "123456:TEST-TOKEN-secret"
    settings.TELEGRAM_CHAT_ID = "-1001"
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- The crash matrix (tests/integration/test_crash_matrix.py) is printed after every run. ---
def _crash_matrix_path():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("ALPHASNIPER_DATA_DIR", root / ".data")) / "test" / "crash-matrix.jsonl"


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):      # the xdist controller, or a plain run
        _crash_matrix_path().unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    import json

    path = _crash_matrix_path()
    if hasattr(config, "workerinput") or not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    terminalreporter.section("crash matrix: kill -9 of a real worker at each step of the submit path")
    terminalreporter.write_line(f"{'kill point':<22}{'venue':<9}{'left at':<12}{'final':<9}"
                                f"{'duplicate orders':>17}{'lost events':>13}{'position = venue':>18}")
    for r in sorted(rows, key=lambda r: (r["kill_point"], r["venue"])):
        terminalreporter.write_line(
            f"{r['kill_point']:<22}{r['venue']:<9}{r['state_after_crash']:<12}{r['final_status']:<9}"
            f"{r['duplicate_orders']:>17}{r['lost_events']:>13}{str(r['position_matches_venue']):>18}")


# --- A test must not leave the shared DB connection inside a transaction: every later test ---
# --- would then "commit" into a transaction no other process can see. Name the culprit. -----
_previous_test = {"nodeid": None}


def pytest_runtest_setup(item):
    if not _WITH_DJANGO:
        return
    from django.db import connection

    open_connection = connection.connection is not None
    if connection.in_atomic_block or (open_connection and not connection.autocommit):
        culprit = _previous_test["nodeid"]
        connection.close()  # do not let the leak poison every test after this one
        pytest.fail(f"{culprit} left the database connection inside a transaction", pytrace=False)


def pytest_runtest_teardown(item, nextitem):
    _previous_test["nodeid"] = item.nodeid
