"""Exit rules for an open long position: initial stop, ratcheting trailing stop, take-profit.

State lives in ``PositionStop`` (immutable; ``evaluate_exit`` returns the next state) so the
caller can persist it after every check and a restarted worker continues from the same
stop. All prices are Decimal.

Trailing distance - the choice and why: by default the stop trails the highest price seen by
the *entry-time* distance (``stop_atr_multiple x ATR`` at entry, i.e. the initial risk R).
That makes every exit a function of prices alone: the stop monitor works from tickers
without needing fresh candles, so stops keep working when candle sync is stale or down (the
fail-closed rule blocks entries in that case, never exits). If the caller does pass a
current ``atr``, the distance becomes ``atr_multiple x atr`` - tighter in calm markets,
wider in wild ones - but the stop still never moves down.

Reason precedence when one price triggers both: the stop wins. A price at or below the stop
means the market has fallen back from its high; calling that a take-profit would misreport
what happened (it can only occur if earlier ticks above the target were missed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from trading.exchanges.base import round_to_step

__all__ = ["CandleExit", "ExitCheck", "ExitReason", "PositionStop", "candle_exit", "evaluate_exit"]


class ExitReason(StrEnum):
    HOLD = "HOLD"
    STOP_LOSS = "STOP_LOSS"              # at/below the initial stop (never raised)
    TRAILING_STOP = "TRAILING_STOP"      # at/below a stop that has been raised
    TAKE_PROFIT = "TAKE_PROFIT"          # at/above the take-profit target
    BAD_PRICE = "BAD_PRICE"              # last price unusable: no decision, state unchanged


def _dec(name: str, value: object) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class PositionStop:
    """Exit state of one long position.

    ``stop_price`` starts at ``initial_stop`` and only ever rises; ``highest_price`` is the
    highest last price seen since entry; ``trail_distance`` is the default trailing distance
    (the entry's R); ``atr_multiple`` is used only when a current ATR is supplied.
    """

    entry_price: Decimal
    initial_stop: Decimal
    stop_price: Decimal
    take_profit_price: Decimal
    highest_price: Decimal
    trail_distance: Decimal
    atr_multiple: Decimal = Decimal(2)

    def __post_init__(self) -> None:
        for name in ("entry_price", "initial_stop", "stop_price", "take_profit_price", "highest_price",
                     "trail_distance", "atr_multiple"):
            _dec(name, getattr(self, name))
        if not Decimal(0) < self.initial_stop < self.entry_price < self.take_profit_price:
            raise ValueError(
                f"need 0 < initial_stop < entry < take_profit, got {self.initial_stop}, {self.entry_price}, "
                f"{self.take_profit_price}"
            )
        if self.stop_price < self.initial_stop:
            raise ValueError(f"stop {self.stop_price} below initial stop {self.initial_stop}")
        if self.trail_distance <= 0 or self.atr_multiple <= 0:
            raise ValueError("trail_distance and atr_multiple must be > 0")

    @classmethod
    def open(
        cls, *, entry_price: Decimal, stop_price: Decimal, take_profit_r: Decimal = Decimal(3),
        atr_multiple: Decimal = Decimal(2), take_profit_price: Decimal | None = None,
    ) -> PositionStop:
        """State for a fresh position. The trail distance is the initial risk R = entry - stop
        (= stop_atr_multiple x ATR at entry when the stop came from ``decide_entries``).
        ``take_profit_price`` overrides ``entry + take_profit_r x R`` (e.g. a tick-rounded one)."""
        entry = _dec("entry_price", entry_price)
        stop = _dec("stop_price", stop_price)
        r = entry - stop
        if take_profit_price is None:
            take_profit_price = entry + _dec("take_profit_r", take_profit_r) * r
        tp = take_profit_price
        return cls(
            entry_price=entry, initial_stop=stop, stop_price=stop, take_profit_price=tp,
            highest_price=entry, trail_distance=r, atr_multiple=atr_multiple,
        )

    @classmethod
    def for_entry(cls, *, entry_price: Decimal, atr: Decimal, stop_atr_multiple: Decimal, take_profit_r: Decimal,
                  tick_size: Decimal) -> PositionStop:
        """State for a position filled at ``entry_price`` whose decision saw ``atr``: stop
        ``entry - multiple x ATR`` rounded down to the tick, target ``entry + take_profit_r x R``
        rounded up (both away from the entry: never a tighter stop or a nearer target than the
        rule says). Used by the live position opener and the backtest alike."""
        stop = round_to_step(entry_price - stop_atr_multiple * atr, tick_size)
        target = round_to_step(entry_price + take_profit_r * (entry_price - stop), tick_size, up=True)
        return cls.open(entry_price=entry_price, stop_price=stop, take_profit_price=target,
                        atr_multiple=stop_atr_multiple)

    @property
    def trailing_active(self) -> bool:
        return self.stop_price > self.initial_stop

    def to_dict(self) -> dict[str, str]:
        """JSON-ready (Decimals as strings) for persisting with the position."""
        return {
            "entry_price": str(self.entry_price), "initial_stop": str(self.initial_stop),
            "stop_price": str(self.stop_price), "take_profit_price": str(self.take_profit_price),
            "highest_price": str(self.highest_price), "trail_distance": str(self.trail_distance),
            "atr_multiple": str(self.atr_multiple),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PositionStop:
        return cls(**{k: Decimal(str(data[k])) for k in (
            "entry_price", "initial_stop", "stop_price", "take_profit_price", "highest_price",
            "trail_distance", "atr_multiple",
        )})


@dataclass(frozen=True)
class ExitCheck:
    """Outcome of one check. ``state`` is the state to persist (highest / stop updated)."""

    reason_code: ExitReason
    state: PositionStop
    last_price: Decimal | None
    detail: str = ""

    @property
    def exit(self) -> bool:
        return self.reason_code in (ExitReason.STOP_LOSS, ExitReason.TRAILING_STOP, ExitReason.TAKE_PROFIT)

    @property
    def stop_price(self) -> Decimal:
        return self.state.stop_price


def evaluate_exit(state: PositionStop, last_price: Decimal, atr: Decimal | None = None) -> ExitCheck:
    """Update the trailing stop with ``last_price`` and say whether to exit now.

    The stop is first raised (never lowered) to ``highest - distance``, then compared with
    the price: a price that is a new high can never trigger its own stop, and a tightened
    stop that the price is already below triggers at once.
    """
    if not isinstance(last_price, Decimal) or not last_price.is_finite() or last_price <= 0:
        # A zero / negative / NaN ticker is a data fault, not a crash: selling on it could
        # dump a position at a garbage price, so hold and let the caller alert.
        return ExitCheck(ExitReason.BAD_PRICE, state, None, f"unusable last price {last_price!r}")

    distance = state.trail_distance
    if atr is not None:
        _dec("atr", atr)
        # A non-positive ATR would put the stop at (or above) the high: ignore it and keep
        # the entry distance rather than exit on a data fault.
        if atr > 0:
            distance = state.atr_multiple * atr

    highest = max(state.highest_price, last_price)
    stop = max(state.stop_price, highest - distance)
    new_state = replace(state, highest_price=highest, stop_price=stop)

    if last_price <= stop:
        reason = ExitReason.TRAILING_STOP if stop > state.initial_stop else ExitReason.STOP_LOSS
        return ExitCheck(reason, new_state, last_price, f"last {last_price} <= stop {stop}")
    if last_price >= state.take_profit_price:
        detail = f"last {last_price} >= target {state.take_profit_price}"
        return ExitCheck(ExitReason.TAKE_PROFIT, new_state, last_price, detail)
    return ExitCheck(ExitReason.HOLD, new_state, last_price)


@dataclass(frozen=True)
class CandleExit:
    """Outcome of one closed candle for an open position (the backtest's view of the monitor).

    ``price`` is the level the exit fills at before slippage (None on HOLD); ``state`` is the
    state to carry into the next candle."""

    reason_code: ExitReason
    price: Decimal | None
    state: PositionStop

    @property
    def exit(self) -> bool:
        return self.reason_code is not ExitReason.HOLD


def candle_exit(state: PositionStop, *, open: Decimal, high: Decimal, low: Decimal) -> CandleExit:
    """What one candle does to an open position when only its OHLC is known.

    The stop and target in force are the ones set before the candle (from the entry and the
    highs of earlier candles); then, in this order:

    1. the open at or below the stop: the candle gapped through it - exit at the open;
    2. the open at or above the target: gapped through it - exit at the open;
    3. the low at or below the stop: exit at the stop (the stop first when the candle touches
       both: as in ``evaluate_exit``, a price back at the stop is reported as a stop, never as a
       take-profit that may not have been reachable);
    4. the high at or above the target: exit at the target;
    5. otherwise the trailing stop ratchets with the candle's high - through ``evaluate_exit``,
       the live monitor's own rule - for the *next* candle. Conservative: this candle's high
       never raises the stop this candle's low is tested against (which came first inside the
       candle is unknown), and a close already below the raised stop exits at the next open.
    """
    kind = ExitReason.TRAILING_STOP if state.trailing_active else ExitReason.STOP_LOSS
    if open <= state.stop_price:
        return CandleExit(kind, open, state)
    if open >= state.take_profit_price:
        return CandleExit(ExitReason.TAKE_PROFIT, open, state)
    if low <= state.stop_price:
        return CandleExit(kind, state.stop_price, state)
    if high >= state.take_profit_price:
        return CandleExit(ExitReason.TAKE_PROFIT, state.take_profit_price, state)
    return CandleExit(ExitReason.HOLD, None, evaluate_exit(state, high).state)
