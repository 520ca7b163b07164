"""The backtest against an independent implementation: B-lite written again as a backtesting.py
``Strategy`` (indicators from TA-Lib, sizing and stops written out here), run on the market data
that library ships (Google daily 2004-2013, EUR/USD hourly 2017-2018), gives the same trades as
``run_backtest``: entry and exit candle, entry and exit price, quantity - trade for trade.

Conventions chosen so both sides mean the same thing:

* ``trade_on_close=True``: a market order placed in ``next()`` fills at that candle's close
  (our entry at the decision candle's close); contingent SL / TP orders are then checked from the
  next candle on, SL before TP in a candle that touches both, at the open when the candle gaps
  through them (backtesting.py's own rules, which are ours).
* The trailing stop is moved in ``next()``, after the candle closed, to ``max(sl, highest high -
  R)``; backtesting.py applies it from the next candle (our ratchet, conservative order).
* No commission and no spread (``commission=0``): backtesting.py charges fees in cash, the paper
  venue in the asset received; with no fee the quantities sold equal those bought. Lot step 1
  (backtesting.py trades whole units), tick 0.01 / 0.00001.
* ``finalize_trades=True``: a trade open at the end closes at the last close (our END_OF_DATA).
* One symbol: ``max_open_positions`` is 1 on both sides; the daily loss limit is set to 100 %
  (it never binds); the cooldown after a stop is written out here (3 candles).

The candles are re-timed one hour apart (our engine needs evenly spaced candles; the rules do
not look at the calendar).
"""

from __future__ import annotations

import dataclasses
import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd
import pytest
import talib
from backtesting import Backtest, Strategy
from backtesting.test import EURUSD, GOOG

from backtest.engine import run_backtest
from backtest.types import BacktestSpec, SymbolSeries
from strategy.params import blite_params
from trading.config_schema import config_defaults
from trading.exchanges.base import MarketRules

pytestmark = pytest.mark.django_db

HOUR = 3_600_000
T0 = 1_500_000_000_000 - 1_500_000_000_000 % HOUR
CASH = Decimal(1_000_000)
COOLDOWN = 3


def config(symbol: str):
    return dataclasses.replace(
        config_defaults(), universe=(symbol,), timeframe="1h", ema_trend=50, max_open_positions=1,
        daily_loss_limit=Decimal(1), cooldown_candles=COOLDOWN, max_position_notional=Decimal(500_000))


