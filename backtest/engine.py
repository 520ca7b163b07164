"""The backtest: B-lite over stored candles, deciding exactly as the live tick does.

``run_backtest(spec, series)`` replays every candle of ``[spec.start_ms, spec.end_ms)`` as
one tick of the live system on the paper venue, with the live code:

* **Entries** - ``strategy.engines.blite``: the same reason codes in the same precedence
  (``entry_reason_codes``), on the same ``history_candles`` window per candle. Indicators are
  computed once over the whole series instead of once per window: the volume SMA with the
  live function and the Donchian channel with ``_kernels.donchian_high`` (the live channel in
  one pass; both window-local, so the values are the same), the trend EMA and the ATR - whose
  values depend on where the window starts - with ``_kernels.ema_at`` / ``wilder_at``, which
  give bit-for-bit the values ``indicators.ema`` / ``atr`` give on the
  candle's own window, and only on the candles where they can change the decision (a breakout
  on volume over clean data: every other candle is decided by an earlier reason).
* **Gates** - ``strategy.engines.gates.entry_gate`` / ``daily_loss_limit_hit``: a symbol with
  an open position holds (IN_POSITION); then HALTED, DAILY_LOSS_LIMIT, COOLDOWN (after a
  STOP_LOSS / TRAILING_STOP exit), MAX_POSITIONS. Venue health, late ticks and unresolved
  orders do not arise in a backtest (the venue always answers, every tick runs on time, a
  market order fills at once).
* **Sizing** - ``strategy.engines.sizing.size_position`` (Decimal) with the venue's lot step,
  tick size, minimum quantity and notional, the fee buffer and ``max_position_notional``;
  equity = quote balance + holdings at the tick's closes, free quote reduced by each entry of
  the same tick (as the tick does), symbols in universe order. A signal the free balance cannot
  pay for gets the skip ``size_position`` would return from its own early checks
  (``sizing.early_skip``) without a full sizing (``_Sizer``).
* **Stops** - ``PositionStop.for_entry`` (the live position opener's levels from the fill
  price and the decision's ATR) and ``stops.candle_exit`` (the live ratchet).
* **Fees** - the paper venue's: a buy pays ``fee_rate`` in the base asset (the position holds
  ``qty - fee``), a sell in the quote asset; an exit sells the holding rounded down to the lot
  step (the monitor's rule), the remainder stays as dust in the balance and in the equity.

Fill model
----------
1. An entry fills at the decision candle's **close**, plus slippage against us:
   ``close x (1 + slippage)`` rounded *up* to the tick (the paper venue's market buy). An entry
   the quote balance cannot pay for is rejected by the venue and opens nothing.
2. Exits are looked for from the candle after the entry on, one candle at a time, with the
   stop and target set before that candle (``stops.candle_exit``):
   a. the candle **opens** at/below the stop or at/above the target (a gap through it): the
      exit fills at the **open**;
   b. else its low reaches the stop: fills **at the stop**; else its high reaches the target:
      fills **at the target**. A candle that touches both is a **stop** (we cannot know which
      came first; assume the worse);
   c. else the trailing stop ratchets with the candle's **high** (``highest - R``, never down)
      and applies from the **next** candle: a candle's high never raises the stop that the
      same candle's low is tested against. A close below the raised stop exits at the next
      candle's open (rule a).
   Every exit fill is a market sell: the level less slippage, rounded *down* to the tick.
3. A position still open after the last candle sells at the last **close** (less slippage) as
   ``END_OF_DATA``.
4. An exit in candle ``j`` has happened by the tick at ``j``'s close: the symbol is not held
   there, and a stop's cooldown counts from that close (exactly the live count: the tick at
   ``k`` candles after a stop's candle is blocked iff ``k < cooldown_candles``, wherever in
   the candle the monitor saw the stop).

Daily loss limit: equity is marked at every close; the HK day's start equity is the equity at
the day's first close (the tick at 00:00 HKT). The first tick whose equity is down by
``daily_loss_limit`` of it blocks that tick's entries as DAILY_LOSS_LIMIT and halts trading; the
live halt waits for an operator, the backtest assumes one resumes at the next HK day (later
entries that day are HALTED).

The equity curve is marked at every candle close (``equity_time_ms`` = close times);
``decisions`` counts every symbol's decision at every tick by reason code, as
``strategy_decisions`` would hold them.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_FLOOR, Context, Decimal

import numpy as np

from backtest import _kernels
from backtest.types import BacktestResult, BacktestSpec, BacktestTrade, SymbolSeries
from infra.clock import hk_day_start_utc, ms_to_datetime, timeframe_ms
from strategy.engines import indicators
from strategy.engines.blite import (
    REASON_PRECEDENCE,
    BLiteParams,
    EntryReason,
    bad_candles,
    entry_conditions,
    entry_levels,
    entry_reason_codes,
)
from strategy.engines.gates import Decision, Gate, GateState, daily_loss_limit_hit, entry_gate
from strategy.engines.sizing import (
    DEFAULT_FEE_BUFFER,
    SizingSkip,
    early_skip,
    lacks_free_balance,
    rounded_levels,
    size_position,
    spendable_quote,
)
from strategy.engines.stops import ExitReason, PositionStop, candle_exit
from strategy.params import blite_params
from trading.exchanges.base import MarketRules, round_to_step

__all__ = ["END_OF_DATA", "Simulation", "default_market_rules", "run_backtest", "simulate"]

END_OF_DATA = "END_OF_DATA"
_ENTRY_CODE = REASON_PRECEDENCE.index(EntryReason.ENTRY_SIGNAL)
_STOP_EXITS = (ExitReason.STOP_LOSS, ExitReason.TRAILING_STOP)
_DAY_MS = 86_400_000
_FLOOR = Context(prec=50, rounding=ROUND_FLOOR)
_MISSING = object()
LOSS_LOOKAHEAD = 256
ZERO = Decimal(0)


def _d(x: float) -> Decimal:
    """A float price as the Decimal the live code would build from it (``Decimal(str(x))``)."""
    return Decimal(repr(float(x)))


def _forward_filled(close: np.ndarray) -> np.ndarray:
    """Each row with a non-finite close replaced by the last finite one before it (the price a
    holding is marked at, as the live tick falls back to the last known price)."""
    ok = np.isfinite(close)
    if ok.all():
        return close
    idx = np.where(ok, np.arange(close.shape[1])[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    return np.take_along_axis(close, idx, axis=1)


def default_market_rules(symbol: str, reference_price: float) -> MarketRules:
    """The paper venue's rules for ``symbol`` (``trading.exchanges.paper.venue.rules_for``):
    the synthetic market's tick size when the symbol's synthetic price level is that of the data
    (within 10x), else the tick the venue derives from the price, as with a replayed feed."""
    # Imported here: the paper venue module loads Django models, which a caller of the pure
    # engine with explicit market rules does not need.
    from trading.exchanges.paper.synthetic import symbol_profile
    from trading.exchanges.paper.venue import rules_for

    profile = symbol_profile(symbol)
    tick = profile.tick_size if profile.base_price / 10 <= reference_price <= profile.base_price * 10 else None
    return rules_for(symbol, _d(reference_price), tick)


@dataclass
class _Symbol:
    """One symbol's decided candles (``n`` of them, ticks 0..n-1) and precomputed signals."""

    name: str
    base: str
    rules: MarketRules
    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    codes: np.ndarray                 # int8 index into REASON_PRECEDENCE, per tick
    atr: dict[int, float]             # at entry-signal ticks
    stop: dict[int, float]


