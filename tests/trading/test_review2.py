"""Second hostile review of the money path (gates/sizing refactor, venue-stop fixes after
2e1dc4f). Each test here proves a defect found in that review and FAILS until it is fixed.

Real PostgreSQL and Redis, the real services; the venue is ``ModelVenue`` (tests/support),
instrumented only to interrupt one call, as tests/trading/test_emergency_exit_races.py does.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.models import TelegramOutbox
from tests.support.venue_model import ModelVenue, default_markets
from trading.exchanges.base import round_to_step
from trading.models import EmergencyExitRun, Order, OrderStatus
from trading.selectors import expected_holdings
from trading.services.emergency import emergency_exit
from trading.services.orders import order_place
from trading.services.submission import order_submit

BTC = "BTC/USDT"


@pytest.mark.django_db(transaction=True)
def test_an_emergency_exit_interrupted_before_it_sold_anything_is_not_reported_flat(redis_client):
    """Scenario: the operator runs ``tbot emergency-exit`` (in-process) and presses Ctrl-C - or the
    process is told to exit - while it is canceling our resting stop. Nothing has been sold; our
    BTC is still held. The ``finally`` added in 2e1dc4f computes ``flat`` from a report that never
    got to its read-back: no remaining, no unresolved, and no error (``except Exception`` does not
    see a KeyboardInterrupt / SystemExit), so the run is stored ``flat: true`` and Telegram says
    "EMERGENCY EXIT ...: FLAT". Before the change the run was simply left unfinished.

    Root cause: ``flat`` is derived in ``finally`` for every way out, including a BaseException
    that skipped both the selling and the read-back ("flat is a fact read back from the venue,
    never assumed")."""
    venue = ModelVenue("binance", balances={"USDT": Decimal(100_000)}, markets=default_markets(),
                       prices={BTC: Decimal(30_000), "ETH/USDT": Decimal(2_000), "SOL/USDT": Decimal(150),
                               "BNB/USDT": Decimal(600), "XRP/USDT": Decimal("0.5")})

    def place(**kw) -> Order:
        order, _ = order_place(venue="binance", strategy="blite", symbol=BTC, type=kw.pop("type", "market"),
                               enqueue=False, **kw)
        return order

    # Given our filled entry (0.01 BTC) and its resting venue stop
    entry = order_submit(order_id=place(side="buy", intent="entry", quantity=Decimal("0.01"), trace_id="r2-e",
                                        tick_id="E1").pk, gateway=venue)
    assert entry.status == OrderStatus.FILLED
    stop = order_submit(order_id=place(side="sell", intent="stop_loss", type="stop_market",
                                       quantity=Decimal("0.0099"), stop_price=Decimal("25000.00"),
                                       trace_id="r2-s", tick_id="E1").pk, gateway=venue)
    assert stop.status == OrderStatus.ACCEPTED

    def interrupted(symbol, client_order_id):
        raise KeyboardInterrupt          # Ctrl-C while the cancel request is on its way

    venue.cancel_order = interrupted

    # When the emergency exit is interrupted half way
    with pytest.raises(KeyboardInterrupt):
        emergency_exit(actor="ops", source="cli", reason_code="INCIDENT", reason="review", flatten_all=False,
                       trace_id="r2-interrupted", gateway=venue)

    # Then nothing was sold and BTC is still ours ...
    assert not Order.objects.filter(intent="emergency_exit").exists()
    assert expected_holdings("binance").get("BTC", Decimal(0)) > Decimal("0.009")
    # ... so neither the stored run nor the operator's Telegram message may say it is flat.
    run = EmergencyExitRun.objects.get(trace_id="r2-interrupted")
    assert run.report is None or run.report.get("flat") is not True, run.report
    messages = [m.text for m in TelegramOutbox.objects.filter(trace_id="r2-interrupted")]
    assert not any(": FLAT." in text for text in messages), messages


def test_round_to_step_shows_the_decimals_of_the_step_it_was_given_not_of_an_equal_cached_one():
    """Scenario: rules read as ``0.01`` for one market and ``0.0100`` for another (or a backtest's
    rules vs the live venue's), both in one process. ``round_to_step`` promises "as many decimals
    as the step has (0.010 step -> 3 places)" and did so before the refactor; now
    ``_step_quantum`` is ``lru_cache``d, and ``Decimal("0.01") == Decimal("0.0100")`` with equal
    hashes, so whichever step was seen first decides the exponent for both: the same call returns
    ``1.23`` or ``1.2300`` depending on what ran before it. Equal in value, but the string that goes
    into decisions, logs and order payloads now depends on process history.

    Root cause: an ``lru_cache`` keyed on a Decimal treats equal values with different exponents
    as one key."""
    first = round_to_step(Decimal("1.23456"), Decimal("0.01"))
    second = round_to_step(Decimal("1.23456"), Decimal("0.0100"))
    assert str(first) == "1.23"
    assert str(second) == "1.2300", f"0.0100 step gave {second}: the exponent of an earlier, equal step"
