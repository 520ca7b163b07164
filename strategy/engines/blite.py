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
That makes a decision a function of a fixed, recorded window: a backtest fed 5,000 candles
and a live tick fed 300 reach the same decision on the same candle, and the decision can be
replayed from the stored candles. Every candle of that window must be present, finite,
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
    "STRATEGY_NAME", "BLiteParams", "BLiteStrategy", "CandleBatch", "EntryGap", "EntryReason", "EntrySignal",
    "decide_entries", "entry_gaps",
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
    # Candles each decision looks at (and requires to be clean). The default 221 is the EMA's
    # 200-candle seed plus one full breakout window (20 + the current candle): the trend
    # filter has then been smoothed over as many candles as the breakout compares against,
    # instead of being a bare SMA seed on the decision candle.
    history_candles: int = 221

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


def _bad_data_mask(w: CandleBatch) -> np.ndarray:
    """Rows with any non-finite, non-positive or self-contradictory candle in the window."""
    o, h, lo, c, v = w.open, w.high, w.low, w.close, w.volume
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)
        positive = (o > 0) & (h > 0) & (lo > 0) & (c > 0) & (v >= 0)
        consistent = (lo <= o) & (lo <= c) & (o <= h) & (c <= h) & (lo <= h)
    ok = finite & positive & consistent & (w.open_time_ms >= 0)
    return ~ok.all(axis=1)


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
    bad = _bad_data_mask(w)
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
        vol_threshold = p.volume_multiplier * vol_sma
        breakout = close > donchian
        volume_ok = volume > vol_threshold
        trend_ok = close > ema
        stop = close - p.stop_atr_multiple * atr
        take_profit = close + p.take_profit_r * (close - stop)
    indicators_ok = np.isfinite(donchian) & np.isfinite(vol_sma) & np.isfinite(ema) & np.isfinite(atr)
    stop_ok = (atr > 0) & (stop > 0) & np.isfinite(stop) & np.isfinite(take_profit)

    # Precedence: data problems first (they make every indicator meaningless), then the
    # entry conditions in the order the strategy states them.
    reason = np.full(n_sym, EntryReason.ENTRY_SIGNAL, dtype=object)
    checks = [
        (insufficient, EntryReason.INSUFFICIENT_HISTORY),
        (bad | ~indicators_ok, EntryReason.BAD_DATA),
        (gap, EntryReason.GAP_IN_DATA),
        (stale, EntryReason.STALE_DATA),
        (~breakout, EntryReason.NO_BREAKOUT),
        (~volume_ok, EntryReason.LOW_VOLUME),
        (~trend_ok, EntryReason.BELOW_TREND),
        (~stop_ok, EntryReason.INVALID_STOP),
    ]
    decided = np.zeros(n_sym, dtype=bool)
    for mask, code in checks:
        hit = mask & ~decided
        reason[hit] = code
        decided |= hit

    data_ok = ~(insufficient | bad | ~indicators_ok | gap)
    out: list[EntrySignal] = []
    for i, symbol in enumerate(w.symbols):
        code = EntryReason(reason[i])
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