@dataclass
class _Position:
    sym: int
    entry_tick: int
    quantity: Decimal                 # bought
    held: Decimal                     # bought less the fee taken in the base asset
    entry_price: Decimal
    entry_fee_quote: Decimal
    state: PositionStop
    exit_tick: int = -1
    exit_price: Decimal | None = None  # before slippage
    exit_reason: str = ""


@dataclass
class Simulation:
    """A run's result plus what the parity test compares with the live tables."""

    result: BacktestResult
    symbols: tuple[str, ...]
    tick_open_ms: np.ndarray
    engine_codes: dict[str, np.ndarray]                       # the entry engine's reason per tick
    held: dict[str, np.ndarray]                               # bool per tick: a position was open
    overrides: dict[tuple[str, int], tuple[str, str]]         # gate / sizing outcomes of entry signals
    signal_levels: dict[str, dict[int, tuple[float, float]]]  # entry signals: tick -> (ATR, proposed stop)
    entries: list[tuple[str, int, Decimal, Decimal]] = field(default_factory=list)   # symbol, tick, qty, fill

    def decision(self, symbol: str, tick: int) -> tuple[str, str]:
        """(decision, reason code) of ``symbol`` at tick index ``tick``, as ``strategy_decisions``."""
        if self.held[symbol][tick]:
            return Decision.HOLD, Gate.IN_POSITION
        if (symbol, tick) in self.overrides:
            return self.overrides[(symbol, tick)]
        return Decision.SKIP, str(REASON_PRECEDENCE[self.engine_codes[symbol][tick]])


