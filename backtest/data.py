"""Candles for a backtest: from PostgreSQL, from an OHLCV CSV file, or from the synthetic market.

Every source returns, per symbol, one ``SymbolSeries`` holding the ``warmup`` candles before
``start_ms`` (they only warm the indicators up) and every candle opening in [start_ms, end_ms),
evenly spaced by the timeframe, with finite prices and a sane range. Anything else is refused
with a ``DataError`` whose message is one line naming the symbol, the file and line, or the
time where the problem is - the CLI prints it and exits 2, a sweep task stores it on the run.

* ``db``: the ``candles`` table (``syncer``: the live sync and ``manage.py sync_history`` fill
  it) of one venue. A hole is an error (the backtest never runs on a silently repaired series).
* ``csv``: a header row, then one candle a row, oldest first. Columns (any order, any case):
  ``open_time`` (or ``timestamp`` / ``time`` / ``date``: epoch milliseconds, epoch seconds or
  ISO-8601, UTC when no offset is given), ``open``, ``high``, ``low``, ``close``, ``volume``,
  and ``symbol`` when the file holds more than one symbol (without it, the file is the one
  symbol of the universe).
* ``synthetic``: ``SyntheticMarket(seed).candle_arrays``, the series the paper venue serves
  offline (any symbol; a pure function of seed, symbol and time).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from backtest.types import SymbolSeries
from infra.clock import timeframe_ms
from trading.config_schema import StrategyConfig

__all__ = ["DataError", "DataSource", "load_series", "series_from_rows", "utc_text", "warmup_candles"]

TIME_COLUMNS = ("open_time", "timestamp", "time", "date")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
SOURCES = ("db", "csv", "synthetic")


class DataError(ValueError):
    """The candles cannot be backtested; the message is one line naming what and where."""


@dataclass(frozen=True)
class DataSource:
    """Where the candles come from. ``venue`` for ``db``, ``path`` for ``csv``, ``seed`` for
    ``synthetic``. JSON-able (``as_json``) so a sweep's worker can load the same data itself."""

    kind: str
    venue: str | None = None
    path: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCES:
            raise DataError(f"unknown data source {self.kind!r}; use one of {', '.join(SOURCES)}")

    def as_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, value: Mapping) -> DataSource:
        return cls(**{k: value.get(k) for k in ("kind", "venue", "path", "seed")})

    def label(self) -> str:
        if self.kind == "db":
            return f"candles table ({self.venue})"
        if self.kind == "csv":
            return f"CSV {self.path}"
        return f"synthetic market (seed {self.seed})"


def warmup_candles(config: StrategyConfig) -> int:
    """Candles the strategy needs before the first decision: the live tick's history window
    (``strategy.params.blite_params``), so a backtest decides on exactly what the tick sees."""
    from strategy.params import blite_params

    return blite_params(config).history_candles


