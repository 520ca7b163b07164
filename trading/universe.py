"""Can this account trade that universe on this venue? Asked before a new universe is stored.

``config_validate`` knows the shape of a symbol; only the venue knows whether it lists it, and
only the account whether it can pay for it. A universe the venue does not list fails every
tick (no candles, no rules); one whose quote the account does not hold can never size an entry
(``ETH/BTC`` with no BTC). Equity, sizing and the daily PnL are counted in one quote asset, so
the universe shares one.

* ``universe_problems(...)`` — the rules, pure: proposed symbols, the venue's listing, balances.
* ``universe_check(symbols)`` — the same against the live venue (one listing read and one
  signed balance read through the gateway); raises ``UniverseNotTradable`` naming each symbol,
  or ``VenueUnavailable`` when the venue cannot be asked (fail closed: nothing is stored).

Every door that changes the universe (API, tbot, Django admin) calls ``universe_check`` before
``trading.services.control.config_update``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from trading.config_schema import ConfigValidationError
from trading.exchanges.base import Balance, MarketRules


class UniverseNotTradable(ConfigValidationError):
    """The universe is well-formed but this venue/account cannot trade it (``problems["universe"]``)."""


class VenueUnavailable(Exception):
    """The venue could not be asked; the universe could not be checked."""


def universe_problems(symbols: Sequence[str], *, venue: str, markets: Mapping[str, MarketRules],
                      balances: Mapping[str, Balance]) -> list[str]:
    """Every reason ``symbols`` cannot be traded: unlisted symbols, mixed quotes, an unheld quote."""
    problems = [f"{symbol} is not listed on {venue}" for symbol in symbols if symbol not in markets]
    listed = [symbol for symbol in symbols if symbol in markets]
    quotes: dict[str, list[str]] = {}
    for symbol in listed:
        quotes.setdefault(markets[symbol].quote, []).append(symbol)
    held = sorted(asset for asset, balance in balances.items() if balance.total > Decimal(0))
    held_text = ", ".join(held) or "nothing"
    if len(quotes) > 1:
        groups = "; ".join(f"{quote}: {', '.join(group)}" for quote, group in sorted(quotes.items()))
        problems.append(f"the universe mixes quote assets ({groups}); equity, sizing and PnL are counted in one "
                        "quote, so every symbol must share it")
    for quote, group in sorted(quotes.items()):
        if quote not in held:
            problems.append(f"{', '.join(group)}: the account holds no {quote} to buy with (it holds {held_text})")
    return problems


def universe_check(symbols: Sequence[str]) -> None:
    """Raise ``UniverseNotTradable`` / ``VenueUnavailable`` unless the live venue and account can trade ``symbols``."""
    from django.conf import settings

    from trading.exchanges import get_gateway
    from trading.exchanges.errors import VenueError

    venue = settings.VENUE.name
    try:
        gateway = get_gateway()
        venue = gateway.name
        markets = gateway.listed_markets(symbols)
        balances = gateway.fetch_balances()
    except VenueError as exc:
        raise VenueUnavailable(f"cannot check the universe against {venue}: {exc}") from exc
    problems = universe_problems(symbols, venue=venue, markets=markets, balances=balances)
    if problems:
        raise UniverseNotTradable({"universe": problems})