def run_backtest(spec: BacktestSpec, series: Mapping[str, SymbolSeries], *,
                 progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    """Simulate ``spec`` on ``series`` (see the module docstring). Raises ValueError naming the
    problem for a spec these candles cannot run."""
    return simulate(spec, series, progress=progress).result


# --- input checks and per-symbol precomputation -------------------------------------------------

def _check_spec(spec: BacktestSpec, series: Mapping[str, SymbolSeries]) -> tuple[int, str]:
    cfg = spec.config
    tf = timeframe_ms(cfg.timeframe)
    if not cfg.universe:
        raise ValueError("the universe is empty")
    if spec.end_ms <= spec.start_ms:
        raise ValueError(f"empty range: end {spec.end_ms} is not after start {spec.start_ms}")
    if spec.start_ms % tf or spec.end_ms % tf:
        raise ValueError(f"start and end must be multiples of the {cfg.timeframe} timeframe")
    quotes = {s.partition("/")[2] for s in cfg.universe}
    if len(quotes) != 1 or "" in quotes:
        raise ValueError(f"the universe must share one quote asset, got {sorted(cfg.universe)}")
    quote = quotes.pop()
    if quote not in spec.initial_balances:
        raise ValueError(f"initial_balances has no {quote}, the universe's quote asset")
    for asset, amount in spec.initial_balances.items():
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise ValueError(f"initial balance of {asset} must be a Decimal >= 0, got {amount!r}")
    if not Decimal(0) <= spec.fee_rate < Decimal(1):
        raise ValueError(f"fee_rate must be in [0, 1), got {spec.fee_rate}")
    if not Decimal(0) <= spec.slippage_bps < Decimal(10_000):
        raise ValueError(f"slippage_bps must be in [0, 10000), got {spec.slippage_bps}")
    missing = [s for s in cfg.universe if s not in series]
    if missing:
        raise ValueError(f"no candles for {', '.join(missing)} of the universe")
    return tf, quote


def _prepare(spec: BacktestSpec, ser: SymbolSeries, p: BLiteParams, tf: int, n: int) -> _Symbol:
    sym = ser.symbol
    t = np.asarray(ser.open_time_ms, dtype=np.int64)
    arrays = [np.asarray(getattr(ser, k), dtype=np.float64) for k in ("open", "high", "low", "close", "volume")]
    if t.ndim != 1 or any(a.shape != t.shape for a in arrays):
        raise ValueError(f"{sym}: candle arrays must be 1-D and of equal length")
    first = int(np.searchsorted(t, spec.start_ms))
    if first >= len(t) or t[first] != spec.start_ms:
        raise ValueError(f"{sym}: no candle opens at the start {spec.start_ms}")
    if first + n > len(t) or t[first + n - 1] != spec.end_ms - tf:
        raise ValueError(f"{sym}: the candles do not cover the range to {spec.end_ms} without gaps")
    w = p.history_candles
    if first < w - 1:
        raise ValueError(f"{sym}: {first} candles before the start; the decision window needs "
                         f"{w - 1} (history_candles {w})")
    lo_i = first - w + 1
    t = t[lo_i:first + n]
    o, h, lo, c, v = (a[lo_i:first + n] for a in arrays)
    if np.any(np.diff(t) != tf):
        raise ValueError(f"{sym}: candles are not evenly spaced by the {spec.config.timeframe} timeframe")

    # Per-candle data checks over each candle's window (rolling counts). Candle ``i`` of the
    # series is decided at tick ``i - (w - 1)``: ``decided`` selects the decided candles.
    decided = slice(w - 1, w - 1 + n)
    bad_c = bad_candles(t, o, h, lo, c, v)
    bad_cum = np.concatenate(([0], np.cumsum(bad_c)))
    bad_win = (bad_cum[w:w + n] - bad_cum[:n]) > 0
    gap_win = np.zeros(n, dtype=bool)                              # evenly spaced: checked above
    insufficient = np.zeros(n, dtype=bool)                         # the warm-up was checked above
    stale = np.zeros(n, dtype=bool)                                # the window ends at its own candle

    with np.errstate(invalid="ignore"):
        donchian = _kernels.donchian_high(h, p.breakout_lookback)[decided]
    close, volume = c[decided], v[decided]
    vol_sma = np.full(n, np.nan)                                   # filled on the clean breakouts below
    breakout, _, _, _ = entry_conditions(p, close=close, donchian=donchian, volume=volume, vol_sma=vol_sma,
                                         ema=close)
    # A window without bad candles has finite volumes in [0, blite.MAX_VALUE], so its volume
    # SMA is finite: only the channel can make the indicators undefined there.
    bad = bad_win | ~np.isfinite(donchian)
    # The volume SMA decides only on clean breakouts (elsewhere an earlier reason wins): the
    # live function on each of those candles' own volume window, the per-window mean it takes
    # on the live tick's window (tests/backtest/test_engine_kernels checks it over whole series).
    breakouts = np.nonzero(~bad & breakout)[0]
    k = p.volume_sma
    vol_sma[breakouts] = indicators.sma(v[(breakouts + (w - 1))[:, None] + np.arange(1 - k, 1)], k)[:, -1]
    _, volume_ok, _, _ = entry_conditions(p, close=close, donchian=donchian, volume=volume, vol_sma=vol_sma,
                                          ema=close)
    # The trend EMA and the ATR decide only where everything before them passed; elsewhere an
    # earlier reason wins, and on clean data they are finite (blite.MAX_VALUE), so they are
    # computed there only.
    cand = breakouts[volume_ok[breakouts]]
    trend_ok = np.ones(n, dtype=bool)
    stop_ok = np.ones(n, dtype=bool)
    sig = np.zeros(0, dtype=np.int64)
    atr_s = stop_s = np.zeros(0)
    if cand.size:
        ema_c = _kernels.ema_at(c, cand + (w - 1), w, p.ema_trend)
        _, _, trend_c, _ = entry_conditions(p, close=close[cand], donchian=donchian[cand], volume=volume[cand],
                                            vol_sma=vol_sma[cand], ema=ema_c)
        bad[cand] |= ~np.isfinite(ema_c)
        trend_ok[cand] = trend_c
        # The ATR (the stop) decides only where the trend passed too.
        sig = cand[trend_c & np.isfinite(ema_c)]
        if sig.size:
            tr = indicators.true_range(h[None, :], lo[None, :], c[None, :])[0]
            atr_s = _kernels.wilder_at(tr, sig + (w - 1), w, p.atr_period)
            stop_s, _, stop_ok_s = entry_levels(p, close=close[sig], atr=atr_s)
            bad[sig] |= ~np.isfinite(atr_s)
            stop_ok[sig] = stop_ok_s
    codes = entry_reason_codes(insufficient=insufficient, bad=bad, gap=gap_win, stale=stale, breakout=breakout,
                               volume_ok=volume_ok, trend_ok=trend_ok, stop_ok=stop_ok)
    entering = codes[sig] == _ENTRY_CODE
    rules = spec.market_rules.get(sym) or default_market_rules(sym, float(c[w - 1]))
    return _Symbol(
        name=sym, base=sym.partition("/")[0], rules=rules, open_time_ms=t[decided], open=o[decided],
        high=h[decided], low=lo[decided], close=close, codes=codes,
        atr=dict(zip(sig[entering].tolist(), atr_s[entering].tolist(), strict=True)),
        stop=dict(zip(sig[entering].tolist(), stop_s[entering].tolist(), strict=True)),
    )


# --- the simulation ----------------------------------------------------------------------------

class _Book:
    """Balances, open positions and the daily-loss state, advanced tick by tick."""

    def __init__(self, spec: BacktestSpec, syms: list[_Symbol], quote: str, close: np.ndarray,
                 tick_close_ms: np.ndarray) -> None:
        self.spec = spec
        self.cfg = spec.config
        self.syms = syms
        self.quote = quote
        self.close = _forward_filled(close)    # (symbols, ticks): the marking prices
        with np.errstate(invalid="ignore"):
            self.marks_ok = (np.isfinite(self.close) & (self.close >= 0)).all(axis=0)
        self.n = close.shape[1]
        self.balances: dict[str, Decimal] = {a: Decimal(v) for a, v in spec.initial_balances.items()}
        for s in syms:
            self.balances.setdefault(s.base, ZERO)
        self.fee = spec.fee_rate
        # As the live opener reads them back from the decision's params (floats in JSON).
        self.stop_multiple = _d(float(self.cfg.stop_atr_multiple))
        self.take_profit_r = _d(float(self.cfg.take_profit_r))
        self.slip = spec.slippage_bps / Decimal(10_000)
        self.cash_f = float(self.balances[quote])
        self.qty_f = np.array([float(self.balances[s.base]) for s in syms])
        self.positions: dict[int, _Position] = {}          # by symbol index
        self.exits: list[tuple[int, int, int]] = []        # heap of (exit tick, seq, symbol index)
        self.seq = 0
        self.trades: list[BacktestTrade] = []
        self.last_stop_ms: dict[str, int] = {}
        self.cash_delta = np.zeros(self.n)
        self.qty_delta = np.zeros((len(syms), self.n))
        self.held_ranges: list[tuple[int, int, int]] = []  # symbol index, first held tick, end (exclusive)
        self.entries: list[tuple[str, int, Decimal, Decimal]] = []
        # Daily loss limit state.
        self.tick_close_ms = tick_close_ms
        self.day_starts = [*self._day_start_ticks(), self.n]    # ending in "no more days" (never reached)
        self.next_day = 0                       # index into day_starts of the next day to open
        self.loss_scan: tuple[int, int, int] | None = None     # (from, to, first candidate or -1)
        self.day_equity_start: Decimal | None = None
        self.threshold_f = -math.inf
        self.halt_tick = -1                     # tick of today's loss halt, -1 if none
        self.done = -1                          # every tick <= done has been accounted for

    def _day_start_ticks(self) -> list[int]:
        """Index of the first tick of each HK day (the day's first candle close)."""
        first, last = int(self.tick_close_ms[0]), int(self.tick_close_ms[-1])
        starts = [0]
        day = int(hk_day_start_utc(ms_to_datetime(first)).timestamp() * 1000)
        while True:
            # Each next day from the clock, so the boundaries are the live ones by construction.
            day = int(hk_day_start_utc(ms_to_datetime(day + _DAY_MS + 3_600_000)).timestamp() * 1000)
            if day > last:
                break
            starts.append(int(np.searchsorted(self.tick_close_ms, day)))
        return sorted(set(starts))

    # equity
    def equity(self, tick: int) -> Decimal:
        total = self.balances[self.quote]
        for i, s in enumerate(self.syms):
            held = self.balances[s.base]
            if held:
                total += held * _d(self.close[i, tick])
        return total

    def equity_positive(self, tick: int) -> bool:
        """Whether ``equity(tick)`` is certainly finite and > 0, without computing it: the quote
        balance is > 0 and every marking price is finite and >= 0 (no base balance goes below 0:
        a buy adds the quantity less a fee smaller than it, a sell takes at most what the position
        holds), so it is a positive balance plus products that are >= 0."""
        return bool(self.marks_ok[tick]) and self.balances[self.quote] > 0

    # time
    def advance(self, target: int) -> None:
        """Account for every tick up to ``target``: exits filled in those candles, HK day starts,
        and the daily loss check at each close."""
        while self.done < target:
            t = self.done + 1
            nxt_event = self.exits[0][0] if self.exits else self.n
            if self.day_starts[self.next_day] < nxt_event:
                nxt_event = self.day_starts[self.next_day]
            if t < nxt_event:
                until = nxt_event - 1 if nxt_event <= target else target
                scan = self.loss_scan
                # The common case, without a call: the last search already shows no candidate in t..until.
                if scan is None or scan[0] > t or not (scan[2] > until or (scan[2] < 0 and until <= scan[1])):
                    self._scan_loss(t, until, nxt_event - 1)
                self.done = until
                continue
            # Tick t carries an event: exits inside candle t, then (at its close) a new HK day.
            while self.exits and self.exits[0][0] == t:
                _, _, si = heapq.heappop(self.exits)
                self.close_position(si)
            if t == self.day_starts[self.next_day]:
                self.next_day += 1
                self.day_equity_start = self.equity(t)
                limit = self.day_equity_start * (1 - self.cfg.daily_loss_limit)
                self.threshold_f = float(limit) if self.day_equity_start > 0 else -math.inf
                self.halt_tick = -1
                self.loss_scan = None
            self._scan_loss(t, t, t)
            self.done = t

    def _scan_loss(self, start: int, end: int, horizon: int) -> None:
        """The daily loss check at the closes ``start``..``end``; nothing up to ``horizon`` (>= end)
        changes the balances or the day unless a position opens."""
        if self.halt_tick >= 0 or self.day_equity_start is None:
            return
        while start <= end:
            hit = self._loss_candidate(start, end, horizon)
            if hit < 0:
                return
            if daily_loss_limit_hit(equity_start=self.day_equity_start, equity_now=self.equity(hit),
                                    limit=self.cfg.daily_loss_limit):
                self.halt_tick = hit
                return
            start = hit + 1

    def _loss_candidate(self, start: int, end: int, horizon: int) -> int:
        """``_kernels.first_loss_candidate`` over ``start``..``end``. The signal ticks that call
        it are ~11 candles apart, so one search looks up to LOSS_LOOKAHEAD candles further (to
        ``horizon`` at most) and answers the next calls while the balances and the day's
        threshold it used are unchanged (``loss_scan`` is cleared when they change). The test is
        per tick, so a search's first candidate at or after ``start`` is the first from ``start``."""
        scan = self.loss_scan
        if scan is not None and scan[0] <= start:
            searched_to, hit = scan[1], scan[2]
            if hit >= start:
                return hit if hit <= end else -1
            if hit < 0 and end <= searched_to:
                return -1
        searched_to = max(end, min(horizon, end + LOSS_LOOKAHEAD))
        hit = _kernels.first_loss_candidate(self.cash_f, self.qty_f, self.close, start, searched_to, self.threshold_f)
        self.loss_scan = (start, searched_to, hit)
        return hit if hit <= end else -1

    # positions
    def open_position(self, si: int, tick: int, qty: Decimal) -> tuple[Decimal, bool]:
        """Market buy at the tick's close (plus slippage); schedule its exit. (fill, filled?)"""
        s = self.syms[si]
        rules = s.rules
        price = round_to_step(_d(s.close[tick]) * (1 + self.slip), rules.tick_size, up=True)
        cost = qty * price
        if cost > self.balances[self.quote]:
            return price, False                # the venue refuses: insufficient balance
        fee_base = qty * self.fee
        self.balances[self.quote] -= cost
        self.balances[s.base] += qty - fee_base
        self.cash_f = float(self.balances[self.quote])
        self.qty_f[si] = float(self.balances[s.base])
        self.loss_scan = None
        self.cash_delta[tick] -= float(cost)
        self.qty_delta[si, tick] += float(qty - fee_base)
        state = PositionStop.for_entry(
            entry_price=price, atr=_d(s.atr[tick]), stop_atr_multiple=self.stop_multiple,
            take_profit_r=self.take_profit_r, tick_size=rules.tick_size)
        pos = _Position(sym=si, entry_tick=tick, quantity=qty, held=qty - fee_base, entry_price=price,
                        entry_fee_quote=fee_base * price, state=state)
        self._find_exit(pos)
        self.positions[si] = pos
        heapq.heappush(self.exits, (pos.exit_tick, self.seq, si))
        self.seq += 1
        self.held_ranges.append((si, tick + 1, pos.exit_tick))
        self.entries.append((s.name, tick, qty, price))
        return price, True

    def _find_exit(self, pos: _Position) -> None:
        s = self.syms[pos.sym]
        state = pos.state
        start = pos.entry_tick + 1
        highest_f = float(state.highest_price)
        stop_f = float(state.stop_price)
        tp_f = float(state.take_profit_price)
        dist_f = float(state.trail_distance)
        while start < self.n:
            j, highest_f, stop_f = _kernels.next_exit_candidate(s.open, s.high, s.low, start, self.n, stop_f, tp_f,
                                                                highest_f, dist_f)
            if j < 0:
                break
            # The live rule decides, in Decimal, with the state the search carried to candle j.
            highest = max(state.highest_price, _d(highest_f))
            state = replace(state, highest_price=highest,
                            stop_price=max(state.stop_price, highest - state.trail_distance))
            check = candle_exit(state, open=_d(s.open[j]), high=_d(s.high[j]), low=_d(s.low[j]))
            if check.exit:
                pos.exit_tick, pos.exit_price, pos.exit_reason = j, check.price, str(check.reason_code)
                return
            state = check.state
            highest_f, stop_f = float(state.highest_price), float(state.stop_price)
            start = j + 1
        # Still open after the last candle: sold at its close, after that tick's decisions (tick
        # ``n`` stands for "after the last tick", which ``advance`` never reaches).
        pos.exit_tick, pos.exit_price, pos.exit_reason = self.n, _d(self.close[pos.sym, self.n - 1]), END_OF_DATA

    def close_position(self, si: int) -> None:
        pos = self.positions.pop(si)
        s = self.syms[si]
        rules = s.rules
        assert pos.exit_price is not None
        price = round_to_step(pos.exit_price * (1 - self.slip), rules.tick_size)
        qty = round_to_step(pos.held, rules.lot_step)
        tick = min(pos.exit_tick, self.n - 1)
        if pos.exit_reason in _STOP_EXITS:
            self.last_stop_ms[s.name] = int(self.tick_close_ms[tick])
        if qty <= 0 or qty < rules.min_qty or qty * price < rules.min_notional:
            # Dust the venue will not take: the position closes with nothing sold (as the monitor does).
            proceeds = fee = ZERO
            qty = ZERO
        else:
            proceeds = qty * price
            fee = proceeds * self.fee
            self.balances[s.base] -= qty
            self.balances[self.quote] += proceeds - fee
        self.cash_f = float(self.balances[self.quote])
        self.qty_f[si] = float(self.balances[s.base])
        self.loss_scan = None
        self.cash_delta[tick] += float(proceeds - fee)
        self.qty_delta[si, tick] -= float(qty)
        cost = pos.entry_price * qty + (pos.entry_fee_quote * qty / pos.held if pos.held else ZERO)
        self.trades.append(BacktestTrade(
            symbol=s.name, entry_time_ms=int(s.open_time_ms[pos.entry_tick]), entry_price=pos.entry_price,
            quantity=pos.quantity, stop_price=pos.state.initial_stop, take_profit_price=pos.state.take_profit_price,
            exit_time_ms=int(s.open_time_ms[tick]), exit_price=price, exit_reason=pos.exit_reason,
            fees_quote=pos.entry_fee_quote + fee, pnl_quote=proceeds - fee - cost))


class _Sizer:
    """``size_position`` for the entry signals, with the skips it decides before sizing anything
    decided without a full sizing. A shrunken account turns most signals into NO_FREE_BALANCE
    (27,665 of 31,574 sizings in the bench's year): for those, ``early_skip`` - the checks
    ``size_position`` runs first, in its order, shared with it - gives the same reason code,
    which is all the backtest records of a skip. Used only where the full call could not do
    anything else: the symbol's rules (and the run's risk settings) have passed a full call's
    validation, the prices are finite with a positive entry, the equity is known to be > 0, and
    the free balance (memoised per value, as ``spendable_quote`` gives it) cannot pay for the
    venue's minimum order. Everything else gets the full call.
    """

    def __init__(self) -> None:
        self.rules_checked: set[int] = set()
        self._spendable: dict[Decimal, Decimal] = {}
        self._tick_bounds: dict[Decimal, tuple[float, float, float] | None] = {}

    def spendable(self, free_quote: Decimal) -> Decimal:
        value = self._spendable.get(free_quote)
        if value is None:
            if len(self._spendable) >= 4096:
                self._spendable.clear()
            value = self._spendable[free_quote] = spendable_quote(free_quote)
        return value

    def early(self, si: int, rules: MarketRules, *, free_quote: Decimal, entry: float, stop: float,
              equity_positive: bool) -> SizingSkip | None:
        """INVALID_STOP or NO_FREE_BALANCE when that is what ``size_position`` returns for the
        prices ``_d(entry)`` / ``_d(stop)``, told without it; None: make the full call."""
        if si not in self.rules_checked or not equity_positive or not free_quote.is_finite():
            return None
        spendable = self.spendable(free_quote)
        if not lacks_free_balance(spendable, rules.min_notional):
            return None                        # it sizes
        if self._stop_stays_valid(rules.tick_size, entry, stop):
            return SizingSkip.NO_FREE_BALANCE  # what early_skip says after an INVALID_STOP check that passes
        entry_price, stop_price = _d(entry), _d(stop)
        if not (entry_price.is_finite() and stop_price.is_finite() and entry_price > 0):
            return None                        # the full call raises on these
        entry_r, stop_r = rounded_levels(entry_price, stop_price, rules.tick_size)
        return early_skip(entry=entry_r, stop=stop_r, equity_positive=True, spendable=spendable,
                          min_notional=rules.min_notional)

    def _stop_stays_valid(self, tick: Decimal, entry: float, stop: float) -> bool:
        """True only if ``rounded_levels`` of the prices ``_d(entry)`` / ``_d(stop)`` certainly
        gives 0 < stop < entry (no INVALID_STOP), told from the floats without building them.

        In Decimal it suffices that the stop is >= 1 tick and >= 2 ticks below the entry:
        rounding moves a price by less than one tick (down for the stop, up for the entry), so
        the rounded stop is >= 1 tick and below the rounded entry. That holds in
        ``round_to_step``'s 50-digit arithmetic when every multiple of the tick up to the entry
        is exact in it: a tick of at most 15 digits and an exponent <= 0, an entry <= 1e30
        ticks (else the levels are rounded). And ``_d(x)`` (the shortest repr) is within a
        relative 2**-53 of ``x``, as are ``float(tick)`` and each float operation here, so the
        float tests below, with a relative slack of 1e-9 on the ticks and 1e-15 x entry on the
        difference, imply the Decimal ones; NaN fails every comparison, inf the bound."""
        bounds = self._tick_bounds.get(tick, _MISSING)
        if bounds is _MISSING:
            exact = len(tick.as_tuple().digits) <= 15 and tick.as_tuple().exponent <= 0 and tick > 0
            tick_f = float(tick)
            bounds = self._tick_bounds[tick] = (
                tick_f * (1 + 1e-9), 2 * tick_f * (1 + 1e-9),
                float(_FLOOR.multiply(tick, Decimal("1e30"))) * (1 - 1e-9)) if exact else None
        if bounds is None:
            return False
        one_tick, two_ticks, entry_bound = bounds
        return stop >= one_tick and entry <= entry_bound and entry - stop >= two_ticks + entry * 1e-15


def simulate(spec: BacktestSpec, series: Mapping[str, SymbolSeries], *,
             progress: Callable[[int, int], None] | None = None) -> Simulation:
    """The run behind ``run_backtest``, keeping each decision for comparison with live tables."""
    tf, quote = _check_spec(spec, series)
    cfg = spec.config
    p = blite_params(cfg)
    n = (spec.end_ms - spec.start_ms) // tf
    syms = [_prepare(spec, series[name], p, tf, n) for name in cfg.universe]
    tick_open = syms[0].open_time_ms
    tick_close = tick_open + tf
    close = np.vstack([s.close for s in syms])
    book = _Book(spec, syms, quote, close, tick_close)
    sizer = _Sizer()

    # (tick, symbol index) of every entry signal, in tick order then universe order.
    sig_sym, sig_tick = np.nonzero(np.vstack([s.codes == _ENTRY_CODE for s in syms]))
    order = np.lexsort((sig_sym, sig_tick))
    sig_tick, sig_sym = sig_tick[order].tolist(), sig_sym[order].tolist()
    by_tick: dict[int, list[int]] = {}
    for t, si in zip(sig_tick, sig_sym, strict=True):
        by_tick.setdefault(t, []).append(si)
    overrides: dict[tuple[str, int], tuple[str, str]] = {}
    step = max(n // 100, 1)
    next_report = 0
    if progress:
        progress(0, n)
    for t, candidates in by_tick.items():
        if progress and t >= next_report:
            progress(t, n)
            next_report = t + step
        book.advance(t)
        free = [si for si in candidates if si not in book.positions]      # the others hold: IN_POSITION
        if not free:
            continue
        gate_state = GateState(
            close_ms=int(tick_close[t]), timeframe_ms=tf, halted=0 <= book.halt_tick < t,
            halt_reason=Gate.DAILY_LOSS_LIMIT, loss_halted=book.halt_tick == t,
            last_stop_ms=book.last_stop_ms, cooldown_candles=cfg.cooldown_candles,
            max_open_positions=cfg.max_open_positions)
        slots = len(book.positions)
        equity: Decimal | None = None
        free_quote = book.balances[quote]
        for si in free:
            s = syms[si]
            gate = entry_gate(gate_state, s.name, slots_used=slots)
            if gate is not None:
                overrides[(s.name, t)] = (Decision.BLOCKED, gate[0])
                continue
            entry, stop = s.close[t], s.stop[t]
            # Equity is read once per tick, before this tick's entries change the balances: the
            # first symbol that needs its value reads it (the ones before it changed nothing).
            skip = sizer.early(si, s.rules, free_quote=free_quote, entry=entry, stop=stop,
                               equity_positive=book.equity_positive(t) if equity is None else equity > 0)
            if skip is not None:
                overrides[(s.name, t)] = (Decision.BLOCKED, str(skip))
                continue
            if equity is None:
                equity = book.equity(t)
            sizing = size_position(
                equity=equity, free_quote=free_quote, entry_price=_d(entry), stop_price=_d(stop),
                risk_per_trade=cfg.risk_per_trade, max_position_notional=cfg.max_position_notional,
                lot_step=s.rules.lot_step, tick_size=s.rules.tick_size, min_qty=s.rules.min_qty,
                min_notional=s.rules.min_notional)
            sizer.rules_checked.add(si)
            if not sizing.ok:
                overrides[(s.name, t)] = (Decision.BLOCKED, str(sizing.skip))
                continue
            assert sizing.quantity is not None
            overrides[(s.name, t)] = (Decision.ENTER, str(EntryReason.ENTRY_SIGNAL))
            book.open_position(si, t, sizing.quantity)
            slots += 1
            free_quote -= sizing.notional * (1 + DEFAULT_FEE_BUFFER)
    book.advance(n - 1)
    for si in list(book.positions):            # END_OF_DATA: sold at the last close
        book.close_position(si)
    if progress:
        progress(n, n)

    held = {s.name: np.zeros(n, dtype=bool) for s in syms}
    for si, a, b in book.held_ranges:
        held[syms[si].name][a:b] = True
    counts: Counter[str] = Counter()
    for s in syms:
        free = ~held[s.name]
        counts[Gate.IN_POSITION] += int(n - free.sum())
        for code, k in enumerate(np.bincount(s.codes[free], minlength=len(REASON_PRECEDENCE))):
            if k:
                counts[str(REASON_PRECEDENCE[code])] += int(k)
    counts[str(EntryReason.ENTRY_SIGNAL)] -= len(overrides)          # each decided by a gate or the sizing
    counts.update(reason for _, reason in overrides.values())
    qty0 = np.array([float(spec.initial_balances.get(s.base, ZERO)) for s in syms])
    equity_curve = _kernels.equity_curve(float(spec.initial_balances[quote]), book.cash_delta, qty0, book.qty_delta,
                                         book.close)
    trades = tuple(sorted(book.trades, key=lambda tr: (tr.entry_time_ms, tr.symbol)))
    result = BacktestResult(
        spec=spec, trades=trades, equity_time_ms=tick_close.astype(np.int64), equity=equity_curve,
        decisions={k: v for k, v in sorted(counts.items()) if v}, candles_processed=n * len(syms),
        final_balances=dict(book.balances))
    return Simulation(result=result, symbols=tuple(s.name for s in syms), tick_open_ms=tick_open,
                      engine_codes={s.name: s.codes for s in syms}, held=held, overrides=overrides,
                      signal_levels={s.name: dict(zip(s.atr, zip(s.atr.values(), s.stop.values(), strict=True),
                                                          strict=True)) for s in syms},
                      entries=book.entries)
