"""Entry scorers: an optional second opinion (e.g. an ML model) on the strategy's entries.

A scorer sees the entry signals of one tick together with the candles they were decided on,
and may *veto* an entry or *rank* the survivors (the risk gate then spends its limited
budget - max open positions, free balance - on the best-ranked first). It can never turn a
skip into an entry: the strategy's rules, including every data-quality check, stay the
floor under any model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from strategy.engines.blite import EntryReason, EntrySignal
from strategy.engines.candles import CandleBatch

__all__ = ["EntryScore", "EntryScorer", "PassThroughScorer", "apply_scorer"]


@dataclass(frozen=True)
class EntryScore:
    """A scorer's opinion on one entry. Higher ``score`` ranks first; ``veto`` drops it."""

    score: float = 0.0
    veto: bool = False
    reason: str = ""          # short, for strategy_decisions.inputs and diagnose


@runtime_checkable
class EntryScorer(Protocol):
    name: str

    def score(self, entries: Sequence[EntrySignal], candles: CandleBatch) -> Sequence[EntryScore]:
        """One ``EntryScore`` per entry, same order. Must be pure (no I/O in a backtest)."""
        ...


@dataclass(frozen=True)
class PassThroughScorer:
    """The default: every entry kept, all scored equal (so the strategy's order stands)."""

    name: str = "pass_through"

    def score(self, entries: Sequence[EntrySignal], candles: CandleBatch) -> list[EntryScore]:
        return [EntryScore() for _ in entries]


def apply_scorer(
    signals: Sequence[EntrySignal], candles: CandleBatch, scorer: EntryScorer | None = None,
) -> list[EntrySignal]:
    """All signals back: vetoed entries become ``SCORER_VETO`` skips, surviving entries first
    by descending score (ties keep the strategy's order), then the skips in original order.

    A scorer that returns the wrong number of scores or a non-finite score is a bug in the
    scorer; raising here makes the tick fail loudly rather than trade on a misaligned ranking.
    """
    scorer = scorer or PassThroughScorer()
    entries = [s for s in signals if s.enter]
    skips = [s for s in signals if not s.enter]
    scores = list(scorer.score(entries, candles))
    if len(scores) != len(entries):
        raise ValueError(f"scorer {scorer.name} returned {len(scores)} scores for {len(entries)} entries")
    kept: list[tuple[float, int, EntrySignal]] = []
    vetoed: list[EntrySignal] = []
    for i, (sig, sc) in enumerate(zip(entries, scores, strict=True)):
        if not math.isfinite(sc.score):
            raise ValueError(f"scorer {scorer.name} returned non-finite score for {sig.symbol}")
        inputs = {**sig.inputs, "scorer": scorer.name, "score": sc.score, "score_reason": sc.reason}
        if sc.veto:
            vetoed.append(replace(
                sig, reason_code=EntryReason.SCORER_VETO, entry_price=None, stop_price=None,
                take_profit_price=None, inputs=inputs,
            ))
        else:
            kept.append((sc.score, i, replace(sig, inputs=inputs)))
    kept.sort(key=lambda t: (-t[0], t[1]))
    return [s for _, _, s in kept] + vetoed + skips
