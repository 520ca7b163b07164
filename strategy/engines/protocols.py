"""The shape every entry strategy has, so the tick service and the backtester can run any of them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from strategy.engines.blite import EntrySignal
from strategy.engines.candles import CandleBatch

__all__ = ["EntryStrategy"]


@runtime_checkable
class EntryStrategy(Protocol):
    """Pure: closed candles in, one ``EntrySignal`` per symbol out (same order), no I/O.

    ``history_candles`` tells the syncer how many closed candles to load per symbol;
    ``name`` goes into ``strategy_decisions.strategy`` and the client order id.
    """

    name: str

    @property
    def history_candles(self) -> int: ...

    def decide(
        self, candles: CandleBatch, *, expected_last_open_time_ms: int | None = None,
    ) -> list[EntrySignal]: ...
