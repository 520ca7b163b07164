"""Celery tasks of the data-syncer (queue ``sync``). Each parses its arguments, calls one
service and owns its retry policy: none here - every task is re-run by beat within a minute,
and a stale retry would only fetch data the next run fetches anyway."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task

from infra.clock import ms_to_datetime, timeframe_seconds

log = logging.getLogger(__name__)


@shared_task(name="syncer.tick", ignore_result=True, soft_time_limit=40, time_limit=50)
def tick() -> str | None:
    """Beat, every minute (HK crontab). When a candle of the configured timeframe has just
    closed: sync the universe's candles, then hand the tick to the strategy - so the strategy
    tick of a tick id always runs after that tick's sync finished."""
    # Deliberately upward: the syncer's tick hands over to the strategy's once its candles are in.
    from strategy.tasks import tick as strategy_tick
    from syncer.services import tick_sync_if_due

    synced = tick_sync_if_due()
    if synced is None:
        return None
    # The strategy must not act on a tick once the next candle of its timeframe has closed.
    expires = ms_to_datetime(synced.close_ms) + timedelta(seconds=timeframe_seconds(synced.timeframe))
    strategy_tick.apply_async(kwargs={"tick_id": synced.tick_id, "timeframe": synced.timeframe}, expires=expires)
    return synced.tick_id


@shared_task(name="syncer.market_snapshot", ignore_result=True, soft_time_limit=25, time_limit=30)
def market_snapshot() -> dict:
    """Beat, every 30 s: latest tickers and balances (and paper resting-order matching)."""
    from syncer.services import market_snapshot_sync

    report = market_snapshot_sync()
    return {"tickers": report.tickers, "balances": report.balances, "paper_fills": report.paper_fills,
            "errors": report.errors, "rejected": report.rejected}


@shared_task(name="syncer.sync_candles", ignore_result=True, soft_time_limit=120, time_limit=150)
def sync_candles(symbols: list[str], timeframe: str) -> dict:
    """On demand: bring the strategy window of these symbols up to date."""
    from syncer.services import candles_sync

    return candles_sync(symbols=[str(s) for s in symbols], timeframe=str(timeframe)).as_dict()
