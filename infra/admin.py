"""Telegram outbox in the Django admin: read-only (delivery state is the worker's to change)."""

from __future__ import annotations

from django.contrib import admin

# Importing infra.telegram also registers its Celery tasks (infra.telegram.deliver /
# infra.telegram.flush_pending) in every process that sets up Django, workers included.
from infra import telegram  # noqa: F401
from infra.models import TelegramOutbox


class ReadOnlyMixin:
    """Viewable in the admin, never added, changed or deleted there: the system writes these."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


@admin.register(TelegramOutbox)
class TelegramOutboxAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "created_at", "status", "reason_code", "attempts", "trace_id", "sent_at"]
    list_filter = ["status", "reason_code"]
    search_fields = ["trace_id", "reason_code", "text"]
    date_hierarchy = "created_at"
