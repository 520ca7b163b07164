"""The backtest's shortcut for the sizings that end before anything is sized (a shrunken account
turns most entry signals into NO_FREE_BALANCE) gives exactly the reason code the full
``size_position`` - the live tick's function - returns, on many random inputs."""

from __future__ import annotations

import math
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.engine import _d, _Sizer
from strategy.engines.sizing import SizingSkip, size_position
from trading.exchanges.base import MarketRules

RISK, CAP = D("0.005"), D("1000")


def decimals(lo: str, hi: str, places: int) -> st.SearchStrategy[D]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


# The last two are outside the shortcut (an exponent > 0, 16 digits): always rounded.
TICKS = ["0.01", "0.1", "1", "0.00001", "0.003", "0.5", "25", "1E+1", "0.1234567890123456"]


def rules_for(tick: str, lot: str, min_notional: str) -> MarketRules:
    return MarketRules(symbol="X/USDT", venue_symbol="XUSDT", base="X", quote="USDT", tick_size=D(tick),
                       lot_step=D(lot), min_qty=D(lot), min_notional=D(min_notional))


# Prices as floats (the engine's candles; the full call gets ``Decimal(repr(x))`` of them), and
# stops within a hair of 0, 1 and 2 ticks below the entry, where rounding decides INVALID_STOP.
price_st = st.one_of(st.floats(1e-6, 1e6, allow_nan=False), decimals("-1", "200", 3).map(float),
                     st.sampled_from([0.0, -0.0, math.inf, math.nan, 1e40]))
free_st = st.one_of(decimals("-50", "200", 8), decimals("0", "1e7", 2), st.sampled_from([D(0), D("-0"), D("5.025")]))


@st.composite
def sizing_inputs(draw: st.DrawFn) -> tuple[MarketRules, D, float, float]:
    rules = rules_for(draw(st.sampled_from(TICKS)), draw(st.sampled_from(["0.001", "1", "0.00001"])),
                      draw(st.sampled_from(["0", "5", "10", "100"])))
    entry = draw(price_st)
    if draw(st.booleans()):
        stop = draw(price_st)
    else:
        stop = entry - draw(st.sampled_from([0, 1, 2, 3])) * float(rules.tick_size)
        for _ in range(draw(st.integers(0, 3))):
            stop = math.nextafter(stop, draw(st.sampled_from([-math.inf, math.inf])))
    return rules, draw(free_st), entry, stop


@settings(max_examples=4000, deadline=None)
@given(inputs=sizing_inputs(), equity=decimals("0.01", "1e7", 6), repeat=st.booleans())
def test_the_shortcut_gives_the_full_sizings_skip_or_defers_to_it(inputs, equity, repeat) -> None:
    rules, free_quote, entry, stop = inputs
    sizer = _Sizer()
    sizer.rules_checked.add(0)

    def outcome(call):
        try:
            return call()
        except (ValueError, ArithmeticError) as exc:   # an entry of 1e40 ticks is past the 50-digit rounding
            return type(exc)

    def shortcut():
        return sizer.early(0, rules, free_quote=free_quote, entry=entry, stop=stop, equity_positive=True)

    if repeat:                                          # the memoised spendable balance is the same value
        outcome(shortcut)
    quick = outcome(shortcut)
    full = outcome(lambda: size_position(
        equity=equity, free_quote=free_quote, entry_price=_d(entry), stop_price=_d(stop), risk_per_trade=RISK,
        max_position_notional=CAP, lot_step=rules.lot_step, tick_size=rules.tick_size, min_qty=rules.min_qty,
        min_notional=rules.min_notional))
    if isinstance(full, type):
        assert quick in (None, full)                    # the same error, or the full call makes it
    elif quick is not None:
        assert quick == full.skip
        assert quick in (SizingSkip.INVALID_STOP, SizingSkip.NO_FREE_BALANCE)
    else:
        # Deferred only when the full call goes on to size (or stops at INVALID_STOP with money to spend)
        assert full.skip not in (SizingSkip.NO_FREE_BALANCE, SizingSkip.NO_EQUITY)


def test_the_shortcut_waits_for_a_full_call_to_accept_the_rules_and_for_a_positive_equity() -> None:
    rules = rules_for("0.01", "0.001", "5")
    broke = {"free_quote": D("1"), "entry": 100.0, "stop": 98.0}
    sizer = _Sizer()
    assert sizer.early(0, rules, **broke, equity_positive=True) is None       # rules not yet validated
    sizer.rules_checked.add(0)
    assert sizer.early(0, rules, **broke, equity_positive=False) is None      # NO_EQUITY is the full call's
    assert sizer.early(0, rules, **broke, equity_positive=True) is SizingSkip.NO_FREE_BALANCE
    assert sizer.early(0, rules, **{**broke, "stop": 0.001}, equity_positive=True) is (
        SizingSkip.INVALID_STOP)                        # rounds down to 0 on the 0.01 tick: checked first
    assert sizer.early(0, rules, **{**broke, "stop": 99.995}, equity_positive=True) is (
        SizingSkip.NO_FREE_BALANCE)                     # within two ticks: rounded (99.99 < 100), valid
    assert sizer.early(0, rules, **{**broke, "stop": 100.0}, equity_positive=True) is (
        SizingSkip.INVALID_STOP)
    assert sizer.early(0, rules, **{**broke, "free_quote": D("6")}, equity_positive=True) is None   # it sizes
