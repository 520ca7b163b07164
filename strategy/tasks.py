"""Celery tasks of the strategy engine (queue ``strategy``). Each parses its arguments and calls
one service. None is retried by Celery: a tick belongs to its minute (the next one is a new
tick), and the stop monitor runs again within 20 seconds anyway."""

from __future__ import annotations

from celery import shared_task

from alphasniper_project.celery import MONEY_PATH


@shared_task(name="strategy.tick", soft_time_limit=50, time_limit=60, **MONEY_PATH)
def tick(tick_id: str, timeframe: str | None = None) -> dict:
    """Sent by ``syncer.tick`` once the tick's candle sync has finished."""
    from strategy.services.tick import tick_run

    return tick_run(tick_id=str(tick_id), timeframe=str(timeframe) if timeframe else None).as_dict()


@shared_task(name="strategy.stop_monitor", soft_time_limit=40, time_limit=50, **MONEY_PATH)
def stop_monitor() -> dict:
    """Beat, every 20 s: open / close positions from their orders and check every stop."""
    from strategy.services.positions import stop_monitor_run

    return stop_monitor_run().as_dict()


@shared_task(name="strategy.daily_summary", soft_time_limit=30, time_limit=45, ignore_result=True)
def daily_summary() -> str:
    """Beat, 08:00 Hong Kong time: yesterday's PnL, positions, orders and halts to Telegram."""
    from strategy.services.summary import daily_summary_send

    return daily_summary_send().trace_id
