"""The data-syncer on real PostgreSQL and Redis: HK tick ids, incremental idempotent candle sync,
gap back-fill and reporting, stale detection, venue health, tickers/balances, sync_history."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from infra.clock import ms_to_datetime, tick_id_for
from infra.models import TelegramOutbox
from syncer import selectors
from syncer.models import BalanceSnapshot, Ticker
from syncer.models import Candle as StoredCandleRow
from syncer.services import candles_sync, market_snapshot_sync, tick_due, tick_sync_if_due
from tests.support.markets import ManualClock, ScriptedSource, paper_gateway
from trading.config_schema import config_get
from trading.exchanges.base import Candle
from trading.exchanges.errors import RateLimitedError, TransientError
from trading.services.control import config_update

pytestmark = pytest.mark.django_db

TF = 60_000
CLOSE = 1_700_000_040_000 + 300 * TF         # a minute boundary: the newest candle closes here
WINDOW = 30


def series(symbol: str, n: int, *, end_close: int = CLOSE, skip: tuple[int, ...] = ()) -> list[Candle]:
    first = end_close - n * TF
    out = []
    for i in range(n):
        if i in skip:
            continue
        p = Decimal(100 + i)
        out.append(Candle(first + i * TF, p, p + 1, p - 1, p + Decimal("0.5"), Decimal(10 + i)))
    return out


@pytest.fixture
def clock():
    return ManualClock(CLOSE + 1_000)


@pytest.fixture
def source():
    src = ScriptedSource(tick=Decimal("0.01"))
    # 100 candles beyond CLOSE exist "in the future": served once the clock passes their close.
    src.set_candles("BTC/USDT", "1m", series("BTC/USDT", 500, end_close=CLOSE + 100 * TF))
    src.set_candles("ETH/USDT", "1m", series("ETH/USDT", 500, end_close=CLOSE + 100 * TF))
    return src


@pytest.fixture
def gateway(source, clock, redis_client, monkeypatch):
    config_update(changes={"universe": ["BTC/USDT", "ETH/USDT"], "timeframe": "1m"}, actor="test", source="system",
                  reason_code="TEST_SETUP", reason="small universe on 1m", trace_id="test-setup")
    gw = paper_gateway(source=source, clock=clock, universe=lambda: config_get().universe)
    monkeypatch.setattr("trading.exchanges.factory._gateway", gw)
    return gw


def sync(gateway, clock, symbols=("BTC/USDT",), **kw):
    return candles_sync(symbols=list(symbols), timeframe="1m", gateway=gateway, now_ms=clock(),
                        window_candles=kw.pop("window", WINDOW), stale_after_candles=kw.pop("stale_after", 2), **kw)


def stored(symbol: str = "BTC/USDT") -> list[int]:
    return selectors.stored_open_times(venue="paper", symbol=symbol, timeframe="1m", first_ms=0,
                                       last_ms=4_000_000_000_000)


# --- tick ids --------------------------------------------------------------------------------

def test_tick_id_is_the_hong_kong_wall_time_of_the_candle_close():
    # 06:15 UTC is 14:15 in Hong Kong (UTC+8, no DST); 16:00 UTC is already the next HK day.
    assert tick_id_for(datetime(2026, 11, 24, 6, 15, tzinfo=UTC)) == "20261124T1415"
    assert tick_id_for(datetime(2026, 11, 24, 16, 0, tzinfo=UTC)) == "20261125T0000"


def test_a_tick_is_due_only_in_the_minute_a_candle_of_the_timeframe_closed():
    assert tick_due(now=datetime(2026, 11, 24, 6, 15, 20, tzinfo=UTC), timeframe="15m") == (
        "20261124T1415", datetime(2026, 11, 24, 6, 15, tzinfo=UTC))
    assert tick_due(now=datetime(2026, 11, 24, 6, 16, 5, tzinfo=UTC), timeframe="15m") is None
    assert tick_due(now=datetime(2026, 11, 24, 6, 16, 5, tzinfo=UTC), timeframe="1m")[0] == "20261124T1416"
    assert tick_due(now=datetime(2026, 11, 24, 7, 0, 59, tzinfo=UTC), timeframe="1h")[0] == "20261124T1500"


def test_the_minute_beat_syncs_a_due_tick_once(gateway, clock):
    now = ms_to_datetime(clock())
    first = tick_sync_if_due(now=now, gateway=gateway, sleep=lambda s: None)
    assert first is not None and first.tick_id == tick_id_for(ms_to_datetime(CLOSE))
    assert selectors.tick_synced(venue="paper", timeframe="1m", tick_id=first.tick_id)["ok"] is True
    assert stored()[-1] == CLOSE - TF
    # A second beat (or a duplicate delivery) for the same minute does nothing.
    assert tick_sync_if_due(now=now, gateway=gateway, sleep=lambda s: None) is None


def test_the_tick_follows_a_timeframe_changed_at_runtime(gateway, clock):
    config_update(changes={"timeframe": "15m"}, actor="test", source="system", reason_code="TEST_SETUP",
                  reason="switch", trace_id="t2")
    # CLOSE is 06:07 UTC-aligned minute, not a 15-minute boundary.
    assert CLOSE % (15 * TF) != 0
    assert tick_sync_if_due(now=ms_to_datetime(clock()), gateway=gateway, sleep=lambda s: None) is None


# --- candles ---------------------------------------------------------------------------------

def test_first_sync_loads_the_window_and_a_second_sync_changes_nothing(gateway, clock, source):
    first = sync(gateway, clock)
    rows = list(StoredCandleRow.objects.filter(symbol="BTC/USDT").values_list("open_time", "close"))
    assert first.symbols["BTC/USDT"].stored == WINDOW and len(rows) == WINDOW
    assert ms_to_datetime(CLOSE - TF) == rows[-1][0]               # the newest closed candle
    source.requests.clear()
    second = sync(gateway, clock)
    assert list(StoredCandleRow.objects.filter(symbol="BTC/USDT").values_list("open_time", "close")) == rows
    assert second.symbols["BTC/USDT"].requests == 0                # up to date: not even one request
    assert second.ok and not second.gap_symbols and not second.stale_symbols


def test_sync_is_incremental_from_the_last_stored_candle(gateway, clock, source):
    sync(gateway, clock)
    clock.advance(3 * TF)
    source.requests.clear()
    report = sync(gateway, clock)
    assert source.requests[0][2] == CLOSE - TF                     # since = newest stored open time
    assert report.symbols["BTC/USDT"].stored == 4                  # re-read the last one + 3 new
    assert stored()[-1] == CLOSE + 2 * TF and len(stored()) == WINDOW + 3


def test_a_hole_in_the_db_is_back_filled_from_the_venue(gateway, clock):
    sync(gateway, clock)
    hole = ms_to_datetime(CLOSE - 10 * TF)
    StoredCandleRow.objects.filter(symbol="BTC/USDT", open_time=hole).delete()
    report = sync(gateway, clock)
    assert report.symbols["BTC/USDT"].missing_count == 0
    assert StoredCandleRow.objects.filter(symbol="BTC/USDT", open_time=hole).exists()


def test_a_gap_the_venue_cannot_fill_is_reported_and_never_invented(gateway, clock, source):
    source.set_candles("BTC/USDT", "1m", series("BTC/USDT", 400, skip=(390, 391)))
    report = sync(gateway, clock)
    rec = report.symbols["BTC/USDT"]
    missing = [CLOSE - 10 * TF, CLOSE - 9 * TF]
    assert rec.missing_count == 2 and rec.missing_open_ms == missing
    assert report.gap_symbols == ["BTC/USDT"]
    assert not set(missing) & set(stored())
    status = selectors.sync_status(venue="paper", timeframe="1m")
    assert status["gap_symbols"] == ["BTC/USDT"]


def test_nan_and_inconsistent_candles_from_the_venue_are_not_stored(gateway, clock, source):
    rows = series("BTC/USDT", 400)
    bad_nan = rows[-3].__class__(rows[-3].open_time_ms, rows[-3].open, rows[-3].high, rows[-3].low,
                                 Decimal("NaN"), rows[-3].volume)
    bad_hl = rows[-2].__class__(rows[-2].open_time_ms, rows[-2].open, rows[-2].low - 5, rows[-2].low,
                                rows[-2].close, rows[-2].volume)
    source.set_candles("BTC/USDT", "1m", [*rows[:-3], bad_nan, bad_hl, rows[-1]])
    report = sync(gateway, clock)
    rec = report.symbols["BTC/USDT"]
    assert rec.invalid >= 2 and rec.missing_count == 2
    assert rows[-3].open_time_ms not in stored() and rows[-2].open_time_ms not in stored()


def test_a_venue_returning_fewer_candles_than_asked_is_paged(gateway, clock, source):
    source.max_per_request = 8
    report = sync(gateway, clock)
    assert report.symbols["BTC/USDT"].requests == 4 and len(stored()) == WINDOW


def test_stale_data_is_detected_and_alerted_once(gateway, clock, source):
    source.set_candles("BTC/USDT", "1m", series("BTC/USDT", 400, end_close=CLOSE - 3 * TF))
    report = sync(gateway, clock, symbols=("BTC/USDT", "ETH/USDT"))
    assert report.stale_symbols == ["BTC/USDT"]
    assert report.symbols["BTC/USDT"].lag_candles == 3 and report.symbols["ETH/USDT"].lag_candles == 0
    sync(gateway, clock, symbols=("BTC/USDT", "ETH/USDT"))
    alerts = TelegramOutbox.objects.filter(reason_code="STALE_DATA")
    assert alerts.count() == 1 and "BTC/USDT" in alerts.get().text and "ETH/USDT" not in alerts.get().text


def test_a_rate_limit_stops_the_sync_and_marks_the_venue_unhealthy(gateway, clock, monkeypatch):
    calls = []

    def limited(*args, **kwargs):
        calls.append(args)
        raise RateLimitedError("429 Too Many Requests", venue="paper", code="429", retry_after_s=30)

    monkeypatch.setattr(gateway, "fetch_closed_candles", limited)
    report = sync(gateway, clock, symbols=("BTC/USDT", "ETH/USDT"))
    assert report.rate_limited and not report.ok and len(calls) == 1      # ETH was not even asked
    health = selectors.venue_health("paper")
    assert not health.ok and health.reason == "rate limited"
    sync(gateway, clock)
    assert len(calls) == 1                                                 # the back-off is honoured


def test_a_failing_venue_is_recorded_as_unhealthy_until_it_answers_again(gateway, clock, monkeypatch):
    original = gateway.fetch_closed_candles

    def down(*args, **kwargs):
        raise TransientError("502 Bad Gateway", venue="paper")

    monkeypatch.setattr(gateway, "fetch_closed_candles", down)
    assert not sync(gateway, clock).ok
    assert not selectors.venue_health("paper").ok
    monkeypatch.setattr(gateway, "fetch_closed_candles", original)
    assert sync(gateway, clock).ok and selectors.venue_health("paper").ok


def test_tickers_and_balances_are_stored(gateway, clock, source):
    source.prices["BTC/USDT"] = Decimal("123.45")
    report = market_snapshot_sync(gateway=gateway)
    assert report.ok and report.tickers == 2
    assert Ticker.objects.get(symbol="BTC/USDT").last == Decimal("123.45")
    assert BalanceSnapshot.objects.get(venue="paper").balances["USDT"]["free"] == "10000"
    source.prices["BTC/USDT"] = Decimal("124")
    market_snapshot_sync(gateway=gateway)
    assert Ticker.objects.filter(symbol="BTC/USDT").count() == 1
    assert selectors.latest_prices(venue="paper")["BTC/USDT"] == Decimal("124")


# --- sync_history ----------------------------------------------------------------------------

def test_sync_history_backfills_with_progress(gateway, clock, monkeypatch):
    monkeypatch.setattr("syncer.management.commands.sync_history.now_utc", lambda: ms_to_datetime(CLOSE))
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_history", "--days", "0.25", "--symbols", "BTC/USDT", "--timeframe", "1m", stdout=out,
                 stderr=err)
    assert len(stored()) == 360                                  # 6 hours of 1m candles
    assert "100.0%" in err.getvalue() and "done" in out.getvalue()
    call_command("sync_history", "--days", "0.25", "--symbols", "BTC/USDT", "--timeframe", "1m",
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert len(stored()) == 360


def test_sync_history_errors_are_clear(gateway, monkeypatch):
    with pytest.raises(CommandError, match="timeframe"):
        call_command("sync_history", "--days", "1", "--timeframe", "7m")
    with pytest.raises(CommandError, match="--symbols"):
        call_command("sync_history", "--days", "1", "--symbols", "btc-usdt")
    with pytest.raises(CommandError, match="--days"):
        call_command("sync_history", "--days", "0")

    def down(*args, **kwargs):
        raise TransientError("connection reset", venue="paper")

    monkeypatch.setattr(gateway, "fetch_closed_candles", down)
    with pytest.raises(CommandError, match="BTC/USDT 1m.*connection reset.*re-run"):
        call_command("sync_history", "--days", "1", "--symbols", "BTC/USDT", "--timeframe", "1m",
                     stdout=io.StringIO(), stderr=io.StringIO())
