"""Account value and the day's PnL - the numbers the sizing and the daily loss limit use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from strategy import selectors
from strategy.models import StrategyPosition
from trading.exchanges.base import Balance, MarketRules

ZERO = Decimal(0)


def plain(value: Decimal) -> str:
    """Exact, without trailing zeros or exponent: ``10000.000000000000000000`` -> ``10000``."""
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class AccountValue:
    """``equity`` = quote balance + holdings of the universe's base assets at the last price."""

    quote: str
    free_quote: Decimal
    equity: Decimal
    holdings: dict[str, str] = field(default_factory=dict)      # asset -> value in quote
    unpriced: tuple[str, ...] = ()                                # held assets we had no price for

    def as_json(self) -> dict[str, Any]:
        return {"quote": self.quote, "free_quote": plain(self.free_quote), "equity": plain(self.equity),
                "holdings": self.holdings, "unpriced": list(self.unpriced)}


def account_value(*, balances: Mapping[str, Balance], rules: Mapping[str, MarketRules],
                  prices: Mapping[str, Decimal], symbols: list[str]) -> AccountValue:
    quotes = [rules[s].quote for s in symbols if s in rules]
    quote = max(set(quotes), key=quotes.count) if quotes else "USDT"
    q = balances.get(quote)
    free_quote = q.free if q else ZERO
    equity = q.total if q else ZERO
    holdings: dict[str, str] = {}
    unpriced: list[str] = []
    for symbol in symbols:
        r = rules.get(symbol)
        if r is None or r.quote != quote or r.base in holdings:
            continue
        held = balances.get(r.base)
        if held is None or held.total <= 0:
            continue
        price = prices.get(symbol)
        if price is None:
            unpriced.append(r.base)
            continue
        value = held.total * price
        holdings[r.base] = plain(value)
        equity += value
    return AccountValue(quote=quote, free_quote=free_quote, equity=equity, holdings=holdings,
                        unpriced=tuple(sorted(set(unpriced) - holdings.keys())))


@dataclass(frozen=True)
class DailyPnl:
    realised: Decimal
    unrealised: Decimal
    closed_positions: int
    open_positions: int
    unpriced: tuple[str, ...] = ()

    @property
    def total(self) -> Decimal:
        return self.realised + self.unrealised

    def as_json(self) -> dict[str, Any]:
        return {"realised": plain(self.realised), "unrealised": plain(self.unrealised), "total": plain(self.total),
                "closed_positions": self.closed_positions, "open_positions": self.open_positions,
                "unpriced": list(self.unpriced)}


def entry_cost(position: StrategyPosition, quantity: Decimal) -> Decimal:
    """What ``quantity`` of the position cost, including its share of the entry fee."""
    fee = position.entry_fee * quantity / position.quantity if position.quantity else ZERO
    return position.entry_price * quantity + fee


def position_unrealised(position: StrategyPosition, price: Decimal) -> Decimal:
    remaining = position.remaining_quantity
    return remaining * price - entry_cost(position, remaining)


def position_realised_so_far(position: StrategyPosition) -> Decimal:
    """PnL of what finished exit orders already sold (the whole position once it is closed)."""
    if position.realised_pnl is not None:
        return position.realised_pnl
    return position.exit_proceeds - entry_cost(position, position.exited_quantity)


def daily_pnl(*, venue: str, day_start: datetime, prices: Mapping[str, Decimal]) -> DailyPnl:
    """PnL of the HK trading day that began at ``day_start``: realised PnL of positions closed
    since then, plus what open positions have sold already and are worth at the last price.
    An open position without a price counts as flat and is listed in ``unpriced``."""
    closed = list(selectors.positions_closed_since(venue=venue, since=day_start))
    realised = sum((p.realised_pnl or ZERO for p in closed), ZERO)
    unrealised = ZERO
    unpriced: list[str] = []
    active = list(selectors.positions_active(venue=venue))
    for p in active:
        realised += position_realised_so_far(p) if p.exited_quantity else ZERO
        price = prices.get(p.symbol)
        if price is None:
            unpriced.append(p.symbol)
            continue
        unrealised += position_unrealised(p, price)
    return DailyPnl(realised=realised, unrealised=unrealised, closed_positions=len(closed),
                    open_positions=len(active), unpriced=tuple(unpriced))
