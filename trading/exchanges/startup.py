"""Can this system trade on its venue? The one venue check, with one set of rules, run at
every worker start (``trading.tasks``) and by ``tbot prepare`` (``adminapi.diagnostics``).

Each check says what it found (``VenueCheck``: a code, a severity, one line naming the thing to
fix): the environment variables of rejected keys, the venue that cannot be reached (and where
we looked for it), the universe symbol the venue does not list, the clock. Errors stop a
worker from starting; warnings do not. Clock skew: a warning over ``CLOCK_SKEW_WARN_MS``, an
error over ``CLOCK_SKEW_ERROR_MS`` — half of the 10 s receive window our signed requests carry,
so signed requests still work at the limit but nothing drifts unnoticed into failure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from trading.exchanges.base import ExchangeGateway
from trading.exchanges.errors import AuthError, ClockSkewError, RateLimitedError, VenueError

INFO, WARNING, ERROR = "info", "warning", "error"
WARNING_PREFIX = "WARNING: "
CLOCK_SKEW_WARN_MS = 1000
CLOCK_SKEW_ERROR_MS = 5000
SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")
_KEY_VARS = {"binance": "BINANCE_API_KEY / BINANCE_API_SECRET", "bybit": "BYBIT_API_KEY / BYBIT_API_SECRET"}


@dataclass(frozen=True)
class VenueCheck:
    code: str
    severity: str          # info | warning | error
    detail: str
    fix: str = ""


def is_warning(line: str) -> bool:
    return line.startswith(WARNING_PREFIX)


def venue_startup_check(*, gateway: ExchangeGateway, universe: Iterable[str]) -> list[str]:
    """The problems of ``venue_checks`` as lines (warnings prefixed ``WARNING: ``); empty when
    all is well. What a worker prints before refusing to start."""
    return [(WARNING_PREFIX if c.severity == WARNING else "") + c.detail
            for c in venue_checks(gateway=gateway, universe=universe) if c.severity != INFO]


def venue_checks(*, gateway: ExchangeGateway, universe: Iterable[str]) -> list[VenueCheck]:
    """Every check, passed or not. In order: universe symbols are well formed; the venue answers
    (market list); each symbol is listed and trading; the keys work for a signed read
    (``fetch_balances``); our clock is close to the venue's. An unreachable venue ends the check
    there (every later line would only repeat it)."""
    venue = gateway.name
    checks: list[VenueCheck] = []
    symbols: list[str] = []
    for symbol in universe:
        if isinstance(symbol, str) and SYMBOL_RE.match(symbol):
            symbols.append(symbol)
        else:
            checks.append(VenueCheck("UNIVERSE_MALFORMED", ERROR,
                                     f"universe symbol {symbol!r} is malformed: expected BASE/QUOTE in capitals, "
                                     "e.g. BTC/USDT", "update_config: fix `universe`"))
    unreachable = _check_listing(gateway, venue, symbols, checks)
    if unreachable:
        return checks
    _check_keys(gateway, venue, checks)
    _check_clock(gateway, venue, checks)
    return checks


def _where(gateway: ExchangeGateway) -> str:
    endpoints = getattr(gateway, "rest_endpoints", None)
    url = endpoints.get("public") if isinstance(endpoints, dict) else None
    return f" at {url}" if url else ""


def _describe(venue: str, exc: Exception, gateway: ExchangeGateway) -> str:
    if isinstance(exc, RateLimitedError):
        kind = "has banned this IP" if exc.banned else "is rate-limiting us"
        return f"{venue} {kind} (retry after {exc.retry_after_s:.0f} s): {_message(exc)}"
    if isinstance(exc, VenueError):
        return f"{venue} is unreachable{_where(gateway)}: {_message(exc)}"
    return f"{venue} could not be checked{_where(gateway)}: {type(exc).__name__}: {exc}"


def _message(exc: Exception) -> str:
    """The venue's own words, without our operation prefix (``fetch_balances: ...``)."""
    message = getattr(exc, "message", None) or str(exc)
    head, sep, rest = message.partition(": ")
    return rest if sep and head.isidentifier() else message


