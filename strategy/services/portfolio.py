"""A position's cost, realised and unrealised PnL. (The account's equity and the Hong Kong
day's PnL, which the sizing and the daily loss limit use, are ``trading.services.equity``.)"""

from __future__ import annotations

from decimal import Decimal

from strategy.models import StrategyPosition
from trading.services.equity import plain

ZERO = Decimal(0)
__all__ = ["entry_cost", "plain", "position_realised_so_far", "position_unrealised"]


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
