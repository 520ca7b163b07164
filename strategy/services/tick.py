"""One strategy tick: candles from PostgreSQL -> B-lite for the whole universe -> risk gates ->
sizing -> one decision row per symbol, and an entry order for each symbol that passes.

Order of work (ARCHITECTURE "Data flow of one tick"):

1. ``redis_lock(tick)`` - efficiency only; a second worker or beat skips. Correctness comes from
   ``strategy_decisions`` (unique per strategy, tick, symbol) and ``orders.client_order_id``.
2. The tick's candle sync must have finished (the syncer marks it in Redis); if it has not
   (the task was sent by hand, the syncer is down) the tick runs the sync itself first.
3. The last ``history_candles`` candles per symbol up to the tick's candle, from the DB.
4. ``decide_entries`` + ``apply_scorer`` on the universe at once (pure, same as a backtest).
5. Global state read once: halt, venue health (Redis), market rules (cached), balances and
   equity, the day's PnL (-> automatic halt at the daily loss limit), positions, open orders.
6. Per symbol, in the scorer's ranked order: IN_POSITION -> hold; no signal -> skip with the
   engine's reason; a signal -> the first gate that fails -> blocked, else sizing -> enter.
   The decision row and its order are written in ONE transaction, sharing one trace id.

Gates for an entry, in order, each with its reason code: HALTED, DAILY_LOSS_LIMIT,
VENUE_UNHEALTHY, STALE_DATA (the tick runs too late), UNRESOLVED_ORDERS, COOLDOWN,
MAX_POSITIONS, NO_MARKET_RULES; then sizing (NO_FREE_BALANCE, BELOW_MIN_NOTIONAL, ...). The
rules are the pure ``strategy.engines.gates`` (shared with the backtest); this module reads the
state they look at.
Redis or PostgreSQL being down makes the tick raise: it fails closed, no entry is placed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from infra.clock import datetime_to_ms, hk_day_start_utc, ms_to_datetime, tick_close_from_id, timeframe_seconds
from infra.clock import now_ms as clock_now_ms
from infra.locks import LockNotAcquired, redis_lock
from infra.logging import new_trace_id, trace_context
from strategy import selectors
from strategy.engines import (
    CandleBatch,
    EntryScorer,
    EntrySignal,
    SizingResult,
    apply_scorer,
    decide_entries,
    size_position,
)
from strategy.engines.gates import Decision, Gate, GateState, daily_loss_limit_hit, entry_gate
from strategy.engines.sizing import DEFAULT_FEE_BUFFER
from strategy.models import StrategyDecision
from strategy.params import STRATEGY_NAME, blite_params
from strategy.services.markets import market_rules
from strategy.services.positions import positions_sync
from syncer import selectors as market
from syncer.services import tick_candles_sync, venue_rate_limited_set
from trading.client_ids import make_client_order_id
from trading.config_schema import StrategyConfig, config_get
from trading.exchanges.base import Balance, ExchangeGateway, MarketRules
from trading.exchanges.errors import RateLimitedError, VenueError
from trading.exchanges.factory import gateway_or_default
from trading.models import Order
from trading.selectors import is_halted
from trading.services.control import halt_state_committed, trading_halt
from trading.services.equity import AccountValue, DayPnl, account_value, day_pnl
from trading.services.orders import order_place

log = logging.getLogger(__name__)

TICK_LOCK_TTL_S = 120


@dataclass
class TickReport:
    tick_id: str
    timeframe: str
    status: str                                   # done | locked | already_done
    decisions: dict[str, tuple[str, str]] = field(default_factory=dict)   # symbol -> (decision, reason)
    orders: list[str] = field(default_factory=list)                      # client ids placed
    raced: list[str] = field(default_factory=list)                       # decided by another worker meanwhile
    halted_by_loss_limit: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"tick_id": self.tick_id, "timeframe": self.timeframe, "status": self.status,
                "decisions": {s: list(d) for s, d in self.decisions.items()}, "orders": self.orders,
                "raced": self.raced, "halted_by_loss_limit": self.halted_by_loss_limit}


@dataclass
class _Context:
    """Everything the gates need, read once per tick."""

    cfg: StrategyConfig
    venue: str
    tick_id: str
    timeframe: str
    close_ms: int
    halted: bool
    halt_reason: str | None
    loss_halted: bool
    venue_problem: str | None
    symbol_problems: dict[str, str]
    late_by_ms: int
    rules: dict[str, MarketRules]
    account: AccountValue | None
    daily: DayPnl | None
    held: set[str]
    unresolved: set[str]
    last_stops: dict[str, Any]
    slots_used: int
    free_quote: Decimal
    sync: dict[str, Any]

    def gate_for(self, symbol: str) -> tuple[str, str] | None:
        """The first gate an entry on ``symbol`` fails: (reason code, detail), or None. The rule
        is ``strategy.engines.gates.entry_gate``, which the backtest calls too."""
        state = GateState(
            close_ms=self.close_ms, timeframe_ms=timeframe_seconds(self.timeframe) * 1000, halted=self.halted,
            halt_reason=self.halt_reason, loss_halted=self.loss_halted, venue_problem=self.venue_problem,
            symbol_problems=self.symbol_problems, late_by_ms=self.late_by_ms,
            stale_data_after_candles=self.cfg.stale_data_after_candles, unresolved=self.unresolved,
            last_stop_ms={s: datetime_to_ms(at) for s, at in self.last_stops.items()},
            cooldown_candles=self.cfg.cooldown_candles, max_open_positions=self.cfg.max_open_positions,
            listed=set(self.rules))
        return entry_gate(state, symbol, slots_used=self.slots_used)


def tick_run(*, tick_id: str, timeframe: str | None = None, gateway: ExchangeGateway | None = None,
             scorer: EntryScorer | None = None, now_ms: int | None = None) -> TickReport:
    """Run the B-lite tick ``tick_id`` (HK wall time of the candle close, ``infra.clock.tick_id_for``).

    Idempotent: a re-run, a re-delivered task or a concurrent worker writes no second decision
    and places no second order. ``now_ms`` (default: now) only decides whether the tick is late.
    """
    gw = gateway_or_default(gateway)
    cfg = config_get()
    timeframe = timeframe or cfg.timeframe
    close_ms = datetime_to_ms(tick_close_from_id(tick_id))
    tf_ms = timeframe_seconds(timeframe) * 1000
    if close_ms % tf_ms:
        raise ValueError(f"tick {tick_id} is not the close of a {timeframe} candle")
    with trace_context():
        try:
            with redis_lock(f"strategy-tick:{STRATEGY_NAME}:{tick_id}", ttl_s=TICK_LOCK_TTL_S):
                return _run(gw, cfg, tick_id, timeframe, close_ms, scorer,
                            clock_now_ms() if now_ms is None else now_ms)
        except LockNotAcquired:
            log.info("tick %s is being run by another worker", tick_id)
            return TickReport(tick_id=tick_id, timeframe=timeframe, status="locked")


def _run(gw: ExchangeGateway, cfg: StrategyConfig, tick_id: str, timeframe: str, close_ms: int,
         scorer: EntryScorer | None, now: int) -> TickReport:
    report = TickReport(tick_id=tick_id, timeframe=timeframe, status="done")
    universe = list(cfg.universe)
    done = selectors.decided_symbols(strategy=STRATEGY_NAME, tick_id=tick_id)
    if set(universe) <= done:
        report.status = "already_done"
        return report
    params = blite_params(cfg)
    sync = market.tick_synced(venue=gw.name, timeframe=timeframe, tick_id=tick_id)
    if sync is None:
        log.info("tick %s: candle sync not found; syncing first", tick_id)
        sync = tick_candles_sync(tick_id=tick_id, timeframe=timeframe, close_ms=close_ms, gateway=gw).as_dict()
    tf_ms = timeframe_seconds(timeframe) * 1000
    expected_open = close_ms - tf_ms
    candles = {s: market.candles_window(venue=gw.name, symbol=s, timeframe=timeframe, last_open_ms=expected_open,
                                        count=params.history_candles) for s in universe}
    batch = CandleBatch.from_candles(candles, timeframe=timeframe)
    signals = apply_scorer(decide_entries(batch, params, expected_last_open_time_ms=expected_open), batch, scorer)
    ctx = _context(gw, cfg, tick_id, timeframe, close_ms, now, candles, expected_open, sync)
    report.halted_by_loss_limit = ctx.loss_halted
    for signal in signals:
        if signal.symbol in done:
            continue
        _decide(gw, ctx, params.to_dict(), signal, report)
    entries = [s for s, (d, _) in report.decisions.items() if d == Decision.ENTER]
    log.info("tick %s: %d decision(s), entries %s", tick_id, len(report.decisions), entries or "none")
    return report


def _context(gw: ExchangeGateway, cfg: StrategyConfig, tick_id: str, timeframe: str, close_ms: int, now: int,
             candles: dict[str, list], expected_open: int, sync: dict[str, Any]) -> _Context:
    venue = gw.name
    universe = list(cfg.universe)
    halt = is_halted()
    health = market.venue_health(venue)          # Redis down -> raises: fail closed
    problems: list[str] = [] if health.ok else [f"syncer: {health.reason}"]
    if sync.get("rate_limited"):
        problems.append("the tick's candle sync hit the venue's rate limit")
    symbol_problems = {s: f"candle sync failed: {rec['error']}" for s, rec in (sync.get("symbols") or {}).items()
                       if rec.get("error")}
    positions_sync(venue=venue)
    active = list(selectors.positions_active(venue=venue))
    rules: dict[str, MarketRules] = {}
    balances: dict[str, Balance] | None = None
    try:
        rules = market_rules(gw, symbols=universe)
        balances = gw.fetch_balances()
    except RateLimitedError as exc:
        venue_rate_limited_set(venue=venue, exc=exc)
        problems.append(f"rate limited: {exc}")
    except VenueError as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    # Prices: the tick's own candle close where we have it (what the strategy decided on),
    # else the syncer's last ticker.
    prices = market.latest_prices(venue=venue)
    for symbol, rows in candles.items():
        if rows and rows[-1].open_time_ms == expected_open:
            prices[symbol] = rows[-1].close
    account = daily = None
    loss_halted = False
    if balances is not None:
        quote = universe[0].split("/")[1] if universe else "USDT"
        account = account_value(balances=balances, prices=prices, quote=quote)
        # The Hong Kong day's PnL is equity now minus equity at the day's start (invariant 10):
        # a position opened yesterday counts only what it moved today.
        daily = day_pnl(venue=venue, day_start=hk_day_start_utc(ms_to_datetime(close_ms)), equity_now=account.equity)
        if not halt.halted and daily_loss_limit_hit(equity_start=daily.equity_start, equity_now=daily.equity_now,
                                                    limit=cfg.daily_loss_limit):
            loss_halted = True
            trading_halt(actor="risk", source="system", reason_code="DAILY_LOSS_LIMIT",
                         reason=(f"daily loss limit: equity {daily.equity_now:.2f} {account.quote} is "
                                 f"{-daily.total:.2f} below the {daily.equity_start:.2f} the HK day began with, "
                                 f"at or past -{cfg.daily_loss_limit:%} at tick {tick_id}"),
                         trace_id=new_trace_id())
            log.error("tick %s: daily loss limit reached (%s); trading halted", tick_id, daily.total)
    pending = selectors.pending_entry_orders(venue=venue, strategy=STRATEGY_NAME).count()
    return _Context(
        cfg=cfg, venue=venue, tick_id=tick_id, timeframe=timeframe, close_ms=close_ms, halted=halt.halted,
        halt_reason=halt.reason_code, loss_halted=loss_halted, venue_problem="; ".join(problems)[:500] or None,
        symbol_problems=symbol_problems,
        late_by_ms=max(now - close_ms, 0), rules=rules, account=account, daily=daily,
        held={p.symbol for p in active}, unresolved=selectors.symbols_with_unresolved_orders(venue=venue),
        last_stops=selectors.last_stop_exits(venue=venue, symbols=universe), slots_used=len(active) + pending,
        free_quote=account.free_quote if account else Decimal(0), sync=sync,
    )


def _size(ctx: _Context, signal: EntrySignal, rules: MarketRules) -> SizingResult:
    assert ctx.account is not None and signal.entry_price is not None and signal.stop_price is not None
    return size_position(
        equity=ctx.account.equity, free_quote=ctx.free_quote, entry_price=Decimal(str(signal.entry_price)),
        stop_price=Decimal(str(signal.stop_price)), risk_per_trade=ctx.cfg.risk_per_trade,
        max_position_notional=ctx.cfg.max_position_notional, lot_step=rules.lot_step, tick_size=rules.tick_size,
        min_qty=rules.min_qty, min_notional=rules.min_notional,
    )


def _decide(gw: ExchangeGateway, ctx: _Context, params: dict[str, Any], signal: EntrySignal,
            report: TickReport) -> None:
    symbol = signal.symbol
    rules = ctx.rules.get(symbol)
    sym_sync = (ctx.sync.get("symbols") or {}).get(symbol) or {}
    inputs: dict[str, Any] = {
        "engine": signal.to_dict(), "params": params, "timeframe": ctx.timeframe, "config_version": ctx.cfg.version,
        "expected_candle_open_ms": ctx.close_ms - timeframe_seconds(ctx.timeframe) * 1000,
        "sync": {k: sym_sync.get(k) for k in ("lag_candles", "missing_count", "stale", "error")},
        "market": None if rules is None else {
            "tick_size": str(rules.tick_size), "lot_step": str(rules.lot_step), "min_qty": str(rules.min_qty),
            "min_notional": str(rules.min_notional), "stop_orders": rules.stop_orders},
        "account": None if ctx.account is None else ctx.account.as_json(),
        "daily_pnl": None if ctx.daily is None else ctx.daily.as_json(),
        "gate": None, "sizing": None, "client_order_id": None,
    }
    sizing: SizingResult | None = None
    if symbol in ctx.held:
        decision, reason = Decision.HOLD, Gate.IN_POSITION
        inputs["gate"] = {"blocked_by": Gate.IN_POSITION, "detail": f"a position on {symbol} is open"}
    elif not signal.enter:
        decision, reason = Decision.SKIP, str(signal.reason_code)
    elif (gate := ctx.gate_for(symbol)) is not None:
        decision, reason = Decision.BLOCKED, gate[0]
        inputs["gate"] = {"blocked_by": gate[0], "detail": gate[1]}
    else:
        assert rules is not None
        sizing = _size(ctx, signal, rules)
        inputs["sizing"] = sizing.to_dict()
        if sizing.ok:
            decision, reason = Decision.ENTER, str(signal.reason_code)
        else:
            decision, reason = Decision.BLOCKED, str(sizing.skip)
            inputs["gate"] = {"blocked_by": str(sizing.skip), "detail": sizing.detail}
    trace_id = new_trace_id()
    client_order_id = None
    if decision == Decision.ENTER:
        client_order_id = make_client_order_id(strategy=STRATEGY_NAME, symbol=symbol, tick_id=ctx.tick_id,
                                               intent="entry")
        inputs["client_order_id"] = client_order_id
    with trace_context(trace_id):
        try:
            with transaction.atomic():
                if client_order_id is not None:
                    # The halt read at the start of the tick may be stale by now (an emergency exit
                    # may have run meanwhile): decide against the committed halt, under its lock, in
                    # the transaction that writes the entry (ARCHITECTURE invariant 9).
                    halt = halt_state_committed()
                    if halt.halted:
                        decision, reason, client_order_id = Decision.BLOCKED, Gate.HALTED, None
                        inputs["gate"] = {"blocked_by": Gate.HALTED,
                                          "detail": f"trading was halted during the tick ({halt.reason_code})"}
                        inputs["client_order_id"] = None
                StrategyDecision.objects.create(strategy=STRATEGY_NAME, tick_id=ctx.tick_id, symbol=symbol,
                                                decision=decision, reason_code=reason, trace_id=trace_id,
                                                inputs=inputs)
                if client_order_id is not None:
                    assert sizing is not None and sizing.quantity is not None
                    order_place(venue=gw.name, strategy=STRATEGY_NAME, symbol=symbol, side=Order.Side.BUY,
                                type=Order.Type.MARKET, intent=Order.Intent.ENTRY, quantity=sizing.quantity,
                                trace_id=trace_id, tick_id=ctx.tick_id, reason_code=reason,
                                valid_until=ms_to_datetime(ctx.close_ms + timeframe_seconds(ctx.timeframe) * 1000))
        except IntegrityError:
            # Another worker decided this symbol of this tick meanwhile (its order, if any, came
            # in the same transaction as its decision).
            log.info("tick %s %s: already decided by another worker", ctx.tick_id, symbol)
            report.raced.append(symbol)
            return
        log.info("tick %s %s: %s %s", ctx.tick_id, symbol, decision, reason)
    report.decisions[symbol] = (decision, reason)
    if client_order_id is not None and sizing is not None:
        report.orders.append(client_order_id)
        ctx.slots_used += 1
        ctx.free_quote -= sizing.notional * (1 + DEFAULT_FEE_BUFFER)
