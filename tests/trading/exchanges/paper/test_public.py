"""Live public market data (MARKET_DATA_SOURCE=binance|bybit) for the paper venue, against the emulator."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.conftest import free_port
from trading.exchanges.base import Candle, OrderRequest, OrderType, Side, VenueOrderStatus
from trading.exchanges.errors import RejectedError, TransientError
from trading.exchanges.paper.feeds import PublicVenueSource
from trading.exchanges.ratelimit import rate_limit_state

D = Decimal
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
PUBLIC_PATHS = {
    "binance": {"/api/v3/exchangeInfo", "/api/v3/klines", "/api/v3/ticker/24hr", "/api/v3/time"},
    "bybit": {"/v5/market/instruments-info", "/v5/market/kline", "/v5/market/tickers", "/v5/market/time"},
}


def now_ms() -> int:
    return int(time.time() * 1000)


def test_candles_prices_and_ticks_come_from_public_endpoints_only(emulator, control, redis_client):
    source = PublicVenueSource(emulator.venue, base_url=emulator.base_url)
    forming = now_ms() // HOUR_MS * HOUR_MS
    rows = [(forming - (4 - i) * HOUR_MS, D(100 + i), D(110 + i), D(90 + i), D(105 + i), D(7 + i)) for i in range(5)]
    control.set_klines("BTC/USDT", "1h", rows)
    control.set_price("BTC/USDT", "31234.56")

    candles = source.fetch_closed_candles("BTC/USDT", "1h", limit=10, now_ms=now_ms())

    assert candles == [Candle(*r) for r in rows[:4]]
    assert source.fetch_closed_candles("BTC/USDT", "1h", since_ms=rows[2][0], limit=10, now_ms=now_ms()) == \
        [Candle(*r) for r in rows[2:4]]
    # A caller whose clock is an hour behind sees only what had closed by then.
    assert source.fetch_closed_candles("BTC/USDT", "1h", limit=10, now_ms=rows[3][0]) == \
        [Candle(*r) for r in rows[:3]]
    assert source.price_at("BTC/USDT", now_ms()) == D("31234.56")
    assert source.tick_size("BTC/USDT") == D("0.01")
    assert source.tick_size("DOGE/USDT") is None
    assert {r["path"] for r in control.requests()} <= PUBLIC_PATHS[emulator.venue]
    # Every process's public requests share one budget, under the "public" account.
    (account,) = rate_limit_state(emulator.venue, api_key="")["accounts"]
    assert account["account"] == "public" and account["budgets"]


def test_more_candles_than_one_request_holds(emulator, control, redis_client):
    source = PublicVenueSource(emulator.venue, base_url=emulator.base_url)
    now = now_ms()

    candles = source.fetch_closed_candles("ETH/USDT", "1m", limit=1500, now_ms=now)

    assert len(candles) == 1500
    assert candles[-1].open_time_ms == (now - MINUTE_MS) // MINUTE_MS * MINUTE_MS
    assert all(b.open_time_ms - a.open_time_ms == MINUTE_MS for a, b in zip(candles, candles[1:], strict=False))
    assert control.request_count(path=next(p for p in PUBLIC_PATHS[emulator.venue] if "kline" in p)) == 2


def test_errors_are_ours(emulator, redis_client):
    source = PublicVenueSource(emulator.venue, base_url=emulator.base_url)
    with pytest.raises(RejectedError):
        source.price_at("DOGE/USDT", now_ms())

    down = PublicVenueSource(emulator.venue, base_url=f"http://127.0.0.1:{free_port()}", timeout_ms=1000)
    with pytest.raises(TransientError):
        down.price_at("BTC/USDT", now_ms())


@pytest.mark.parametrize("emulator", ["bybit"], indirect=True)
def test_settings_choose_the_venue_and_its_root(emulator, control, settings, redis_client):
    from trading.exchanges.paper.feeds import market_data_source

    settings.MARKET_DATA_SOURCE = "bybit"
    settings.MARKET_DATA_BASE_URL = emulator.base_url
    market_data_source.cache_clear()
    try:
        source = market_data_source()
        control.set_price("ETH/USDT", "2345.6")

        assert isinstance(source, PublicVenueSource)
        assert source.gateway.rest_endpoints["public"] == emulator.base_url
        assert source.price_at("ETH/USDT", now_ms()) == D("2345.6")
    finally:
        market_data_source.cache_clear()


def test_the_paper_venue_fills_at_the_live_price(emulator, control, db, redis_client):
    from trading.exchanges.paper import PaperGateway

    source = PublicVenueSource(emulator.venue, base_url=emulator.base_url)
    paper = PaperGateway(source=source, fee_rate=D("0.001"), slippage_bps=D(0),
                         initial_balances={"USDT": D("10000")}, universe=lambda: ["BTC/USDT"])
    control.set_price("BTC/USDT", "30500")

    paper.create_order(OrderRequest(client_order_id="live-1", symbol="BTC/USDT", side=Side.BUY,
                                    type=OrderType.MARKET, quantity=D("0.01")))

    order = paper.fetch_order("BTC/USDT", "live-1")
    assert order.status is VenueOrderStatus.FILLED and order.average_price == D("30500")
    assert paper.load_markets()["BTC/USDT"].tick_size == D("0.01")
    assert control.orders() == []            # nothing was traded on the real venue
