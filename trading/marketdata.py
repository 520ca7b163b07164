"""Where the paper venue's prices come from (MARKET_DATA_SOURCE).

* ``synthetic`` (default): the seeded offline market of ``syncer.sources.synthetic`` — every
  process computes the same candles and prices from (seed, symbol, time), no network needed.
* ``replay``: CSV files in MARKET_DATA_REPLAY_DIR (``syncer.sources.replay``).
* ``binance`` / ``bybit``: live public market data of that venue (no keys), through the ccxt
  adapter in ``trading.exchanges``.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Protocol

from django.conf import settings

from syncer.sources.candle import SourceCandle


class MarketDataSource(Protocol):
    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[SourceCandle]: ...

    def price_at(self, symbol: str, t_ms: int) -> Decimal: ...

    def tick_size(self, symbol: str) -> Decimal | None: ...


class SyntheticSource:
    def __init__(self, seed: int) -> None:
        from syncer.sources.synthetic import SyntheticMarket

        self.market = SyntheticMarket(seed)

    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[SourceCandle]:
        return self.market.fetch_closed_candles(symbol, timeframe, since_ms=since_ms, limit=limit, now_ms=now_ms)

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        return self.market.price_at(symbol, t_ms)

    def tick_size(self, symbol: str) -> Decimal | None:
        from syncer.sources.synthetic import symbol_profile

        return symbol_profile(symbol).tick_size


class ReplayFileSource:
    def __init__(self, directory: str) -> None:
        from syncer.sources.replay import ReplaySource

        self.replay = ReplaySource(directory)

    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[SourceCandle]:
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
    from trading.exchanges.public import PublicVenueSource

    return PublicVenueSource(kind)
