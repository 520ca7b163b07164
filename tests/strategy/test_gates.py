"""Every risk gate blocks an entry signal with its own reason code, and places no order."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest

from infra.clock import hk_day_start_utc, ms_to_datetime
from strategy.models import StrategyDecision, StrategyPosition
from strategy.services.tick import tick_run
from syncer.services import tick_candles_sync, venue_rate_limited_set
from tests.strategy.test_tick import CLOSE, TF, TICK, UNIVERSE, configure, scripted_market
from tests.support.markets import ManualClock, paper_gateway
from tests.trading.factories import equity_snapshot
from trading.client_ids import make_client_order_id
from trading.config_schema import config_get
from trading.exchanges.errors import RateLimitedError, TransientError
from trading.models import AuditLog, Order
from trading.selectors import is_halted
from trading.services import lifecycle
from trading.services.control import trading_halt
from trading.services.lifecycle import NewOrder, order_create

pytestmark = pytest.mark.django_db
_n = itertools.count()


@pytest.fixture
def gw(db, redis_client, monkeypatch):
    configure(universe=UNIVERSE, timeframe="1m")
    clock = ManualClock(CLOSE + 1_000)
    gateway = paper_gateway(source=scripted_market(), clock=clock, universe=lambda: config_get().universe)
    monkeypatch.setattr("trading.exchanges.factory._gateway", gateway)
    return gateway


def tick(gw, **kw) -> StrategyDecision:
    """Run the tick; return BTC's decision (BTC has the entry signal)."""
    tick_run(tick_id=TICK, gateway=gw, now_ms=kw.pop("now_ms", CLOSE + 1_000), **kw)
    assert StrategyDecision.objects.filter(tick_id=TICK).count() == len(UNIVERSE)
    return StrategyDecision.objects.get(tick_id=TICK, symbol="BTC/USDT")


def order(symbol: str, *, intent: str = "entry", side: str = "buy") -> Order:
    o, _ = order_create(new=NewOrder(
        client_order_id=make_client_order_id(strategy="blite", symbol=symbol, tick_id=f"T{next(_n)}", intent=intent),
        venue="paper", strategy="blite", symbol=symbol, side=side, type="market", intent=intent,
        quantity=Decimal(1), trace_id="test"))
    return o


def position(symbol: str, *, status: str = "open", **fields) -> StrategyPosition:
    entry = order(symbol)
    lifecycle.order_mark_canceled(order_id=entry.pk, source="system", reason_code="TEST")   # final: not "unresolved"
    state = {"entry_price": "100", "initial_stop": "99", "stop_price": "99", "take_profit_price": "103",
             "highest_price": "100", "trail_distance": "1", "atr_multiple": "2"}
    return StrategyPosition.objects.create(
        strategy="blite", venue="paper", symbol=symbol, entry_order=entry, tick_id="T", trace_id="t",
        quantity=Decimal(1), entry_price=Decimal(100), stop_state=state, status=status,
        opened_at=ms_to_datetime(CLOSE) - timedelta(hours=1), **fields)


def assert_blocked(decision: StrategyDecision, code: str) -> None:
    assert (decision.decision, decision.reason_code) == ("blocked", code)
    assert decision.inputs["gate"]["blocked_by"] == code and decision.inputs["gate"]["detail"]
    assert decision.inputs["engine"]["reason_code"] == "ENTRY_SIGNAL"       # the strategy did want in
    assert not Order.objects.filter(tick_id=TICK).exists()


def test_without_any_gate_the_signal_enters(gw):
    assert tick(gw).decision == "enter"


def test_halted(gw):
    trading_halt(actor="ops", source="cli", reason_code="MANUAL_HALT", reason="maintenance", trace_id="h1")
    assert_blocked(tick(gw), "HALTED")


def test_max_open_positions(gw):
    for symbol in ("ADA/USDT", "DOGE/USDT", "LTC/USDT"):
        position(symbol)
    assert_blocked(tick(gw), "MAX_POSITIONS")


