"""Request and response shapes of the /admin API, with explicit fields so the OpenAPI schema is
complete. Input serializers check shape and format only; the services decide.

Requests are read strictly, and every rule is one the schema states, so the schema and the
API agree (the schemathesis run in tests/adminapi/test_fuzz.py holds them to it):

* a string is a JSON string (``"by": 123`` is not a name), a boolean a JSON boolean
  (``"flatten_all": "yes"`` is not ``true``);
* a field the endpoint does not know is an error naming it, never silently dropped;
* free text has a pattern: not blank, no NUL (PostgreSQL cannot store it);
* a query parameter given empty is an error, not "no filter".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from strategy.models import StrategyDecision
from trading.config_schema import (
    MAX_UNIVERSE,
    SCHEMA,
    SYMBOL_RE,
    ConfigValidationError,
    config_validate,
    decimal_pattern,
)
from trading.models import AuditLog, Order, OrderEvent, OrderStatus
from trading.selectors import DEFAULT_LIMIT, MAX_LIMIT
from trading.services.control import REASON_CODE_RE

EMERGENCY_CONFIRMATION = "EMERGENCY_EXIT"
REASON_CODE_MESSAGE = ("must be 2-64 characters of A-Z, 0-9 and _, starting with a letter "
                       "(pattern ^[A-Z][A-Z0-9_]+$, e.g. MANUAL_HALT)")
# A name: printable, not only spaces. (Python's \s is what str.strip() removes, so the service's
# "non-empty after strip" check and this pattern agree.)
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
NAME_MESSAGE = "must name who is acting: 1-100 characters, not only spaces, no control characters"
# Free text: anything but NUL, not only spaces.
TEXT_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
TEXT_MESSAGE = "must explain why in words: not only spaces, no NUL characters"
# Filters on stored identifiers: the characters those identifiers are made of.
TICK_ID_PATTERN = r"^[A-Za-z0-9:._-]{1,32}$"
DECISION_PATTERN = r"^[a-z_]{1,16}$"
REASON_CODE_FILTER_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
ACTION_PATTERN = r"^[a-z][a-z0-9_.-]{0,49}$"
ACTOR_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"
INTEGER_PATTERN = r"^-?[0-9]{1,10}$"


# --- strict fields --------------------------------------------------------------------------

class StrictRegexField(serializers.RegexField):
    """A JSON string matching ``regex``; numbers are not silently turned into text."""

    default_error_messages = {"not_a_string": "must be a JSON string"}

    def __init__(self, regex, **kwargs) -> None:
        kwargs.setdefault("trim_whitespace", False)   # the pattern decides about spaces
        super().__init__(regex, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false`` and nothing else: "yes", 1 or "true" are not booleans."""

    default_error_messages = {"invalid": "must be true or false (a JSON boolean)"}

    def to_internal_value(self, data):
        if data is True or data is False:
            return data
        self.fail("invalid")


