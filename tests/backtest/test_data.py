"""Candles for a backtest: each source gives checked series, and each kind of bad input is one
line naming the symbol, the file and line, or the time."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from backtest.data import DataError, DataSource, load_series
from trading.exchanges.paper.synthetic import SyntheticMarket

H = 3_600_000
T0 = 1_704_067_200_000          # 2024-01-01 00:00 UTC


def write_csv(tmp_path, rows, header="open_time,open,high,low,close,volume", name="btc.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def hourly(n, start=T0, price=100.0):
    return [(start + i * H, price + i, price + i + 2, price + i - 1, price + i + 1, 10 + i) for i in range(n)]


def load_csv(path, symbols=("BTC/USDT",), start=T0 + 3 * H, end=T0 + 10 * H, warmup=3):
    return load_series(DataSource("csv", path=str(path)), symbols=symbols, timeframe="1h", start_ms=start,
                       end_ms=end, warmup=warmup)


def test_a_csv_gives_the_warmup_and_the_range_and_nothing_else(tmp_path):
    series = load_csv(write_csv(tmp_path, hourly(12)))["BTC/USDT"]
    # 3 warm-up candles before the start, then 7 decided on (end exclusive)
    assert series.open_time_ms.tolist() == [T0 + i * H for i in range(10)]
    assert series.close[0] == 101.0 and series.volume[-1] == 19.0
    assert series.open_time_ms.dtype == np.int64


def test_a_csv_with_iso_times_and_a_symbol_column_holds_several_symbols(tmp_path):
    rows = []
    for i in range(6):
        iso = f"2024-01-01T{i:02d}:00:00Z"
        rows += [("BTC/USDT", iso, 100, 102, 99, 101, 5), ("ETH/USDT", iso, 10, 11, 9, 10.5, 7)]
    path = write_csv(tmp_path, rows, header="symbol,timestamp,open,high,low,close,volume")
    series = load_csv(path, symbols=("BTC/USDT", "ETH/USDT"), start=T0 + 2 * H, end=T0 + 6 * H, warmup=2)
    assert set(series) == {"BTC/USDT", "ETH/USDT"}
    assert series["ETH/USDT"].close.tolist() == [10.5] * 6


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda rows: rows[:5] + rows[7:], "btc.csv line 7: gap of 2 candle(s) after 2024-01-01 04:00 UTC"),
    (lambda rows: rows[:4] + [rows[5], rows[4]] + rows[6:], "btc.csv line 7: open time 2024-01-01 04:00 UTC is "
                                                             "before the previous row's"),
    (lambda rows: rows[:4] + [rows[3]] + rows[4:], "btc.csv line 6: open time 2024-01-01 03:00 UTC repeats"),
    (lambda rows: rows[:3] + [(*rows[3][:4], "nan", rows[3][5])] + rows[4:], "btc.csv line 5: close is nan"),
    (lambda rows: rows[:3] + [(*rows[3][:4], "abc", rows[3][5])] + rows[4:], "btc.csv line 5: close 'abc' is not "
                                                                              "a number"),
    (lambda rows: rows[:2] + [(rows[2][0], 100, 90, 95, 99, 1)] + rows[3:], "btc.csv line 4: prices out of order"),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path, mutate, message):
    with pytest.raises(DataError) as caught:
        load_csv(write_csv(tmp_path, mutate(hourly(12))))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_missing_columns_unknown_symbols_empty_ranges_and_short_history_are_named(tmp_path):
    path = write_csv(tmp_path, [r[:5] for r in hourly(12)], header="open_time,open,high,low,close")
    with pytest.raises(DataError, match=r"btc.csv: no volume column\(s\) in the header"):
        load_csv(path)
    path = write_csv(tmp_path, [("BTC/USDT", *r) for r in hourly(12)], header="symbol,open_time,open,high,low,close,"
                                                                               "volume")
    with pytest.raises(DataError, match="unknown symbol DOGE/USDT: btc.csv has no rows for it"):
        load_csv(path, symbols=("BTC/USDT", "DOGE/USDT"))
    with pytest.raises(DataError, match="empty date range: start 2024-01-01 05:00 UTC is not before end "
                                        "2024-01-01 05:00 UTC"):
        load_csv(path, start=T0 + 5 * H, end=T0 + 5 * H)
    with pytest.raises(DataError, match="no BTC/USDT 1h candles between 2024-01-02 00:00 UTC and"):
        load_csv(path, start=T0 + 24 * H, end=T0 + 30 * H)
    with pytest.raises(DataError, match=r"BTC/USDT: the 1h candles in the CSV .*btc.csv end with the one opening "
                                        r"2024-01-01 11:00 UTC, before the end 2024-01-01 14:00 UTC"):
        load_csv(path, end=T0 + 14 * H)
    with pytest.raises(DataError, match=r"BTC/USDT: only 3 1h candle\(s\) before the start 2024-01-01 03:00 UTC "
                                        r"in the CSV .*btc.csv; the strategy needs 5 to warm up"):
        load_csv(path, warmup=5)


def test_synthetic_candles_are_the_paper_venues_series(db):
    series = load_series(DataSource("synthetic", seed=7), symbols=["SOL/USDT"], timeframe="15m",
                         start_ms=T0 + 10 * 900_000, end_ms=T0 + 30 * 900_000, warmup=10)["SOL/USDT"]
    expected = SyntheticMarket(seed=7).candle_arrays("SOL/USDT", "15m", T0, 30)
    assert np.array_equal(series.open_time_ms, expected.open_time_ms)
    assert np.array_equal(series.close, expected.close) and np.array_equal(series.volume, expected.volume)


def _store_candles(symbol, times, venue="paper"):
    from infra.clock import ms_to_datetime
    from syncer.models import Candle

    Candle.objects.bulk_create(Candle(venue=venue, symbol=symbol, timeframe="1h", open_time=ms_to_datetime(t),
                                      open=Decimal("100"), high=Decimal("101"), low=Decimal("99"),
                                      close=Decimal("100.5"), volume=Decimal("3")) for t in times)


def test_the_candles_table_is_read_and_its_holes_and_unknown_symbols_are_named(db):
    _store_candles("BTC/USDT", [T0 + i * H for i in range(10)])
    source = DataSource("db", venue="paper")
    series = load_series(source, symbols=["BTC/USDT"], timeframe="1h", start_ms=T0 + 2 * H, end_ms=T0 + 8 * H,
                         warmup=2)["BTC/USDT"]
    assert series.open_time_ms.tolist() == [T0 + i * H for i in range(8)]
    assert series.close.tolist() == [100.5] * 8
    with pytest.raises(DataError, match=r"unknown symbol ETH/USDT: no 1h candles stored for venue paper"):
        load_series(source, symbols=["BTC/USDT", "ETH/USDT"], timeframe="1h", start_ms=T0 + 2 * H,
                    end_ms=T0 + 8 * H, warmup=2)
    _store_candles("XRP/USDT", [T0 + i * H for i in (0, 1, 2, 5, 6)])
    with pytest.raises(DataError, match=r"candles table \(paper\) XRP/USDT at 2024-01-01 05:00 UTC: gap of 2 "
                                        r"candle\(s\) after 2024-01-01 02:00 UTC"):
        load_series(source, symbols=["XRP/USDT"], timeframe="1h", start_ms=T0 + 2 * H, end_ms=T0 + 7 * H, warmup=1)
