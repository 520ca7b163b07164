"""``python manage.py sync_history --days N [--symbols BTC/USDT ETH/USDT] [--timeframe 1m]``

Back-fills closed candles of the last N days from the venue into ``candles`` (idempotent
upserts: a re-run after an interruption only re-reads what it already has). Progress goes to
stderr, one bar per symbol; a summary table to stdout.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from infra.clock import datetime_to_ms, ms_to_datetime, now_utc, timeframe_seconds
from trading.exchanges.errors import AuthError, RateLimitedError, VenueError

MAX_DAYS = 3650
BAR = 30


class Progress:
    """A progress bar on the command's stderr (redrawn in place on a terminal, one line per 10%
    otherwise). ``stream`` is the command's ``OutputWrapper``."""

    def __init__(self, label: str, stream) -> None:
        self.label, self.stream = label, stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        share = 1.0 if total == 0 else done / total
        filled = int(share * BAR)
        rate = done / max(time.monotonic() - self.started, 1e-6)
        line = f"{self.label:<12} [{'#' * filled}{'.' * (BAR - filled)}] {share:6.1%} {done}/{total} ({rate:,.0f}/s)"
        if self.tty:
            self.stream.write("\r" + line, ending="\n" if done >= total else "")
        elif int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            self.stream.write(line)
        self.stream.flush()


class Command(BaseCommand):
    help = "Back-fill closed candles of the last N days from the venue (EXCHANGE) into PostgreSQL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, required=True, help="how many days back from now")
        parser.add_argument("--symbols", nargs="+", default=None,
                            help="unified symbols like BTC/USDT (default: the configured universe)")
        parser.add_argument("--timeframe", default=None, help="1m, 5m, 15m or 1h (default: the configured one)")

    def handle(self, *args, days: float, symbols: list[str] | None, timeframe: str | None, **options) -> None:
        from syncer.services import candles_backfill
        from trading.config_schema import SCHEMA, ConfigValidationError, config_get, config_validate
        from trading.exchanges.factory import get_gateway

        if not 0 < days <= MAX_DAYS:
            raise CommandError(f"--days must be > 0 and <= {MAX_DAYS}, got {days}")
        try:
            cfg = config_get()
            checks = {}
            if symbols is not None:
                checks["universe"] = symbols
            if timeframe is not None:
                checks["timeframe"] = timeframe
            if checks:
                config_validate(checks)
        except ConfigValidationError as exc:
            problems = "; ".join(f"{k.replace('universe', '--symbols')}: {', '.join(v)}"
                                 for k, v in exc.problems.items())
            raise CommandError(f"invalid arguments: {problems} (timeframes: {', '.join(SCHEMA['timeframe'].choices)})"
                               ) from None
        symbols = list(symbols or cfg.universe)
        timeframe = timeframe or cfg.timeframe
        gateway = get_gateway()
        now = now_utc()
        since = now - timedelta(days=days)
        total = int(days * 86400 // timeframe_seconds(timeframe))
        self.stdout.write(f"sync_history: {gateway.name} {timeframe} candles since {since:%Y-%m-%d %H:%M} UTC "
                          f"for {len(symbols)} symbol(s), ~{total} candles each")
        rows = []
        for symbol in symbols:
            try:
                report = candles_backfill(symbol=symbol, timeframe=timeframe, since_ms=datetime_to_ms(since),
                                          until_ms=datetime_to_ms(now), gateway=gateway,
                                          progress=Progress(symbol, self.stderr))
            except AuthError as exc:
                raise CommandError(f"{gateway.name} refused our credentials while fetching {symbol}: {exc}") from None
            except RateLimitedError as exc:
                raise CommandError(f"{gateway.name} rate limit while fetching {symbol} {timeframe}"
                                   f"{' (IP banned)' if exc.banned else ''}: {exc}; retry after "
                                   f"{exc.retry_after_s:.0f}s - what was stored so far is kept") from None
            except VenueError as exc:
                raise CommandError(f"{gateway.name} failed while fetching {symbol} {timeframe}: {exc}; what was "
                                   f"stored so far is kept, re-run to continue") from None
            rows.append(report)
            if report.missing_count:
                self.stderr.write(f"{symbol}: the venue has no data for {report.missing_count} candle(s) in the "
                                  f"range (listed later, or a venue gap); they are not invented")
        self.stdout.write(f"{'symbol':<12} {'requests':>8} {'fetched':>8} {'stored':>8} {'invalid':>8} "
                          f"{'missing':>8}  range")
        for r in rows:
            span = (f"{ms_to_datetime(r.first_open_ms):%Y-%m-%d %H:%M} .. "
                    f"{ms_to_datetime(r.last_open_ms):%Y-%m-%d %H:%M}")
            self.stdout.write(f"{r.symbol:<12} {r.requests:>8} {r.fetched:>8} {r.stored:>8} {r.invalid:>8} "
                              f"{r.missing_count:>8}  {span}")
        self.stdout.write(self.style.SUCCESS("sync_history: done"))
