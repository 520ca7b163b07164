"""How the account is doing: /admin/positions, /admin/pnl, /admin/equity, the figures /admin/status
and /metrics add. Built from positions the money path opened and closed from real fills."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from infra.clock import hk_day_start_utc, now_utc
from tests.support import cockpit as history
from trading.models import Order

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_btc():
    """0.01 BTC bought at 60,000 (fee 0.6), stop 59,800, target 60,600; BTC last 60,100."""
    position = history.filled_entry(symbol="BTC/USDT", quantity="0.01", price="60000", fee="0.6", atr="100")
    history.ticker("BTC/USDT", "60100")
    return position


def test_an_open_position_shows_its_unrealised_pnl_stop_and_target_distance(api, open_btc):
    rows = api.get("/admin/positions?status=open").json()
    assert len(rows) == 1
    row = rows[0]
    assert (row["symbol"], row["status"], row["quantity"]) == ("BTC/USDT", "open", "0.01")
    assert (row["entry_price"], row["last_price"]) == ("60000", "60100")
    # 0.01 x 60,100 - (0.01 x 60,000 + 0.6 entry fee)
    assert Decimal(row["unrealised_pnl"]) == Decimal("0.4")
    assert (row["stop_price"], row["take_profit_price"]) == ("59800", "60600")
    assert row["stop_distance_pct"] == "0.5"          # (60,100 - 59,800) / 60,100
    assert row["take_profit_distance_pct"] == "0.83"  # (60,600 - 60,100) / 60,100
    assert row["fees"] == "0.6" and row["fee_unvalued"] == {}
    assert 290 <= row["age_seconds"] <= 400
    assert Decimal(row["exposure"]) == Decimal("601")


def test_a_position_says_whether_its_stop_rests_on_the_venue_and_why_not(api, open_btc):
    from strategy.models import StrategyPosition

    # No stop order of it on the venue (this history has none): nothing rests, nothing to say.
    assert api.get("/admin/positions?status=open").json()[0]["venue_stop"] == {
        "state": "none", "stop_price": None, "client_order_id": None, "reason": None}
    # What strategy/services/venue_stops.py records when the venue will not hold one.
    StrategyPosition.objects.filter(pk=open_btc.pk).update(
        venue_stop="unprotected", venue_stop_reason="binance offers no stop orders for BTC/USDT")
    assert api.get("/admin/positions?status=open").json()[0]["venue_stop"] == {
        "state": "unprotected", "stop_price": None, "client_order_id": None,
        "reason": "binance offers no stop orders for BTC/USDT"}
    # A stop resting on the venue: its trigger and client id.
    stop = Order.objects.create(client_order_id="AS1-stop-test", venue=open_btc.venue, strategy="blite",
                                symbol="BTC/USDT", side="sell", type="stop_market", intent="stop_loss",
                                quantity=Decimal("0.01"), stop_price=Decimal("59800"), tick_id=f"P{open_btc.pk}",
                                trace_id="t-stop", status="accepted")
    assert api.get("/admin/positions?status=open").json()[0]["venue_stop"] == {
        "state": "protected", "stop_price": "59800", "client_order_id": stop.client_order_id, "reason": None}


def test_a_closed_position_shows_its_realised_pnl_and_leaves_the_open_list(api, open_btc):
    history.closed_by_exit(open_btc, price="60600", fee="0.6")
    assert api.get("/admin/positions?status=open").json() == []
    row = api.get("/admin/positions?status=closed").json()[0]
    # sold 606 - 0.6 fee; bought 600 + 0.6 fee
    assert Decimal(row["realised_pnl"]) == Decimal("4.8")
    assert row["unrealised_pnl"] is None and row["stop_distance_pct"] is None
    assert Decimal(row["fees"]) == Decimal("1.2") and row["exit_reason"]
    assert row["closed_at"] is not None


def test_a_fee_in_a_third_asset_is_shown_and_never_added_as_quote(api, open_btc):
    Order.objects.filter(pk=open_btc.entry_order_id).update(fee_unvalued={"BNB": "0.001"})
    row = api.get("/admin/positions").json()[0]
    assert row["fee_unvalued"] == {"BNB": "0.001"}
    assert row["fees"] == "0.6"


def test_positions_refuse_unknown_filters(api):
    response = api.get("/admin/positions?status=maybe&colour=red")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"status", "colour"}


def test_pnl_today_is_equity_now_minus_equity_at_the_hong_kong_day_start(api, open_btc):
    day_start = hk_day_start_utc(now_utc())
    history.equity(day_start - timedelta(seconds=30), "10000")
    history.equity(day_start + timedelta(minutes=1), "9950")     # the day's low point
    history.equity(timezone.now() - timedelta(seconds=5), "10020")
    history.closed_by_exit(history.filled_entry(symbol="ETH/USDT", quantity="1", price="3000", fee="3", atr="10"),
                           price="2980", fee="3", intent="stop_loss")
    body = api.get("/admin/pnl").json()
    today = body["today"]
    assert today["pnl"] == "20" and today["equity_start"] == "10000"
    assert Decimal(today["unrealised_pnl"]) == Decimal("0.4")
    assert today["trades"] == 1 and today["losses"] == 1 and today["win_rate"] == "0"
    assert Decimal(today["realised_pnl"]) == Decimal("-26")   # 2,980 - 3 - (3,000 + 3)
    assert today["max_drawdown"] == "50" and today["max_drawdown_pct"] == "0.5"
    assert body["days"][0]["day"] == today["day"] and body["days"][0]["pnl"] == "20"
    assert body["total"]["trades"] == 1 and body["quote"] == "USDT"


def test_win_rate_and_profit_factor_over_closed_trades(api):
    for symbol, exit_price in (("BTC/USDT", "60600"), ("SOL/USDT", "60300"), ("XRP/USDT", "59800")):
        history.closed_by_exit(history.filled_entry(symbol=symbol, fee="0"), price=exit_price, fee="0")
    total = api.get("/admin/pnl").json()["total"]
    # +6, +3, -2 -> 2 of 3 won, gross profit 9 / gross loss 2
    assert (total["trades"], total["wins"], total["win_rate"], total["profit_factor"]) == (3, 2, "66.67", "4.5")
    assert Decimal(total["realised_pnl"]) == Decimal("7")


def test_pnl_lists_each_hong_kong_day(api):
    today = hk_day_start_utc(now_utc())
    yesterday = today - timedelta(days=1)
    history.equity(yesterday + timedelta(hours=1), "10000")
    history.equity(today - timedelta(minutes=1), "10100")
    history.equity(timezone.now(), "10050")
    days = api.get("/admin/pnl?days=5").json()["days"]
    assert [d["pnl"] for d in days] == ["-50", "100"]
    assert days[1]["equity_end"] == "10100"


def test_equity_is_a_time_series_since_a_moment(api):
    now = timezone.now()
    for minutes, value in ((90, "10000"), (30, "10010"), (1, "10020")):
        history.equity(now - timedelta(minutes=minutes), value)
    since = (now - timedelta(hours=1)).isoformat()
    body = api.get("/admin/equity", {"since": since}).json()
    assert [p["equity"] for p in body["points"]] == ["10010", "10020"]
    assert len(api.get("/admin/equity").json()["points"]) == 3      # default: the last 24 hours


def test_a_long_equity_series_is_thinned_and_keeps_its_newest_point(api):
    now = timezone.now()
    for i in range(50):
        history.equity(now - timedelta(minutes=50 - i), str(10000 + i))
    points = api.get("/admin/equity?max_points=10").json()["points"]
    assert 5 <= len(points) <= 10 and points[-1]["equity"] == "10049"


def test_status_shows_equity_pnl_today_and_open_exposure(api, open_btc):
    day_start = hk_day_start_utc(now_utc())
    history.equity(day_start - timedelta(seconds=10), "10000")
    history.equity(timezone.now(), "10000.4")
    body = api.get("/admin/status").json()
    assert (body["equity"], body["pnl_today"], body["quote"]) == ("10000.4", "0.4", "USDT")
    assert body["open_positions"] == 1 and Decimal(body["open_exposure"]) == Decimal("601")


def test_the_new_reads_need_the_token_and_are_in_the_schema(anon, api):
    for path in ("/admin/positions", "/admin/pnl", "/admin/equity"):
        assert anon.get(path).status_code == 401
    paths = api.get("/admin/schema?format=json").json()["paths"]
    assert {"/admin/positions", "/admin/pnl", "/admin/equity"} <= set(paths)


def test_metrics_carry_equity_pnl_today_positions_and_exposure(client, open_btc):
    history.equity(hk_day_start_utc(now_utc()) - timedelta(seconds=10), "10000")
    history.equity(timezone.now(), "10012.5")
    text = client.get("/metrics").content.decode()
    assert "alphasniper_equity 10012.5" in text
    assert "alphasniper_pnl_today 12.5" in text
    assert "alphasniper_open_positions 1.0" in text
    assert "alphasniper_open_exposure 601.0" in text
