"""Alpha-Sniper B-lite: a long-only spot breakout entry, decided for a whole universe at once.

On each symbol's last *closed* candle, enter long iff all three hold:

1. breakout:  close > highest high of the previous ``breakout_lookback`` candles (Donchian);
2. volume:    volume > ``volume_multiplier`` x SMA(volume, ``volume_sma``) - the SMA includes
              the current candle, as the "volume MA" line on an exchange chart does, so an
              operator can check a decision against the chart;
3. trend:     close > EMA(close, ``ema_trend``).

The proposed stop is ``entry - stop_atr_multiple x ATR(atr_period)`` and the take-profit
``entry + take_profit_r x R`` with ``R = entry - stop``. Quantity, tick rounding and the
risk gate are not decided here (see ``sizing.py`` and the services that call this).

Only the last ``params.history_candles`` candles are used, however many the caller passes.
That makes a decision a function of a fixed, recorded window: a backtest fed a year of candles
and a live tick fed one window reach the same decision on the same candle, and the decision
can be replayed from the stored candles. The window is long enough for the trend EMA to be
the EMA a chart shows: an EMA seeded ``n`` candles back carries ``(1 - 2/(period+1))^n`` of
its seed's error, so the default 1,021 candles (5 x 200 + the 20-candle breakout window + the
current one) leaves e^-8.2 = 0.03 % of it - within 0.1 % of the full-history EMA unless the
price moved more than ~3.7x inside the window. (The former 221-candle window left the EMA a
bare SMA seed plus 21 steps: up to 3.8 % off the chart's EMA200.) Every candle of that window must be present, finite,
consistent (low <= open, close <= high, prices > 0) and evenly spaced by the timeframe;
otherwise the symbol gets ``INSUFFICIENT_HISTORY`` / ``BAD_DATA`` / ``GAP_IN_DATA`` and no
entry - a venue that drops candles must never make us trade on indicators computed across
the hole.

Every symbol gets an ``EntrySignal`` with a reason code and the inputs that decided it, so
``strategy_decisions`` can answer "why was no order placed?" for each symbol of each tick.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

import numpy as np

import strategy.engines.indicators as indicators
from strategy.engines.candles import PAD_OPEN_TIME, CandleBatch

__all__ = [
    "EMA_SETTLE_PERIODS", "REASON_PRECEDENCE", "STRATEGY_NAME", "BLiteParams", "BLiteStrategy", "CandleBatch",
    "EntryGap", "EntryReason", "EntrySignal", "bad_candles", "decide_entries", "entry_conditions", "entry_gaps",
    "entry_levels", "entry_reason_codes", "settled_history",
]

STRATEGY_NAME = "blite"

# Guard rail, not a strategy choice: a risk_per_trade above 5% of equity is far more likely
# to be a typo (0.5 instead of 0.005) than an intent, and it is money that is lost.
MAX_RISK_PER_TRADE = 0.05


class EntryReason(StrEnum):
    ENTRY_SIGNAL = "ENTRY_SIGNAL"
    NO_BREAKOUT = "NO_BREAKOUT"
    LOW_VOLUME = "LOW_VOLUME"
    BELOW_TREND = "BELOW_TREND"
    INSUFFICIENT_HISTORY = "INSUFFICIENT_HISTORY"    # fewer closed candles than history_candles
    BAD_DATA = "BAD_DATA"                            # NaN / non-positive / inconsistent OHLC
    GAP_IN_DATA = "GAP_IN_DATA"                      # open times not evenly spaced by the timeframe
    STALE_DATA = "STALE_DATA"                        # last candle is not the one this tick expects
    INVALID_STOP = "INVALID_STOP"                    # ATR <= 0 or the stop would be <= 0
    SCORER_VETO = "SCORER_VETO"                      # an EntryScorer vetoed the entry (scoring.py)


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"BLiteParams.{name} must be an int >= {minimum}, got {value!r}")


def _check_positive(name: str, value: object) -> None:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not number or not math.isfinite(value) or value <= 0:  # type: ignore[arg-type]
        raise ValueError(f"BLiteParams.{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class BLiteParams:
    """Strategy parameters. Invalid values raise ValueError at construction (fail at config time)."""

    breakout_lookback: int = 20
    volume_sma: int = 20
    volume_multiplier: float = 1.5
    ema_trend: int = 200
    atr_period: int = 14
    stop_atr_multiple: float = 2.0
    take_profit_r: float = 3.0
    risk_per_trade: float = 0.005
    # Candles each decision looks at (and requires to be clean). The default 1,021 is
    # ``settled_history``: five EMA periods, so the trend EMA has forgotten its SMA seed and
    # is the EMA200 a chart shows (module docstring), plus one full breakout window.
    history_candles: int = 1021

    def __post_init__(self) -> None:
        for name in ("breakout_lookback", "volume_sma", "ema_trend", "atr_period"):
            _check_int(name, getattr(self, name), 1)
        for name in ("volume_multiplier", "stop_atr_multiple", "take_profit_r", "risk_per_trade"):
            _check_positive(name, getattr(self, name))
        if self.risk_per_trade > MAX_RISK_PER_TRADE:
            raise ValueError(
                f"BLiteParams.risk_per_trade {self.risk_per_trade} is above the "
                f"{MAX_RISK_PER_TRADE} guard rail"
            )
        _check_int("history_candles", self.history_candles, self.min_history)

    @property
    def min_history(self) -> int:
        """Fewest candles for every indicator to be defined on the last one."""
        return max(self.ema_trend, self.volume_sma, self.atr_period + 1, self.breakout_lookback + 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BLiteParams:
        """From ``system_config`` JSON. Unknown keys are an error: a misspelt key would
        otherwise silently leave the default in force."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown BLiteParams keys: {unknown}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# EMA periods of history before the decision candle's breakout window: the seed's weight