class StrictChoiceField(serializers.ChoiceField):
    """One of ``choices``, given as a JSON string."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=type(data).__name__)
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """A body with a field this endpoint does not know is refused, naming the field: a typo such
    as ``flaten_all`` must not silently become the default."""

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        errors: dict = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail if isinstance(exc.detail, Mapping) else {"non_field_errors": exc.detail})
            value = None
        for name in unknown:
            errors[name] = [f"unknown field; this endpoint takes: {', '.join(self.fields)}"]
        if errors:
            raise serializers.ValidationError(errors)
        return value


# --- requests -------------------------------------------------------------------------------

class OperatorActionSerializer(StrictSerializer):
    """Who acts and why: required on every mutating call."""

    by = StrictRegexField(NAME_PATTERN, max_length=100, help_text="Who is acting (a person, not 'admin').",
                          error_messages={"invalid": NAME_MESSAGE})
    reason_code = StrictRegexField(
        REASON_CODE_RE.pattern, max_length=64, help_text="Machine-readable reason, e.g. MANUAL_HALT.",
        # no braces in the message: DRF passes it through str.format
        error_messages={"invalid": REASON_CODE_MESSAGE},
    )
    reason = StrictRegexField(TEXT_PATTERN, max_length=2000, help_text="Why, in words.",
                              error_messages={"invalid": TEXT_MESSAGE})


def _key_schema(key: str) -> dict:
    spec = SCHEMA[key]
    if spec.kind == "int":
        out: dict = {"type": "integer"}
        if spec.minimum is not None:
            out["minimum"] = int(spec.minimum)
        if spec.maximum is not None:
            out["maximum"] = int(spec.maximum)
    elif spec.kind == "decimal":
        # A string, so the value is exactly what the operator wrote; the pattern holds the range
        # and the places (JSON Schema has no decimal-string bounds).
        out = {"type": "string", "pattern": decimal_pattern(spec),
               "example": str(spec.default)}
    elif spec.kind == "choice":
        out = {"type": "string", "enum": list(spec.choices)}
    else:
        out = {"type": "array", "items": {"type": "string", "pattern": SYMBOL_RE.pattern}, "minItems": 1,
               "maxItems": MAX_UNIVERSE, "uniqueItems": True}
    bounds = spec.describe()
    if spec.kind == "decimal":
        lower = ">" if spec.exclusive_minimum else ">="
        out["description"] = (f"{spec.description} A decimal string {lower} {bounds['minimum']} and <= "
                              f"{bounds['maximum']}, at most 8 decimal places.")
    else:
        out["description"] = spec.description
    return out


@extend_schema_field({
    "type": "object",
    "properties": {key: _key_schema(key) for key in SCHEMA},
    "additionalProperties": False,
    "minProperties": 1,
    "description": "Config keys to change and their new values (see GET /admin/config for the rules).",
})
class ConfigChangesField(serializers.DictField):
    child = serializers.JSONField()


class UpdateConfigSerializer(OperatorActionSerializer):
    changes = ConfigChangesField()

    def validate_changes(self, value):
        try:
            config_validate(value, strict=True)
        except ConfigValidationError as exc:
            raise serializers.ValidationError(exc.problems) from None
        return value


class EmergencyExitSerializer(OperatorActionSerializer):
    confirm = StrictChoiceField(
        choices=[EMERGENCY_CONFIRMATION], help_text='Must be exactly "EMERGENCY_EXIT".',
        error_messages={"invalid_choice": f'must be exactly "{EMERGENCY_CONFIRMATION}"'},
    )
    flatten_all = StrictBooleanField(
        default=False, help_text="Also sell every non-quote asset on the venue, not only the strategy's positions.",
    )


class StrictIntegerQueryField(serializers.IntegerField):
    """An integer query parameter written as digits: "1.0" or " 1" are not integers."""

    default_error_messages = {"invalid": "must be an integer written in digits"}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not re.fullmatch(INTEGER_PATTERN, data):
            self.fail("invalid")
        return super().to_internal_value(data)


def _filter(pattern: str, message: str, **kwargs) -> StrictRegexField:
    return StrictRegexField(pattern, required=False, error_messages={"invalid": message}, **kwargs)


class LimitQuerySerializer(serializers.Serializer):
    limit = StrictIntegerQueryField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)


class OrdersQuerySerializer(LimitQuerySerializer):
    status = StrictChoiceField(choices=OrderStatus.choices, required=False)
    symbol = _filter(SYMBOL_RE.pattern, "must be a unified symbol like BTC/USDT")
    intent = StrictChoiceField(choices=Order.Intent.choices, required=False)
    since = serializers.DateTimeField(required=False, help_text="ISO-8601; orders created at or after it.")


class DecisionsQuerySerializer(LimitQuerySerializer):
    tick_id = _filter(TICK_ID_PATTERN, "must be a tick id like 20250101T0015", max_length=32)
    symbol = _filter(SYMBOL_RE.pattern, "must be a unified symbol like BTC/USDT")
    decision = _filter(DECISION_PATTERN, "must be a decision like enter, skip, blocked or hold", max_length=16)
    reason_code = _filter(REASON_CODE_FILTER_PATTERN, "must be a reason code like NO_BREAKOUT", max_length=64)


class PositionsQuerySerializer(LimitQuerySerializer):
    status = serializers.ChoiceField(choices=["open", "closed", "all"], default="all",
                                     help_text="open = still held (open or closing); closed; all.")
    symbol = serializers.RegexField(SYMBOL_RE.pattern, required=False,
                                    error_messages={"invalid": "must be a unified symbol like BTC/USDT"})


class PnlQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=366, default=30,
                                    help_text="How many Hong Kong days back to list (today included).")


class EquityQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="ISO-8601; default: 24 hours ago.")
    max_points = serializers.IntegerField(min_value=10, max_value=10000, default=2000,
                                          help_text="Longer series are thinned to every n-th snapshot.")


class BacktestsQuerySerializer(LimitQuerySerializer):
    before = StrictIntegerQueryField(required=False, min_value=1, max_value=9_999_999_999,
                                     help_text="Only runs with a smaller id: the next page after the last id seen.")
    status = StrictChoiceField(choices=["pending", "running", "done", "failed"], required=False)
    sweep = StrictIntegerQueryField(required=False, min_value=1, max_value=9_999_999_999,
                                    help_text="Only the runs of this sweep.")


class BacktestDetailQuerySerializer(serializers.Serializer):
    max_points = StrictIntegerQueryField(min_value=10, max_value=10000, default=2000,
                                         help_text="The equity curve thinned to about this many points.")


class AuditQuerySerializer(LimitQuerySerializer):
    action = _filter(ACTION_PATTERN, "must be an action like trading.halt or config.update", max_length=50)
    actor = _filter(ACTOR_PATTERN, "must be a name of 1-100 characters without control characters",
                    max_length=100)


# --- responses ------------------------------------------------------------------------------

class HaltStateSerializer(serializers.Serializer):
    halted = serializers.BooleanField()
    by = serializers.CharField(allow_null=True)
    reason_code = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    at = serializers.CharField(allow_null=True, help_text="ISO-8601 UTC")
    trace_id = serializers.CharField(allow_null=True)


class HaltResponseSerializer(serializers.Serializer):
    halted = serializers.BooleanField()
    halt = HaltStateSerializer()
    trace_id = serializers.CharField(help_text="Trace id of this request (also on its audit row).")


class ConfigChangeSerializer(serializers.Serializer):
    before = serializers.JSONField()
    after = serializers.JSONField()


class UpdateConfigResponseSerializer(serializers.Serializer):
    changed = serializers.DictField(child=ConfigChangeSerializer())
    unchanged = serializers.ListField(child=serializers.CharField())
    version = serializers.IntegerField()
    audit_id = serializers.IntegerField()
    values = serializers.DictField(child=serializers.JSONField())
    trace_id = serializers.CharField()


class EmergencyExitResponseSerializer(serializers.Serializer):
    canceled_orders = serializers.ListField(child=serializers.CharField())
    exit_orders = serializers.ListField(child=serializers.CharField())
    remaining = serializers.DictField(child=serializers.CharField(),
                                      help_text="asset -> quantity still held above dust, read back from the venue")
    unresolved_orders = serializers.ListField(child=serializers.CharField(),
                                              help_text="orders of ours whose outcome is still unknown or in flight")
    errors = serializers.ListField(child=serializers.CharField())
    flat = serializers.BooleanField(help_text="read back: nothing above dust, nothing in flight, no error")
    already_flat = serializers.BooleanField(help_text="flat, and this call had nothing to cancel or sell")
    trace_id = serializers.CharField()


class EmergencyExitRunningSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="running")
    trace_id = serializers.CharField()
    report_url = serializers.CharField(help_text="GET it for the report once the exit has finished")


class LastDecisionSerializer(serializers.Serializer):
    tick_id = serializers.CharField()
    symbol = serializers.CharField()
    decision = serializers.CharField()
    reason_code = serializers.CharField()
    trace_id = serializers.CharField()
    created_at = serializers.DateTimeField()


class StatusSerializer(serializers.Serializer):
    halted = serializers.BooleanField()
    halt = HaltStateSerializer()
    config_version = serializers.IntegerField()
    venue = serializers.CharField()
    open_orders = serializers.IntegerField()
    unresolved_orders = serializers.IntegerField(help_text="Orders in submitted / submit_unknown.")
    heartbeats = serializers.DictField(child=serializers.FloatField(allow_null=True),
                                       help_text="Seconds since each process last beat; null = never.")
    heartbeat_error = serializers.CharField(allow_null=True)
    last_decision = LastDecisionSerializer(allow_null=True)
    equity = serializers.CharField(allow_null=True, help_text="Latest equity snapshot, in the quote asset.")
    equity_at = serializers.CharField(allow_null=True, help_text="When it was taken (ISO-8601 UTC).")
    quote = serializers.CharField(allow_null=True)
    pnl_today = serializers.CharField(allow_null=True, help_text="Equity now minus equity at the Hong Kong day's "
                                                                 "start (what the daily loss limit uses).")
    open_positions = serializers.IntegerField()
    open_exposure = serializers.CharField(help_text="Held quantity of open positions at the last price.")
    unrealised_pnl = serializers.CharField()


class ConfigKeySerializer(serializers.Serializer):
    key = serializers.CharField()
    type = serializers.CharField()
    value = serializers.JSONField()
    default = serializers.JSONField()
    minimum = serializers.CharField(allow_null=True)
    maximum = serializers.CharField(allow_null=True)
    exclusive_minimum = serializers.BooleanField()
    choices = serializers.ListField(child=serializers.CharField())
    description = serializers.CharField()
    source = serializers.ChoiceField(choices=["stored", "default"])
    version = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_null=True)
    problems = serializers.ListField(child=serializers.CharField())


class ConfigResponseSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    valid = serializers.BooleanField()
    values = serializers.DictField(child=serializers.JSONField())
    keys = ConfigKeySerializer(many=True)
    halt = HaltStateSerializer()


class OrderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Order
        fields = [
            "client_order_id", "venue", "venue_order_id", "strategy", "symbol", "side", "type", "intent",
            "quantity", "price", "stop_price", "status", "filled_quantity", "filled_quote", "fee_quote", "tick_id",
            "trace_id", "reason_code", "submit_attempts", "last_error", "created_at", "updated_at",
        ]
        read_only_fields = fields


class OrderEventSerializer(serializers.ModelSerializer):
    client_order_id = serializers.CharField(source="order.client_order_id", read_only=True)

    class Meta:
        model = OrderEvent
        fields = ["id", "client_order_id", "event_type", "source", "payload", "trace_id", "reason_code",
                  "idempotency_key", "created_at"]
        read_only_fields = fields


class OrderEventsResponseSerializer(serializers.Serializer):
    order = OrderSerializer()
    events = OrderEventSerializer(many=True)


class DecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = StrategyDecision
        fields = ["id", "strategy", "tick_id", "symbol", "decision", "reason_code", "trace_id", "inputs",
                  "created_at"]
        read_only_fields = fields


class AuditLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLog
        fields = ["id", "created_at", "actor", "source", "action", "reason_code", "reason", "before", "after",
                  "trace_id"]
        read_only_fields = fields


Money = {"allow_null": True, "help_text": "Decimal as an exact string, in the quote asset"}


class VenueStopSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["protected", "pending", "unprotected", "none"],
                                    help_text="protected: a stop rests on the venue; pending: on its way there; "
                                              "unprotected: none, see reason (the bot-side stop still works); "
                                              "none: not applicable (venue stops off, or closed)")
    stop_price = serializers.CharField(allow_null=True, help_text="Where the resting stop triggers.")
    client_order_id = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_null=True, help_text="Why it is unprotected, in the venue's words.")


class PositionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    symbol = serializers.CharField()
    status = serializers.ChoiceField(choices=["open", "closing", "closed"])
    quantity = serializers.CharField(help_text="Held now (open) or bought (closed), base units.")
    entry_quantity = serializers.CharField()
    exited_quantity = serializers.CharField()
    entry_price = serializers.CharField()
    entry_cost = serializers.CharField(**Money)
    last_price = serializers.CharField(**Money)
    exposure = serializers.CharField(**Money)
    unrealised_pnl = serializers.CharField(**Money)
    realised_pnl = serializers.CharField(**Money)
    fees = serializers.CharField(**Money)
    fee_unvalued = serializers.DictField(child=serializers.CharField(),
                                         help_text="Fees in a third asset not valued yet: asset -> amount.")
    stop_price = serializers.CharField(**Money)
    take_profit_price = serializers.CharField(**Money)
    stop_distance_pct = serializers.CharField(allow_null=True, help_text="(last - stop) / last, in %.")
    take_profit_distance_pct = serializers.CharField(allow_null=True, help_text="(target - last) / last, in %.")
    venue_stop = VenueStopSerializer(help_text="The protective stop kept on the venue, or why there is none.")
    opened_at = serializers.CharField()
    closed_at = serializers.CharField(allow_null=True)
    age_seconds = serializers.IntegerField(help_text="Since it opened (until it closed).")
    exit_reason = serializers.CharField(allow_null=True)
    entry_client_order_id = serializers.CharField()
    trace_id = serializers.CharField()


class TradeStatsSerializer(serializers.Serializer):
    realised_pnl = serializers.CharField(**Money)
    fees = serializers.CharField(**Money)
    fee_unvalued = serializers.DictField(child=serializers.CharField())
    trades = serializers.IntegerField(help_text="Closed positions.")
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    win_rate = serializers.CharField(allow_null=True, help_text="Winning trades in %.")
    profit_factor = serializers.CharField(allow_null=True, help_text="Gross profit / gross loss; null without "
                                                                     "a losing trade.")
    max_drawdown = serializers.CharField(**Money)
    max_drawdown_pct = serializers.CharField(allow_null=True, help_text="Of the running equity peak, in %.")


class PnlTodaySerializer(TradeStatsSerializer):
    day = serializers.DateField(help_text="The Hong Kong calendar day.")
    day_start = serializers.CharField()
    pnl = serializers.CharField(**Money)
    pnl_pct = serializers.CharField(allow_null=True)
    equity_start = serializers.CharField(**Money)
    equity_now = serializers.CharField(**Money)
    equity_at = serializers.CharField()
    unrealised_pnl = serializers.CharField(**Money)


class PnlDaySerializer(TradeStatsSerializer):
    day = serializers.DateField()
    day_start = serializers.CharField()
    pnl = serializers.CharField(**Money)
    equity_start = serializers.CharField(**Money)
    equity_end = serializers.CharField(**Money)


class PnlTotalSerializer(TradeStatsSerializer):
    since = serializers.CharField(allow_null=True)
    pnl = serializers.CharField(**Money)
    equity_start = serializers.CharField(**Money)
    equity_now = serializers.CharField(**Money)
    unrealised_pnl = serializers.CharField(**Money)


class PnlSerializer(serializers.Serializer):
    venue = serializers.CharField()
    quote = serializers.CharField(allow_null=True)
    today = PnlTodaySerializer(allow_null=True)
    days = PnlDaySerializer(many=True)
    total = PnlTotalSerializer()


class EquityPointSerializer(serializers.Serializer):
    t = serializers.CharField(help_text="ISO-8601 UTC")
    equity = serializers.CharField()
    free_quote = serializers.CharField()


class EquitySerializer(serializers.Serializer):
    venue = serializers.CharField()
    quote = serializers.CharField(allow_null=True)
    since = serializers.CharField()
    points = EquityPointSerializer(many=True)


class BacktestSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["pending", "running", "done", "failed"])
    source = serializers.CharField(help_text="cli or sweep")
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    sweep_id = serializers.IntegerField(allow_null=True)
    segment = serializers.ChoiceField(choices=["full", "in_sample", "out_of_sample"])
    universe = serializers.ListField(child=serializers.CharField())
    timeframe = serializers.CharField()
    start_at = serializers.DateTimeField(help_text="First candle decided on (open time, UTC).")
    end_at = serializers.DateTimeField(help_text="End of the range (exclusive, UTC).")
    overrides = serializers.DictField(child=serializers.JSONField(),
                                      help_text="Config keys this run changed from the live config.")
    data_source = serializers.DictField(child=serializers.JSONField())
    metrics = serializers.DictField(
        child=serializers.JSONField(allow_null=True),
        help_text="total_return, cagr, max_drawdown, sharpe, sortino, calmar, win_rate, profit_factor, exposure "
                  "(fractions / ratios as numbers, null when undefined), trades, average_hold_hours; fees_paid, "
                  "start_equity, final_equity as decimal strings in the quote asset.")
    error = serializers.CharField(allow_null=True)


class BacktestTradeSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    entry_time = serializers.DateTimeField(help_text="Open time of the decision candle (entry at its close).")
    entry_price = serializers.CharField()
    quantity = serializers.CharField()
    stop_price = serializers.CharField()
    take_profit_price = serializers.CharField()
    exit_time = serializers.DateTimeField(help_text="Open time of the candle the exit filled in.")
    exit_price = serializers.CharField()
    exit_reason = serializers.CharField()
    fees_quote = serializers.CharField()
    pnl_quote = serializers.CharField()
    return_pct = serializers.FloatField()


class BacktestEquityPointSerializer(serializers.Serializer):
    t = serializers.DateTimeField(help_text="Candle close time (UTC)")
    equity = serializers.CharField(help_text="In the quote asset")


class BacktestDetailSerializer(BacktestSummarySerializer):
    spec = serializers.DictField(child=serializers.JSONField(),
                                 help_text="config, start_ms, end_ms, initial_balances, fee_rate, slippage_bps")
    decisions = serializers.DictField(child=serializers.IntegerField(), help_text="Reason code -> candles")
    candles_processed = serializers.IntegerField()
    final_balances = serializers.DictField(child=serializers.CharField())
    trades = BacktestTradeSerializer(many=True)
    equity = BacktestEquityPointSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.CharField()
    fields = serializers.DictField(child=serializers.JSONField(), required=False)
