"""Can this system trade on its venue? One clear line per problem, before the first tick.

Called at worker start and by ``tbot prepare``. Each line names the thing to fix: the
environment variables of rejected keys, the venue that cannot be reached (and where we looked
for it), the universe symbol the venue does not list. Lines starting with ``WARNING: `` do not
stop trading (clock skew under the venue's receive window); every other line should.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from trading.exchanges.base import ExchangeGateway
from trading.exchanges.errors import AuthError, ClockSkewError, RateLimitedError, VenueError

WARNING_PREFIX = "WARNING: "
CLOCK_SKEW_WARN_MS = 1000
SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")
_KEY_VARS = {"binance": "BINANCE_API_KEY / BINANCE_API_SECRET", "bybit": "BYBIT_API_KEY / BYBIT_API_SECRET"}


def is_warning(line: str) -> bool:
    return line.startswith(WARNING_PREFIX)


def venue_startup_check(*, gateway: ExchangeGateway, universe: Iterable[str]) -> list[str]:
    """Problems that stop trading (and ``WARNING: `` lines that do not); empty when all is well.

    Checks, in order: universe symbols are well formed; the venue answers (market list); each
    symbol is listed and trading; the keys work for a signed read (``fetch_balances``); our
    clock is within ``CLOCK_SKEW_WARN_MS`` of the venue's. An unreachable venue ends the check
    there (every later line would only repeat it).
    """
    venue = gateway.name
    problems: list[str] = []
    symbols: list[str] = []
    for symbol in universe:
        if isinstance(symbol, str) and SYMBOL_RE.match(symbol):
            symbols.append(symbol)
        else:
            problems.append(f"universe symbol {symbol!r} is malformed: expected BASE/QUOTE in capitals, "
                            "e.g. BTC/USDT")

    unreachable = _check_listing(gateway, venue, symbols, problems)
    if unreachable:
        return problems
    _check_keys(gateway, venue, problems)
    _check_clock(gateway, venue, problems)
    return problems


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


def _check_listing(gateway: ExchangeGateway, venue: str, symbols: list[str], problems: list[str]) -> bool:
    """Report unlisted symbols. True when the venue could not be reached at all."""
    if venue == "paper":
        # The paper venue lists whatever its market-data source can price: ask per symbol.
        for symbol in symbols:
            try:
                price = gateway.fetch_ticker(symbol).last
            except Exception as exc:
                problems.append(f"universe symbol {symbol} has no market data on paper: {type(exc).__name__}: "
                                f"{_message(exc)}")
                continue
            if price <= 0:
                problems.append(f"universe symbol {symbol} has no usable price on paper (got {price})")
        return False
    try:
        markets = gateway.load_markets()
    except Exception as exc:
        problems.append(_describe(venue, exc, gateway))
        return True
    problems.extend(f"universe symbol {symbol} is not listed on {venue}" for symbol in symbols
                    if symbol not in markets)
    return False


def _check_keys(gateway: ExchangeGateway, venue: str, problems: list[str]) -> None:
    try:
        gateway.fetch_balances()
    except AuthError as exc:
        names = _KEY_VARS.get(venue, "the API key / secret")
        problems.append(f"{names} rejected by {venue}: {_message(exc)}")
    except ClockSkewError as exc:
        problems.append(f"signed requests to {venue} fail because this host's clock is off (sync it, e.g. NTP): "
                        f"{_message(exc)}")
    except RateLimitedError as exc:
        problems.append(_describe(venue, exc, gateway))
    except VenueError as exc:
        problems.append(f"signed read of balances on {venue} failed{_where(gateway)}: {_message(exc)}")
    except Exception as exc:
        problems.append(f"signed read of balances on {venue} failed: {type(exc).__name__}: {exc}")


def _check_clock(gateway: ExchangeGateway, venue: str, problems: list[str]) -> None:
    before = time.time() * 1000
    try:
        server = gateway.server_time_ms()
    except Exception as exc:
        problems.append(f"{WARNING_PREFIX}could not read {venue}'s clock to check skew: {_message(exc)}")
        return
    after = time.time() * 1000
    skew = server - (before + after) / 2
    uncertainty = (after - before) / 2        # the answer was made somewhere inside the round trip
    if abs(skew) - uncertainty > CLOCK_SKEW_WARN_MS:
        problems.append(f"{WARNING_PREFIX}clock skew vs {venue} is {skew:+.0f} ms (more than {CLOCK_SKEW_WARN_MS} ms): "
                        "sync this host's clock (NTP); signed requests fail once it leaves the venue's receive window")
