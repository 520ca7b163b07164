"""Fixed-fractional position sizing, in Decimal.

    qty = (equity x risk_per_trade) / (entry - stop)

so that being stopped out at ``stop`` loses at most ``risk_per_trade`` of equity. Then:

* capped by ``max_position_notional`` (per-position exposure limit from config) for the
  notional as it will FILL: a market buy fills above the price sized at, so the cap holds for
  ``entry x (1 + fee_buffer)``, the worst fill price plus fee this module assumes. (Capping at
  ``entry`` alone let a 1000 cap fill at 1000.24 once 2.4 bps of slippage were added.)
* capped by what the free quote balance can pay for, minus a fee buffer (below);
* rounded DOWN to the venue's lot step - rounding up could exceed the risk or the balance;
* skipped, with a reason code, when the result is below the venue's minimum quantity or
  minimum notional (the venue would reject it; better to record why here).

Prices are rounded to the tick before the maths: the entry UP and the stop DOWN. Both make
the per-unit risk (entry - stop) larger and the notional estimate larger, so the rounded
quantity can only be smaller: the risk and caps hold for the prices actually used.

Everything is Decimal - floats are rejected - because these numbers become an order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from enum import StrEnum

# The venue's lot / tick rounding, defined once beside the market rules it applies.
from trading.exchanges.base import round_to_step

__all__ = [
    "DEFAULT_FEE_BUFFER", "SizingCap", "SizingResult", "SizingSkip", "early_skip", "lacks_free_balance",
    "round_to_step", "rounded_levels", "size_position", "spendable_quote",
]

# Fraction of the free quote balance that is never spent on an entry. A market buy is
# charged a taker fee (0.1% on Binance/Bybit spot at the base tier) and fills at a price
# that may be a little worse than the one we sized at; 0.5% covers the fee plus ~0.4% of
# slippage, so a balance-capped order does not bounce with "insufficient balance", and a
# notional-capped one does not fill above max_position_notional.
DEFAULT_FEE_BUFFER = Decimal("0.005")

# Enough digits that no intermediate of realistic inputs (1e12 equity, 1e-12 steps) is
# rounded before the explicit lot/tick rounding.
_PRECISION = 50
_ZERO = Decimal(0)
_ONE = Decimal(1)


class SizingSkip(StrEnum):
    INVALID_STOP = "INVALID_STOP"                # stop >= entry, or <= 0 after tick rounding
    NO_FREE_BALANCE = "NO_FREE_BALANCE"          # nothing (after the fee buffer) to pay with
    NO_EQUITY = "NO_EQUITY"                      # equity <= 0: nothing to risk
    BELOW_MIN_QTY = "BELOW_MIN_QTY"
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"


class SizingCap(StrEnum):
    """Which limit decided the quantity (for ``tbot diagnose``)."""

    RISK = "RISK"
    MAX_POSITION_NOTIONAL = "MAX_POSITION_NOTIONAL"
    FREE_BALANCE = "FREE_BALANCE"


@dataclass(frozen=True)
class SizingResult:
    """Either ``quantity`` is set (``skip`` is None) or ``skip`` says why not.

    ``entry_price`` / ``stop_price`` are the tick-rounded prices the sizing used;
    ``risk_amount`` is ``quantity x (entry - stop)`` at those prices.
    """

    quantity: Decimal | None
    skip: SizingSkip | None
    entry_price: Decimal
    stop_price: Decimal
    notional: Decimal
    risk_amount: Decimal
    cap: SizingCap | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.skip is None

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready; Decimals as strings (house rule for anything that crosses a boundary)."""
        return {
            "quantity": None if self.quantity is None else str(self.quantity),
            "skip": None if self.skip is None else str(self.skip),
            "entry_price": str(self.entry_price),
            "stop_price": str(self.stop_price),
            "notional": str(self.notional),
            "risk_amount": str(self.risk_amount),
            "cap": None if self.cap is None else str(self.cap),
            "detail": self.detail,
        }


def _require_decimal(name: str, value: object) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return value




def size_position(
    *,
    equity: Decimal,
    free_quote: Decimal,
    entry_price: Decimal,
    stop_price: Decimal,
    risk_per_trade: Decimal,
    max_position_notional: Decimal,
    lot_step: Decimal,
    tick_size: Decimal,
    min_qty: Decimal,
    min_notional: Decimal,
    fee_buffer: Decimal = DEFAULT_FEE_BUFFER,
) -> SizingResult:
    """Quantity for a long spot entry, or a skip with a reason code (see module docstring).

    Raises TypeError for non-Decimal arguments and ValueError for impossible configuration
    (risk_per_trade not in (0, 1], non-positive steps or caps, negative minimums): those are
    bugs or bad config, and must stop the tick instead of being traded around.
    """
    for name, value in (
        ("equity", equity), ("free_quote", free_quote), ("entry_price", entry_price), ("stop_price", stop_price),
        ("risk_per_trade", risk_per_trade), ("max_position_notional", max_position_notional),
        ("lot_step", lot_step), ("tick_size", tick_size), ("min_qty", min_qty), ("min_notional", min_notional),
        ("fee_buffer", fee_buffer),
    ):
        if type(value) is not Decimal or not value.is_finite():    # the common case in one test
            _require_decimal(name, value)
    if not _ZERO < risk_per_trade <= _ONE:
        raise ValueError(f"risk_per_trade must be in (0, 1], got {risk_per_trade}")
    if lot_step <= 0 or tick_size <= 0:
        raise ValueError(f"lot_step and tick_size must be > 0, got {lot_step}, {tick_size}")
    if max_position_notional <= 0:
        raise ValueError(f"max_position_notional must be > 0, got {max_position_notional}")
    if min_qty < 0 or min_notional < 0:
        raise ValueError(f"min_qty and min_notional must be >= 0, got {min_qty}, {min_notional}")
    if not _ZERO <= fee_buffer < _ONE:
        raise ValueError(f"fee_buffer must be in [0, 1), got {fee_buffer}")
    if entry_price <= 0:
        raise ValueError(f"entry_price must be > 0, got {entry_price}")

    # All arithmetic below at high precision, so products such as qty x entry are exact for
    # realistic inputs and the "never above the cap" checks hold to the last digit.
    with localcontext(prec=_PRECISION):
        return _size(
            equity=equity, free_quote=free_quote, entry_price=entry_price, stop_price=stop_price,
            risk_per_trade=risk_per_trade, max_position_notional=max_position_notional, lot_step=lot_step,
            tick_size=tick_size, min_qty=min_qty, min_notional=min_notional, fee_buffer=fee_buffer,
        )


