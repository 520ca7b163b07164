"""The log stream is for people: bounded lines, our own INFO kept, Celery's per-task chatter off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.logging import MAX_FIELD_CHARS, MAX_MESSAGE_CHARS, JsonFormatter, TextFormatter, TraceIdFilter

ROOT = Path(__file__).resolve().parents[2]


def _record(message: str, *, exc: bool = False, **extra) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("x" * 5000)
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("trading.services.reconciliation", logging.INFO, __file__, 1, message, (), exc_info)
    record.__dict__.update(extra)
    TraceIdFilter().filter(record)
    return record


def test_a_payload_dump_is_cut_saying_how_much_was_cut():
    dump = "reconciliation repaired: " + json.dumps({"orders": [{"id": i, "status": "filled"} for i in range(200)]})
    line = JsonFormatter().format(_record(dump, request="<WSGIRequest: GET '/admin/audit?" + "a" * 3000 + "'>"))
    payload = json.loads(line)
    assert len(line) < 1200
    assert payload["msg"].startswith("reconciliation repaired: {") and payload["msg"].endswith(
        f"… (+{len(dump) - MAX_MESSAGE_CHARS} chars)")
    assert len(payload["request"]) < MAX_FIELD_CHARS + 20
    text = TextFormatter().format(_record(dump))
    assert len(text) < 800 and text.endswith("chars)")


def test_a_traceback_is_kept_whole():
    payload = json.loads(JsonFormatter().format(_record("failed", exc=True)))
    assert "x" * 5000 in payload["exc"]


def test_short_lines_and_numbers_are_unchanged():
    payload = json.loads(JsonFormatter().format(_record("order AS1-x filled", status_code=200, ok=True)))
    assert (payload["msg"], payload["status_code"], payload["ok"]) == ("order AS1-x filled", 200, True)


ENABLED = """
import json, logging, django
django.setup()
names = ["celery.app.trace", "celery.worker.strategy", "celery.beat", "trading.services.submission",
         "strategy.services.tick", "infra.telegram"]
print(json.dumps({n: logging.getLogger(n).getEffectiveLevel() for n in names}))
"""


@pytest.mark.parametrize(("level", "celery_routine"), [("INFO", logging.WARNING), ("DEBUG", logging.DEBUG)])
def test_celery_routine_lines_are_off_at_info_and_our_info_is_on(level, celery_routine):
    env = {**os.environ, "LOG_LEVEL": level, "DJANGO_SETTINGS_MODULE": "alphasniper_project.settings"}
    proc = subprocess.run([sys.executable, "-c", ENABLED], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    levels = json.loads(proc.stdout)
    for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat"):
        assert levels[name] == celery_routine, name
    for name in ("trading.services.submission", "strategy.services.tick", "infra.telegram"):
        assert levels[name] == getattr(logging, level), name


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_logs_our_info_but_not_celerys_per_task_lines():
    from django.db import connection

    from infra.models import TelegramOutbox
    from infra.tasks import heartbeat_task
    from infra.telegram import DISABLED_MESSAGE, deliver

    queue = f"logtest-{os.getpid()}"
    db = connection.settings_dict
    from alphasniper_project.celery import app

    # The worker must listen on the broker this process sends to (under `make test` the broker
    # URL is derived from REDIS_URL when settings load, before the test's Redis isolation).
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_BROKER_URL": app.conf.broker_url, "LOG_FORMAT": "text", "LOG_LEVEL": "INFO",
           "TELEGRAM_BOT_TOKEN": "", "TELEGRAM_CHAT_ID": ""}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "alphasniper_project", "worker", "--pool", "solo",
                               "-Q", queue, "-n", f"{queue}@%h", "--loglevel", "INFO", "--without-mingle",
                               "--without-gossip"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        row = TelegramOutbox.objects.create(text="hello", trace_id="logtest01", reason_code="TEST")
        heartbeat_task.apply_async(args=["log-test"], queue=queue)
        deliver.apply_async(args=[row.pk], queue=queue)
        for _ in range(300):
            row.refresh_from_db()
            if row.status != TelegramOutbox.Status.PENDING:
                break
            assert worker.poll() is None, worker.stdout.read()
            time.sleep(0.1)
        else:
            pytest.fail("the worker did not run the tasks within 30 s")
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    # our INFO line is there, with its trace id ...
    assert DISABLED_MESSAGE in output and "[logtest01]" in output, output
    # ... and Celery's "received" / "succeeded" lines for the two tasks are not
    assert "] received" not in output and " succeeded in " not in output, output
    assert max(len(line) for line in output.splitlines()) < 1000
