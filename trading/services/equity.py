"""What the account is worth, and what it was worth at the start of the Hong Kong day.

Equity is every balance marked at its last price in the quote asset (USDT). The PnL of a Hong
Kong day is *equity now minus equity at that day's start* (ARCHITECTURE invariant 10): a
position opened yesterday counts only what it gained or lost since midnight, fees in any asset
count when they are paid, and nothing the strategy's own bookkeeping might miss (a manual
trade, a fee in BNB, a stop that fired on the venue) can hide a loss from the daily limit.

The market snapshot (about every 30 s) appends an ``EquitySnapshot``; the day's start is read
from the last snapshot taken at or before HK midnight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from trading.exchanges.base import Balance
from trading.models import EquitySnapshot
from trading.selectors import equity_at_day_start

ZERO = Decimal(0)


def plain(value: Decimal) -> str:
    """Exact, without trailing zeros or exponent: ``10000.000000000000000000`` -> ``10000``."""
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class AccountValue:
    """``equity`` = quote balance + every other balance at its last price against the quote."""

    quote: str
    free_quote: Decimal
    equity: Decimal
    holdings: dict[str, dict[str, str]] = field(default_factory=dict)   # asset -> quantity, price, value
    unpriced: tuple[str, ...] = ()                                        # held assets we had no price for

    def as_json(self) -> dict[str, Any]:
        return {"quote": self.quote, "free_quote": plain(self.free_quote), "equity": plain(self.equity),
                "holdings": {a: h["value"] for a, h in self.holdings.items()}, "unpriced": list(self.unpriced)}


def account_value(*, balances: Mapping[str, Balance], prices: Mapping[str, Decimal], quote: str,
                  assets: Iterable[str] | None = None) -> AccountValue:
    """Mark ``balances`` with ``prices`` (keyed by unified symbol, ``BTC/USDT``). ``assets`` limits
    which non-quote assets count (default: every one held); one without a price is listed in
    ``unpriced`` and left out, never counted at zero silently."""
    q = balances.get(quote)
    free_quote = q.free if q else ZERO
    equity = q.total if q else ZERO
    wanted = set(assets) if assets is not None else set(balances)
    holdings: dict[str, dict[str, str]] = {}
    unpriced: list[str] = []
    for asset in sorted(wanted - {quote}):
        held = balances.get(asset)
        if held is None or held.total <= 0:
            continue
        price = prices.get(f"{asset}/{quote}")
        if price is None:
            unpriced.append(asset)
            continue
        value = held.total * price
        holdings[asset] = {"quantity": plain(held.total), "price": plain(price), "value": plain(value)}
        equity += value
    return AccountValue(quote=quote, free_quote=free_quote, equity=equity, holdings=holdings,
                        unpriced=tuple(unpriced))


def equity_snapshot_record(*, venue: str, value: AccountValue) -> EquitySnapshot:
    """Append one point of the equity curve (time: the database's)."""
    return EquitySnapshot.objects.create(venue=venue, quote=value.quote, equity=value.equity,
                                         free_quote=value.free_quote, holdings=value.holdings,
                                         unpriced=list(value.unpriced))


@dataclass(frozen=True)
class DayPnl:
    """The Hong Kong day's PnL: ``equity_now - equity_start`` (``total``)."""

    day_start: datetime
    equity_now: Decimal
    equity_start: Decimal
    start_taken_at: datetime | None       # when the start equity was measured (None: no snapshot yet, PnL 0)

    @property
    def total(self) -> Decimal:
        return self.equity_now - self.equity_start

    def as_json(self) -> dict[str, Any]:
        return {"total": plain(self.total), "equity_now": plain(self.equity_now),
                "equity_start": plain(self.equity_start), "day_start": self.day_start.isoformat(),
                "start_taken_at": self.start_taken_at.isoformat() if self.start_taken_at else None}


def day_pnl(*, venue: str, day_start: datetime, equity_now: Decimal) -> DayPnl:
    start = equity_at_day_start(venue=venue, day_start=day_start)
    if start is None:
        return DayPnl(day_start=day_start, equity_now=equity_now, equity_start=equity_now, start_taken_at=None)
    return DayPnl(day_start=day_start, equity_now=equity_now, equity_start=start.equity,
                  start_taken_at=start.taken_at)
