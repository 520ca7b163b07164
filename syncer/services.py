"""Data-syncer services: closed candles, tickers and balances from the venue into PostgreSQL.

* ``candles_sync``       - per tick: fetch closed candles incrementally from the newest stored
                           one, re-request holes once, upsert idempotently, report what is still
                           missing (never invent a candle) and which symbols are stale.
* ``candles_backfill``   - history for ``manage.py sync_history``: page through a range.
* ``tickers_sync`` / ``balances_sync`` / ``market_snapshot_sync`` - the latest ticker per symbol,
                           the account balances, and (paper venue) matching of resting orders.
* ``tick_sync_if_due``   - the beat's every-minute entry point: acts only when a candle of the
                           configured timeframe has just closed, once per tick id.

Venue trouble is recorded in Redis for the strategy's VENUE_UNHEALTHY gate (see
``syncer.selectors``): a rate limit sets a back-off key that expires with the venue's
retry-after, and every batch of venue calls records whether it failed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from infra.clock import (
    datetime_to_ms,
    last_closed_candle_close,
    ms_to_datetime,
    now_utc,
    tick_id_for,
    timeframe_seconds,
)
from infra.clock import now_ms as clock_now_ms
from infra.locks import LockNotAcquired, redis_lock
from infra.logging import new_trace_id
from infra.redis import get_redis
from syncer import selectors
from syncer.models import BalanceSnapshot, Candle, Ticker
from trading.exchanges.base import Candle as VenueCandle
from trading.exchanges.base import ExchangeGateway
from trading.exchanges.errors import RateLimitedError, RejectedError, VenueError
from trading.exchanges.factory import gateway_or_default
from trading.selectors import expected_holdings
from trading.services.equity import account_value, equity_snapshot_record

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000            # candles per request: both Binance and Bybit serve up to 1000
MAX_PAGES_PER_SYNC = 5       # a tick sync needs one page; this bounds a venue that pages oddly
MAX_REPORTED_MISSING = 20    # missing open times listed per symbol (the count is always complete)
TICK_MARK_TTL_S = 24 * 3600
STATUS_TTL_S = 24 * 3600
# A venue may publish a just-closed candle a moment late: re-ask a few times before the
# strategy sees STALE_DATA for that symbol. Bounded well inside the tick task's time limit.
LATE_CANDLE_RETRIES = 3
# Candles synced beyond the strategy's history window: a hole of up to this many candles then
# shows as GAP_IN_DATA (a full window with a hole) rather than as INSUFFICIENT_HISTORY.
WINDOW_MARGIN = 20
LATE_CANDLE_DELAY_S = 1.5


def _config():
    from trading.config_schema import config_get

    return config_get()


def _timeframe_ms(timeframe: str) -> int:
    return timeframe_seconds(timeframe) * 1000


def expected_last_open_ms(as_of_ms: int, timeframe: str) -> int:
    """Open time of the newest candle that has closed at ``as_of_ms``."""
    tf = _timeframe_ms(timeframe)
    return as_of_ms // tf * tf - tf


# --- venue health (Redis) ------------------------------------------------------------------

def venue_health_record(*, venue: str, op: str, ok: bool, error: str = "") -> None:
    get_redis().set(selectors.health_key(venue), json.dumps(
        {"ok": ok, "op": op, "error": error[:500], "at_ms": clock_now_ms()}))


def venue_rate_limited_set(*, venue: str, exc: RateLimitedError) -> None:
    """Everyone backs off until the venue's retry-after has passed (a ban is much longer)."""
    retry_ms = max(int(exc.retry_after_s * 1000), 1000)
    payload = {"until_ms": clock_now_ms() + retry_ms, "banned": exc.banned, "error": str(exc)[:300]}
    get_redis().set(selectors.rate_limited_key(venue), json.dumps(payload), px=retry_ms)
    log.warning("venue %s rate limited for %.1fs (banned=%s): %s", venue, retry_ms / 1000, exc.banned, exc)


