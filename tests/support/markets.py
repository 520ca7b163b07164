"""Support for tests and local experiments on the real stack: a controllable clock, a scripted
market-data source, a paper venue built on either, and a finder for synthetic-market minutes
at which B-lite enters. No pytest here and nothing the live system imports."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from strategy.engines import BLiteParams, CandleBatch, decide_entries, timeframe_to_ms
from trading.exchanges.base import Candle

__all__ = ["ManualClock", "ScriptedSource", "find_synthetic_entries", "paper_gateway"]


@dataclass
class ManualClock:
    """Epoch ms that moves only when told to."""

    now_ms: int

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class ScriptedSource:
    """A ``MarketDataSource`` serving exactly the candles it was given (gaps, NaNs and all), like a
    venue: only candles closed at ``now_ms``, ``since_ms`` / ``limit`` as the venues apply them.
    ``prices`` sets the ticker / fill price per symbol (default: the newest close)."""

    tick: Decimal = Decimal("0.0001")
    series: dict[tuple[str, str], list[Candle]] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    max_per_request: int | None = None          # a venue that returns fewer candles than asked
    requests: list[tuple[str, str, int | None, int]] = field(default_factory=list)

    def set_candles(self, symbol: str, timeframe: str, candles: Iterable[Candle]) -> None:
        self.series[(symbol, timeframe)] = sorted(candles, key=lambda c: c.open_time_ms)

    def fetch_closed_candles(self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500,
                             now_ms: int) -> list[Candle]:
        self.requests.append((symbol, timeframe, since_ms, limit))
        tf = timeframe_to_ms(timeframe)
        rows = [c for c in self.series.get((symbol, timeframe), []) if c.open_time_ms + tf <= now_ms]
        if self.max_per_request is not None:
            limit = min(limit, self.max_per_request)
        if since_ms is None:
            return rows[-limit:]
        return [c for c in rows if c.open_time_ms >= since_ms][:limit]

    def price_at(self, symbol: str, t_ms: int) -> Decimal:
        if symbol in self.prices:
            return self.prices[symbol]
        for (sym, _), rows in self.series.items():
            if sym == symbol and rows:
                return rows[-1].close
        raise LookupError(f"no price for {symbol}")

    def tick_size(self, symbol: str) -> Decimal | None:
        return self.tick


def to_source_candles(candles: Iterable, *, places: int = 4) -> list[Candle]:
    """Float candles (anything with open_time_ms/open/high/low/close/volume) as Decimal candles."""
    def d(x: float) -> Decimal:
        return Decimal(str(round(float(x), places)))

    return [Candle(int(c.open_time_ms), d(c.open), d(c.high), d(c.low), d(c.close), d(c.volume))
            for c in candles]


def paper_gateway(*, source, clock: Callable[[], int], universe: Callable[[], Iterable[str]],
                  balances: dict[str, Decimal] | None = None, fee_rate: Decimal = Decimal("0.001"),
                  slippage_bps: Decimal = Decimal(0)):
    """A ``PaperGateway`` on ``source`` with a controllable clock (needs Django: paper books live in the DB)."""
    from trading.exchanges.paper import PaperGateway

    return PaperGateway(source=source, fee_rate=fee_rate, slippage_bps=slippage_bps,
                        initial_balances=balances or {"USDT": Decimal(10_000)}, universe=universe, clock=clock)


def find_synthetic_entries(market, symbols: Sequence[str], *, start_close_ms: int, minutes: int,
                           params: BLiteParams | None = None) -> list[tuple[int, list[str]]]:
    """``[(candle close ms, [symbols entering])]`` for 1m candle closes in
    [start_close_ms, start_close_ms + minutes) of a ``SyntheticMarket`` - computed exactly as the
    tick computes it (Decimal candles, the same history window)."""
    p = params or BLiteParams()
    tf = 60_000
    first_open = start_close_ms - p.history_candles * tf
    count = p.history_candles + minutes
    full = {s: market.fetch_closed_candles(s, "1m", since_ms=first_open, limit=count,
                                           now_ms=first_open + count * tf) for s in symbols}
    found = []
    for k in range(minutes):
        window = {s: rows[k:k + p.history_candles] for s, rows in full.items()}
        close = start_close_ms + k * tf
        batch = CandleBatch.from_candles(window, timeframe="1m")
        entering = [s.symbol for s in decide_entries(batch, p, expected_last_open_time_ms=close - tf) if s.enter]
        if entering:
            found.append((close, entering))
    return found


def current_minute(*, margin_ms: int = 20_000) -> int:
    """Open time of the minute now, waiting first if it is about to end: a test that builds a
    market ending at this minute and then runs its tick must not see the minute turn in between
    (the tick would then expect the next candle: STALE_DATA, no entry)."""
    import time

    from infra.clock import now_ms

    while now_ms() % 60_000 > 60_000 - margin_ms:
        time.sleep(0.25)
    return now_ms() // 60_000 * 60_000


def breakout_rows(close_ms: int, *, universe: Sequence[str], entering: Sequence[str],
                  n: int | None = None, tf_ms: int = 60_000) -> dict[str, list[Candle]]:
    """``n`` candles per symbol (default: the decision window and a margin) trending up to
    ``close_ms`` at 10 per 258 candles; the ``entering`` symbols break out on double volume on the
    last candle, the others close just under their previous high. What the venue tests trade on."""
    import numpy as np

    from tests.strategy.helpers import series

    n = n or BLiteParams().history_candles + 39
    t0 = close_ms - n * tf_ms
    out = {}
    for symbol in universe:
        closes = list(np.linspace(110.0 - 10.0 * (n - 2) / 258, 110.0, n - 1))
        if symbol in entering:
            closes.append(112.0)
            volumes = [100.0] * (n - 1) + [200.0]
        else:
            closes.append(closes[-1] - 0.2)
            volumes = [100.0] * n
        out[symbol] = to_source_candles(series(closes, volumes, t0=t0), places=2)
    return out
