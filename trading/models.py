"""Truth in PostgreSQL: system config, the audit log, orders and their append-only events.

``orders`` is a projection of ``order_events``: only ``trading.services.lifecycle`` writes
``Order.status``, and it appends the event that explains the change in the same transaction.
``order_events`` rejects UPDATE and DELETE in PostgreSQL itself (migration 0002).
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

MONEY = {"max_digits": 38, "decimal_places": 18}


class SystemConfig(models.Model):
    """One row per config key; ``value`` is JSON. Writes go through ``services.config``,
    which bumps ``version`` and writes an audit row in the same transaction."""

    key = models.CharField(max_length=100, primary_key=True)
    value = models.JSONField()
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=100, default="system")

    class Meta:
        db_table = "system_config"
        ordering = ["key"]
        verbose_name = "system config entry"
        verbose_name_plural = "system config"

    def __str__(self) -> str:
        return f"{self.key} (v{self.version})"


class AuditLog(models.Model):
    """Every operator action: who, from where, why, and the state before and after."""

    class Source(models.TextChoices):
        API = "api"
        CLI = "cli"
        DJANGO_ADMIN = "django-admin"
        DASHBOARD = "dashboard"
        TELEGRAM = "telegram"
        SYSTEM = "system"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=100)
    source = models.CharField(max_length=20, choices=Source.choices)
    action = models.CharField(max_length=50, db_index=True)
    reason_code = models.CharField(max_length=64)
    reason = models.TextField(blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    trace_id = models.CharField(max_length=64, db_index=True)

    class Meta:
        db_table = "audit_log"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.reason_code}"


class OrderStatus(models.TextChoices):
    PENDING = "pending"                    # committed in our DB, not yet sent
    SUBMITTED = "submitted"                # a send is in flight
    SUBMIT_UNKNOWN = "submit_unknown"      # the send's outcome is unknown: resolve by client id
    ACCEPTED = "accepted"                  # the venue has it, nothing filled
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class Order(models.Model):
    class Side(models.TextChoices):
        BUY = "buy"
        SELL = "sell"

    class Type(models.TextChoices):
        MARKET = "market"
        LIMIT = "limit"
        STOP_MARKET = "stop_market"

    class Intent(models.TextChoices):
        ENTRY = "entry"
        STOP_LOSS = "stop_loss"
        TRAILING_STOP = "trailing_stop"
        TAKE_PROFIT = "take_profit"
        EMERGENCY_EXIT = "emergency_exit"
        MANUAL = "manual"
        IMPORTED = "imported"              # found on the venue under our prefix by reconciliation

    client_order_id = models.CharField(max_length=36, unique=True)
    venue = models.CharField(max_length=16)
    venue_order_id = models.CharField(max_length=64, null=True, blank=True)
    strategy = models.CharField(max_length=32)
    symbol = models.CharField(max_length=32, db_index=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=16, choices=Type.choices)
    intent = models.CharField(max_length=16, choices=Intent.choices)
    quantity = models.DecimalField(**MONEY)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    stop_price = models.DecimalField(**MONEY, null=True, blank=True)      # trigger of a stop_market order
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING, db_index=True)
    filled_quantity = models.DecimalField(**MONEY, default=0)
    filled_quote = models.DecimalField(**MONEY, default=0)   # sum(price * qty) of fills
    fee_quote = models.DecimalField(**MONEY, default=0)
    tick_id = models.CharField(max_length=32, blank=True, default="")
    trace_id = models.CharField(max_length=64, db_index=True)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    submit_attempts = models.PositiveIntegerField(default=0)   # sends that left this process (not deferrals)
    # An entry is only worth sending while its signal holds: past this moment (the end of its
    # candle period) it is expired instead of sent, and abandoned instead of re-sent.
    valid_until = models.DateTimeField(null=True, blank=True)
    # What the venue last said it had filled. More than ``filled_quantity`` means trades are owed:
    # reconciliation keeps reading them, however late they become visible.
    venue_filled_quantity = models.DecimalField(**MONEY, default=0)
    # Fees charged in an asset that is neither base nor quote (BNB) and not yet valued in quote:
    # {asset: amount}. Never counted as quote; reports and ``tbot diagnose`` show them.
    fee_unvalued = models.JSONField(default=dict, blank=True)
    # A protective stop sent as the replacement of another in one venue request (Binance
    # cancelReplace): the send cancels ``replaces`` and places this order together.
    replaces = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "orders"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["symbol", "status"])]

    def __str__(self) -> str:
        return f"{self.client_order_id} {self.side} {self.quantity} {self.symbol} [{self.status}]"

    @property
    def average_price(self):
        return (self.filled_quote / self.filled_quantity) if self.filled_quantity else None


class OrderEvent(models.Model):
    """Append-only. ``idempotency_key`` makes re-delivered facts (a fill by venue trade id,
    a reconciliation back-fill) land once: a second insert with the same key is a no-op."""

    class Source(models.TextChoices):
        STRATEGY = "strategy"
        VENUE = "venue"
        RECONCILIATION = "reconciliation"
        OPERATOR = "operator"
        SYSTEM = "system"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events", db_column="order_id")
    event_type = models.CharField(max_length=32, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    payload = models.JSONField(default=dict)
    trace_id = models.CharField(max_length=64, db_index=True)
    reason_code = models.CharField(max_length=64, blank=True, default="")
    idempotency_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    # Database time, not the writer's clock: grace windows and the orphan sweeper compare it with
    # the database's now(), so a worker with a skewed clock cannot make a live send look old.
    created_at = models.DateTimeField(db_default=Now(), db_index=True)

    class Meta:
        db_table = "order_events"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.event_type} ({self.source}) order={self.order_id}"


class EquitySnapshot(models.Model):
    """What the account was worth at one moment: every balance marked at the last price, in
    quote. Appended by each market snapshot (about every 30 s). The PnL of a Hong Kong day is
    equity now minus the equity at that day's start (ARCHITECTURE invariant 10), so a position
    opened yesterday counts only what it gained or lost today."""

    venue = models.CharField(max_length=16)
    taken_at = models.DateTimeField(db_default=Now())
    quote = models.CharField(max_length=16)
    equity = models.DecimalField(**MONEY)
    free_quote = models.DecimalField(**MONEY)
    holdings = models.JSONField(default=dict)       # asset -> {"quantity", "price", "value"} (strings)
    unpriced = models.JSONField(default=list)       # assets held that had no price (left out of equity)

    class Meta:
        db_table = "equity_snapshots"
        ordering = ["-taken_at", "-id"]
        indexes = [models.Index(fields=["venue", "taken_at"])]

    def __str__(self) -> str:
        return f"{self.venue} equity {self.equity} {self.quote} at {self.taken_at:%Y-%m-%d %H:%M:%S}"


class EmergencyExitRun(models.Model):
    """One emergency exit: started (by the API's task or tbot), and its report once finished.
    The API answers from here, so an exit that outlives a web request is never without a report.
    (The operator action itself is audited once, in ``audit_log``, when it starts.)"""

    trace_id = models.CharField(max_length=64, unique=True)
    actor = models.CharField(max_length=100)
    source = models.CharField(max_length=20)
    started_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    report = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "emergency_exit_runs"
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"emergency exit {self.trace_id} by {self.actor} ({'done' if self.finished_at else 'running'})"


# --- The paper venue's own books -------------------------------------------------------------
# The paper venue behaves like an exchange that happens to live in our database: separate
# tables, its own transactions (committed independently of our order lifecycle, as a real
# venue's would be), the same client-id uniqueness. Its rows are the "venue side" that
# reconciliation compares ``orders`` with.

class PaperBalance(models.Model):
    asset = models.CharField(max_length=16, primary_key=True)
    free = models.DecimalField(**MONEY, default=0)
    locked = models.DecimalField(**MONEY, default=0)

    class Meta:
        db_table = "paper_balances"
        ordering = ["asset"]

    def __str__(self) -> str:
        return f"{self.asset} free={self.free} locked={self.locked}"


class PaperOrder(models.Model):
    client_order_id = models.CharField(max_length=36, unique=True)
    symbol = models.CharField(max_length=32, db_index=True)
    side = models.CharField(max_length=4)
    type = models.CharField(max_length=16)                    # OrderType values
    quantity = models.DecimalField(**MONEY)
    price = models.DecimalField(**MONEY, null=True, blank=True)
    stop_price = models.DecimalField(**MONEY, null=True, blank=True)
    status = models.CharField(max_length=20, db_index=True)    # VenueOrderStatus values
    filled_quantity = models.DecimalField(**MONEY, default=0)
    filled_quote = models.DecimalField(**MONEY, default=0)
    locked_amount = models.DecimalField(**MONEY, default=0)    # still reserved for the unfilled rest
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "paper_orders"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"paper {self.client_order_id} {self.side} {self.quantity} {self.symbol} [{self.status}]"


class PaperTrade(models.Model):
    order = models.ForeignKey(PaperOrder, on_delete=models.PROTECT, related_name="trades")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4)
    price = models.DecimalField(**MONEY)
    quantity = models.DecimalField(**MONEY)
    fee = models.DecimalField(**MONEY)
    fee_asset = models.CharField(max_length=16)
    executed_at_ms = models.BigIntegerField()

    class Meta:
        db_table = "paper_trades"
        ordering = ["id"]
        indexes = [models.Index(fields=["symbol", "id"])]

    def __str__(self) -> str:
        return f"paper trade {self.pk} {self.side} {self.quantity} {self.symbol} @ {self.price}"