# decays as (1 - 2/(period + 1))^n, and after 5 periods (n = 800 for EMA200) it is e^-8.
EMA_SETTLE_PERIODS = 5


def settled_history(*, ema_trend: int, breakout_lookback: int, volume_sma: int, atr_period: int) -> int:
    """The decision window for these parameters: the trend EMA settled over
    ``EMA_SETTLE_PERIODS`` periods plus one full breakout window (and never shorter than any
    indicator needs)."""
    return max(EMA_SETTLE_PERIODS * ema_trend + breakout_lookback + 1, volume_sma, atr_period + 1,
               ema_trend, breakout_lookback + 1)


JsonScalar = float | int | bool | str | None


@dataclass(frozen=True)
class EntrySignal:
    """The decision for one symbol at one tick, traded or not.

    ``inputs`` holds only JSON scalars (NaN is stored as None) so it goes into
    ``strategy_decisions.inputs`` unchanged. Prices are floats here; sizing converts them to
    Decimal and rounds them to the venue's tick.
    """

    symbol: str
    reason_code: EntryReason
    candle_open_time_ms: int | None
    entry_price: float | None = None
    stop_price: float | None = None
    take_profit_price: float | None = None
    inputs: Mapping[str, JsonScalar] = field(default_factory=dict)

    @property
    def enter(self) -> bool:
        return self.reason_code is EntryReason.ENTRY_SIGNAL

    @property
    def decision(self) -> str:
        """Value for ``strategy_decisions.decision``."""
        return "enter" if self.enter else "skip"

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "decision": self.decision,
            "reason_code": str(self.reason_code),
            "candle_open_time_ms": self.candle_open_time_ms,
            "entry_price": self.entry_price,
            "stop_price": self.stop_price,
            "take_profit_price": self.take_profit_price,
            "inputs": dict(self.inputs),
        }


def _json_float(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# A price or volume above this is garbage, not a market; it would also overflow the sums of
# the indicators' seeds, and a clean window must give finite indicators (the backtest relies
# on that to skip computing the trend EMA where an earlier condition already decided).
MAX_VALUE = 1e300

# The order reasons are checked in (the first that applies is the decision). Data problems
# first - they make every indicator meaningless - then the entry conditions in the order the
# strategy states them. ``entry_reason_codes`` returns indices into this tuple.
REASON_PRECEDENCE: tuple[EntryReason, ...] = (
    EntryReason.INSUFFICIENT_HISTORY, EntryReason.BAD_DATA, EntryReason.GAP_IN_DATA, EntryReason.STALE_DATA,
    EntryReason.NO_BREAKOUT, EntryReason.LOW_VOLUME, EntryReason.BELOW_TREND, EntryReason.INVALID_STOP,
    EntryReason.ENTRY_SIGNAL,
)


def bad_candles(open_time_ms: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                v: np.ndarray) -> np.ndarray:
    """Per candle (any shape): non-finite, non-positive, absurd or self-contradictory."""
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)
        positive = (o > 0) & (h > 0) & (lo > 0) & (c > 0) & (v >= 0)
        sane = (h <= MAX_VALUE) & (v <= MAX_VALUE)
        consistent = (lo <= o) & (lo <= c) & (o <= h) & (c <= h) & (lo <= h)
    return ~(finite & positive & sane & consistent & (open_time_ms >= 0))