def floor_to(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil_to(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(rounding=ROUND_CEILING) * step


def blite_strategy(cfg, tick: Decimal) -> type[Strategy]:
    p = blite_params(cfg)
    window = p.history_candles

    class BLite(Strategy):
        def init(self) -> None:
            self.trail: dict = {}                  # the open trade's levels
            self.last_stop_bar = -10**9
            self.closed_seen = 0

        def _levels(self, i: int) -> tuple[float, float]:
            """TA-Lib's EMA and ATR on the decision window that ends at candle i."""
            lo = i - window + 1
            h, low, c = (np.asarray(getattr(self.data, k)[lo:i + 1], dtype=np.float64)
                         for k in ("High", "Low", "Close"))
            return float(talib.EMA(c, p.ema_trend)[-1]), float(talib.ATR(h, low, c, p.atr_period)[-1])

        def next(self) -> None:
            i = len(self.data) - 1
            high = self.data.High
            close, volume = float(self.data.Close[-1]), float(self.data.Volume[-1])
            # What closed since the last candle: a stop starts the cooldown.
            for trade in self.closed_trades[self.closed_seen:]:
                if Decimal(repr(float(trade.exit_price))) < self.trail["tp"]:
                    self.last_stop_bar = trade.exit_bar
            self.closed_seen = len(self.closed_trades)
            if self.position:
                # Ratchet the trailing stop with this candle's high; it applies from the next one.
                t = self.trail
                t["highest"] = max(t["highest"], Decimal(repr(float(high[-1]))))
                t["stop"] = max(t["stop"], t["highest"] - t["r"])
                self.trades[0].sl = float(t["stop"])
                return
            if i < window - 1:
                return
            donchian = float(np.max(high[i - p.breakout_lookback:i]))
            vol_sma = float(np.mean(self.data.Volume[i - p.volume_sma + 1:i + 1]))
            if not (close > donchian and volume > p.volume_multiplier * vol_sma):
                return
            ema, atr = self._levels(i)
            stop_f = close - p.stop_atr_multiple * atr
            if not close > ema or not (atr > 0 and stop_f > 0):
                return
            if i - self.last_stop_bar < COOLDOWN:
                return
            # Size: risk / (entry - stop), capped by the notional cap (with the 0.5 % buffer) and
            # the free cash; whole units.
            entry, stop = ceil_to(Decimal(repr(close)), tick), floor_to(Decimal(repr(stop_f)), tick)
            equity = Decimal(repr(float(self.equity)))
            qty = min(equity * Decimal(str(cfg.risk_per_trade)) / (entry - stop),
                      cfg.max_position_notional / (entry * Decimal("1.005")),
                      equity * Decimal("0.995") / entry)
            qty = int(qty)
            if qty < 1:
                return
            # Levels from the fill (= the close, no slippage) and the decision's ATR.
            r_stop = floor_to(entry - Decimal(str(p.stop_atr_multiple)) * Decimal(repr(atr)), tick)
            tp = ceil_to(entry + Decimal(str(p.take_profit_r)) * (entry - r_stop), tick)
            self.trail = {"stop": r_stop, "tp": tp, "r": entry - r_stop, "highest": entry}
            self.buy(size=qty, sl=float(r_stop), tp=float(tp))

    return BLite


@pytest.mark.parametrize(("data", "symbol", "tick"), [(GOOG, "GOOG/USD", Decimal("0.01")),
                                                      (EURUSD, "EUR/USD", Decimal("0.00001"))])
def test_backtesting_py_makes_the_same_trades(data: pd.DataFrame, symbol: str, tick: Decimal) -> None:
    cfg = config(symbol)
    # backtesting.py
    bt = Backtest(data, blite_strategy(cfg, tick), cash=float(CASH), commission=0, trade_on_close=True,
                  finalize_trades=True)
    theirs = bt.run()._trades
    # ours, on the same candles
    n = len(data)
    times = T0 + HOUR * np.arange(n, dtype=np.int64)
    series = SymbolSeries(symbol, times, *(data[k].to_numpy(dtype=np.float64)
                                           for k in ("Open", "High", "Low", "Close", "Volume")))
    base, _, quote = symbol.partition("/")
    rules = MarketRules(symbol=symbol, venue_symbol=base + quote, base=base, quote=quote, tick_size=tick,
                        lot_step=Decimal(1), min_qty=Decimal(1), min_notional=Decimal(0))
    w = blite_params(cfg).history_candles
    spec = BacktestSpec(config=cfg, start_ms=int(times[w - 1]), end_ms=int(times[-1]) + HOUR,
                        initial_balances={quote: CASH}, fee_rate=Decimal(0), market_rules={symbol: rules})
    ours = run_backtest(spec, {symbol: series}).trades

    def bar(ms: int) -> int:
        return (ms - T0) // HOUR

    assert len(ours) >= 10
    assert [(bar(t.entry_time_ms), float(t.entry_price), bar(t.exit_time_ms), float(t.exit_price), int(t.quantity))
            for t in ours] == [
        (int(r.EntryBar), r.EntryPrice, int(r.ExitBar), r.ExitPrice, int(r.Size)) for r in theirs.itertuples()]
    # Every kind of exit was compared, not only one.
    kinds = {t.exit_reason for t in ours}
    assert {"STOP_LOSS", "TRAILING_STOP"} <= kinds and not math.isnan(float(sum(t.pnl_quote for t in ours)))
