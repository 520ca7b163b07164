"""The dashboard without a browser: who may see it, what its pages say, and that its buttons go
through the audited services."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model

from dashboard import selectors
from tests.support import cockpit as history
from trading.models import AuditLog
from trading.selectors import is_halted

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_user("olivia", password="pw-olivia-0123", is_staff=True)
    client.force_login(user)
    return client


def test_the_dashboard_needs_a_staff_login(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/dashboard/login/")
    plain_user = get_user_model().objects.create_user("mallory", password="pw-mallory-0123")
    client.force_login(plain_user)
    assert client.get("/dashboard/").status_code == 302
    assert client.post("/dashboard/halt", {"reason_code": "X_X", "reason": "x"}).status_code == 302
    assert not AuditLog.objects.exists()


def test_the_site_root_and_the_admins_view_site_lead_to_the_dashboard(client):
    assert client.get("/")["Location"] == "/dashboard/"
    assert admin.site.site_url == "/dashboard/"


def test_plotly_js_is_served_by_the_app_itself(client):
    response = client.get("/static/vendor/plotly.min.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"plotly" in body[:2000].lower() and len(body) > 1_000_000


def test_the_page_shows_times_in_hong_kong_time_and_loads_plotly_locally(operator):
    history.filled_entry(symbol="BTC/USDT")
    history.ticker("BTC/USDT", "60100")
    html = operator.get("/dashboard/").content.decode()
    assert "/static/vendor/plotly.min.js" in html and "cdn" not in html.lower()
    assert "HKT" in html and "BTC/USDT" in html


def test_halt_asks_for_a_reason_then_halts_with_one_audit_row(operator):
    form = operator.get("/dashboard/halt").content.decode()
    assert "Halt new entries?" in form and 'name="reason"' in form
    response = operator.post("/dashboard/halt", {"reason_code": "MANUAL_HALT", "reason": "maintenance"})
    assert response.status_code == 302 and is_halted().halted
    row = AuditLog.objects.get()
    assert (row.action, row.actor, row.source) == ("trading.halt", "olivia", "dashboard")
    operator.post("/dashboard/resume", {"reason_code": "MANUAL_RESUME", "reason": "done"})
    assert not is_halted().halted and AuditLog.objects.count() == 2


def test_a_bad_reason_code_changes_nothing(operator):
    response = operator.post("/dashboard/halt", {"reason_code": "lower case", "reason": "x"})
    assert response.status_code == 200 and "A-Z, 0-9" in response.content.decode()
    assert not is_halted().halted and not AuditLog.objects.exists()


def test_why_no_entry_says_how_far_each_condition_is(operator):
    history.decision(symbol="ETH/USDT", tick_id="20261201T2230", decision="skip", reason_code="NO_BREAKOUT",
                     engine_inputs={"close": 2970.0, "donchian_high": 3000.0, "volume": 90.0, "volume_threshold": 120.0,
                                    "ema": 2900.0, "breakout": False, "volume_ok": False, "trend_ok": True})
    row = {r["symbol"]: r for r in selectors.why_no_entry(symbols=["ETH/USDT", "BTC/USDT"])}
    assert row["ETH/USDT"]["breakout_pct"] == pytest.approx(-1.0)          # close 1 % under the breakout level
    assert row["ETH/USDT"]["volume_pct_of_threshold"] == pytest.approx(75.0)
    assert row["ETH/USDT"]["trend_pct"] == pytest.approx(70 / 29)
    assert row["BTC/USDT"]["decision"] is None
    html = operator.get("/dashboard/fragment/whynot").content.decode()
    assert "-1.00%" in html and "75%" in html and "+2.41%" in html


def test_the_timeline_lists_fills_and_operator_actions_of_the_hong_kong_day(operator):
    history.filled_entry(symbol="SOL/USDT", quantity="2", price="150", fee="0.3", atr="1")
    operator.post("/dashboard/halt", {"reason_code": "MANUAL_HALT", "reason": "lunch"})
    kinds = [i["kind"] for i in selectors.timeline_today()]
    assert kinds[0] == "halt" and "order" in kinds and "decision" not in kinds[:1]
    html = operator.get("/dashboard/fragment/timeline").content.decode()
    assert "FILL buy entry" in html and "trading.halt by olivia via dashboard" in html


def test_unknown_fragments_and_reports_are_404(operator):
    assert operator.get("/dashboard/fragment/secrets").status_code == 404
    assert operator.get("/dashboard/emergency-exit/nope").status_code == 404


def test_chart_data_is_plotly_json_with_an_entry_marker(operator):
    history.candles("BTC/USDT", closes=["60000"] * 30)
    history.filled_entry(symbol="BTC/USDT")
    body = operator.get("/dashboard/charts.json").json()
    names = [t.get("name") for t in body["symbols"]["BTC/USDT"]["data"]]
    assert names[0] == "candles" and "entry" in names and "stop" in names
    assert body["equity"]["layout"]["xaxis"]["title"]["text"] == "time (HKT)"


def test_a_position_without_its_stop_on_the_venue_says_so_and_why(operator):
    from strategy.models import StrategyPosition

    protected = history.filled_entry(symbol="BTC/USDT")
    exposed = history.filled_entry(symbol="ETH/USDT", price="3000", atr="10")
    # What the venue-stop service records (strategy/services/venue_stops.py) when the venue refuses.
    StrategyPosition.objects.filter(pk=exposed.pk).update(
        venue_stop="unprotected", venue_stop_reason="the venue refused stop X: -2010: Market is closed.")
    html = operator.get("/dashboard/").content.decode()
    row = html[html.index(f'data-position="{exposed.pk}"'):]
    row = row[:row.index("</tr>")]
    assert "UNPROTECTED" in row and "Market is closed." in row
    other = html[html.index(f'data-position="{protected.pk}"'):]
    assert "UNPROTECTED" not in other[:other.index("</tr>")]
