"""The venue's market rules (tick size, lot step, minimums), loaded once per process and gateway.

Rules change rarely; loading them is one request. They are reloaded after ``MAX_AGE_S``, and
earlier when a symbol we need is missing (the universe changed) - at most once a minute, so a
symbol the venue does not list cannot make every tick hammer the venue.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable

from trading.exchanges.base import ExchangeGateway, MarketRules

MAX_AGE_S = 3600.0
MISSING_RELOAD_AFTER_S = 60.0

_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[ExchangeGateway, tuple[float, dict[str, MarketRules]]] = weakref.WeakKeyDictionary()


def market_rules(gateway: ExchangeGateway, *, symbols: Iterable[str] = ()) -> dict[str, MarketRules]:
    """Rules keyed by unified symbol. Raises the gateway's ``VenueError`` when it must load and cannot."""
    wanted = set(symbols)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(gateway)
    if cached is not None:
        loaded_at, rules = cached
        fresh = now - loaded_at < MAX_AGE_S
        if fresh and (wanted <= rules.keys() or now - loaded_at < MISSING_RELOAD_AFTER_S):
            return rules
    rules = dict(gateway.load_markets())
    with _lock:
        _cache[gateway] = (now, rules)
    return rules


def market_rules_forget(gateway: ExchangeGateway | None = None) -> None:
    with _lock:
        if gateway is None:
            _cache.clear()
        else:
            _cache.pop(gateway, None)
