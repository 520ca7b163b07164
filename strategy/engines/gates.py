"""The risk gates an entry signal must pass, as pure functions of the state the caller read.

The live tick (``strategy.services.tick``) reads halt, venue health, positions, orders and
equity from PostgreSQL / Redis / the venue; a backtest keeps the same state in memory. Both
then ask these functions, so a gate is written once and a backtest blocks an entry exactly
when the live system would.

Gates for an entry, in order, each with its reason code: HALTED, DAILY_LOSS_LIMIT,
VENUE_UNHEALTHY, STALE_DATA (the tick runs too late), UNRESOLVED_ORDERS, COOLDOWN,
MAX_POSITIONS, NO_MARKET_RULES. A symbol with an open position is decided ``hold`` /
IN_POSITION before any of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Decision", "Gate", "GateState", "daily_loss_limit_hit", "entry_gate"]


class Decision:
    ENTER = "enter"
    SKIP = "skip"
    BLOCKED = "blocked"
    HOLD = "hold"


class Gate:
    IN_POSITION = "IN_POSITION"
    HALTED = "HALTED"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    VENUE_UNHEALTHY = "VENUE_UNHEALTHY"
    STALE_DATA = "STALE_DATA"
    UNRESOLVED_ORDERS = "UNRESOLVED_ORDERS"
    COOLDOWN = "COOLDOWN"
    MAX_POSITIONS = "MAX_POSITIONS"
    NO_MARKET_RULES = "NO_MARKET_RULES"


def daily_loss_limit_hit(*, equity_start: Decimal, equity_now: Decimal, limit: Decimal) -> bool:
    """The Hong Kong day's loss has reached ``limit`` (a fraction) of the equity the day began
    with: ``equity_now - equity_start <= -limit x equity_start`` (invariant 10: a position
    opened yesterday counts only what it moved today). No start equity, no limit."""
    return equity_start > 0 and equity_now - equity_start <= -(limit * equity_start)


@dataclass(frozen=True)
class GateState:
    """What the gates look at for one tick (the same for every symbol of the tick, except the
    per-symbol maps and ``slots_used``, which grows as the tick places entries)."""

    close_ms: int
    timeframe_ms: int
    halted: bool = False
    halt_reason: str | None = None
    loss_halted: bool = False
    venue_problem: str | None = None
    symbol_problems: Mapping[str, str] | None = None
    late_by_ms: int = 0
    stale_data_after_candles: int = 2
    unresolved: frozenset[str] | set[str] = frozenset()
    last_stop_ms: Mapping[str, int] | None = None
    cooldown_candles: int = 0
    max_open_positions: int = 1
    listed: frozenset[str] | set[str] | None = None       # symbols with market rules (None: all)


def entry_gate(state: GateState, symbol: str, *, slots_used: int) -> tuple[str, str] | None:
    """The first gate an entry on ``symbol`` fails: (reason code, detail), or None."""
    tf_ms = state.timeframe_ms
    if state.halted:
        return Gate.HALTED, f"trading is halted ({state.halt_reason or 'no reason recorded'})"
    if state.loss_halted:
        return Gate.DAILY_LOSS_LIMIT, "the daily loss limit was reached at this tick; trading halted"
    if state.venue_problem:
        return Gate.VENUE_UNHEALTHY, state.venue_problem
    if state.symbol_problems and symbol in state.symbol_problems:
        return Gate.VENUE_UNHEALTHY, state.symbol_problems[symbol]
    if state.late_by_ms > state.stale_data_after_candles * tf_ms:
        return Gate.STALE_DATA, f"tick runs {state.late_by_ms / 1000:.0f}s after its candle closed"
    if symbol in state.unresolved:
        return Gate.UNRESOLVED_ORDERS, f"{symbol} has orders whose outcome is not final"
    last_stop = state.last_stop_ms.get(symbol) if state.last_stop_ms else None
    if last_stop is not None and state.cooldown_candles:
        since_ms = state.close_ms - last_stop
        if since_ms < state.cooldown_candles * tf_ms:
            return Gate.COOLDOWN, (f"stopped out {since_ms // tf_ms} candle(s) ago; cooldown is "
                                   f"{state.cooldown_candles}")
    if slots_used >= state.max_open_positions:
        return Gate.MAX_POSITIONS, f"{slots_used} of {state.max_open_positions} positions in use"
    if state.listed is not None and symbol not in state.listed:
        return Gate.NO_MARKET_RULES, f"the venue lists no market {symbol}"
    return None
