"""Entry scorers may veto or rank entries, never create one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from strategy.engines.blite import BLiteParams, EntryReason, EntrySignal, decide_entries
from strategy.engines.candles import CandleBatch
from strategy.engines.scoring import EntryScore, EntryScorer, PassThroughScorer, apply_scorer
from tests.strategy.helpers import random_walk

H = BLiteParams().history_candles


@dataclass(frozen=True)
class ByName:
    """Scores by a fixed table; vetoes symbols listed in ``veto``."""

    table: dict[str, float]
    veto: frozenset[str] = frozenset()
    name: str = "by_name"

    def score(self, entries: Sequence[EntrySignal], candles: CandleBatch) -> list[EntryScore]:
        return [EntryScore(self.table.get(e.symbol, 0.0), e.symbol in self.veto, "table") for e in entries]


def universe() -> tuple[list[EntrySignal], CandleBatch]:
    batch = CandleBatch.from_candles(
        {f"S{i}/USDT": random_walk(i, H + 9, force_entry=i != 2) for i in range(4)}, timeframe="1m",
    )
    return decide_entries(batch), batch


def test_pass_through_keeps_everything_in_order() -> None:
    signals, batch = universe()
    out = apply_scorer(signals, batch)
    assert [s.symbol for s in out if s.enter] == [s.symbol for s in signals if s.enter]
    assert isinstance(PassThroughScorer(), EntryScorer)


def test_scorer_ranks_and_vetoes_but_cannot_add_entries() -> None:
    signals, batch = universe()
    scorer = ByName({"S0/USDT": 0.1, "S1/USDT": 0.2, "S2/USDT": 9.0, "S3/USDT": 0.9}, frozenset({"S1/USDT"}))
    out = apply_scorer(signals, batch, scorer)
    assert [s.symbol for s in out if s.enter] == ["S3/USDT", "S0/USDT"]       # S2 never was an entry
    vetoed = next(s for s in out if s.symbol == "S1/USDT")
    assert vetoed.reason_code is EntryReason.SCORER_VETO and vetoed.stop_price is None
    assert vetoed.inputs["scorer"] == "by_name"
    assert sorted(s.symbol for s in out) == sorted(s.symbol for s in signals)


def test_misaligned_scores_fail_loudly() -> None:
    @dataclass(frozen=True)
    class Broken:
        name: str = "broken"

        def score(self, entries: Sequence[EntrySignal], candles: CandleBatch) -> list[EntryScore]:
            return []

    signals, batch = universe()
    with pytest.raises(ValueError, match="broken"):
        apply_scorer(signals, batch, Broken())