def entry_conditions(p: BLiteParams, *, close: np.ndarray, donchian: np.ndarray, volume: np.ndarray,
                     vol_sma: np.ndarray, ema: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(breakout, volume_ok, trend_ok, volume threshold), element-wise."""
    with np.errstate(invalid="ignore"):
        vol_threshold = p.volume_multiplier * vol_sma
        return close > donchian, volume > vol_threshold, close > ema, vol_threshold


def entry_levels(p: BLiteParams, *, close: np.ndarray, atr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(proposed stop, take-profit, stop_ok), element-wise."""
    with np.errstate(invalid="ignore"):
        stop = close - p.stop_atr_multiple * atr
        take_profit = close + p.take_profit_r * (close - stop)
        stop_ok = (atr > 0) & (stop > 0) & np.isfinite(stop) & np.isfinite(take_profit)
    return stop, take_profit, stop_ok


def entry_reason_codes(*, insufficient: np.ndarray, bad: np.ndarray, gap: np.ndarray, stale: np.ndarray,
                       breakout: np.ndarray, volume_ok: np.ndarray, trend_ok: np.ndarray,
                       stop_ok: np.ndarray) -> np.ndarray:
    """The decision's reason per element, as an index into ``REASON_PRECEDENCE`` (int8).

    ``bad`` covers bad candles *and* undefined indicators. The one rule of precedence, used
    by the live tick (one column per symbol) and the backtest (every candle of a series)."""
    fails = (insufficient, bad, gap, stale, ~breakout, ~volume_ok, ~trend_ok, ~stop_ok)
    code = np.full(np.shape(insufficient), len(fails), dtype=np.int8)      # ENTRY_SIGNAL
    # Assigned from the last check to the first, so the first that applies wins.
    for i in range(len(fails) - 1, -1, -1):
        code[fails[i]] = i
    return code


def decide_entries(
    candles: CandleBatch, params: BLiteParams | None = None, *, expected_last_open_time_ms: int | None = None,
) -> list[EntrySignal]:
    """One ``EntrySignal`` per symbol of ``candles`` (same order), decided on its last candle.

    ``expected_last_open_time_ms``: the open time of the candle this tick is about (the last
    one that has closed). When given, a symbol whose newest candle is a different one gets
    ``STALE_DATA``: a venue that has not published the latest candle yet must not make us
    decide on the previous one as if it were current.
    """
    p = params or BLiteParams()
    w = candles.tail(p.history_candles)
    n_sym = len(w.symbols)
    if n_sym == 0:
        return []

    if w.width == 0:
        # No symbol has any candle: decide on one column of padding so that the result
        # (INSUFFICIENT_HISTORY for all) has exactly the shape of every other result.
        nan = np.full((n_sym, 1), np.nan)
        w = CandleBatch(
            symbols=w.symbols, timeframe_ms=w.timeframe_ms,
            open_time_ms=np.full((n_sym, 1), PAD_OPEN_TIME, dtype=np.int64),
            open=nan, high=nan, low=nan, close=nan, volume=nan, n_candles=w.n_candles,
        )

    insufficient = w.n_candles < p.history_candles
    bad = bad_candles(w.open_time_ms, w.open, w.high, w.low, w.close, w.volume).any(axis=1)
    gap = (np.diff(w.open_time_ms, axis=1) != w.timeframe_ms).any(axis=1)
    last_time = w.open_time_ms[:, -1]
    if expected_last_open_time_ms is None:
        stale = np.zeros(n_sym, dtype=bool)
    else:
        stale = last_time != np.int64(expected_last_open_time_ms)

    # Indicators on the whole window; only the last column is used for the decision.
    with np.errstate(invalid="ignore"):
        donchian = indicators.donchian_high(w.high, p.breakout_lookback)[:, -1]
        vol_sma = indicators.sma(w.volume, p.volume_sma)[:, -1]
        ema = indicators.ema(w.close, p.ema_trend)[:, -1]
        atr = indicators.atr(w.high, w.low, w.close, p.atr_period)[:, -1]
    close = w.close[:, -1]
    volume = w.volume[:, -1]
    breakout, volume_ok, trend_ok, vol_threshold = entry_conditions(
        p, close=close, donchian=donchian, volume=volume, vol_sma=vol_sma, ema=ema)
    stop, take_profit, stop_ok = entry_levels(p, close=close, atr=atr)
    indicators_ok = np.isfinite(donchian) & np.isfinite(vol_sma) & np.isfinite(ema) & np.isfinite(atr)
    reason = entry_reason_codes(insufficient=insufficient, bad=bad | ~indicators_ok, gap=gap, stale=stale,
                                breakout=breakout, volume_ok=volume_ok, trend_ok=trend_ok, stop_ok=stop_ok)

    data_ok = ~(insufficient | bad | ~indicators_ok | gap)
    out: list[EntrySignal] = []
    for i, symbol in enumerate(w.symbols):
        code = REASON_PRECEDENCE[reason[i]]
        t = int(last_time[i])
        inputs: dict[str, JsonScalar] = {
            "close": _json_float(close[i]),
            "donchian_high": _json_float(donchian[i]),
            "volume": _json_float(volume[i]),
            "volume_sma": _json_float(vol_sma[i]),
            "volume_threshold": _json_float(vol_threshold[i]),
            "ema": _json_float(ema[i]),
            "atr": _json_float(atr[i]),
            "candles_used": int(w.n_candles[i]),
            "candles_required": p.history_candles,
        }
        if data_ok[i]:
            inputs["breakout"] = bool(breakout[i])
            inputs["volume_ok"] = bool(volume_ok[i])
            inputs["trend_ok"] = bool(trend_ok[i])
        enter = code is EntryReason.ENTRY_SIGNAL
        out.append(EntrySignal(
            symbol=symbol,
            reason_code=code,
            candle_open_time_ms=t if t >= 0 else None,
            entry_price=float(close[i]) if enter else None,
            stop_price=float(stop[i]) if enter else None,
            take_profit_price=float(take_profit[i]) if enter else None,
            inputs=inputs,
        ))
    return out


@dataclass(frozen=True)
class BLiteStrategy:
    """B-lite behind the ``EntryStrategy`` protocol (see ``strategy.engines``)."""

    params: BLiteParams = field(default_factory=BLiteParams)
    name: str = STRATEGY_NAME

    @property
    def history_candles(self) -> int:
        return self.params.history_candles

    def decide(
        self, candles: CandleBatch, *, expected_last_open_time_ms: int | None = None,
    ) -> list[EntrySignal]:
        return decide_entries(candles, self.params, expected_last_open_time_ms=expected_last_open_time_ms)


@dataclass(frozen=True)
class EntryGap:
    """How far one entry condition is from holding, from a decision's recorded ``inputs``.

    ``gap_pct``: how much ``value`` must rise, in % of itself, to pass ``level`` (0 when met)."""

    condition: str          # "breakout" | "volume" | "trend"
    met: bool
    value: float
    level: float
    gap_pct: float

    def describe(self) -> str:
        what = {"breakout": ("close", "the breakout level (highest high)"),
                "volume": ("volume", "the volume threshold"),
                "trend": ("close", "the trend EMA")}[self.condition]
        if self.met:
            return f"{what[0]} {_num(self.value)} is above {what[1]} {_num(self.level)}"
        if self.value == self.level:
            return f"{what[0]} {_num(self.value)} equals {what[1]}; it must be above it"
        return f"{what[0]} {_num(self.value)} needs +{self.gap_pct:.2f}% to pass {what[1]} {_num(self.level)}"


def _num(x: float) -> str:
    return f"{x:.6g}"


def entry_gaps(inputs: Mapping[str, Any]) -> list[EntryGap]:
    """The three entry conditions of a decision, each with its distance to passing, in the order
    the strategy checks them. Empty when the inputs lack a value (a data problem decided it)."""
    pairs = (("breakout", "close", "donchian_high"), ("volume", "volume", "volume_threshold"),
             ("trend", "close", "ema"))
    gaps = []
    for condition, value_key, level_key in pairs:
        value, level = inputs.get(value_key), inputs.get(level_key)
        if not isinstance(value, int | float) or not isinstance(level, int | float) or value <= 0:
            return []
        met = value > level
        gaps.append(EntryGap(condition, met, float(value), float(level),
                             0.0 if met else (float(level) - float(value)) / float(value) * 100))
    return gaps