# --- candles -------------------------------------------------------------------------------

def _valid(c: VenueCandle, tf_ms: int) -> bool:
    """Finite, positive, self-consistent and aligned on the timeframe. Anything else is not
    stored: the hole it leaves is reported and the strategy sees it as GAP_IN_DATA."""
    values = (c.open, c.high, c.low, c.close, c.volume)
    try:
        if not all(isinstance(v, Decimal) and v.is_finite() for v in values):
            return False
        return (c.open_time_ms >= 0 and c.open_time_ms % tf_ms == 0 and min(c.open, c.high, c.low, c.close) > 0
                and c.volume >= 0 and c.low <= min(c.open, c.close) and c.high >= max(c.open, c.close))
    except (TypeError, ArithmeticError):
        return False


def candles_upsert(*, venue: str, symbol: str, timeframe: str, candles: Iterable[VenueCandle]) -> int:
    """Insert or update by (venue, symbol, timeframe, open_time). Running it twice changes nothing."""
    rows = [Candle(venue=venue, symbol=symbol, timeframe=timeframe, open_time=ms_to_datetime(c.open_time_ms),
                   open=c.open, high=c.high, low=c.low, close=c.close, volume=c.volume) for c in candles]
    if not rows:
        return 0
    # One row per open time (a venue page overlap must not make the statement hit a row twice).
    rows = list({r.open_time: r for r in rows}.values())
    Candle.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["venue", "symbol", "timeframe", "open_time"],
        update_fields=["open", "high", "low", "close", "volume", "fetched_at"],
    )
    return len(rows)


@dataclass
class SymbolSync:
    symbol: str
    requests: int = 0
    fetched: int = 0
    stored: int = 0
    invalid: int = 0
    newest_open_ms: int | None = None
    lag_candles: int | None = None          # candles between the newest stored and the expected one
    stale: bool = False
    missing_count: int = 0                  # holes inside the strategy's window after re-asking
    missing_open_ms: list[int] = field(default_factory=list)
    short_history: int = 0                  # window candles older than anything the venue has
    error: str | None = None
    error_kind: str | None = None           # rejected (this symbol) | transient (the venue) | rate_limited


@dataclass
class CandleSyncReport:
    venue: str
    timeframe: str
    expected_last_open_ms: int
    window_candles: int
    symbols: dict[str, SymbolSync] = field(default_factory=dict)
    rate_limited: bool = False

    @property
    def ok(self) -> bool:
        """The venue answered: no rate limit, and no failure other than a symbol it refused."""
        return not self.rate_limited and not any(
            s.error and s.error_kind != "rejected" for s in self.symbols.values())

    @property
    def stale_symbols(self) -> list[str]:
        return sorted(s for s, r in self.symbols.items() if r.stale)

    @property
    def gap_symbols(self) -> list[str]:
        return sorted(s for s, r in self.symbols.items() if r.missing_count)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ok=self.ok, stale_symbols=self.stale_symbols, gap_symbols=self.gap_symbols)
        return data


def _fetch_range(gateway: ExchangeGateway, symbol: str, timeframe: str, first_ms: int, last_ms: int,
                 rec: SymbolSync, *, max_pages: int) -> list[VenueCandle]:
    """Closed candles opening in [first_ms, last_ms], paging forward from the newest returned
    one. A venue that returns fewer than asked is asked again from where it stopped; one that
    returns nothing new ends the loop (whatever is still missing is reported by the caller)."""
    tf = _timeframe_ms(timeframe)
    out: list[VenueCandle] = []
    cursor = first_ms
    for _ in range(max_pages):
        need = (last_ms - cursor) // tf + 1
        if need <= 0:
            break
        page = gateway.fetch_closed_candles(symbol, timeframe, since_ms=cursor, limit=min(PAGE_LIMIT, need))
        rec.requests += 1
        page = [c for c in page if cursor <= c.open_time_ms <= last_ms]
        if not page:
            break
        out.extend(page)
        newest = max(c.open_time_ms for c in page)
        if newest >= last_ms:
            break
        cursor = newest + tf
    return out


