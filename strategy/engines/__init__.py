"""Pure strategy code: candles in, decisions out. No ORM, no I/O, no clock.

The live tick (Celery) and a backtest call the very same functions, so a decision seen in
``strategy_decisions`` can be replayed from the stored candles and gives the same answer.

Modules
-------
* ``candles``    - ``CandleBatch``: a universe's closed candles as right-aligned 2-D arrays.
* ``indicators`` - EMA / SMA / Wilder ATR / Donchian high, vectorised over symbols (TA-Lib semantics).
* ``blite``      - Alpha-Sniper B-lite: ``BLiteParams``, ``decide_entries`` -> ``EntrySignal`` per symbol.
* ``sizing``     - ``size_position``: risk-based quantity in Decimal, rounded to the venue's steps.
* ``stops``      - ``PositionStop`` / ``evaluate_exit``: initial stop, trailing stop, take-profit;
                   ``candle_exit``: the same rules on a closed candle (the backtest's fill model).
* ``gates``      - ``entry_gate`` / ``daily_loss_limit_hit``: the risk gates of an entry, on state the
                   caller read (the live tick from the database, a backtest from memory).
* ``scoring``    - ``EntryScorer`` protocol + ``PassThroughScorer`` + ``apply_scorer``.
* ``protocols``  - ``EntryStrategy`` protocol.

Flow of one tick (the callers - Celery tick services, backtests - live outside this package)::

    batch   = CandleBatch.from_candles(candles_by_symbol, timeframe="1m")
    signals = strategy.decide(batch, expected_last_open_time_ms=tick_candle_open_ms)
    signals = apply_scorer(signals, batch, scorer)          # optional; default passes through
    for s in signals: record StrategyDecision(s.decision, s.reason_code, s.to_dict()["inputs"])
    for s in entries (in ranked order): entry_gate(...) -> size_position(...) -> order intent
    open positions: evaluate_exit(state, last_price) on every stop-monitor pass

Extension point 1 - another strategy
------------------------------------
Write a module next to ``blite.py`` with a frozen params dataclass (validated in
``__post_init__``) and a class satisfying ``protocols.EntryStrategy``:

* ``name`` (short, stable: it is part of client order ids and decision rows),
* ``history_candles`` (closed candles it needs per symbol; the syncer loads that many),
* ``decide(batch, *, expected_last_open_time_ms=None) -> list[EntrySignal]``: one signal per
  symbol in batch order, every one with a reason code and JSON-scalar ``inputs``.

Reuse ``EntrySignal`` and the data-quality reason codes of ``EntryReason``
(INSUFFICIENT_HISTORY, BAD_DATA, GAP_IN_DATA, STALE_DATA) - never enter on a window that
fails them - and add your own reason codes to the enum rather than free text, so
``tbot diagnose`` can group them. Sizing and stops are strategy-independent: a new strategy
proposes ``entry_price`` / ``stop_price`` / ``take_profit_price`` and the rest is reused.
Test it the way ``tests/strategy`` tests B-lite: hand-built cases per reason code, and the
property "vectorised result == deciding each symbol alone".

Extension point 2 - an AI / ML scorer
-------------------------------------
Implement ``scoring.EntryScorer``: ``name`` and ``score(entries, batch) -> [EntryScore]``
(one per entry: a float ``score`` to rank by and a ``veto`` flag). ``apply_scorer`` turns
vetoes into ``SCORER_VETO`` skips (recorded, with the scorer's name, score and reason in
``inputs``) and orders surviving entries by score. A scorer can only remove or reorder
entries, never create one, so the strategy's rules and data checks always hold. Keep the
model pure and deterministic (load weights at worker start, not per call, and no network in
``score``) so a backtest reproduces live behaviour. ``PassThroughScorer`` is the default.
"""

from strategy.engines.blite import BLiteParams, BLiteStrategy, EntryReason, EntrySignal, decide_entries
from strategy.engines.candles import CandleBatch, timeframe_to_ms
from strategy.engines.protocols import EntryStrategy
from strategy.engines.scoring import EntryScore, EntryScorer, PassThroughScorer, apply_scorer
from strategy.engines.sizing import SizingCap, SizingResult, SizingSkip, round_to_step, size_position
from strategy.engines.stops import ExitCheck, ExitReason, PositionStop, evaluate_exit

__all__ = [
    "BLiteParams", "BLiteStrategy", "CandleBatch", "EntryReason", "EntryScore", "EntryScorer", "EntrySignal",
    "EntryStrategy", "ExitCheck", "ExitReason", "PassThroughScorer", "PositionStop", "SizingCap",
    "SizingResult", "SizingSkip", "apply_scorer", "decide_entries", "evaluate_exit", "round_to_step",
    "size_position", "timeframe_to_ms",
]
