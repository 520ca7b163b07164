from __future__ import annotations

from django.db import models


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
