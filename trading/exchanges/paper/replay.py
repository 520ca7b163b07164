"""Replay source: recorded candles from CSV files, served like a venue's klines endpoint.

Layout (one file per symbol and timeframe, so a file is one homogeneous series and can be
checked on its own)::

    <directory>/<BASE>-<QUOTE>_<timeframe>.csv        e.g.  data/BTC-USDT_1m.csv

Each file has a header row with exactly the columns ``open_time_ms,open,high,low,close,volume``
(any order), then one candle per row: ``open_time_ms`` an integer UTC epoch in ms aligned
to the timeframe, prices decimal numbers > 0, volume >= 0, and low <= open, close <= high.
Rows must be in strictly increasing time order. Gaps (missing candles) are allowed - real
exports have them, and the strategy is expected to see them and refuse to trade across
them (GAP_IN_DATA) - but duplicates, disorder and malformed numbers are errors.

Every problem raises ``ReplayDataError`` naming the file and the line, at load time, for
the first bad row: a replay that silently skips rows would backtest a different market.
"""

from __future__ import annotations

import bisect
import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from infra.clock import TIMEFRAME_SECONDS
from trading.exchanges.base import Candle

__all__ = ["COLUMNS", "ReplayDataError", "ReplaySource", "load_candles_csv", "replay_file_name"]

COLUMNS = ("open_time_ms", "open", "high", "low", "close", "volume")
_TIMEFRAME_MS = {tf: seconds * 1000 for tf, seconds in TIMEFRAME_SECONDS.items()}   # infra.clock's table


class ReplayDataError(ValueError):
    """Bad replay input. ``str()`` is ``"<path>:<line>: <problem>"`` (line 0 = the file itself)."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


def replay_file_name(symbol: str, timeframe: str) -> str:
    """``"BTC/USDT", "1m"`` -> ``"BTC-USDT_1m.csv"`` (``/`` is not allowed in file names)."""
    return f"{symbol.replace('/', '-')}_{timeframe}.csv"


def _decimal(path: Path, line: int, column: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ReplayDataError(path, line, f"{column} {raw!r} is not a decimal number") from None
    if not value.is_finite():
        raise ReplayDataError(path, line, f"{column} {raw!r} is not finite")
    return value


def _row(path: Path, line: int, fields: dict[str, str], tf_ms: int | None) -> Candle:
    raw_t = fields["open_time_ms"].strip()
    if not raw_t.isdigit():
        problem = f"open_time_ms {fields['open_time_ms']!r} is not a non-negative integer"
        raise ReplayDataError(path, line, problem)
    t = int(raw_t)
    if tf_ms is not None and t % tf_ms:
        raise ReplayDataError(path, line, f"open_time_ms {t} is not aligned to the {tf_ms} ms timeframe")
    o, h, lo, c, v = (_decimal(path, line, col, fields[col]) for col in COLUMNS[1:])
    if min(o, h, lo, c) <= 0:
        raise ReplayDataError(path, line, f"prices must be > 0 (open {o}, high {h}, low {lo}, close {c})")
    if v < 0:
        raise ReplayDataError(path, line, f"volume {v} is negative")
    if not (lo <= o <= h and lo <= c <= h):
        problem = (f"inconsistent OHLC, need low <= open, close <= high "
                   f"(open {o}, high {h}, low {lo}, close {c})")
        raise ReplayDataError(path, line, problem)
    return Candle(open_time_ms=t, open=o, high=h, low=lo, close=c, volume=v)


def load_candles_csv(path: Path | str, *, timeframe: str | None = None) -> list[Candle]:
    """All candles of one CSV file, oldest first, validated (see module docstring)."""
    path = Path(path)
    tf_ms = None
    if timeframe is not None:
        if timeframe not in _TIMEFRAME_MS:
            raise ValueError(f"unsupported timeframe {timeframe!r}; supported: {list(_TIMEFRAME_MS)}")
        tf_ms = _TIMEFRAME_MS[timeframe]
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ReplayDataError(path, 0, f"cannot open: {exc.strerror or exc}") from exc
    candles: list[Candle] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise ReplayDataError(path, 1, f"empty file; expected header {','.join(COLUMNS)}")
            names = [h.strip() for h in header]
            if sorted(names) != sorted(COLUMNS):
                problem = f"header {','.join(names)!r} must be exactly the columns {','.join(COLUMNS)}"
                raise ReplayDataError(path, reader.line_num, problem)
            for record in reader:
                line = reader.line_num
                if not record or all(not cell.strip() for cell in record):
                    continue                                  # blank line (e.g. trailing newline)
                if len(record) != len(names):
                    raise ReplayDataError(path, line, f"expected {len(names)} fields, got {len(record)}")
                candle = _row(path, line, dict(zip(names, record, strict=True)), tf_ms)
                if candles and candle.open_time_ms <= candles[-1].open_time_ms:
                    problem = (f"open_time_ms {candle.open_time_ms} is not after the previous row's "
                               f"{candles[-1].open_time_ms} (duplicate or out of order)")
                    raise ReplayDataError(path, line, problem)
                candles.append(candle)
        except csv.Error as exc:
            raise ReplayDataError(path, reader.line_num, f"malformed CSV: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ReplayDataError(path, reader.line_num + 1, f"not UTF-8 text: {exc.reason}") from exc
    return candles


@dataclass
class _Series:
    times: list[int]
    candles: list[Candle]


class ReplaySource:
    """Serves the candles of a directory of CSV files (loaded lazily, once, then cached)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ReplayDataError(self.directory, 0, "replay directory does not exist")
        self._series: dict[tuple[str, str], _Series] = {}

    def _load(self, symbol: str, timeframe: str) -> _Series:
        key = (symbol, timeframe)
        if key not in self._series:
            path = self.directory / replay_file_name(symbol, timeframe)
            if not path.is_file():
                raise ReplayDataError(path, 0, f"no replay file for {symbol} {timeframe}")
            candles = load_candles_csv(path, timeframe=timeframe)
            self._series[key] = _Series([c.open_time_ms for c in candles], candles)
        return self._series[key]

    def fetch_closed_candles(
        self, symbol: str, timeframe: str, *, since_ms: int | None = None, limit: int = 500, now_ms: int,
    ) -> list[Candle]:
        """Same contract as the synthetic source: candles closed by ``now_ms``
        (open + timeframe <= now), open >= ``since_ms``, oldest first, at most ``limit``;
        with ``since_ms=None`` the latest ``limit``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        series = self._load(symbol, timeframe)
        tf_ms = _TIMEFRAME_MS[timeframe]
        stop = bisect.bisect_right(series.times, now_ms - tf_ms)          # rows that have closed
        if since_ms is None:
            return series.candles[max(0, stop - limit):stop]
        start = bisect.bisect_left(series.times, since_ms)
        return series.candles[start:min(stop, start + limit)]

    def price_at(self, symbol: str, t_ms: int, *, timeframe: str = "1m") -> Decimal:
        """A candle-level approximation of the last price at ``t_ms``: the open of the candle
        containing it, or the last close before it if that candle is missing. Raises
        ``LookupError`` before the first candle."""
        series = self._load(symbol, timeframe)
        i = bisect.bisect_right(series.times, t_ms) - 1
        if i < 0:
            raise LookupError(f"no replay data for {symbol} at or before {t_ms}")
        candle = series.candles[i]
        if t_ms < candle.open_time_ms + _TIMEFRAME_MS[timeframe]:
            return candle.open
        return candle.close