def utc_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_series(source: DataSource, *, symbols: Iterable[str], timeframe: str, start_ms: int, end_ms: int,
                warmup: int) -> dict[str, SymbolSeries]:
    """``warmup`` candles before ``start_ms`` plus every candle in [start_ms, end_ms), per symbol.

    ``start_ms`` is rounded up and ``end_ms`` down to a candle open (``backtest.services.spec_build``
    does the same, so the spec and the series agree). Raises ``DataError`` for an empty range,
    an unknown symbol, too little warm-up history, a gap, a NaN, an unsorted or repeated row."""
    tf = timeframe_ms(timeframe)
    symbols = list(symbols)
    start_ms, end_ms = -(-start_ms // tf) * tf, end_ms // tf * tf      # whole candles only
    if start_ms >= end_ms:
        raise DataError(f"empty date range: start {utc_text(start_ms)} is not before end {utc_text(end_ms)}")
    first_ms = start_ms - warmup * tf
    if source.kind == "synthetic":
        loaded = _synthetic(source, symbols, timeframe, first_ms, -(-end_ms // tf) - first_ms // tf)
    elif source.kind == "db":
        loaded = _database(source, symbols, timeframe, first_ms, end_ms)
    else:
        loaded = _csv(source, symbols, tf)
    out = {}
    for symbol in symbols:
        series = loaded[symbol]
        out[symbol] = _window(series, source=source, tf=tf, timeframe=timeframe, first_ms=first_ms,
                              start_ms=start_ms, end_ms=end_ms, warmup=warmup)
    return out


def series_from_rows(symbol: str, rows: list[tuple[int, float, float, float, float, float]], *, tf: int,
                     where: str, lines: list[int] | None = None) -> SymbolSeries:
    """Rows ``(open_time_ms, open, high, low, close, volume)`` as a checked series: finite, sane
    (low <= open, close <= high; volume >= 0), strictly ascending, evenly spaced by ``tf``.
    ``where`` names the origin in messages; ``lines`` the file line of each row."""
    def at(i: int) -> str:
        return f"{where} line {lines[i]}" if lines else f"{where} {symbol} at {utc_text(rows[i][0])}"

    for i, (_t, o, h, lo, c, v) in enumerate(rows):
        for name, value in zip(PRICE_COLUMNS, (o, h, lo, c, v), strict=True):
            if not math.isfinite(value):
                raise DataError(f"{at(i)}: {name} is {value} (not a finite number)")
        if lo > min(o, c) or h < max(o, c) or lo > h:
            raise DataError(f"{at(i)}: prices out of order (open {o}, high {h}, low {lo}, close {c}; "
                            "need low <= open, close <= high)")
        if min(o, h, lo, c) <= 0 or v < 0:
            raise DataError(f"{at(i)}: prices must be positive and volume not negative (got open {o}, low {lo}, "
                            f"volume {v})")
    # Order before spacing: two swapped rows are "unsorted", not a gap followed by a step back.
    for i in range(1, len(rows)):
        t = rows[i][0]
        if t <= rows[i - 1][0]:
            what = "repeats" if t == rows[i - 1][0] else "is before"
            raise DataError(f"{at(i)}: open time {utc_text(t)} {what} the previous row's (rows must be oldest "
                            "first, one per candle)")
    for i, (t, *_prices) in enumerate(rows):
        if t % tf:
            raise DataError(f"{at(i)}: open time {utc_text(t)} is not on a {tf // 60_000}-minute boundary")
        if i and t - rows[i - 1][0] != tf:
            missing = (t - rows[i - 1][0]) // tf - 1
            raise DataError(f"{at(i)}: gap of {missing} candle(s) after {utc_text(rows[i - 1][0])} "
                            "(candles must follow each other without holes)")
    columns = list(zip(*rows, strict=True)) if rows else [()] * 6
    return SymbolSeries(symbol=symbol, open_time_ms=np.asarray(columns[0], dtype=np.int64),
                        **{name: np.asarray(col, dtype=np.float64)
                           for name, col in zip(PRICE_COLUMNS, columns[1:], strict=True)})


# --- sources ------------------------------------------------------------------------------------

def _synthetic(source: DataSource, symbols: list[str], timeframe: str, first_ms: int,
               count: int) -> dict[str, SymbolSeries]:
    from trading.exchanges.paper.synthetic import DEFAULT_SEED, SyntheticMarket

    market = SyntheticMarket(seed=DEFAULT_SEED if source.seed is None else source.seed)
    out = {}
    for symbol in symbols:
        arrays = market.candle_arrays(symbol, timeframe, first_ms, count)
        out[symbol] = SymbolSeries(symbol=symbol, open_time_ms=arrays.open_time_ms, open=arrays.open,
                                   high=arrays.high, low=arrays.low, close=arrays.close, volume=arrays.volume)
    return out


def _database(source: DataSource, symbols: list[str], timeframe: str, first_ms: int,
              end_ms: int) -> dict[str, SymbolSeries]:
    from syncer.selectors import candles_between, newest_open_ms

    out = {}
    for symbol in symbols:
        rows = candles_between(venue=source.venue, symbol=symbol, timeframe=timeframe, first_open_ms=first_ms,
                               end_open_ms=end_ms)
        if not rows and newest_open_ms(venue=source.venue, symbol=symbol, timeframe=timeframe) is None:
            raise DataError(f"unknown symbol {symbol}: no {timeframe} candles stored for venue {source.venue} "
                            f"(fill them with `python manage.py sync_history`)")
        out[symbol] = series_from_rows(symbol, rows, tf=timeframe_ms(timeframe), where=source.label())
    return out


def _parse_time(text: str) -> int:
    """Epoch ms, epoch seconds (10 digits or fewer) or ISO-8601 (UTC when naive) -> epoch ms."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        return value * 1000 if abs(value) < 10**11 else value
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _csv(source: DataSource, symbols: list[str], tf: int) -> dict[str, SymbolSeries]:
    path = Path(source.path or "")
    name = path.name or str(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read the CSV file {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        header = [h.strip().lower() for h in next(reader, [])]
        if not header:
            raise DataError(f"{name}: the file is empty (need a header row: open_time,open,high,low,close,volume)")
        time_col = next((c for c in TIME_COLUMNS if c in header), None)
        missing = [c for c in PRICE_COLUMNS if c not in header] + ([] if time_col else ["open_time"])
        if missing:
            raise DataError(f"{name}: no {', '.join(missing)} column(s) in the header "
                            f"(need open_time, open, high, low, close, volume; symbol when several)")
        has_symbol = "symbol" in header
        if not has_symbol and len(symbols) != 1:
            raise DataError(f"{name}: has no symbol column, so it holds one symbol; the universe has "
                            f"{len(symbols)} ({', '.join(symbols)})")
        index = {c: header.index(c) for c in (time_col, *PRICE_COLUMNS, *(["symbol"] if has_symbol else []))}
        rows: dict[str, list] = {s: [] for s in symbols}
        lines: dict[str, list[int]] = {s: [] for s in symbols}
        for line_no, record in enumerate(reader, start=2):
            if not record or all(not cell.strip() for cell in record):
                continue
            if len(record) < len(header):
                raise DataError(f"{name} line {line_no}: {len(record)} fields, the header has {len(header)}")
            symbol = record[index["symbol"]].strip() if has_symbol else symbols[0]
            if symbol not in rows:
                continue
            try:
                t = _parse_time(record[index[time_col]])
            except ValueError:
                raise DataError(f"{name} line {line_no}: {time_col} {record[index[time_col]]!r} is not a time "
                                "(epoch ms, epoch s or ISO-8601)") from None
            values = []
            for column in PRICE_COLUMNS:
                cell = record[index[column]].strip()
                try:
                    values.append(float(cell))
                except ValueError:
                    raise DataError(f"{name} line {line_no}: {column} {cell!r} is not a number") from None
            rows[symbol].append((t, *values))
            lines[symbol].append(line_no)
    out = {}
    for symbol in symbols:
        if not rows[symbol]:
            raise DataError(f"unknown symbol {symbol}: {name} has no rows for it")
        out[symbol] = series_from_rows(symbol, rows[symbol], tf=tf, where=name, lines=lines[symbol])
    return out


def _window(series: SymbolSeries, *, source: DataSource, tf: int, timeframe: str, first_ms: int, start_ms: int,
            end_ms: int, warmup: int) -> SymbolSeries:
    """The candles in [first_ms, end_ms): all of the run's range and exactly ``warmup`` before it."""
    times = series.open_time_ms
    keep = (times >= first_ms) & (times < end_ms)
    decided = int(((times >= start_ms) & (times < end_ms)).sum())
    symbol = series.symbol
    if not decided:
        raise DataError(f"no {symbol} {timeframe} candles between {utc_text(start_ms)} and {utc_text(end_ms)} in "
                        f"the {source.label()}")
    last_ms = int(times[(times >= start_ms) & (times < end_ms)][-1])
    if last_ms + tf < end_ms:
        raise DataError(f"{symbol}: the {timeframe} candles in the {source.label()} end with the one opening "
                        f"{utc_text(last_ms)}, before the end {utc_text(end_ms)} (end earlier, or sync / give more "
                        "candles)")
    before = int(((times >= first_ms) & (times < start_ms)).sum())
    if before < warmup:
        raise DataError(f"{symbol}: only {before} {timeframe} candle(s) before the start {utc_text(start_ms)} in the "
                        f"{source.label()}; the strategy needs {warmup} to warm up its indicators "
                        "(start later, or give more history)")
    return SymbolSeries(symbol=symbol, open_time_ms=times[keep], open=series.open[keep], high=series.high[keep],
                        low=series.low[keep], close=series.close[keep], volume=series.volume[keep])