def test_entry_orders_in_flight_count_as_positions(gw):
    configure(max_open_positions=1)
    order("ADA/USDT")                                # pending entry, no fills yet
    assert_blocked(tick(gw), "MAX_POSITIONS")


def test_daily_loss_limit_halts_trading_automatically(gw):
    # The HK day began with 10,250; the account is worth 10,000 now: 250 lost today is more than
    # 2% of the day's starting equity.
    equity_snapshot(taken_at=hk_day_start_utc(ms_to_datetime(CLOSE)) - timedelta(seconds=20), equity="10250")
    assert_blocked(tick(gw), "DAILY_LOSS_LIMIT")
    halt = is_halted()
    assert halt.halted and halt.reason_code == "DAILY_LOSS_LIMIT" and halt.by == "risk"
    audit = AuditLog.objects.get(action="trading.halt")
    assert (audit.actor, audit.source, audit.reason_code) == ("risk", "system", "DAILY_LOSS_LIMIT")
    daily = StrategyDecision.objects.get(tick_id=TICK, symbol="BTC/USDT").inputs["daily_pnl"]
    assert (Decimal(daily["equity_start"]), Decimal(daily["total"])) == (Decimal(10250), Decimal(-250))


def test_yesterdays_losses_do_not_count_against_today(gw):
    # CLOSE is 11:14 in Hong Kong. Yesterday the account fell from 10,250 to 10,000; today it
    # began with 10,000 and still has it.
    day_start = hk_day_start_utc(ms_to_datetime(CLOSE))
    equity_snapshot(taken_at=day_start - timedelta(hours=20), equity="10250")
    equity_snapshot(taken_at=day_start - timedelta(seconds=30), equity="10000")
    assert tick(gw).decision == "enter" and not is_halted().halted


def test_a_position_held_over_hk_midnight_counts_only_what_it_moved_today(db, redis_client, monkeypatch):
    # Given ETH bought yesterday far above today's price (a large whole-life loss), but worth
    # more now than at HK midnight: today's PnL is positive, the daily limit is not touched.
    configure(universe=UNIVERSE, timeframe="1m")
    gateway = paper_gateway(source=scripted_market(), clock=ManualClock(CLOSE + 1_000),
                            universe=lambda: config_get().universe,
                            balances={"USDT": Decimal(5000), "ETH": Decimal(2)})
    monkeypatch.setattr("trading.exchanges.factory._gateway", gateway)
    eth = gateway.fetch_ticker("ETH/USDT").last
    held = position("ETH/USDT")
    StrategyPosition.objects.filter(pk=held.pk).update(quantity=Decimal(2), entry_price=eth * 10,
                                                       opened_at=ms_to_datetime(CLOSE) - timedelta(hours=30))
    # At HK midnight the two ETH were marked a little lower than now.
    equity_snapshot(taken_at=hk_day_start_utc(ms_to_datetime(CLOSE)) - timedelta(seconds=10),
                    equity=str(5000 + 2 * eth * Decimal("0.99")))
    # When the tick runs
    tick_run(tick_id=TICK, gateway=gateway, now_ms=CLOSE + 1_000)
    # Then nothing halts, and the day's PnL is the ETH's move since midnight, not since entry.
    assert not is_halted().halted
    daily = StrategyDecision.objects.get(tick_id=TICK, symbol="BTC/USDT").inputs["daily_pnl"]
    assert Decimal(daily["total"]) > 0


def test_cooldown_after_a_stop_on_that_symbol(gw):
    position("BTC/USDT", status="closed", realised_pnl=Decimal(-5), exit_reason="STOP_LOSS",
             exit_triggered_at=ms_to_datetime(CLOSE - 2 * TF), closed_at=ms_to_datetime(CLOSE - 2 * TF))
    assert_blocked(tick(gw), "COOLDOWN")


