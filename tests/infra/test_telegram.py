"""Telegram outbox: written with the business change, delivered after commit, retried with
backoff, never sent for a rolled-back change, and quietly skipped when Telegram is disabled.

Delivery runs through the real Celery task (eager) and real HTTP against a local fake
Telegram server on 127.0.0.1."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from infra import telegram
from infra.models import TelegramOutbox

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _telegram_off(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    settings.TELEGRAM_CHAT_ID = ""


def test_message_is_delivered_after_commit_with_trace_id_and_reason_code(
        fake_telegram, celery_eager, django_capture_on_commit_callbacks):
    # given Telegram is configured
    # when a message is enqueued inside a business transaction that commits
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            row = telegram.telegram_enqueue(text="trading HALTED by alice", trace_id="abc123trace",
                                            reason_code="MANUAL_HALT")
            # then nothing is sent before the commit
            assert fake_telegram.calls == []
    # then exactly one message reached the chat, naming the trace id and the reason code
    assert len(callbacks) == 1
    assert len(fake_telegram.delivered) == 1
    sent = fake_telegram.delivered[0]
    assert sent["chat_id"] == "-1001"
    assert "trading HALTED by alice" in sent["text"]
    assert "abc123trace" in sent["text"] and "MANUAL_HALT" in sent["text"]
    assert fake_telegram.calls[0]["path"] == "/bot123456:TEST-TOKEN-secret/sendMessage"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "")
    assert row.sent_at is not None


def test_rolled_back_change_sends_nothing(fake_telegram, celery_eager, django_capture_on_commit_callbacks):
    # given a business transaction that fails after enqueueing its notification
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            telegram.telegram_enqueue(text="never", trace_id="t-rollback", reason_code="X_TEST")
            raise RuntimeError("business failure")
    # then no row, no delivery
    assert callbacks == []
    assert not TelegramOutbox.objects.filter(trace_id="t-rollback").exists()
    assert fake_telegram.calls == []


def test_a_500_is_retried_and_the_message_then_delivered(fake_telegram, celery_eager):
    # given Telegram answers 500 twice, then 200
    fake_telegram.script = [500, 500]
    row = telegram.telegram_enqueue(text="config updated", trace_id="t-retry", reason_code="TUNE")
    # when the Celery task delivers it (retries run inline in eager mode)
    telegram.deliver.apply(args=[row.pk])
    # then Telegram saw three attempts of the same message and the chat got it once
    assert [c["status"] for c in fake_telegram.calls] == [500, 500, 200]
    assert len({c["body"]["text"] for c in fake_telegram.calls}) == 1
    assert len(fake_telegram.delivered) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 3)


def test_backoff_grows_exponentially_between_attempts(fake_telegram):
    # given Telegram keeps failing
    fake_telegram.script = [500] * 10
    row = telegram.telegram_enqueue(text="x", trace_id="t-backoff", reason_code="TUNE")
    # when single attempts are made
    delays = [telegram.telegram_deliver(outbox_id=row.pk) for _ in range(3)]
    # then each retry waits twice as long as the one before, and the row stays pending meanwhile
    assert delays == [("retry", 5.0), ("retry", 10.0), ("retry", 20.0)]
    row.refresh_from_db()
    assert row.status == "pending" and row.attempts == 3
    assert row.next_attempt_at > timezone.now() + timedelta(seconds=15)
    assert telegram.backoff_s(20) == telegram.BACKOFF_MAX_S


def test_429_waits_at_least_what_telegram_asks(fake_telegram, settings):
    fake_telegram.script = [429]
    row = telegram.telegram_enqueue(text="x", trace_id="t-429", reason_code="TUNE")
    outcome, delay = telegram.telegram_deliver(outbox_id=row.pk)
    assert outcome == "retry" and delay >= 1


def test_gives_up_after_max_attempts_and_marks_failed_without_leaking_the_token(fake_telegram, celery_eager):
    # given Telegram is down for good
    fake_telegram.script = [500] * 20
    row = telegram.telegram_enqueue(text="x", trace_id="t-fail", reason_code="TUNE")
    # when delivered
    telegram.deliver.apply(args=[row.pk])
    # then it tried MAX_ATTEMPTS times and recorded why it failed
    assert len(fake_telegram.calls) == telegram.MAX_ATTEMPTS
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", telegram.MAX_ATTEMPTS)
    assert "HTTP 500" in row.last_error


def test_a_4xx_is_not_retried(fake_telegram, celery_eager):
    fake_telegram.script = [400]
    row = telegram.telegram_enqueue(text="x", trace_id="t-400", reason_code="TUNE")
    telegram.deliver.apply(args=[row.pk])
    assert len(fake_telegram.calls) == 1
    row.refresh_from_db()
    assert row.status == "failed" and "chat not found" in row.last_error


def test_unreachable_telegram_is_retried_and_the_error_hides_the_token(settings):
    # given Telegram's URL points at a port nobody listens on
    from tests.conftest import free_port

    settings.TELEGRAM_API_URL = f"http://127.0.0.1:{free_port()}"
    settings.TELEGRAM_BOT_TOKEN = "999:SECRET-TOKEN"
    settings.TELEGRAM_CHAT_ID = "1"
    row = telegram.telegram_enqueue(text="x", trace_id="t-down", reason_code="TUNE")
    # when one attempt is made
    outcome, _ = telegram.telegram_deliver(outbox_id=row.pk)
    # then it will be retried, and the stored error does not carry the bot token
    row.refresh_from_db()
    assert outcome == "retry" and row.status == "pending"
    assert "ConnectionError" in row.last_error
    assert "SECRET-TOKEN" not in row.last_error


def test_disabled_telegram_marks_rows_skipped_and_says_so(caplog, celery_eager, django_capture_on_commit_callbacks):
    # given no TELEGRAM_BOT_TOKEN
    # when a message is enqueued and the transaction commits
    with caplog.at_level(logging.INFO, logger="infra.telegram"):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            row = telegram.telegram_enqueue(text="halted", trace_id="t-off", reason_code="MANUAL_HALT")
    # then the row is kept (the text is still on record) but marked skipped, nothing is enqueued,
    # and a log line says Telegram is disabled
    assert callbacks == []
    row.refresh_from_db()
    assert row.status == "skipped" and "t-off" in row.text
    assert any("Telegram is disabled" in r.getMessage() for r in caplog.records)


def test_row_pending_when_telegram_gets_disabled_is_skipped_at_delivery(fake_telegram, settings, caplog):
    row = telegram.telegram_enqueue(text="x", trace_id="t-late-off", reason_code="TUNE")
    settings.TELEGRAM_BOT_TOKEN = ""
    with caplog.at_level(logging.INFO, logger="infra.telegram"):
        assert telegram.telegram_deliver(outbox_id=row.pk) == ("skipped", 0.0)
    row.refresh_from_db()
    assert row.status == "skipped" and fake_telegram.calls == []
    assert any("Telegram is disabled" in r.getMessage() for r in caplog.records)


def test_delivering_a_sent_row_again_sends_nothing(fake_telegram, celery_eager):
    # given a row already delivered
    row = telegram.telegram_enqueue(text="x", trace_id="t-once", reason_code="TUNE")
    telegram.deliver.apply(args=[row.pk])
    # when the task is re-delivered (e.g. a worker died after sending, before acking)
    result = telegram.deliver.apply(args=[row.pk])
    # then Telegram saw it once
    assert result.get() == "not-pending"
    assert len(fake_telegram.calls) == 1


def test_sweeper_re_enqueues_only_overdue_pending_rows(fake_telegram, celery_eager):
    # given an old pending row (its enqueue was lost), a fresh one, and one waiting for its retry
    old = telegram.telegram_enqueue(text="old", trace_id="t-old", reason_code="TUNE")
    fresh = telegram.telegram_enqueue(text="fresh", trace_id="t-fresh", reason_code="TUNE")
    waiting = telegram.telegram_enqueue(text="waiting", trace_id="t-wait", reason_code="TUNE")
    long_ago = timezone.now() - timedelta(minutes=30)
    TelegramOutbox.objects.filter(pk=old.pk).update(created_at=long_ago, next_attempt_at=long_ago)
    TelegramOutbox.objects.filter(pk=waiting.pk).update(created_at=long_ago,
                                                         next_attempt_at=timezone.now() + timedelta(minutes=5))
    # when the sweeper runs
    count = telegram.telegram_flush_pending()
    # then only the overdue row was re-enqueued — and delivered
    assert count == 1
    assert [c["body"]["text"].split("\n")[0] for c in fake_telegram.calls] == ["old"]
    statuses = dict(TelegramOutbox.objects.filter(pk__in=[old.pk, fresh.pk, waiting.pk]).values_list("pk", "status"))
    assert statuses == {old.pk: "sent", fresh.pk: "pending", waiting.pk: "pending"}
    # and the flush task is registered under its stable name
    assert telegram.flush_pending.name == "infra.telegram.flush_pending"
    assert telegram.deliver.name == "infra.telegram.deliver"


def test_delivery_task_routes_to_the_sync_queue():
    from alphasniper_project.celery import app

    route = app.amqp.router.route({}, "infra.telegram.deliver")
    assert route["queue"].name == "sync"


def test_long_text_is_cut_to_telegram_limit_but_keeps_the_footer():
    text = telegram.message_text(text="y" * 10_000, trace_id="t-long", reason_code="LONG_TEXT")
    assert len(text) <= telegram.MAX_TEXT
    assert text.endswith("trace_id: t-long") and "LONG_TEXT" in text
