from __future__ import annotations

from django.db import models

from trading.models import MONEY


class StrategyDecision(models.Model):
    """What the strategy decided for one symbol at one tick — traded or not, and why.

    Every symbol gets one row at every tick; ``tbot diagnose`` and operators read them to
    answer "why was no order placed?". Unique per (strategy, tick, symbol), so a second worker
    or a second beat running the same tick cannot write a second decision.
    """

    strategy = models.CharField(max_length=32)
    tick_id = models.CharField(max_length=32, db_index=True)
    symbol = models.CharField(max_length=32)
    decision = models.CharField(max_length=16)       # enter | skip | hold | exit | blocked
    reason_code = models.CharField(max_length=64)
    trace_id = models.CharField(max_length=64, db_index=True)
    inputs = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "strategy_decisions"
        ordering = ["-created_at", "symbol"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "tick_id", "symbol"], name="uniq_decision_per_tick_symbol"),
        ]

    def __str__(self) -> str:
        return f"{self.tick_id} {self.symbol} {self.decision} {self.reason_code}"


class VenueStop(models.TextChoices):
    """Whether a position has its protective stop on the venue."""

    NONE = "none"                  # not applicable: venue stops are off, or the position is not open
    PENDING = "pending"            # placed, the venue has not confirmed it yet
    PROTECTED = "protected"        # resting on the venue
    UNPROTECTED = "unprotected"    # the venue does not offer it or refused it; the bot-side stop still works


class StrategyPosition(models.Model):
    """One long position, opened by the fills of one entry order and closed by exit orders.

    Derived from ``orders`` (never from the venue's balances): the entry order's fills open it,
    the exit orders' fills close it. ``stop_state`` is ``PositionStop.to_dict()`` and is saved
    after every stop-monitor pass, so a restarted worker continues from the same (ratcheted)
    stop. ``exit_attempt`` numbers the exit client order ids (``exit0``, ``exit1``, …): a new
    number is used only after the previous exit order ended without selling everything.
    """

    class Status(models.TextChoices):
        OPEN = "open"
        CLOSING = "closing"        # an exit order has been placed
        CLOSED = "closed"

    strategy = models.CharField(max_length=32)
    venue = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32, db_index=True)
    entry_order = models.OneToOneField("trading.Order", on_delete=models.PROTECT, related_name="position")
    tick_id = models.CharField(max_length=32)
    trace_id = models.CharField(max_length=64, db_index=True)       # the entry decision's trace id
    quantity = models.DecimalField(**MONEY)                          # base units held (net of base-asset fees)
    entry_price = models.DecimalField(**MONEY)                       # average fill price of the entry
    entry_fee = models.DecimalField(**MONEY, default=0)              # quote
    stop_state = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN, db_index=True)
    exit_order = models.ForeignKey("trading.Order", on_delete=models.PROTECT, null=True, blank=True,
                                   related_name="+")
    exit_attempt = models.PositiveIntegerField(default=0)
    exit_reason = models.CharField(max_length=32, blank=True, default="")
    exit_trace_id = models.CharField(max_length=64, blank=True, default="")
    exited_quantity = models.DecimalField(**MONEY, default=0)        # sold by finished exit orders
    exit_proceeds = models.DecimalField(**MONEY, default=0)          # quote received for it, net of fees
    realised_pnl = models.DecimalField(**MONEY, null=True, blank=True)
    opened_at = models.DateTimeField()
    exit_triggered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The protective stop kept on the venue (strategy/services/venue_stops.py). Its orders are the
    # position's stop-market sells (tick id ``P<id>``, client intent ``stop<version>``).
    venue_stop = models.CharField(max_length=12, choices=VenueStop.choices, default=VenueStop.NONE)
    venue_stop_reason = models.TextField(blank=True, default="")      # why unprotected, in the venue's words
    venue_stop_version = models.PositiveIntegerField(default=0)        # stop orders placed so far
    venue_stop_alerted = models.BooleanField(default=False)            # the operator was told it is unprotected
    venue_stop_moved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "strategy_positions"
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["venue", "symbol", "status"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.symbol} {self.quantity} @ {self.entry_price} [{self.status}]"

    @property
    def remaining_quantity(self):
        return self.quantity - self.exited_quantity
