"""Position sizing: risk maths, caps, venue rounding and skips - all in Decimal."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from strategy.engines.sizing import DEFAULT_FEE_BUFFER, SizingCap, SizingSkip, round_to_step, size_position

BASE = {
    "equity": D("10000"),
    "free_quote": D("10000"),
    "entry_price": D("100"),
    "stop_price": D("98"),
    "risk_per_trade": D("0.005"),
    "max_position_notional": D("5000"),
    "lot_step": D("0.001"),
    "tick_size": D("0.01"),
    "min_qty": D("0.001"),
    "min_notional": D("5"),
}


def size(**overrides: D):
    return size_position(**{**BASE, **overrides})


def test_risk_amount_divided_by_stop_distance() -> None:
    # 10000 x 0.5% = 50 at risk; 2 per unit -> 25 units (notional 2500, under both caps)
    r = size()
    assert r.ok and r.quantity == D("25.000") and r.cap is SizingCap.RISK
    assert r.risk_amount == D("50.00000") and r.notional == D("2500.00000")


def test_capped_by_max_position_notional() -> None:
    r = size(stop_price=D("99.5"))            # risk would allow 100 units = 10000 notional
    # 5000 / (100 x 1.005): room for the fill's slippage and fee inside the cap
    assert r.cap is SizingCap.MAX_POSITION_NOTIONAL and r.quantity == D("49.751")
    assert r.notional * (1 + DEFAULT_FEE_BUFFER) <= BASE["max_position_notional"]


def test_a_notional_capped_entry_still_fits_the_cap_once_filled_with_slippage() -> None:
    # given a 1000 USDT cap and an entry sized at 100 that fills 2.4 bps higher (the trial's 1000.24)
    r = size(stop_price=D("99.9"), max_position_notional=D("1000"))
    fill_price = r.entry_price * (1 + D("0.00024"))
    # then the filled notional, and even the worst fill plus fee the sizing allows for, is within the cap
    assert r.cap is SizingCap.MAX_POSITION_NOTIONAL
    assert r.quantity * fill_price <= D("1000")
    assert r.quantity * r.entry_price * (1 + DEFAULT_FEE_BUFFER) <= D("1000")
    # and the cap is used, not wasted: one more lot would break it
    assert (r.quantity + BASE["lot_step"]) * r.entry_price * (1 + DEFAULT_FEE_BUFFER) > D("1000")


def test_capped_by_free_balance_minus_fee_buffer() -> None:
    r = size(free_quote=D("1000"))
    spendable = D("1000") * (1 - DEFAULT_FEE_BUFFER)
    assert r.cap is SizingCap.FREE_BALANCE
    assert r.quantity == D("9.950") and r.notional <= spendable


def test_quantity_is_rounded_down_to_the_lot_step() -> None:
    r = size(stop_price=D("97"), lot_step=D("0.1"))       # 50 / 3 = 16.666... -> 16.6
    assert r.quantity == D("16.6")
    assert r.quantity * (r.entry_price - r.stop_price) <= D("50")


def test_prices_rounded_to_tick_entry_up_and_stop_down() -> None:
    r = size(entry_price=D("100.004"), stop_price=D("98.006"))
    assert r.entry_price == D("100.01") and r.stop_price == D("98.00")


def test_below_min_qty_is_skipped() -> None:
    r = size(min_qty=D("30"))
    assert not r.ok and r.skip is SizingSkip.BELOW_MIN_QTY and r.quantity is None


def test_rounding_to_zero_is_below_min_qty() -> None:
    r = size(equity=D("1"), lot_step=D("1"), min_qty=D("0"), min_notional=D("0"))
    assert r.skip is SizingSkip.BELOW_MIN_QTY


def test_below_min_notional_is_skipped() -> None:
    r = size(equity=D("100"), min_notional=D("100"))      # 0.25 units x 100 = 25 < 100
    assert r.skip is SizingSkip.BELOW_MIN_NOTIONAL and r.notional == D("25.000")


@pytest.mark.parametrize("stop", [D("100"), D("101"), D("0"), D("-5"), D("0.001")])
def test_stop_not_below_entry_or_not_positive_is_invalid(stop: D) -> None:
    assert size(stop_price=stop).skip is SizingSkip.INVALID_STOP


@pytest.mark.parametrize("free", [D("0"), D("-1"), D("5")])
def test_nothing_to_pay_with_is_no_free_balance(free: D) -> None:
    # 5 USDT less the fee buffer cannot meet the 5 USDT minimum notional either.
    assert size(free_quote=free).skip is SizingSkip.NO_FREE_BALANCE


def test_no_equity_is_skipped() -> None:
    assert size(equity=D("0")).skip is SizingSkip.NO_EQUITY


@pytest.mark.parametrize("name", list(BASE))
def test_floats_are_refused(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        size(**{name: float(BASE[name])})


@pytest.mark.parametrize(
    "overrides",
    [{"risk_per_trade": D("0")}, {"risk_per_trade": D("1.5")}, {"lot_step": D("0")},
     {"tick_size": D("-0.01")},
     {"max_position_notional": D("0")}, {"min_qty": D("-1")}, {"entry_price": D("0")}, {"equity": D("NaN")}],
)
def test_impossible_configuration_raises(overrides: dict[str, D]) -> None:
    with pytest.raises(ValueError):
        size(**overrides)


def test_round_to_step() -> None:
    assert round_to_step(D("1.23456"), D("0.01")) == D("1.23")
    assert round_to_step(D("1.23456"), D("0.01"), up=True) == D("1.24")
    assert round_to_step(D("17"), D("5")) == D("15")
    assert str(round_to_step(D("2"), D("0.001"))) == "2.000"


def test_result_is_json_ready() -> None:
    d = size().to_dict()
    assert d["quantity"] == "25.000" and d["skip"] is None and d["cap"] == "RISK"


# --- properties ---------------------------------------------------------------------------

def decimals(lo: str, hi: str, places: int) -> st.SearchStrategy[D]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, deadline=None)
@given(
    equity=st.one_of(decimals("0.01", "1000", 2), decimals("1000", "10000000", 2)),
    free_quote=st.one_of(decimals("0", "100", 2), decimals("100", "10000000", 2)),
    entry=st.one_of(decimals("0.00001", "1", 5), decimals("1", "100000", 2)),
    stop_frac=decimals("0.5", "0.9999", 4),
    risk=decimals("0.0001", "0.05", 4),
    max_notional=decimals("1", "1000000", 2),
    lot_step=st.sampled_from([D("0.00001"), D("0.001"), D("0.1"), D("1"), D("5")]),
    tick=st.sampled_from([D("0.0001"), D("0.00000001"), D("0.01"), D("0.5")]),
    min_qty=st.one_of(st.just(D("0")), decimals("0", "0.01", 3), decimals("0", "10", 3)),
    min_notional=st.one_of(decimals("0", "10", 2), decimals("0", "100", 2)),
)
def test_sizing_never_breaks_a_limit(
    equity: D, free_quote: D, entry: D, stop_frac: D, risk: D, max_notional: D, lot_step: D, tick: D,
    min_qty: D, min_notional: D,
) -> None:
    # Mostly venue-like ticks (well below the price), sometimes coarse ones that break the stop.
    assume(tick * 1000 <= entry or entry < 1 and tick == D("0.00000001") or equity < 2)
    assume(lot_step * entry <= 100 or equity < 2)       # lots of at most ~100 USDT, like real venues
    r = size_position(
        equity=equity, free_quote=free_quote, entry_price=entry, stop_price=entry * stop_frac,
        risk_per_trade=risk, max_position_notional=max_notional, lot_step=lot_step, tick_size=tick,
        min_qty=min_qty, min_notional=min_notional,
    )
    # Prices: on the tick, entry never lower and stop never higher than asked
    assert r.entry_price % tick == 0 and r.entry_price >= entry
    if r.stop_price > 0:
        assert r.stop_price % tick == 0 and r.stop_price <= entry * stop_frac
    if not r.ok:
        assert r.quantity is None and r.skip in set(SizingSkip)
        return
    q = r.quantity
    assert isinstance(q, D) and q > 0
    assert q % lot_step == 0                                   # a lot-step multiple
    assert q >= min_qty and r.notional >= min_notional        # the venue would accept it
    assert r.notional == q * r.entry_price
    assert r.notional * (1 + DEFAULT_FEE_BUFFER) <= max_notional   # exposure cap, as filled at worst
    assert r.notional <= free_quote * (1 - DEFAULT_FEE_BUFFER)  # payable, fees included
    assert q * (r.entry_price - r.stop_price) <= equity * risk  # never more than the risk budget
    assert r.risk_amount == q * (r.entry_price - r.stop_price)
