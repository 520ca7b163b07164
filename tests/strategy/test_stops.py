"""Exit rules: initial stop, ratcheting trailing stop, take-profit."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy.engines.stops import ExitReason, PositionStop, evaluate_exit


def fresh() -> PositionStop:
    # entry 100, stop 96 (2 x ATR 2), R = 4, target 100 + 3R = 112
    return PositionStop.open(entry_price=D("100"), stop_price=D("96"))


def run(state: PositionStop, prices: list[str]) -> tuple[PositionStop, list[ExitReason]]:
    reasons = []
    for p in prices:
        check = evaluate_exit(state, D(p))
        state = check.state
        reasons.append(check.reason_code)
    return state, reasons


def test_open_sets_target_at_three_r_and_trail_at_r() -> None:
    s = fresh()
    assert s.take_profit_price == D("112") and s.trail_distance == D("4") and s.stop_price == D("96")
    assert not s.trailing_active


def test_price_at_the_untouched_initial_stop_is_stop_loss() -> None:
    state, reasons = run(fresh(), ["99", "97.5", "96"])
    assert reasons == [ExitReason.HOLD, ExitReason.HOLD, ExitReason.STOP_LOSS]
    assert state.stop_price == D("96")


def test_stop_trails_the_high_and_a_pullback_is_trailing_stop() -> None:
    state, reasons = run(fresh(), ["103", "108", "105", "104"])
    # high 108 -> stop 104; 105 holds; 104 touches it
    assert reasons == [ExitReason.HOLD, ExitReason.HOLD, ExitReason.HOLD, ExitReason.TRAILING_STOP]
    assert state.stop_price == D("104") and state.highest_price == D("108")


def test_target_reached_is_take_profit() -> None:
    _, reasons = run(fresh(), ["105", "112"])
    assert reasons[-1] is ExitReason.TAKE_PROFIT


def test_stop_never_moves_down_when_price_falls() -> None:
    state, _ = run(fresh(), ["107"])
    assert state.stop_price == D("103")
    check = evaluate_exit(state, D("103.5"))
    assert check.reason_code is ExitReason.HOLD and check.stop_price == D("103")


def test_current_atr_can_tighten_but_never_loosen() -> None:
    state, _ = run(fresh(), ["108"])                         # stop 104
    wider = evaluate_exit(state, D("107"), atr=D("5"))       # 108 - 10 = 98 < 104: ignored
    assert wider.stop_price == D("104") and wider.reason_code is ExitReason.HOLD
    tighter = evaluate_exit(state, D("107"), atr=D("0.5"))   # 108 - 1 = 107: raised, and hit
    assert tighter.stop_price == D("107") and tighter.reason_code is ExitReason.TRAILING_STOP


def test_nonpositive_atr_is_ignored() -> None:
    state, _ = run(fresh(), ["108"])
    assert evaluate_exit(state, D("107"), atr=D("0")).stop_price == D("104")


@pytest.mark.parametrize("price", [D("0"), D("-1"), D("NaN"), 101.0, None])
def test_unusable_price_holds_without_touching_state(price: object) -> None:
    s = fresh()
    check = evaluate_exit(s, price)  # type: ignore[arg-type]
    assert check.reason_code is ExitReason.BAD_PRICE and not check.exit and check.state == s


def test_state_round_trips_through_json() -> None:
    state, _ = run(fresh(), ["108.5"])
    assert PositionStop.from_dict(state.to_dict()) == state


@pytest.mark.parametrize(
    "kwargs",
    [{"entry_price": D("100"), "stop_price": D("100")}, {"entry_price": D("100"), "stop_price": D("0")},
     {"entry_price": D("100"), "stop_price": D("101")}],
)
def test_impossible_positions_are_rejected(kwargs: dict[str, D]) -> None:
    with pytest.raises(ValueError):
        PositionStop.open(**kwargs)


def test_floats_are_rejected() -> None:
    with pytest.raises(TypeError):
        PositionStop.open(entry_price=100.0, stop_price=D("96"))  # type: ignore[arg-type]


prices = st.decimals(D("50"), D("200"), places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(path=st.lists(prices, min_size=1, max_size=60), atrs=st.lists(
    st.one_of(st.none(), st.decimals(D("0.1"), D("10"), places=2)), min_size=60, max_size=60))
def test_trailing_stop_only_ever_rises(path: list[D], atrs: list[D | None]) -> None:
    state = fresh()
    for price, atr in zip(path, atrs, strict=False):
        check = evaluate_exit(state, price, atr)
        new = check.state
        # Then the stop never drops, the high never drops, and the reason matches the numbers
        assert new.stop_price >= state.stop_price
        assert new.highest_price == max(state.highest_price, price)
        if price <= new.stop_price:
            expected = ExitReason.TRAILING_STOP if new.stop_price > new.initial_stop else ExitReason.STOP_LOSS
            assert check.reason_code is expected
        elif price >= new.take_profit_price:
            assert check.reason_code is ExitReason.TAKE_PROFIT
        else:
            assert check.reason_code is ExitReason.HOLD and not check.exit
        state = new
