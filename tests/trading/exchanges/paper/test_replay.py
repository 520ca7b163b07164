"""Replay source: CSV candles served like a venue; bad files fail naming file and line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from trading.exchanges.paper.replay import ReplayDataError, ReplaySource, load_candles_csv, replay_file_name

HEADER = "open_time_ms,open,high,low,close,volume"
T0 = 1_700_000_040_000


def rows(n: int, start: int = T0, step: int = 60_000) -> list[str]:
    return [f"{start + i * step},{100 + i},{101 + i},{99 + i},{100.5 + i},{10 + i}" for i in range(n)]


def write(tmp_path: Path, lines: list[str], name: str = "BTC-USDT_1m.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_loads_valid_file_as_decimals(tmp_path: Path) -> None:
    path = write(tmp_path, [HEADER, *rows(3)])
    candles = load_candles_csv(path, timeframe="1m")
    assert [c.open_time_ms for c in candles] == [T0, T0 + 60_000, T0 + 120_000]
    assert candles[0].close == Decimal("100.5") and isinstance(candles[0].volume, Decimal)


def test_columns_may_come_in_any_order_and_gaps_are_kept(tmp_path: Path) -> None:
    lines = ["volume,close,low,high,open,open_time_ms", f"5,10,9,11,10,{T0}", f"5,10,9,11,10,{T0 + 180_000}"]
    candles = load_candles_csv(write(tmp_path, lines), timeframe="1m")
    assert candles[1].open_time_ms - candles[0].open_time_ms == 180_000   # the strategy will see the gap


def test_source_serves_closed_candles_like_a_venue(tmp_path: Path) -> None:
    write(tmp_path, [HEADER, *rows(10)])
    src = ReplaySource(tmp_path)
    now = T0 + 5 * 60_000 + 30_000                       # candles 0..4 have closed, 5 is forming
    latest = src.fetch_closed_candles("BTC/USDT", "1m", limit=3, now_ms=now)
    assert [c.open_time_ms for c in latest] == [T0 + i * 60_000 for i in (2, 3, 4)]
    since = src.fetch_closed_candles("BTC/USDT", "1m", since_ms=T0 + 60_000, limit=2, now_ms=now)
    assert [c.open_time_ms for c in since] == [T0 + 60_000, T0 + 120_000]
    assert src.fetch_closed_candles("BTC/USDT", "1m", since_ms=now, limit=5, now_ms=now) == []
    assert src.price_at("BTC/USDT", T0 + 90_000) == Decimal("101")          # open of candle 1
    with pytest.raises(LookupError):
        src.price_at("BTC/USDT", T0 - 1)


def test_file_name_convention() -> None:
    assert replay_file_name("BTC/USDT", "5m") == "BTC-USDT_5m.csv"


BAD_CASES = [
    # (lines, line number in the error, words in the error)
    ([HEADER.replace("volume", "vol"), *rows(1)], 1, "header"),
    ([HEADER + ",extra", *rows(1)], 1, "header"),
    ([HEADER, *rows(2), f"{T0 + 120_000},1,2,0.5,1.5"], 4, "expected 6 fields"),
    ([HEADER, *rows(1), f"{T0 + 60_000},abc,2,0.5,1.5,3"], 3, "open 'abc'"),
    ([HEADER, f"{T0}.5,1,2,0.5,1.5,3"], 2, "open_time_ms"),
    ([HEADER, f"-{T0},1,2,0.5,1.5,3"], 2, "open_time_ms"),
    ([HEADER, f"{T0},1,2,0.5,nan,3"], 2, "close 'nan' is not finite"),
    ([HEADER, f"{T0},0,2,0.5,1.5,3"], 2, "prices must be > 0"),
    ([HEADER, f"{T0},1,2,0.5,1.5,-3"], 2, "volume -3 is negative"),
    ([HEADER, f"{T0},1,1.2,0.5,1.5,3"], 2, "inconsistent OHLC"),
    ([HEADER, *rows(3), rows(2)[1]], 5, "duplicate or out of order"),
    ([HEADER, f"{T0 + 1000},1,2,0.5,1.5,3"], 2, "not aligned"),
    ([], 1, "empty file"),
]


@pytest.mark.parametrize("lines, line, words", BAD_CASES, ids=[c[2] + f"@{c[1]}" for c in BAD_CASES])
def test_bad_input_names_file_and_line(tmp_path: Path, lines: list[str], line: int, words: str) -> None:
    path = tmp_path / "BTC-USDT_1m.csv"
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    with pytest.raises(ReplayDataError) as err:
        load_candles_csv(path, timeframe="1m")
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert words in str(err.value)
    assert err.value.line == line and err.value.path == str(path)


def test_binary_garbage_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "BTC-USDT_1m.csv"
    path.write_bytes(HEADER.encode() + b"\n\xff\xfe\x00garbage\n")
    with pytest.raises(ReplayDataError, match=str(path)):
        load_candles_csv(path)


def test_missing_file_and_directory_are_named(tmp_path: Path) -> None:
    with pytest.raises(ReplayDataError, match="does not exist"):
        ReplaySource(tmp_path / "nope")
    with pytest.raises(ReplayDataError, match="ETH-USDT_1m.csv:0: no replay file"):
        ReplaySource(tmp_path).fetch_closed_candles("ETH/USDT", "1m", limit=5, now_ms=T0)
