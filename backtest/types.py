"""The records shared by the backtest's parts: what to simulate in, what happened out.

Kept free of Django and of I/O so the engine stays a pure function that a Celery sweep
worker, ``tbot backtest`` and the parity test call alike. Money is ``Decimal`` where it is
compared with venue rules (balances, fees, quantities); prices and the equity curve are floats
because the engines and charts work in floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from trading.config_schema import StrategyConfig
from trading.exchanges.base import MarketRules

__all__ = ["BacktestResult", "BacktestSpec", "BacktestTrade", "SymbolSeries"]


@dataclass(frozen=True)
class SymbolSeries:
    """One symbol's closed candles, oldest first, evenly spaced by the timeframe (``data``
    checks that before a series reaches the engine). Arrays are 1-D and of equal length."""

    symbol: str
    open_time_ms: np.ndarray      # int64
    open: np.ndarray              # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.open_time_ms.shape[0])


@dataclass(frozen=True)
class BacktestSpec:
    """Everything a run depends on. Two runs with equal specs and candles give equal results.

    ``config`` is the live ``StrategyConfig`` (universe, timeframe, B-lite parameters, risk
    limits): overrides are applied to it before the run, so a sweep varies exactly the keys an
    operator can set live. ``start_ms`` / ``end_ms`` bound the candles *decided on* (open times,
    end exclusive); earlier candles only warm the indicators up.
    """

    config: StrategyConfig
    start_ms: int
    end_ms: int
    initial_balances: Mapping[str, Decimal]           # e.g. {"USDT": Decimal("10000")}
    fee_rate: Decimal = Decimal("0.001")              # the paper venue's taker fee
    slippage_bps: Decimal = Decimal("0")              # against us, on every fill
    market_rules: Mapping[str, MarketRules] = field(default_factory=dict)   # per symbol; default: paper venue's


@dataclass(frozen=True)
class BacktestTrade:
    """One round trip: an entry and the exit that closed it (or the run's end: ``END_OF_DATA``)."""

    symbol: str
    entry_time_ms: int            # open time of the decision candle (entry at its close)
    entry_price: Decimal
    quantity: Decimal
    stop_price: Decimal           # initial stop
    take_profit_price: Decimal
    exit_time_ms: int             # open time of the candle the exit filled in
    exit_price: Decimal
    exit_reason: str              # STOP_LOSS | TRAILING_STOP | TAKE_PROFIT | END_OF_DATA
    fees_quote: Decimal           # entry + exit fees, in the quote asset
    pnl_quote: Decimal            # net of fees

    @property
    def return_pct(self) -> float:
        cost = self.entry_price * self.quantity
        return float(self.pnl_quote / cost * 100) if cost else 0.0


@dataclass(frozen=True)
class BacktestResult:
    """What a run produced. ``equity_time_ms`` / ``equity`` is marked at every candle close
    (quote balance + holdings at that close); ``decisions`` counts reason codes over the run,
    the same codes ``strategy_decisions`` holds live."""

    spec: BacktestSpec
    trades: tuple[BacktestTrade, ...]
    equity_time_ms: np.ndarray    # int64, candle close times
    equity: np.ndarray            # float64, quote asset
    decisions: Mapping[str, int]
    candles_processed: int
    final_balances: Mapping[str, Decimal]