def rounded_levels(entry_price: Decimal, stop_price: Decimal, tick_size: Decimal) -> tuple[Decimal, Decimal]:
    """(entry, stop) on the tick as the sizing uses them: the entry rounded UP, a positive stop DOWN."""
    entry = round_to_step(entry_price, tick_size, up=True)
    stop = round_to_step(stop_price, tick_size) if stop_price > 0 else stop_price
    return entry, stop


def spendable_quote(free_quote: Decimal, fee_buffer: Decimal = DEFAULT_FEE_BUFFER) -> Decimal:
    """What an entry may spend of ``free_quote``: the balance less the fee buffer, computed as
    ``size_position`` computes it (same precision)."""
    with localcontext(prec=_PRECISION):
        return _spendable(free_quote, fee_buffer)


def _spendable(free_quote: Decimal, fee_buffer: Decimal) -> Decimal:
    return free_quote * (Decimal(1) - fee_buffer)


def early_skip(*, entry: Decimal, stop: Decimal, equity_positive: bool, spendable: Decimal,
               min_notional: Decimal) -> SizingSkip | None:
    """The skips ``size_position`` decides before it sizes anything, in its order: INVALID_STOP
    (on the ``rounded_levels``), NO_EQUITY, NO_FREE_BALANCE (on ``spendable_quote``); None when
    it goes on to size. Shared so that a caller sizing many times (the backtest) can tell those
    cases apart without a full sizing; it must have the inputs ``size_position`` validates
    already checked (Decimal, finite, valid rules)."""
    if stop <= 0 or stop >= entry:
        return SizingSkip.INVALID_STOP
    if not equity_positive:
        return SizingSkip.NO_EQUITY
    if lacks_free_balance(spendable, min_notional):
        return SizingSkip.NO_FREE_BALANCE
    return None


def lacks_free_balance(spendable: Decimal, min_notional: Decimal) -> bool:
    """The NO_FREE_BALANCE test on ``spendable_quote``: nothing left, or less than the venue's minimum order."""
    return spendable <= 0 or spendable < min_notional


def _size(
    *, equity: Decimal, free_quote: Decimal, entry_price: Decimal, stop_price: Decimal,
    risk_per_trade: Decimal, max_position_notional: Decimal, lot_step: Decimal, tick_size: Decimal,
    min_qty: Decimal, min_notional: Decimal, fee_buffer: Decimal,
) -> SizingResult:
    zero = Decimal(0)
    entry, stop = rounded_levels(entry_price, stop_price, tick_size)

    def skip(
        reason: SizingSkip, detail: str, qty: Decimal = zero, cap: SizingCap | None = None,
    ) -> SizingResult:
        return SizingResult(
            quantity=None, skip=reason, entry_price=entry, stop_price=stop, notional=qty * entry,
            risk_amount=qty * max(entry - stop, zero), cap=cap, detail=detail,
        )

    spendable = _spendable(free_quote, fee_buffer)
    early = early_skip(entry=entry, stop=stop, equity_positive=equity > 0, spendable=spendable,
                       min_notional=min_notional)
    if early is SizingSkip.INVALID_STOP:
        return skip(early, f"stop {stop} must be > 0 and below entry {entry}")
    if early is SizingSkip.NO_EQUITY:
        return skip(early, f"equity {equity}")
    if early is SizingSkip.NO_FREE_BALANCE:
        return skip(
            early, f"free {free_quote} less {fee_buffer} fee buffer = {spendable} < min notional {min_notional}",
        )
    per_unit_risk = entry - stop
    worst_fill = entry * (Decimal(1) + fee_buffer)   # slippage and fee the buffer allows for
    candidates = {
        SizingCap.RISK: equity * risk_per_trade / per_unit_risk,
        SizingCap.MAX_POSITION_NOTIONAL: max_position_notional / worst_fill,
        SizingCap.FREE_BALANCE: spendable / entry,
    }
    # Ties go to the first listed (RISK): the sizing is then "as intended".
    cap = min(candidates, key=lambda k: candidates[k])
    qty = round_to_step(candidates[cap], lot_step)
    notional = qty * entry

    if qty <= 0 or qty < min_qty:
        return skip(SizingSkip.BELOW_MIN_QTY, f"qty {qty} < min qty {min_qty} (limited by {cap})", qty, cap)
    if notional < min_notional:
        return skip(
            SizingSkip.BELOW_MIN_NOTIONAL, f"notional {notional} < min notional {min_notional}", qty, cap,
        )
    return SizingResult(
        quantity=qty, skip=None, entry_price=entry, stop_price=stop, notional=notional,
        risk_amount=qty * per_unit_risk, cap=cap,
    )
