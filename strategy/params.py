"""From the operator's ``StrategyConfig`` (``system_config``) to the pure engine's parameters."""

from __future__ import annotations

from strategy.engines import BLiteParams
from strategy.engines.blite import STRATEGY_NAME, settled_history
from trading.config_schema import StrategyConfig

__all__ = ["STRATEGY_NAME", "blite_params"]


def blite_params(config: StrategyConfig) -> BLiteParams:
    """B-lite parameters for ``config``. The history window is ``settled_history``: five EMA
    periods (so the trend EMA is the chart's, within 0.1 %) plus one full breakout window - the
    engine's default of 1,021 for EMA 200 / lookback 20 - so it follows the config when an
    operator changes the EMA or the lookback; the syncer keeps that many candles (plus a
    margin) and a decision stays replayable from them. Raises ValueError on values the engine
    refuses (fail at tick start, never trade on them)."""
    history = settled_history(ema_trend=config.ema_trend, breakout_lookback=config.breakout_lookback,
                              volume_sma=config.volume_sma, atr_period=config.atr_period)
    return BLiteParams(
        breakout_lookback=config.breakout_lookback,
        volume_sma=config.volume_sma,
        volume_multiplier=float(config.volume_multiplier),
        ema_trend=config.ema_trend,
        atr_period=config.atr_period,
        stop_atr_multiple=float(config.stop_atr_multiple),
        take_profit_r=float(config.take_profit_r),
        risk_per_trade=float(config.risk_per_trade),
        history_candles=history,
    )