def _store(gateway: ExchangeGateway, timeframe: str, rec: SymbolSync, candles: list[VenueCandle]) -> None:
    tf = _timeframe_ms(timeframe)
    good = [c for c in candles if _valid(c, tf)]
    rec.fetched += len(candles)
    rec.invalid += len(candles) - len(good)
    if len(good) != len(candles):
        log.warning("%s %s: venue sent %d invalid candle(s) (NaN, non-positive or inconsistent); not stored",
                    rec.symbol, timeframe, len(candles) - len(good))
    rec.stored += candles_upsert(venue=gateway.name, symbol=rec.symbol, timeframe=timeframe, candles=good)


def _missing(venue: str, symbol: str, timeframe: str, first_ms: int, last_ms: int) -> tuple[list[int], int]:
    """(open times missing after the oldest stored candle of the window, window candles older than it)."""
    tf = _timeframe_ms(timeframe)
    stored = selectors.stored_open_times(venue=venue, symbol=symbol, timeframe=timeframe, first_ms=first_ms,
                                         last_ms=last_ms)
    if not stored:
        return [], (last_ms - first_ms) // tf + 1
    have = set(stored)
    holes = [t for t in range(stored[0], last_ms + 1, tf) if t not in have]
    return holes, (stored[0] - first_ms) // tf


def _sync_symbol(gateway: ExchangeGateway, symbol: str, timeframe: str, expected: int, window: int,
                 stale_after: int) -> SymbolSync:
    tf = _timeframe_ms(timeframe)
    venue = gateway.name
    rec = SymbolSync(symbol=symbol)
    window_start = expected - (window - 1) * tf
    newest = selectors.newest_open_ms(venue=venue, symbol=symbol, timeframe=timeframe)
    # Incremental: from the newest stored candle (re-read, so a candle the venue revised after
    # we stored it is corrected), but never further back than the strategy's window.
    since = window_start if newest is None else max(min(newest, expected), window_start)
    if newest is None or newest < expected:
        _store(gateway, timeframe, rec, _fetch_range(gateway, symbol, timeframe, since, expected, rec,
                                                     max_pages=MAX_PAGES_PER_SYNC))
    holes, short = _missing(venue, symbol, timeframe, window_start, expected)
    if holes:
        # Back-fill: ask once more for exactly the range that has holes.
        _store(gateway, timeframe, rec, _fetch_range(gateway, symbol, timeframe, holes[0], holes[-1], rec,
                                                     max_pages=MAX_PAGES_PER_SYNC))
        holes, short = _missing(venue, symbol, timeframe, window_start, expected)
    rec.missing_count, rec.missing_open_ms, rec.short_history = len(holes), holes[:MAX_REPORTED_MISSING], short
    _set_lag(rec, venue, timeframe, expected, stale_after)
    return rec


def _set_lag(rec: SymbolSync, venue: str, timeframe: str, expected: int, stale_after: int) -> None:
    newest = selectors.newest_open_ms(venue=venue, symbol=rec.symbol, timeframe=timeframe, at_or_before_ms=expected)
    rec.newest_open_ms = newest
    rec.lag_candles = None if newest is None else (expected - newest) // _timeframe_ms(timeframe)
    rec.stale = newest is None or rec.lag_candles >= stale_after


