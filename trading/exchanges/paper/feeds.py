"""Where the paper venue's prices come from (MARKET_DATA_SOURCE).

* ``synthetic`` (default): the seeded offline market of ``paper.synthetic`` — every process
  computes the same candles and prices from (seed, symbol, time), no network needed.
* ``replay``: CSV files in MARKET_DATA_REPLAY_DIR (``paper.replay``).
* ``binance`` / ``bybit``: live public market data of that venue, without keys
  (``PublicVenueSource`` below), through the same ccxt adapters as trading.

Every source returns ``trading.exchanges.base.Candle`` records.
"""

from __future__ import annotations

import functools
import threading
import time
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings

from trading.exchanges.base import Candle
from trading.exchanges.ccxt_gateway import CcxtGateway
from trading.exchanges.ratelimit_protocol import RateLimiter


class MarketDataSource(Protocol):
    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[Candle]: ...

    def price_at(self, symbol: str, t_ms: int) -> Decimal: ...

    def tick_size(self, symbol: str) -> Decimal | None: ...


class SyntheticSource:
    def __init__(self, seed: int) -> None:
        from trading.exchanges.paper.synthetic import SyntheticMarket

        self.market = SyntheticMarket(seed)

    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[Candle]:
        return self.market.fetch_closed_candles(symbol, timeframe, since_ms=since_ms, limit=limit, now_ms=now_ms)

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        return self.market.price_at(symbol, t_ms)

    def tick_size(self, symbol: str) -> Decimal | None:
        from trading.exchanges.paper.synthetic import symbol_profile

        return symbol_profile(symbol).tick_size


class ReplayFileSource:
    def __init__(self, directory: str) -> None:
        from trading.exchanges.paper.replay import ReplaySource

        self.replay = ReplaySource(directory)

    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[Candle]:
        return self.replay.fetch_closed_candles(symbol, timeframe, since_ms=since_ms, limit=limit, now_ms=now_ms)

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        return self.replay.price_at(symbol, t_ms)

    def tick_size(self, symbol: str) -> Decimal | None:
        return None


@functools.cache
def market_data_source() -> MarketDataSource:
    kind = settings.MARKET_DATA_SOURCE
    if kind == "synthetic":
        return SyntheticSource(settings.MARKET_DATA_SEED)
    if kind == "replay":
        return ReplayFileSource(settings.MARKET_DATA_REPLAY_DIR)
    return PublicVenueSource(kind)


# --- live public market data of Binance or Bybit (MARKET_DATA_SOURCE=binance|bybit) ------------
# It goes through the same ccxt adapters as trading does (so the same error taxonomy, the same
# closed-candle rule and the same request weights), with empty credentials: only public
# endpoints are ever called. Requests draw on the venue's shared rate-limit budget under the
# ``public`` account, so every process of the system together stays inside it. The REST root is
# the real venue unless ``MARKET_DATA_BASE_URL`` overrides it — same format as
# ``BINANCE_BASE_URL`` / ``BYBIT_BASE_URL``, which configure the *trading* venue and are
# deliberately not reused here: with ``EXCHANGE=paper`` no venue is configured at all.

KINDS = ("binance", "bybit")
MARKETS_TTL_S = 3600.0          # tick sizes change rarely; re-read the market list hourly
_PAGE = 999                     # closed candles per request (the adapters ask for limit+1 <= 1000)
_USE_SHARED = object()


class PublicVenueSource:
    """``MarketDataSource`` over a venue's public REST API."""

    def __init__(
        self, kind: str, *, base_url: str | None = None, timeout_ms: int = 10_000,
        rate_limiter: RateLimiter | None | Any = _USE_SHARED,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"public market data comes from one of {KINDS}, not {kind!r}")
        if base_url is None:
            from django.conf import settings

            base_url = settings.MARKET_DATA_BASE_URL
        if rate_limiter is _USE_SHARED:
            from trading.exchanges.ratelimit import shared_rate_limiter

            rate_limiter = shared_rate_limiter(kind, "")
        self.kind = kind
        self.gateway: CcxtGateway = _gateway_class(kind)(
            api_key="", api_secret="", base_url=base_url, testnet=False, timeout_ms=timeout_ms,
            rate_limiter=rate_limiter,
        )
        self._lock = threading.Lock()
        self._tick_sizes: dict[str, Decimal] = {}
        self._markets_at = float("-inf")

    # ------------------------------------------------------------------ MarketDataSource
    def fetch_closed_candles(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500, now_ms: int,
    ) -> list[Candle]:
        """Candles closed by ``now_ms`` (and by the venue's clock), oldest first, at most ``limit``;
        from ``since_ms`` on, or the latest ``limit``. More than one request when ``limit`` > 999."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        interval_ms = self.gateway._interval_ms(timeframe)
        last_open = (now_ms - interval_ms) // interval_ms * interval_ms     # newest candle closed by now_ms
        if since_ms is None:
            if limit <= _PAGE:
                rows = self.gateway.fetch_closed_candles(symbol, timeframe, limit=limit)
                return [c for c in rows if c.open_time_ms <= last_open][-limit:]
            since_ms = last_open - (limit - 1) * interval_ms
        out: list[Candle] = []
        cursor = since_ms
        while len(out) < limit and cursor <= last_open:
            want = min(_PAGE, limit - len(out))
            page = [c for c in self.gateway.fetch_closed_candles(symbol, timeframe, since_ms=cursor, limit=want)
                    if c.open_time_ms <= last_open]
            if not page:
                break                       # before the listing, or nothing newer yet
            out.extend(page)
            # A short page means the venue had a gap in that window: continue after the window.
            cursor = max(page[-1].open_time_ms + interval_ms, cursor + want * interval_ms)
        return out[:limit]

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        """The venue's last traded price now (live data has no past: ``t_ms`` is the caller's now)."""
        return self.gateway.fetch_ticker(symbol).last

    def tick_size(self, symbol: str) -> Decimal | None:
        """The venue's price increment for ``symbol``; None when the venue does not list it."""
        with self._lock:
            if time.monotonic() - self._markets_at < MARKETS_TTL_S and symbol in self._tick_sizes:
                return self._tick_sizes[symbol]
        rules = self.gateway.load_markets()
        with self._lock:
            self._tick_sizes = {s: r.tick_size for s, r in rules.items()}
            self._markets_at = time.monotonic()
            return self._tick_sizes.get(symbol)


def _gateway_class(kind: str) -> type[CcxtGateway]:
    if kind == "binance":
        from trading.exchanges.binance import BinanceGateway

        return BinanceGateway
    from trading.exchanges.bybit import BybitGateway

    return BybitGateway