def _check_listing(gateway: ExchangeGateway, venue: str, symbols: list[str], checks: list[VenueCheck]) -> bool:
    """Report unlisted symbols. True when the venue could not be reached at all."""
    fix = "update_config: remove it from `universe`"
    missing = 0
    if venue == "paper":
        # The paper venue lists whatever its market-data source can price: ask per symbol.
        for symbol in symbols:
            try:
                price = gateway.fetch_ticker(symbol).last
            except Exception as exc:
                checks.append(VenueCheck("UNIVERSE_NOT_LISTED", ERROR, f"universe symbol {symbol} has no market data "
                                         f"on paper: {type(exc).__name__}: {_message(exc)}", fix))
                missing += 1
                continue
            if price <= 0:
                checks.append(VenueCheck("UNIVERSE_NOT_LISTED", ERROR,
                                         f"universe symbol {symbol} has no usable price on paper (got {price})", fix))
                missing += 1
    else:
        try:
            markets = gateway.load_markets()
        except Exception as exc:
            checks.append(VenueCheck("VENUE_UNREACHABLE", ERROR, _describe(venue, exc, gateway),
                                     f"check network access and {venue.upper()}_BASE_URL"))
            return True
        for symbol in symbols:
            if symbol not in markets:
                checks.append(VenueCheck("UNIVERSE_NOT_LISTED", ERROR,
                                         f"universe symbol {symbol} is not listed on {venue}", fix))
                missing += 1
    if not missing:
        checks.append(VenueCheck("UNIVERSE_LISTED", INFO, f"all {len(symbols)} universe symbols are listed on {venue}"))
    return False


def _check_keys(gateway: ExchangeGateway, venue: str, checks: list[VenueCheck]) -> None:
    names = _KEY_VARS.get(venue, "the API key / secret")
    fix = f"check {names} (permissions: read + spot trade; IP allow-list)"
    try:
        balances = gateway.fetch_balances()
    except AuthError as exc:
        checks.append(VenueCheck("VENUE_CREDENTIALS_FAILED", ERROR, f"{names} rejected by {venue}: {_message(exc)}",
                                 fix))
    except ClockSkewError as exc:
        checks.append(VenueCheck("CLOCK_SKEW", ERROR, f"signed requests to {venue} fail because this host's clock "
                                 f"is off (sync it, e.g. NTP): {_message(exc)}", "synchronise the host clock"))
    except RateLimitedError as exc:
        checks.append(VenueCheck("VENUE_RATE_LIMITED", ERROR, _describe(venue, exc, gateway), "wait, then retry"))
    except VenueError as exc:
        checks.append(VenueCheck("VENUE_CREDENTIALS_FAILED", ERROR,
                                 f"signed read of balances on {venue} failed{_where(gateway)}: {_message(exc)}", fix))
    except Exception as exc:
        checks.append(VenueCheck("VENUE_CREDENTIALS_FAILED", ERROR,
                                 f"signed read of balances on {venue} failed: {type(exc).__name__}: {exc}", fix))
    else:
        held = sorted(asset for asset, b in balances.items() if b.total)
        checks.append(VenueCheck("VENUE_CREDENTIALS_OK", INFO,
                                 f"signed read on {venue} succeeded; assets held: {', '.join(held) or 'none'}"))


def _check_clock(gateway: ExchangeGateway, venue: str, checks: list[VenueCheck]) -> None:
    before = time.time() * 1000
    try:
        server = gateway.server_time_ms()
    except Exception as exc:
        checks.append(VenueCheck("VENUE_TIME_FAILED", WARNING,
                                 f"could not read {venue}'s clock to check skew: {_message(exc)}"))
        return
    after = time.time() * 1000
    skew = server - (before + after) / 2
    uncertainty = (after - before) / 2        # the answer was made somewhere inside the round trip
    off_by = abs(skew) - uncertainty
    fix = "sync this host's clock (NTP: chrony / ntpd)"
    if off_by > CLOCK_SKEW_ERROR_MS:
        checks.append(VenueCheck("CLOCK_SKEW", ERROR, f"clock skew vs {venue} is {skew:+.0f} ms (more than "
                                 f"{CLOCK_SKEW_ERROR_MS} ms): signed requests are close to failing", fix))
    elif off_by > CLOCK_SKEW_WARN_MS:
        checks.append(VenueCheck("CLOCK_SKEW", WARNING, f"clock skew vs {venue} is {skew:+.0f} ms (more than "
                                 f"{CLOCK_SKEW_WARN_MS} ms): signed requests fail once it leaves the venue's "
                                 "receive window", fix))
    else:
        checks.append(VenueCheck("CLOCK_OK", INFO, f"clock skew vs {venue}: {skew:+.0f} ms "
                                 f"(round trip {after - before:.0f} ms)"))
