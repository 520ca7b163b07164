from __future__ import annotations

from django.db import models

from trading.models import MONEY


class Candle(models.Model):
    """One closed candle. Upserted idempotently on (venue, symbol, timeframe, open_time)."""

    venue = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    timeframe = models.CharField(max_length=8)
    open_time = models.DateTimeField()
    open = models.DecimalField(**MONEY)
    high = models.DecimalField(**MONEY)
    low = models.DecimalField(**MONEY)
    close = models.DecimalField(**MONEY)
    volume = models.DecimalField(**MONEY)
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "candles"
        ordering = ["venue", "symbol", "timeframe", "open_time"]
        constraints = [
            models.UniqueConstraint(
                fields=["venue", "symbol", "timeframe", "open_time"], name="uniq_candle_market_timeframe_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.venue} {self.symbol} {self.timeframe} {self.open_time:%Y-%m-%d %H:%M}"
