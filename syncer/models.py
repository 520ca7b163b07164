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


class Ticker(models.Model):
    """The latest ticker of one symbol on one venue (one row per market, overwritten by each sync)."""

    venue = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    last = models.DecimalField(**MONEY)
    bid = models.DecimalField(**MONEY, null=True, blank=True)
    ask = models.DecimalField(**MONEY, null=True, blank=True)
    venue_time = models.DateTimeField()              # the venue's timestamp of the ticker
    fetched_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "tickers"
        ordering = ["venue", "symbol"]
        constraints = [models.UniqueConstraint(fields=["venue", "symbol"], name="uniq_ticker_market")]

    def __str__(self) -> str:
        return f"{self.venue} {self.symbol} {self.last}"


class BalanceSnapshot(models.Model):
    """The latest account balances of one venue: ``{asset: {"free": "..", "locked": ".."}}``
    (Decimals as strings). One row per venue, overwritten by each balance sync."""

    venue = models.CharField(max_length=16, unique=True)
    balances = models.JSONField(default=dict)
    taken_at = models.DateTimeField()

    class Meta:
        db_table = "balance_snapshots"
        ordering = ["venue"]

    def __str__(self) -> str:
        return f"{self.venue} balances at {self.taken_at:%Y-%m-%d %H:%M:%S}"
