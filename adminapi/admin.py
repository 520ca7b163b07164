"""The Django admin (/django-admin/): config is editable through the audited service, everything
else is read-only. Order history (``order_events``) can never be edited or deleted here."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from infra.admin import ReadOnlyMixin
from infra.logging import current_trace_id, new_trace_id
from strategy.models import StrategyDecision, StrategyPosition
from syncer.models import BalanceSnapshot, Ticker
from trading.config_schema import HALT_KEY, SCHEMA, ConfigValidationError, config_validate
from trading.models import AuditLog, Order, OrderEvent, SystemConfig
from trading.services import control
from trading.universe import VenueUnavailable, universe_check


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    pass


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


# --- system config: edited through config_update (validated, versioned, audited) ---------------

class SystemConfigForm(forms.ModelForm):
    key = forms.ChoiceField(choices=[(k, k) for k in SCHEMA])
    value = forms.JSONField(help_text="JSON, e.g. 25, \"1.5\", [\"BTC/USDT\", \"ETH/USDT\"], \"15m\".")
    reason_code = forms.RegexField(
        regex=control.REASON_CODE_RE.pattern, max_length=64,
        help_text="Machine-readable reason, e.g. TUNE_RISK (upper case, digits, underscores).",
        error_messages={"invalid": "Must match ^[A-Z][A-Z0-9_]{1,63}$ (e.g. TUNE_RISK)."},
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Why, in words (audited).")

    class Meta:
        model = SystemConfig
        fields = ["key", "value"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        key = self.instance.key if self.instance and self.instance.pk else None
        if key in SCHEMA:
            spec = SCHEMA[key]
            self.fields["value"].help_text = f"{spec.description} Default: {json.dumps(spec.describe()['default'])}."

    def clean(self):
        cleaned = super().clean()
        key = self.instance.key if self.instance.pk else cleaned.get("key")
        if key and "value" in cleaned:
            try:
                values = config_validate({key: cleaned["value"]})
                if key == "universe":
                    universe_check(values["universe"])
            except ConfigValidationError as exc:
                for problem in exc.problems.get(key, []) or [str(exc)]:
                    self.add_error("value", problem)
            except VenueUnavailable as exc:
                self.add_error("value", str(exc))
        return cleaned


@admin.register(SystemConfig)
class SystemConfigAdmin(admin.ModelAdmin):
    form = SystemConfigForm
    list_display = ["key", "value", "version", "updated_at", "updated_by"]
    search_fields = ["key"]

    def get_fields(self, request, obj=None):
        head = ["key"] if obj is None else []
        return [*head, "value", "reason_code", "reason", "version", "updated_at", "updated_by"]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["version", "updated_at", "updated_by"]
        return fixed if obj is None else ["key", *fixed]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting a row would silently revert it to its default, unaudited

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.key not in SCHEMA:
            return False  # trading.halt changes only through halt / resume
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        if obj.key == HALT_KEY or obj.key not in SCHEMA:
            raise PermissionDenied("this key is not editable here")
        trace_id = current_trace_id() or new_trace_id()
        result = control.config_update(
            changes={obj.key: form.cleaned_data["value"]}, actor=request.user.get_username(), source="django-admin",
            reason_code=form.cleaned_data["reason_code"], reason=form.cleaned_data["reason"], trace_id=trace_id,
        )
        if not result.changed:
            messages.info(request, f"{obj.key} already had this value: nothing changed (the attempt is audited).")


# --- read-only history ---------------------------------------------------------------------------

class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ["created_at", "event_type", "source", "reason_code", "trace_id", "payload", "idempotency_key"]
    ordering = ["id"]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["client_order_id", "symbol", "side", "type", "intent", "status", "quantity", "filled_quantity",
                    "venue", "created_at"]
    list_filter = ["status", "intent", "type", "venue", "symbol"]
    search_fields = ["client_order_id", "venue_order_id", "trace_id"]
    date_hierarchy = "created_at"
    inlines = [OrderEventInline]


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "order", "event_type", "source", "reason_code", "trace_id", "created_at"]
    list_filter = ["event_type", "source"]
    search_fields = ["order__client_order_id", "trace_id", "idempotency_key"]
    list_select_related = ["order"]


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "source", "action", "reason_code", "trace_id"]
    list_filter = ["action", "source"]
    search_fields = ["actor", "reason_code", "reason", "trace_id"]
    date_hierarchy = "created_at"


@admin.register(StrategyDecision)
class StrategyDecisionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tick_id", "symbol", "decision", "reason_code", "trace_id"]
    list_filter = ["decision", "reason_code", "symbol"]
    search_fields = ["tick_id", "symbol", "trace_id"]



@admin.register(StrategyPosition)
class StrategyPositionAdmin(ReadOnlyAdmin):
    list_display = ("id", "symbol", "status", "quantity", "entry_price", "exit_reason", "realised_pnl", "opened_at",
                    "closed_at")
    list_filter = ("status", "symbol", "exit_reason")


@admin.register(Ticker)
class TickerAdmin(ReadOnlyAdmin):
    list_display = ("venue", "symbol", "last", "bid", "ask", "venue_time", "fetched_at")


@admin.register(BalanceSnapshot)
class BalanceSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("venue", "taken_at")
