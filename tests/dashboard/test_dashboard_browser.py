"""What an operator sees in a real browser (Chromium via Playwright) on the live test server.

The trading history is made by the money path's own services (``tests.support.cockpit``); the
buttons go through the audited services like the API and tbot do.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support import cockpit as history
from trading.models import AuditLog, EmergencyExitRun

pytestmark = pytest.mark.django_db(transaction=True)


def _btc_position():
    history.candles("BTC/USDT", closes=[str(59_900 + (i % 7) * 20) for i in range(60)])
    position = history.filled_entry(symbol="BTC/USDT", quantity="0.01", price="60000", fee="0.6", atr="100",
                                    opened_ago=timedelta(minutes=10))
    history.ticker("BTC/USDT", "60100")
    return position


def test_a_filled_entry_appears_with_its_unrealised_pnl_and_stop_distance(dashboard, staff_user):
    position = _btc_position()
    page = dashboard()
    row = page.locator(f"#positions-table tr[data-position='{position.pk}']")
    assert row.locator("td").nth(1).inner_text() == "BTC/USDT"
    assert row.locator("td.unrealised").inner_text() == "+0.40"            # 0.01 x 60,100 - (600 + 0.6 fee)
    assert "+0.50%" in row.inner_text()                                    # (60,100 - 59,800) / 60,100 to the stop
    assert page.locator("#open-positions").inner_text() == "1"


def test_a_position_without_its_stop_on_the_venue_stands_out_with_the_reason(dashboard, staff_user):
    from strategy.services.venue_stops import venue_stop_ensure_now
    from trading.models import Order
    from trading.services import lifecycle

    position = _btc_position()
    # Its stop went to the venue, which refused it (the symbol is halted there).
    stop = Order.objects.get(type="stop_market", tick_id=f"P{position.pk}")
    lifecycle.order_mark_submitting(order_id=stop.pk)
    lifecycle.order_mark_rejected(order_id=stop.pk, code="-2010", message="Market is closed.")
    venue_stop_ensure_now(position_id=position.pk)
    reason = f"the venue refused stop {stop.client_order_id}: Market is closed."
    page = dashboard()
    cell = page.locator(f"#positions-table tr[data-position='{position.pk}'] td.venue-stop")
    assert cell.inner_text().splitlines() == ["UNPROTECTED", reason]
    assert cell.locator("strong").evaluate("e => getComputedStyle(e).color") != \
        page.locator("#positions-table td").first.evaluate("e => getComputedStyle(e).color")   # it is coloured
    out = Path(os.environ.get("ALPHASNIPER_SCREENSHOTS") or "/tmp")
    page.locator("#positions-table").screenshot(path=str(out / "dashboard-venue-stop.png"))


def test_the_symbol_chart_carries_the_entry_and_stop_markers(dashboard, staff_user):
    _btc_position()
    page = dashboard()
    page.wait_for_function("document.getElementById('chart-btcusdt').data !== undefined")
    traces = page.evaluate("document.getElementById('chart-btcusdt').data.map(t => [t.name, t.type, t.y])")
    by_name = {name: (kind, y) for name, kind, y in traces}
    assert by_name["candles"][0] == "candlestick"
    assert by_name["entry"][1] == [60000]
    assert by_name["stop"][1] == [59800]
    # and it is drawn: the legend names the markers in the SVG
    assert page.locator("#chart-btcusdt .legendtext", has_text="entry").count() == 1


def test_the_halt_button_writes_one_audit_row_and_the_status_turns_halted(dashboard, staff_user):
    page = dashboard()
    assert page.locator("#trading-state").inner_text() == "TRADING"
    page.click("#halt-button")
    page.fill("#id_reason", "venue maintenance at 23:00")
    page.click("#confirm-button")
    page.wait_for_selector("#trading-state")
    assert page.locator("#trading-state").inner_text() == "HALTED"
    rows = list(AuditLog.objects.all())
    assert len(rows) == 1
    assert (rows[0].action, rows[0].actor, rows[0].source, rows[0].reason_code) == (
        "trading.halt", staff_user.username, "dashboard", "MANUAL_HALT")
    # the timeline of the day shows it
    assert "trading.halt by olivia" in page.locator("#timeline").inner_text()


def test_emergency_exit_asks_for_confirmation_before_doing_anything(dashboard, staff_user, celery_eager):
    _btc_position()
    page = dashboard()
    page.click("#emergency-button")
    assert "1 open position: BTC/USDT" in page.locator("main").inner_text()
    page.fill("#id_reason", "venue outage")
    page.fill("#id_confirm", "yes")                      # not the confirmation word
    page.click("#emergency-confirm")
    assert "Type exactly \"EMERGENCY_EXIT\"" in page.locator("#emergency-form").inner_text()
    assert not EmergencyExitRun.objects.exists() and not AuditLog.objects.exists()
    # typed as asked: the same task as POST /admin/emergency_exit runs, and its report is shown
    page.fill("#id_confirm", "EMERGENCY_EXIT")
    page.click("#emergency-confirm")
    page.wait_for_selector("#emergency-report")
    assert EmergencyExitRun.objects.get().source == "dashboard"
    assert AuditLog.objects.filter(action="emergency_exit", source="dashboard").count() == 1


def test_the_page_refreshes_itself_when_a_position_opens(dashboard, staff_user):
    page = dashboard()
    assert "No open positions" in page.locator("#positions-table").inner_text()
    history.filled_entry(symbol="ETH/USDT", quantity="1", price="3000", fee="3", atr="10")
    history.ticker("ETH/USDT", "3010")
    page.wait_for_selector("#positions-table tr[data-symbol='ETH/USDT']")
    assert page.locator("#positions-table td.unrealised").inner_text() == "+7.00"
    assert page.locator("#refreshed").inner_text().endswith("HKT")


def test_screenshots_of_the_dashboard(dashboard, staff_user):
    """Writes the README's screenshots when ALPHASNIPER_SCREENSHOTS names a directory."""
    from django.utils import timezone

    from infra.clock import hk_day_start_utc, now_utc

    _btc_position()
    history.closed_by_exit(history.filled_entry(symbol="SOL/USDT", quantity="4", price="150", fee="0.6", atr="0.4",
                                                opened_ago=timedelta(minutes=40)), price="152.4", fee="0.61")
    start = hk_day_start_utc(now_utc())
    for i, value in enumerate(("10000", "9996", "10003", "10001.5")):
        history.equity(start + timedelta(minutes=i) if i < 3 else timezone.now(), value)
    out = Path(os.environ.get("ALPHASNIPER_SCREENSHOTS") or "/tmp")
    page = dashboard()
    page.wait_for_function("document.getElementById('chart-btcusdt').data !== undefined")
    page.screenshot(path=str(out / "dashboard.png"), full_page=False)
    page.click("#emergency-button")
    page.screenshot(path=str(out / "dashboard-emergency-exit.png"), full_page=False)
    assert (out / "dashboard.png").stat().st_size > 10_000