def test_no_cooldown_once_it_has_passed_or_after_a_take_profit(gw):
    position("BTC/USDT", status="closed", realised_pnl=Decimal(5), exit_reason="TAKE_PROFIT",
             exit_triggered_at=ms_to_datetime(CLOSE - TF), closed_at=ms_to_datetime(CLOSE - TF))
    position("BTC/USDT", status="closed", realised_pnl=Decimal(-5), exit_reason="STOP_LOSS",
             exit_triggered_at=ms_to_datetime(CLOSE - 10 * TF), closed_at=ms_to_datetime(CLOSE - 10 * TF))
    assert tick(gw).decision == "enter"


def test_a_tick_running_too_late_is_stale(gw):
    # stale_data_after_candles = 2: three minutes after the close the tick must not enter.
    assert_blocked(tick(gw, now_ms=CLOSE + 3 * TF), "STALE_DATA")


def test_venue_rate_limited(gw):
    # The tick's candles were synced; then the venue answered 429 to another call: the syncer's
    # back-off key is what the gate reads.
    tick_candles_sync(tick_id=TICK, timeframe="1m", close_ms=CLOSE, gateway=gw)
    venue_rate_limited_set(venue="paper", exc=RateLimitedError("429", venue="paper", retry_after_s=60))
    assert_blocked(tick(gw), "VENUE_UNHEALTHY")


def test_venue_failing_to_answer_balances(gw, monkeypatch):
    def down():
        raise TransientError("503 Service Unavailable", venue="paper")

    monkeypatch.setattr(gw, "fetch_balances", down)
    decision = tick(gw)
    assert_blocked(decision, "VENUE_UNHEALTHY")
    assert "503" in decision.inputs["gate"]["detail"]


def test_unresolved_orders_on_the_symbol(gw):
    o = order("BTC/USDT", intent="manual", side="sell")
    lifecycle.order_mark_submitting(order_id=o.pk)
    lifecycle.order_mark_submit_unknown(order_id=o.pk, error="timeout")
    assert_blocked(tick(gw), "UNRESOLVED_ORDERS")


def test_already_in_a_position_holds(gw):
    position("BTC/USDT")
    decision = tick(gw)
    assert (decision.decision, decision.reason_code) == ("hold", "IN_POSITION")
    assert not Order.objects.filter(tick_id=TICK).exists()


def test_sizing_below_the_venue_minimum_is_blocked_with_its_reason(gw):
    configure(max_position_notional="1")             # 1 USDT: below the 5 USDT min notional
    decision = tick(gw)
    assert (decision.decision, decision.reason_code) == ("blocked", "BELOW_MIN_QTY") or \
        (decision.decision, decision.reason_code) == ("blocked", "BELOW_MIN_NOTIONAL")
    assert decision.inputs["sizing"]["skip"] == decision.reason_code
    assert not Order.objects.exists()


def test_redis_down_fails_the_tick_closed(gw, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"      # nothing listens there
    with pytest.raises(Exception, match="(?i)connect"):
        tick_run(tick_id=TICK, gateway=gw, now_ms=CLOSE + 1_000)
    assert not StrategyDecision.objects.exists() and not Order.objects.exists()


def test_a_halt_that_commits_while_the_tick_runs_blocks_its_entries(gw, monkeypatch):
    # Given the tick has read the halt state (running) and is about to write its entries ...
    from strategy.services import tick as tick_module

    read_context = tick_module._context

    def context_then_an_emergency_halt(*args, **kwargs):
        ctx = read_context(*args, **kwargs)
        assert not ctx.halted
        # ... when an operator's emergency exit halts trading at exactly that moment
        trading_halt(actor="ops", source="api", reason_code="EMERGENCY", reason="flatten now", trace_id="em")
        return ctx

    monkeypatch.setattr(tick_module, "_context", context_then_an_emergency_halt)
    # Then the entry is blocked by the committed halt and no order exists
    decision = tick(gw)
    assert (decision.decision, decision.reason_code) == ("blocked", "HALTED")
    assert "halted during the tick" in decision.inputs["gate"]["detail"]
    assert not Order.objects.filter(tick_id=TICK).exists()