def candles_sync(*, symbols: Sequence[str], timeframe: str, gateway: ExchangeGateway | None = None,
                 now_ms: int | None = None, window_candles: int | None = None,
                 stale_after_candles: int | None = None, late_retries: int = 0,
                 sleep: Callable[[float], None] = time.sleep) -> CandleSyncReport:
    """Bring the last ``window_candles`` closed candles of each symbol up to date.

    ``now_ms`` ("as of"; default: now) fixes the newest candle expected: the one that closed
    last at that moment. Defaults for the window and the stale threshold come from the config
    (the strategy's history window plus ``WINDOW_MARGIN``, ``stale_data_after_candles``). Venue errors are per symbol
    and reported, never raised; a rate limit stops the remaining calls and sets the back-off.
    With ``late_retries``, symbols whose newest candle is not there yet are asked again after a
    short pause (a venue publishes a closed candle a moment after the close).
    """
    gw = gateway_or_default(gateway)
    if window_candles is None or stale_after_candles is None:
        # Deliberately upward: how many candles to keep synced is the strategy's decision window.
        from strategy.params import blite_params

        cfg = _config()
        window_candles = window_candles or blite_params(cfg).history_candles + WINDOW_MARGIN
        stale_after_candles = stale_after_candles or cfg.stale_data_after_candles
    as_of = clock_now_ms() if now_ms is None else now_ms
    expected = expected_last_open_ms(as_of, timeframe)
    report = CandleSyncReport(venue=gw.name, timeframe=timeframe, expected_last_open_ms=expected,
                              window_candles=window_candles)
    pending = list(dict.fromkeys(symbols))
    for attempt in range(late_retries + 1):
        if attempt:
            sleep(LATE_CANDLE_DELAY_S)
        for symbol in pending:
            if report.rate_limited or selectors.rate_limited_until_ms(gw.name):
                report.rate_limited = True
                rec = report.symbols.get(symbol) or SymbolSync(symbol=symbol)
                rec.error = rec.error or "skipped: venue rate limit back-off in force"
                rec.error_kind = "rate_limited"
                _set_lag(rec, gw.name, timeframe, expected, stale_after_candles)
                report.symbols[symbol] = rec
                continue
            try:
                report.symbols[symbol] = _sync_symbol(gw, symbol, timeframe, expected, window_candles,
                                                      stale_after_candles)
            except RateLimitedError as exc:
                venue_rate_limited_set(venue=gw.name, exc=exc)
                report.rate_limited = True
                rec = SymbolSync(symbol=symbol, error=f"rate limited: {exc}", error_kind="rate_limited")
                _set_lag(rec, gw.name, timeframe, expected, stale_after_candles)
                report.symbols[symbol] = rec
            except VenueError as exc:
                log.warning("candle sync of %s %s failed: %s", symbol, timeframe, exc)
                rec = SymbolSync(symbol=symbol, error=f"{type(exc).__name__}: {exc}"[:500],
                                 error_kind="rejected" if isinstance(exc, RejectedError) else "transient")
                _set_lag(rec, gw.name, timeframe, expected, stale_after_candles)
                report.symbols[symbol] = rec
        pending = [s for s, r in report.symbols.items() if r.lag_candles != 0 and not r.error]
        if not pending or report.rate_limited:
            break
    _report(report)
    return report


def _report(report: CandleSyncReport) -> None:
    errors = [f"{s}: {r.error}" for s, r in report.symbols.items() if r.error and r.error_kind != "rejected"]
    venue_health_record(venue=report.venue, op="candles", ok=report.ok, error="; ".join(errors))
    client = get_redis()
    client.set(selectors.status_key(report.venue, report.timeframe), json.dumps(report.as_dict()), ex=STATUS_TTL_S)
    if report.gap_symbols:
        log.warning("candle gaps the venue could not fill (%s): %s", report.timeframe, {
            s: report.symbols[s].missing_count for s in report.gap_symbols})
    stale_key = selectors.stale_set_key(report.venue, report.timeframe)
    before = set(client.smembers(stale_key))
    now_stale = set(report.stale_symbols)
    if now_stale:
        log.warning("stale candle data (%s, >= %s missing candles): %s", report.timeframe,
                    "stale_data_after_candles", sorted(now_stale))
    became, recovered = sorted(now_stale - before), sorted(before - now_stale)
    if became or recovered:
        pipe = client.pipeline()
        pipe.delete(stale_key)
        if now_stale:
            pipe.sadd(stale_key, *now_stale)
        pipe.execute()
        _notify_stale(report, became, recovered)


