"""Positions and the bot-side stop monitor, end to end on the paper venue with real Celery
submission (eager) and real PostgreSQL / Redis: entry fill -> position -> stop / trailing stop /
take-profit -> exactly one exit order -> Telegram with trace id and reason code -> closed with PnL.

These run with ``venue_stops`` off: the monitor's own exits are what protects a position the venue
cannot (no stop orders for the symbol, a refused stop). ``test_venue_stops.py`` reuses the fixtures
with venue stops on."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from infra.clock import hk_day_start_utc
from infra.models import TelegramOutbox
from strategy.engines import PositionStop, round_to_step
from strategy.models import StrategyDecision, StrategyPosition
from strategy.services import positions as positions_module
from strategy.services.positions import stop_monitor_run
from strategy.services.summary import daily_summary_send
from trading.client_ids import make_client_order_id
from trading.models import Order, OrderStatus
from trading.services import lifecycle
from trading.services.control import trading_halt
from trading.services.orders import order_place

pytestmark = pytest.mark.django_db(transaction=True)
BTC = "BTC/USDT"


@pytest.fixture
def venue_stops():
    """The bot-side monitor alone (what a position the venue cannot protect relies on)."""
    return "off"


def price(source, value) -> None:
    source.prices[BTC] = Decimal(str(value))


def exit_orders():
    return Order.objects.exclude(intent="entry").order_by("id")


def test_a_filled_entry_opens_a_position_with_the_decisions_stop_and_target(opened):
    _, _, _, position = opened
    entry = position.entry_order
    decision = StrategyDecision.objects.get(tick_id=entry.tick_id, symbol=BTC)
    atr = Decimal(str(decision.inputs["engine"]["inputs"]["atr"]))
    state = PositionStop.from_dict(position.stop_state)
    # the venue kept its fee in the coin bought: the position is what we actually hold
    fee_in_base = sum(Decimal(e.payload["fee"]) for e in entry.events.filter(event_type="FILL")
                      if e.payload["fee_asset"] == "BTC")
    assert fee_in_base > 0
    assert position.entry_price == entry.average_price and position.quantity == entry.filled_quantity - fee_in_base
    assert abs(state.initial_stop - (position.entry_price - 2 * atr)) <= Decimal("0.0001")
    r = position.entry_price - state.initial_stop
    assert abs(state.take_profit_price - (position.entry_price + 3 * r)) <= Decimal("0.0001")
    assert position.trace_id == decision.trace_id
    # Idempotent: more monitor passes open nothing more.
    stop_monitor_run(gateway=opened[0])
    assert StrategyPosition.objects.count() == 1


def test_stop_loss_sells_once_alerts_with_trace_and_reason_and_closes_with_pnl(opened):
    gw, source, _, position = opened
    state = PositionStop.from_dict(position.stop_state)
    price(source, state.initial_stop - Decimal("0.01"))
    report = stop_monitor_run(gateway=gw)
    cid = make_client_order_id(strategy="blite", symbol=BTC, tick_id=f"P{position.pk}", intent="exit0")
    assert report.exits == [cid]
    exit_order = exit_orders().get()
    assert (exit_order.client_order_id, exit_order.side, exit_order.intent) == (cid, "sell", "stop_loss")
    # all of it the venue can take: the position rounded down to the lot step
    lot = gw.rules(BTC).lot_step
    assert exit_order.quantity == round_to_step(position.quantity, lot) and exit_order.status == OrderStatus.FILLED
    alert = TelegramOutbox.objects.get(reason_code="STOP_LOSS", text__contains="selling")
    assert exit_order.trace_id in alert.text and "STOP_LOSS" in alert.text
    assert alert.trace_id == exit_order.trace_id
    # More passes (a re-delivered task, the next beat) never sell again, and close the position.
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    assert exit_orders().count() == 1
    position.refresh_from_db()
    assert position.status == "closed" and position.exit_reason == "STOP_LOSS"
    sold = exit_order.filled_quantity
    expected = (exit_order.filled_quote - exit_order.fee_quote) - (position.entry_price * sold
                                                                    + position.entry_fee * sold / position.quantity)
    assert abs(position.realised_pnl - expected) < Decimal("1e-15") and position.realised_pnl < 0


def test_stops_keep_working_while_trading_is_halted(opened):
    gw, source, _, position = opened
    trading_halt(actor="ops", source="api", reason_code="MANUAL_HALT", reason="investigating", trace_id="h")
    price(source, PositionStop.from_dict(position.stop_state).initial_stop - 1)
    assert len(stop_monitor_run(gateway=gw).exits) == 1
    assert exit_orders().get().intent == "stop_loss"


def test_the_trailing_stop_only_moves_up_and_triggers_as_trailing_stop(opened):
    gw, source, _, position = opened
    state = PositionStop.from_dict(position.stop_state)
    high = state.entry_price + state.trail_distance * 2          # below the 3R target
    price(source, high)
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    raised = PositionStop.from_dict(position.stop_state).stop_price
    assert raised == high - state.trail_distance > state.initial_stop
    price(source, state.entry_price)                              # falls back: the stop stays up
    stop_monitor_run(gateway=gw)
    assert exit_orders().get().intent == "trailing_stop"
    assert TelegramOutbox.objects.filter(reason_code="TRAILING_STOP").exists()


def test_take_profit(opened):
    gw, source, _, position = opened
    price(source, PositionStop.from_dict(position.stop_state).take_profit_price + Decimal("0.01"))
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    assert exit_orders().get().intent == "take_profit"
    assert position.status == "closed" and position.realised_pnl > 0
    assert TelegramOutbox.objects.filter(reason_code="TAKE_PROFIT", text__contains="selling").count() == 1


def test_a_rejected_exit_is_retried_under_the_next_attempt_id_only(opened, monkeypatch):
    gw, source, _, position = opened
    sent = []
    monkeypatch.setattr("trading.tasks.submit_order", type("T", (), {"delay": staticmethod(sent.append)}))
    price(source, PositionStop.from_dict(position.stop_state).initial_stop - 1)
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)                                  # still pending: nothing new
    first = exit_orders().get()
    assert first.client_order_id == make_client_order_id(strategy="blite", symbol=BTC, tick_id=f"P{position.pk}",
                                                         intent="exit0")
    lifecycle.order_mark_submitting(order_id=first.pk)
    lifecycle.order_mark_rejected(order_id=first.pk, code="-2010", message="insufficient balance")
    stop_monitor_run(gateway=gw)
    ids = list(exit_orders().values_list("client_order_id", flat=True))
    assert ids == [first.client_order_id, make_client_order_id(strategy="blite", symbol=BTC,
                                                               tick_id=f"P{position.pk}", intent="exit1")]
    position.refresh_from_db()
    assert position.exit_attempt == 1 and position.status == "closing"


def test_two_monitors_at_once_place_one_exit(opened, monkeypatch):
    gw, source, _, position = opened
    import contextlib

    monkeypatch.setattr(positions_module, "redis_lock", lambda *a, **k: contextlib.nullcontext())
    price(source, PositionStop.from_dict(position.stop_state).initial_stop - 1)
    errors = []

    def worker():
        try:
            stop_monitor_run(gateway=gw)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and exit_orders().count() == 1
    assert TelegramOutbox.objects.filter(reason_code="STOP_LOSS", text__contains="selling").count() == 1


def test_an_operator_emergency_exit_closes_the_position(opened):
    gw, _, _, position = opened
    order_place(venue="paper", strategy="ops", symbol=BTC, side="sell", type="market", intent="emergency_exit",
                quantity=round_to_step(position.quantity, gw.rules(BTC).lot_step), trace_id="emergency-trace",
                tick_id="emergency-test", reason_code="EMERGENCY_EXIT")
    assert Order.objects.get(intent="emergency_exit").status == OrderStatus.FILLED
    stop_monitor_run(gateway=gw)
    position.refresh_from_db()
    assert position.status == "closed" and position.exit_reason == "EMERGENCY_EXIT"
    assert position.realised_pnl is not None
    assert not Order.objects.filter(intent__in=["stop_loss", "trailing_stop", "take_profit"]).exists()


def test_daily_summary_is_sent_once_per_hk_day(opened):
    gw, source, _, position = opened
    price(source, PositionStop.from_dict(position.stop_state).initial_stop - 1)
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    closed_at = StrategyPosition.objects.get().closed_at
    # 08:00 HK on the HK day after the one the position closed on (whatever the time of day the
    # test runs: between 16:00 and 24:00 UTC the HK day is already the next calendar day).
    hk_next_morning = hk_day_start_utc(closed_at) + timedelta(days=1, hours=8)
    summary = daily_summary_send(venue="paper", now=hk_next_morning)
    assert summary.sent and "Realised PnL" in summary.text and "1 closed position" in summary.text
    assert "STOP_LOSS 1" in summary.text and summary.trace_id in TelegramOutbox.objects.get(
        reason_code="DAILY_SUMMARY").text
    assert not daily_summary_send(venue="paper", now=hk_next_morning).sent
    assert TelegramOutbox.objects.filter(reason_code="DAILY_SUMMARY").count() == 1


def test_an_exit_never_sells_more_than_the_venue_holds(opened):
    gw, source, _, position = opened
    held = position.quantity
    # Our books say twice as much (e.g. a fill counted twice): sell what is really there.
    StrategyPosition.objects.filter(pk=position.pk).update(quantity=held * 2)
    price(source, PositionStop.from_dict(position.stop_state).initial_stop - 1)
    stop_monitor_run(gateway=gw)
    exit_order = exit_orders().get()
    assert exit_order.quantity == round_to_step(held, gw.rules(BTC).lot_step)
    assert exit_order.status == OrderStatus.FILLED


def test_vanished_holdings_stop_the_exits_and_alert(opened):
    gw, source, _, position = opened
    from trading.models import PaperBalance

    PaperBalance.objects.filter(asset="BTC").update(free=0)
    price(source, PositionStop.from_dict(position.stop_state).initial_stop - 1)
    stop_monitor_run(gateway=gw)
    stop_monitor_run(gateway=gw)
    assert not exit_orders().exists()
    assert TelegramOutbox.objects.filter(reason_code="EXIT_FAILED").count() == 1
