"""The one door to Telegram: an outbox row per message, delivered after commit by Celery.

* ``telegram_enqueue(text=, trace_id=, reason_code=)`` is called *inside* the business
  transaction. It writes a ``telegram_outbox`` row and, on commit, publishes the task
  ``infra.telegram.deliver`` (queue ``sync``). A rolled-back change therefore never notifies,
  and a committed one is never lost: the row stays ``pending`` until delivered.
* ``deliver`` POSTs ``{TELEGRAM_API_URL}/bot{TOKEN}/sendMessage`` with a timeout, retries 5xx /
  429 / network errors with exponential backoff (attempts counted in the row), and marks the
  row ``sent`` or ``failed``. It runs on the data-syncer, so a slow Telegram never blocks
  trading; publishing itself never raises into the caller.
* With ``TELEGRAM_BOT_TOKEN`` unset Telegram is disabled: rows are written as ``skipped`` (the
  audit trail still shows what would have been said) and a log line says so.
* ``telegram_flush_pending()`` (task ``infra.telegram.flush_pending``, beat entry
  ``telegram-flush-pending``) re-enqueues pending rows whose delivery is overdue, e.g. because
  the broker was down at commit time.

The bot token is never logged or stored: error texts are redacted before they are kept.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

import requests
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from infra.models import TelegramOutbox

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6              # 1 try + 5 retries: 5, 10, 20, 40, 80 s of backoff
BACKOFF_BASE_S = 5
BACKOFF_MAX_S = 600
SWEEP_AFTER_S = 120           # a pending row this far past its due time is re-enqueued
MAX_TEXT = 4000               # Telegram's limit is 4096 characters
HTTP_TIMEOUT = (3.05, 10)     # connect, read

SENT = "sent"
RETRY = "retry"
FAILED = "failed"
SKIPPED = "skipped"
NOT_PENDING = "not-pending"

DISABLED_MESSAGE = "Telegram is disabled (TELEGRAM_BOT_TOKEN is unset): message not sent"


def telegram_enabled() -> bool:
    return bool(settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_CHAT_ID)


def backoff_s(attempts: int) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: 5, 10, 20, … capped."""
    return float(min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


def _redact(text: str) -> str:
    token = settings.TELEGRAM_BOT_TOKEN
    return text.replace(token, "***") if token else text


def message_text(*, text: str, trace_id: str, reason_code: str) -> str:
    """The text as sent: always ends with the reason code and trace id, so a reader can find the
    audit row and the logs of what the message is about."""
    footer = f"\nreason_code: {reason_code or '-'}\ntrace_id: {trace_id}"
    return text[: MAX_TEXT - len(footer)] + footer


def telegram_enqueue(*, text: str, trace_id: str, reason_code: str) -> TelegramOutbox:
    """Write the outbox row (in the caller's transaction) and deliver it after commit."""
    body = message_text(text=text, trace_id=trace_id, reason_code=reason_code)
    if not telegram_enabled():
        log.info(DISABLED_MESSAGE, extra={"trace_id": trace_id, "reason_code": reason_code})
        return TelegramOutbox.objects.create(
            text=body, trace_id=trace_id, reason_code=reason_code, status=TelegramOutbox.Status.SKIPPED,
            last_error=DISABLED_MESSAGE,
        )
    row = TelegramOutbox.objects.create(text=body, trace_id=trace_id, reason_code=reason_code,
                                        next_attempt_at=timezone.now())
    transaction.on_commit(partial(_dispatch, row.pk))
    return row


def _dispatch(outbox_id: int, *, countdown: float | None = None) -> bool:
    """Publish the delivery task. Never raises: if the broker is down the row stays pending and
    the sweeper re-enqueues it later."""
    try:
        deliver.apply_async(args=[outbox_id], countdown=countdown, retry=False)
        return True
    except Exception as exc:
        log.warning("could not enqueue Telegram delivery of outbox row %s: %s", outbox_id, exc)
        return False


def _post(text: str) -> tuple[bool, bool, str, float | None]:
    """One sendMessage call. Returns (sent, retryable, error, retry_after_s)."""
    url = f"{settings.TELEGRAM_API_URL}/bot{settings.TELEGRAM_BOT_TOKEN}/sendMessage"
    try:
        response = requests.post(
            url, json={"chat_id": settings.TELEGRAM_CHAT_ID, "text": text, "disable_web_page_preview": True},
            timeout=HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        return False, True, _redact(f"{type(exc).__name__}: {exc}")[:500], None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if 200 <= response.status_code < 300 and body.get("ok", True):
        return True, False, "", None
    error = _redact(f"HTTP {response.status_code}: {body.get('description') or response.text[:200]}")[:500]
    if response.status_code == 429:
        params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        retry_after = params.get("retry_after")
        return False, True, error, float(retry_after) if isinstance(retry_after, int | float) else None
    # 5xx may pass; 4xx (bad chat id, revoked token, …) will not get better by retrying.
    return False, response.status_code >= 500, error, None


def telegram_deliver(*, outbox_id: int) -> tuple[str, float]:
    """Attempt delivery of one pending row once. Returns (outcome, seconds until the retry).

    The row is locked for the attempt (``skip_locked``), so two deliveries of the same row —
    a retry and a sweep, say — cannot both send it.
    """
    with transaction.atomic():
        row = TelegramOutbox.objects.select_for_update(skip_locked=True).filter(pk=outbox_id).first()
        if row is None or row.status != TelegramOutbox.Status.PENDING:
            return NOT_PENDING, 0.0
        if not telegram_enabled():
            log.info(DISABLED_MESSAGE, extra={"trace_id": row.trace_id, "reason_code": row.reason_code})
            row.status = TelegramOutbox.Status.SKIPPED
            row.last_error = DISABLED_MESSAGE
            row.save(update_fields=["status", "last_error"])
            return SKIPPED, 0.0
        row.attempts += 1
        sent, retryable, error, retry_after = _post(row.text)
        now = timezone.now()
        if sent:
            row.status, row.sent_at, row.last_error, row.next_attempt_at = TelegramOutbox.Status.SENT, now, "", None
            outcome, delay = SENT, 0.0
        elif retryable and row.attempts < MAX_ATTEMPTS:
            delay = max(backoff_s(row.attempts), retry_after or 0.0)
            row.last_error, row.next_attempt_at = error, now + timedelta(seconds=delay)
            outcome = RETRY
        else:
            row.status, row.last_error, row.next_attempt_at = TelegramOutbox.Status.FAILED, error, None
            outcome, delay = FAILED, 0.0
        row.save(update_fields=["status", "attempts", "last_error", "next_attempt_at", "sent_at"])
    extra = {"trace_id": row.trace_id, "reason_code": row.reason_code, "outbox_id": row.pk, "attempts": row.attempts}
    if outcome == RETRY:
        log.warning("Telegram delivery failed (%s); retrying in %.0fs", error, delay, extra=extra)
    elif outcome == FAILED:
        log.error("Telegram delivery gave up after %d attempt(s): %s", row.attempts, error, extra=extra)
    return outcome, delay


def telegram_flush_pending(*, older_than_s: float = SWEEP_AFTER_S, limit: int = 200) -> int:
    """Re-enqueue pending rows whose delivery is overdue by ``older_than_s``. Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    with transaction.atomic():
        rows = list(
            TelegramOutbox.objects.select_for_update(skip_locked=True)
            .filter(status=TelegramOutbox.Status.PENDING, created_at__lt=cutoff)
            .exclude(next_attempt_at__gte=cutoff)
            .order_by("id")[:limit]
        )
        # Mark them as just re-enqueued, so the next sweep leaves them alone for a while.
        ids = [row.pk for row in rows]
        TelegramOutbox.objects.filter(pk__in=ids).update(next_attempt_at=timezone.now())
    for outbox_id in ids:
        _dispatch(outbox_id)
    if ids:
        log.info("re-enqueued %d overdue Telegram message(s)", len(ids))
    return len(ids)


def telegram_problems(*, since: datetime) -> dict[str, list[TelegramOutbox]]:
    """Failed rows since ``since`` and pending rows overdue by more than the sweep interval."""
    overdue = timezone.now() - timedelta(seconds=SWEEP_AFTER_S)
    return {
        "failed": list(TelegramOutbox.objects.filter(status=TelegramOutbox.Status.FAILED, created_at__gte=since)[:20]),
        "overdue": list(TelegramOutbox.objects.filter(status=TelegramOutbox.Status.PENDING, created_at__lt=overdue)
                        .exclude(next_attempt_at__gte=overdue)[:20]),
    }


@shared_task(bind=True, name="infra.telegram.deliver", ignore_result=True, acks_late=True,
             soft_time_limit=30, time_limit=45, max_retries=None)
def deliver(self, outbox_id: int) -> str:
    """Deliver one outbox row; retry policy lives here, attempts are counted in the row."""
    outcome, delay = telegram_deliver(outbox_id=int(outbox_id))
    if outcome == RETRY:
        raise self.retry(countdown=delay)
    return outcome


@shared_task(name="infra.telegram.flush_pending", ignore_result=True, soft_time_limit=30, time_limit=45)
def flush_pending() -> int:
    return telegram_flush_pending()