def _notify_stale(report: CandleSyncReport, became: list[str], recovered: list[str]) -> None:
    """One Telegram message per change of the stale set (not one per tick)."""
    from infra.telegram import telegram_enqueue

    trace_id = new_trace_id()
    lines = []
    for symbol in became:
        rec = report.symbols[symbol]
        newest = "none" if rec.newest_open_ms is None else ms_to_datetime(rec.newest_open_ms).isoformat()
        lines.append(f"  {symbol}: newest {report.timeframe} candle {newest} ({rec.error or 'venue has no newer'})")
    text = f"AlphaSniper: candle data on {report.venue} is STALE - no new entries on these symbols.\n"
    text += "\n".join(lines) if lines else ""
    if recovered:
        text += f"\nRecovered: {', '.join(recovered)}"
    with transaction.atomic():
        telegram_enqueue(text=text.strip(), trace_id=trace_id, reason_code="STALE_DATA" if became else "DATA_RECOVERED")


@dataclass
class BackfillReport:
    symbol: str
    timeframe: str
    first_open_ms: int
    last_open_ms: int
    requests: int = 0
    fetched: int = 0
    stored: int = 0
    invalid: int = 0
    missing_count: int = 0


def candles_backfill(*, symbol: str, timeframe: str, since_ms: int, until_ms: int | None = None,
                     gateway: ExchangeGateway | None = None, page_limit: int = PAGE_LIMIT,
                     progress: Callable[[int, int], None] | None = None,
                     sleep: Callable[[float], None] = time.sleep, max_rate_limit_waits: int = 5) -> BackfillReport:
    """Fetch and upsert every candle opening at or after ``since_ms`` that has closed by
    ``until_ms`` (default: now).

    Pages forward; ``progress(done, total)`` is called after each page (in candles). A rate
    limit is waited out (``retry_after_s``) up to ``max_rate_limit_waits`` times; a ban and any
    other venue error propagate (what is stored so far stays, a re-run resumes cheaply since
    upserts are idempotent). Holes the venue does not fill are counted, never invented.
    """
    gw = gateway_or_default(gateway)
    tf = _timeframe_ms(timeframe)
    last = expected_last_open_ms(clock_now_ms() if until_ms is None else until_ms, timeframe)
    first = -(-since_ms // tf) * tf
    report = BackfillReport(symbol=symbol, timeframe=timeframe, first_open_ms=first, last_open_ms=last)
    total = max((last - first) // tf + 1, 0)
    cursor, waits = first, 0
    while cursor <= last:
        need = (last - cursor) // tf + 1
        try:
            page = gw.fetch_closed_candles(symbol, timeframe, since_ms=cursor, limit=min(page_limit, need))
        except RateLimitedError as exc:
            venue_rate_limited_set(venue=gw.name, exc=exc)
            waits += 1
            if exc.banned or waits > max_rate_limit_waits:
                raise
            sleep(max(exc.retry_after_s, 1.0))
            continue
        report.requests += 1
        page = [c for c in page if cursor <= c.open_time_ms <= last]
        if not page:
            break
        good = [c for c in page if _valid(c, tf)]
        report.fetched += len(page)
        report.invalid += len(page) - len(good)
        report.stored += candles_upsert(venue=gw.name, symbol=symbol, timeframe=timeframe, candles=good)
        cursor = max(c.open_time_ms for c in page) + tf
        if progress:
            progress(min((cursor - first) // tf, total), total)
    stored = selectors.stored_open_times(venue=gw.name, symbol=symbol, timeframe=timeframe, first_ms=first,
                                         last_ms=last) if total else []
    report.missing_count = total - len(stored)
    if progress:
        progress(total, total)
    return report


# --- tickers, balances, paper matching -----------------------------------------------------

@dataclass
class SnapshotReport:
    venue: str
    tickers: int = 0
    balances: bool = False
    paper_fills: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)      # symbols the venue refused (not a venue fault)
    equity: Decimal | None = None                                # the equity snapshot taken, if any

    @property
    def ok(self) -> bool:
        return not self.errors


def tickers_sync(*, symbols: Sequence[str], gateway: ExchangeGateway | None = None,
                 report: SnapshotReport | None = None) -> SnapshotReport:
    """Store the latest ticker of each symbol (one row per market, overwritten)."""
    gw = gateway_or_default(gateway)
    report = report or SnapshotReport(venue=gw.name)
    rows = []
    for symbol in dict.fromkeys(symbols):
        try:
            t = gw.fetch_ticker(symbol)
        except RateLimitedError as exc:
            venue_rate_limited_set(venue=gw.name, exc=exc)
            report.errors[symbol] = f"rate limited: {exc}"
            break
        except RejectedError as exc:
            report.rejected[symbol] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        except VenueError as exc:
            report.errors[symbol] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        if not t.last.is_finite() or t.last <= 0:
            report.errors[symbol] = f"unusable last price {t.last}"
            continue
        rows.append(Ticker(venue=gw.name, symbol=symbol, last=t.last, bid=t.bid, ask=t.ask,
                           venue_time=ms_to_datetime(t.timestamp_ms)))
    if rows:
        Ticker.objects.bulk_create(rows, update_conflicts=True, unique_fields=["venue", "symbol"],
                                   update_fields=["last", "bid", "ask", "venue_time", "fetched_at"])
    report.tickers += len(rows)
    return report


def _plain(value: Decimal) -> str:
    """``10000.000000000000000000`` -> ``10000`` (exact; no exponent notation)."""
    return format(value.normalize(), "f")


def balances_sync(*, gateway: ExchangeGateway | None = None, report: SnapshotReport | None = None) -> SnapshotReport:
    """Store the account's balances (one snapshot row per venue, overwritten)."""
    gw = gateway_or_default(gateway)
    report = report or SnapshotReport(venue=gw.name)
    try:
        balances = gw.fetch_balances()
    except RateLimitedError as exc:
        venue_rate_limited_set(venue=gw.name, exc=exc)
        report.errors["balances"] = f"rate limited: {exc}"
        return report
    except VenueError as exc:
        report.errors["balances"] = f"{type(exc).__name__}: {exc}"[:300]
        return report
    data = {a: {"free": _plain(b.free), "locked": _plain(b.locked)} for a, b in sorted(balances.items())
            if b.free or b.locked}
    BalanceSnapshot.objects.update_or_create(venue=gw.name, defaults={"balances": data, "taken_at": timezone.now()})
    report.balances = True
    _equity_snapshot(gw.name, balances, report)
    return report


def _equity_snapshot(venue: str, balances: dict, report: SnapshotReport) -> None:
    """One point of the equity curve: these balances at the stored last prices. The PnL of the
    Hong Kong day is measured from these points (``trading.services.equity``)."""
    universe = _config().universe
    quote = universe[0].split("/")[1] if universe else "USDT"
    value = account_value(balances=balances, prices=selectors.latest_prices(venue=venue), quote=quote)
    report.equity = equity_snapshot_record(venue=venue, value=value).equity


def _snapshot_symbols(universe: Sequence[str], venue: str) -> list[str]:
    """The universe, plus every market where our own orders say we hold something (a symbol
    dropped from the universe while a position is still open keeps its price fresh)."""
    quote = universe[0].split("/")[1] if universe else "USDT"
    held = [f"{asset}/{quote}" for asset, qty in expected_holdings(venue).items() if qty > 0]
    return list(dict.fromkeys([*universe, *held]))


def market_snapshot_sync(*, gateway: ExchangeGateway | None = None, symbols: Sequence[str] | None = None
                         ) -> SnapshotReport:
    """Tickers of the universe (and of held symbols), balances, and for the paper venue the
    matching of resting limit orders against the current price."""
    gw = gateway_or_default(gateway)
    report = SnapshotReport(venue=gw.name)
    if selectors.rate_limited_until_ms(gw.name):
        report.errors["venue"] = "skipped: venue rate limit back-off in force"
        return report
    symbols = _snapshot_symbols(_config().universe if symbols is None else symbols, gw.name)
    tickers_sync(symbols=symbols, gateway=gw, report=report)
    balances_sync(gateway=gw, report=report)
    match = getattr(gw, "match_resting_orders", None)
    if callable(match):
        report.paper_fills = match(symbols)
    venue_health_record(venue=gw.name, op="tickers/balances", ok=report.ok, error="; ".join(
        f"{k}: {v}" for k, v in report.errors.items()))
    return report


# --- the tick ------------------------------------------------------------------------------

def tick_due(*, now: datetime, timeframe: str) -> tuple[str, datetime] | None:
    """(tick id, candle close) when a ``timeframe`` candle closed within the minute of ``now``."""
    close = last_closed_candle_close(now, timeframe)
    if now - close >= timedelta(minutes=1):
        return None
    return tick_id_for(close), close


@dataclass(frozen=True)
class TickSync:
    tick_id: str
    timeframe: str
    close_ms: int
    report: CandleSyncReport


def tick_mark_synced(*, venue: str, timeframe: str, tick_id: str, report: CandleSyncReport) -> None:
    get_redis().set(selectors.tick_key(venue, timeframe, tick_id), json.dumps(report.as_dict()), ex=TICK_MARK_TTL_S)


def tick_candles_sync(*, tick_id: str, timeframe: str, close_ms: int, gateway: ExchangeGateway | None = None,
                      late_retries: int = 0, sleep: Callable[[float], None] = time.sleep) -> CandleSyncReport:
    """The candle sync of one tick (universe, as of the tick's candle close), marked done in Redis."""
    gw = gateway_or_default(gateway)
    cfg = _config()
    report = candles_sync(symbols=cfg.universe, timeframe=timeframe, gateway=gw, now_ms=close_ms,
                          late_retries=late_retries, sleep=sleep)
    tick_mark_synced(venue=gw.name, timeframe=timeframe, tick_id=tick_id, report=report)
    return report


def tick_sync_if_due(*, now: datetime | None = None, gateway: ExchangeGateway | None = None,
                     sleep: Callable[[float], None] = time.sleep) -> TickSync | None:
    """Beat calls this every minute. When a candle of the configured timeframe has just closed,
    sync the universe's candles for that tick and return it (the caller then runs the strategy
    tick); otherwise, or when another worker already synced this tick, return None."""
    gw = gateway_or_default(gateway)
    timeframe = _config().timeframe
    due = tick_due(now=now or now_utc(), timeframe=timeframe)
    if due is None:
        return None
    tick_id, close = due
    close_ms = datetime_to_ms(close)
    try:
        with redis_lock(f"sync-tick:{gw.name}:{timeframe}:{tick_id}", ttl_s=120):
            if selectors.tick_synced(venue=gw.name, timeframe=timeframe, tick_id=tick_id) is not None:
                return None
            report = tick_candles_sync(tick_id=tick_id, timeframe=timeframe, close_ms=close_ms, gateway=gw,
                                       late_retries=LATE_CANDLE_RETRIES, sleep=sleep)
    except LockNotAcquired:
        log.info("tick %s is being synced by another worker", tick_id)
        return None
    log.info("tick %s synced: %s", tick_id, {"ok": report.ok, "stale": report.stale_symbols,
                                             "gaps": report.gap_symbols})
    return TickSync(tick_id=tick_id, timeframe=timeframe, close_ms=close_ms, report=report)
