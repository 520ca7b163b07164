"""Infrastructure tables. ``telegram_outbox``: every Telegram notification, written in the same
transaction as the business change it announces and delivered after commit by a Celery task
(``infra.telegram``), so a notification is never sent for a change that rolled back and never
lost for one that committed."""

from __future__ import annotations

from django.db import models


class TelegramOutbox(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"      # gave up after retries, or Telegram refused it for good
        SKIPPED = "skipped"    # Telegram is disabled (TELEGRAM_BOT_TOKEN unset)

    text = models.TextField()
    trace_id = models.CharField(max_length=64, db_index=True)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # When the next delivery attempt is due; the sweeper re-enqueues pending rows well past it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "telegram_outbox"
        ordering = ["-created_at", "-id"]
        verbose_name = "Telegram message"
        verbose_name_plural = "Telegram outbox"

    def __str__(self) -> str:
        return f"#{self.pk} [{self.status}] {self.reason_code} {self.text[:40]}"
