"""Protective stops kept on the venue, in step with the bot-side trailing stop.

The stop monitor checks prices every 20 s; while our workers, the broker, PostgreSQL or the host
are down it checks nothing. So every open position also has a stop-market sell resting on the
venue (config ``venue_stops``, on by default) for its quantity at its stop price:

* **placed** through the one door (``order_place``) as soon as the position opens: type
  ``stop_market``, tick id ``P<position>``, client intent ``stop<version>``, so a re-delivered task
  or a second worker finds the same order and places nothing twice.
* **moved up** when the bot-side trailing stop is more than ``venue_stop_step_pct`` % above it,
  at most once per ``MIN_MOVE_INTERVAL`` per position and ``MAX_MOVES_PER_PASS`` per monitor pass,
  so a burst of trailing updates cannot eat the rate-limit budget that entries and exits share.
  Where the venue amends in place (paper, Bybit ``order/amend``) the same order gets the new
  trigger; elsewhere (Binance) the stop is canceled and the next version placed at once. Never two
  live stops for one position (the venue reserves the coins for one, and the one door refuses a
  second sell while one is live); without a stop for at most the request that places the next one.
* **cleared first** by every other exit - a take-profit, a bot-side stop hit, an emergency exit -
  since it reserves the coins they sell (``venue_stop_clear``). A venue answer that the stop
  filled meanwhile is recorded and nothing else is sold.
* a stop that **fired on the venue** closes the position through its fills, like any exit
  (``positions.position_refresh``), with ``STOP_LOSS`` or ``TRAILING_STOP``.

Where the venue does not offer stop orders for the symbol, the remaining quantity is below the
venue's minimum, or the venue refused the stop, the position is *unprotected on the venue*
(``venue_stop_reason`` says why, in the venue's words): the bot-side stop keeps working, ``/health``,
``tbot diagnose`` and the dashboard show it, and the operator is told once per episode, not on
every pass. A refused stop is asked for again only when its price or quantity changed, or after
``RETRY_REFUSED_AFTER`` (a halted symbol re-opens): one request a minute at most.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction

from infra.logging import new_trace_id
from strategy.engines import PositionStop, round_to_step
from strategy.models import StrategyPosition, VenueStop
from strategy.services.portfolio import plain
from trading.config_schema import StrategyConfig
from trading.exchanges.base import ExchangeGateway, MarketRules
from trading.exchanges.errors import OrderNotFoundError, RejectedError, VenueError
from trading.models import TERMINAL_STATUSES, EmergencyExitRun, Order, OrderEvent, OrderStatus
from trading.services import lifecycle
from trading.services.orders import OrderRefused, order_place

log = logging.getLogger(__name__)

P = StrategyPosition.Status
MIN_MOVE_INTERVAL = timedelta(seconds=30)
MAX_MOVES_PER_PASS = 5
RETRY_REFUSED_AFTER = timedelta(seconds=60)
# An emergency exit cancels every resting order and sells; a stop placed meanwhile would reserve
# the coins it is selling. A run older than this is a crashed one and no longer holds stops back.
EMERGENCY_RUN_HOLDS_FOR = timedelta(minutes=10)
# A normal emergency exit takes seconds; one still running after this is shown (and alerted) as
# leaving positions without their venue stops.
EMERGENCY_RUN_QUIET_FOR = timedelta(seconds=60)
SOURCE = OrderEvent.Source.STRATEGY


def stop_orders(position: StrategyPosition) -> list[Order]:
    """The position's protective stops on the venue, every version, oldest first."""
    return list(Order.objects.filter(venue=position.venue, symbol=position.symbol, side=Order.Side.SELL,
                                     type=Order.Type.STOP_MARKET, tick_id=f"P{position.pk}").order_by("id"))


def live_stop(position: StrategyPosition) -> Order | None:
    """The position's stop that is not final (resting, or on its way to the venue), if any."""
    live = [o for o in stop_orders(position) if o.status not in TERMINAL_STATUSES]
    return live[-1] if live else None


def is_resting_stop(order: Order) -> bool:
    """A protective stop that has not sold anything: not an exit in progress."""
    return order.type == Order.Type.STOP_MARKET and order.filled_quantity <= 0


def stop_exit_reason(order: Order, position: StrategyPosition) -> str:
    """STOP_LOSS if the venue stop fired at (or below) the initial stop, TRAILING_STOP once it had
    been raised - the reason the bot-side monitor would have given for the same price."""
    initial = Decimal(str(position.stop_state.get("initial_stop", "0")))
    return "TRAILING_STOP" if order.stop_price is not None and order.stop_price > initial else "STOP_LOSS"


@dataclass(frozen=True)
class StopTarget:
    stop_price: Decimal
    quantity: Decimal


def stop_target(position: StrategyPosition, rules: MarketRules) -> StopTarget:
    """Where the venue stop should be: the bot-side stop (rounded down to the tick - never above
    the stop the strategy set) for what the position still holds (rounded down to the lot)."""
    state = PositionStop.from_dict(position.stop_state)
    return StopTarget(stop_price=round_to_step(state.stop_price, rules.tick_size),
                      quantity=round_to_step(position.remaining_quantity, rules.lot_step))


def _telegram(*, text: str, trace_id: str, reason_code: str) -> None:
    from infra.telegram import telegram_enqueue

    telegram_enqueue(text=text, trace_id=trace_id, reason_code=reason_code)


def _mark(position: StrategyPosition, state: str, reason: str = "") -> None:
    """Record the position's venue-stop state (caller holds its row lock); tell the operator once
    when it becomes unprotected, and reset that once it is protected again."""
    fields: list[str] = []
    if position.venue_stop != state:
        position.venue_stop = state
        fields.append("venue_stop")
    if position.venue_stop_reason != reason:
        position.venue_stop_reason = reason
        fields.append("venue_stop_reason")
    if state == VenueStop.UNPROTECTED and not position.venue_stop_alerted:
        position.venue_stop_alerted = True
        fields.append("venue_stop_alerted")
        log.warning("position #%s %s is unprotected on the venue: %s", position.pk, position.symbol, reason,
                    extra={"trace_id": position.trace_id})
        _telegram(text=(f"AlphaSniper: position #{position.pk} {position.symbol} has NO STOP ON THE VENUE: {reason}. "
                        f"The bot-side stop still watches it (every 20 s while our workers run)."),
                  trace_id=position.trace_id, reason_code="VENUE_STOP_UNPROTECTED")
    elif state == VenueStop.PROTECTED and position.venue_stop_alerted:
        position.venue_stop_alerted = False
        fields.append("venue_stop_alerted")
    if fields:
        position.save(update_fields=[*fields, "updated_at"])


def _emergency_exit_running() -> datetime | None:
    """When the emergency exit that is running now started, if one is."""
    return (EmergencyExitRun.objects.filter(finished_at__isnull=True,
                                            started_at__gte=lifecycle.db_now() - EMERGENCY_RUN_HOLDS_FOR)
            .order_by("started_at").values_list("started_at", flat=True).first())


def _refusal(order: Order) -> str:
    event = order.events.filter(event_type=lifecycle.EventType.REJECTED).order_by("-id").first()
    detail = (event.payload or {}).get("message") if event is not None else None
    return f"the venue refused stop {order.client_order_id}: {detail or order.last_error or order.reason_code}"


def venue_stop_ensure(*, position_id: int, rules: MarketRules | None, config: StrategyConfig) -> Order | None:
    """Make sure an open position has its stop on the venue: place it if it has none (DB only;
    the send is queued after commit). Returns the stop order placed now, if any."""
    with transaction.atomic():
        position = StrategyPosition.objects.select_for_update().get(pk=position_id)
        if position.status != P.OPEN:
            return None
        if config.venue_stops != "on":
            _mark(position, VenueStop.NONE)
            return None
        stops = stop_orders(position)
        live = [o for o in stops if o.status not in TERMINAL_STATUSES]
        if live:
            resting = live[-1].status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)
            _mark(position, VenueStop.PROTECTED if resting else VenueStop.PENDING)
            return None
        if rules is None:
            return None
        running = _emergency_exit_running()
        if running is not None:
            if lifecycle.db_now() - running > EMERGENCY_RUN_QUIET_FOR:
                _mark(position, VenueStop.UNPROTECTED,
                      f"an emergency exit started at {running:%Y-%m-%d %H:%M:%S} UTC has not finished; no stop is "
                      f"placed while it runs (at most {int(EMERGENCY_RUN_HOLDS_FOR.total_seconds() // 60)} "
                      f"minutes)")
            return None
        if not rules.stop_orders:
            _mark(position, VenueStop.UNPROTECTED, f"{position.venue} offers no stop orders for {position.symbol}")
            return None
        target = stop_target(position, rules)
        if (target.quantity <= 0 or target.quantity < rules.min_qty
                or target.quantity * target.stop_price < rules.min_notional):
            _mark(position, VenueStop.UNPROTECTED,
                  f"the remaining {plain(target.quantity)} at the stop {plain(target.stop_price)} is below the "
                  f"venue's minimum order (quantity {plain(rules.min_qty)}, notional {plain(rules.min_notional)})")
            return None
        last = stops[-1] if stops else None
        if (last is not None and last.status == OrderStatus.REJECTED and last.stop_price == target.stop_price
                and last.quantity == target.quantity
                and lifecycle.db_now() - last.updated_at < RETRY_REFUSED_AFTER):
            _mark(position, VenueStop.UNPROTECTED, _refusal(last))
            return None
        order = _place_stop(position, target)
        if order is None:
            return None
        if last is not None and last.status == OrderStatus.REJECTED:
            _mark(position, VenueStop.UNPROTECTED, _refusal(last))   # until the venue takes the new one
        else:
            _mark(position, VenueStop.PENDING)
    log.info("position #%s %s: venue stop %s placed: sell %s at %s", position.pk, position.symbol,
             order.client_order_id, plain(order.quantity), plain(order.stop_price), extra={"trace_id": order.trace_id})
    return order


def _place_stop(position: StrategyPosition, target: StopTarget, *, replaces: Order | None = None) -> Order | None:
    """The position's next stop version through the one door (caller holds the position's row lock).
    ``replaces``: the live stop it replaces in one venue request; the caller then sends it itself.
    None when the door refuses: an exit or an emergency sell of this holding is in flight."""
    try:
        order, created = order_place(
            venue=position.venue, strategy=position.strategy, symbol=position.symbol, side=Order.Side.SELL,
            type=Order.Type.STOP_MARKET, intent=Order.Intent.STOP_LOSS, quantity=target.quantity,
            stop_price=target.stop_price, trace_id=new_trace_id(), tick_id=f"P{position.pk}",
            client_intent=f"stop{position.venue_stop_version}", reason_code="PROTECTIVE_STOP", replaces=replaces,
            enqueue=replaces is None)
    except OrderRefused as exc:
        log.info("position #%s %s: venue stop not placed now: %s", position.pk, position.symbol, exc.detail)
        return None
    if created:
        position.venue_stop_version += 1
        position.save(update_fields=["venue_stop_version", "updated_at"])
    return order


def venue_stop_ensure_now(*, position_id: int) -> Order | None:
    """``venue_stop_ensure`` with the config and the venue's market rules of this process, for a
    caller that has neither (the fills signal). Any trouble leaves it to the monitor's next pass."""
    from strategy.services.markets import market_rules
    from trading.config_schema import ConfigValidationError, config_get
    from trading.exchanges.factory import gateway_or_default

    position = StrategyPosition.objects.get(pk=position_id)
    try:
        config = config_get()
        rules = market_rules(gateway_or_default(None), symbols=[position.symbol]).get(position.symbol)
    except (ConfigValidationError, VenueError) as exc:
        log.warning("position #%s: venue stop left to the stop monitor (%s)", position_id, exc)
        return None
    return venue_stop_ensure(position_id=position_id, rules=rules, config=config)


def venue_stop_refresh(*, order: Order, gateway: ExchangeGateway) -> Order:
    """Ask the venue about a resting stop and record what it says (it may have fired)."""
    if order.status not in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
        return order
    try:
        return _record(order, gateway, lambda: gateway.fetch_order(order.symbol, order.client_order_id))
    except VenueError as exc:
        log.warning("venue stop %s not read now: %s", order.client_order_id, exc)
        return order


def _record(order: Order, gateway: ExchangeGateway, call) -> Order:
    """Run a venue call on a resting stop and record the venue's view of it afterwards. A stop the
    venue no longer has open filled or was canceled meanwhile: read it back and record that."""
    from trading.services.submission import order_record_venue_state

    try:
        venue_order = call()
    except OrderNotFoundError:
        venue_order = gateway.fetch_order(order.symbol, order.client_order_id)
    if venue_order is None:
        return order
    return order_record_venue_state(order_id=order.pk, venue_order=venue_order, gateway=gateway, source=SOURCE)


def venue_stop_clear(*, position: StrategyPosition, gateway: ExchangeGateway, reason_code: str) -> bool:
    """Take the position's venue stop off before another exit sells the same coins. True when no
    stop of the position is live any more (canceled, or never there); False while one may still be
    (its send is in flight, the venue did not answer) - the caller then sells nothing this pass.
    A stop that filled meanwhile is recorded (the position closes through it) and True is returned:
    the caller's next look at the position sees what is left to sell, usually nothing. Every live
    version is cleared (a replaced one whose cancel we have not recorded yet included)."""
    live = [o for o in stop_orders(position) if o.status not in TERMINAL_STATUSES]
    unsettled = [o for o in live if o.status in (OrderStatus.SUBMITTED, OrderStatus.SUBMIT_UNKNOWN)]
    if unsettled:
        # A version whose send is in flight or of unknown outcome may be resting on the venue or
        # not: ask the venue now. Until every version is known, cancel none of them - taking the
        # known one off while the unknown one turns out absent would leave the position bare.
        from trading.services.submission import order_resolve

        for order in unsettled:
            if order.status == OrderStatus.SUBMIT_UNKNOWN:
                try:
                    order_resolve(order_id=order.pk, gateway=gateway)
                except VenueError as exc:
                    log.warning("venue stop %s not resolved now: %s", order.client_order_id, exc)
        live = [o for o in stop_orders(position) if o.status not in TERMINAL_STATUSES]
        if any(o.status in (OrderStatus.SUBMITTED, OrderStatus.SUBMIT_UNKNOWN) for o in live):
            return False
    cleared = True
    for order in live:
        cleared = _clear_one(order, gateway, reason_code) and cleared
    return cleared


def _clear_one(order: Order, gateway: ExchangeGateway, reason_code: str) -> bool:
    if order.status == OrderStatus.PENDING:
        order = lifecycle.order_cancel_unsent(order_id=order.pk, source=SOURCE, reason_code=reason_code,
                                              detail="another exit comes first")
        return order.status in TERMINAL_STATUSES
    if order.status not in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
        return False     # submitted / outcome unknown: the resolver settles it first
    lifecycle.order_note(order_id=order.pk, event_type=lifecycle.EventType.CANCEL_REQUESTED, source=SOURCE,
                         reason_code=reason_code)
    try:
        order = _record(order, gateway, lambda: gateway.cancel_order(order.symbol, order.client_order_id))
    except VenueError as exc:
        log.warning("venue stop %s not canceled now (%s); no other exit this pass", order.client_order_id, exc)
        return False
    return order.status in TERMINAL_STATUSES


@dataclass
class MoveBudget:
    """Venue stop moves left in one monitor pass."""

    left: int = MAX_MOVES_PER_PASS


def venue_stop_follow(*, position_id: int, gateway: ExchangeGateway, rules: MarketRules | None,
                      config: StrategyConfig, budget: MoveBudget) -> bool:
    """Keep the venue stop in step with the position: up to the bot-side stop once it lags by more
    than the configured step, and to the quantity still held (more entry fills arrived). Returns
    True if the venue was asked to change it. Outside any transaction: it talks to the venue.

    How, by venue: amended in place where it can (paper, Bybit); replaced by the next version in
    one request where it can (Binance cancelReplace); else canceled and placed again."""
    position = StrategyPosition.objects.get(pk=position_id)
    if config.venue_stops != "on" or position.status != P.OPEN or rules is None or budget.left <= 0:
        return False
    order = live_stop(position)
    if order is None or order.status != OrderStatus.ACCEPTED or order.filled_quantity > 0 or order.stop_price is None:
        return False
    target = stop_target(position, rules)
    raise_to = target.stop_price if target.stop_price > order.stop_price * (1 + config.venue_stop_step_pct / 100) \
        else None
    resize = target.quantity > 0 and target.quantity != order.quantity
    if raise_to is None and not resize:
        return False
    now = lifecycle.db_now()
    if position.venue_stop_moved_at is not None and now - position.venue_stop_moved_at < MIN_MOVE_INTERVAL:
        return False
    budget.left -= 1
    StrategyPosition.objects.filter(pk=position.pk).update(venue_stop_moved_at=now)
    wanted = StopTarget(stop_price=raise_to or order.stop_price, quantity=target.quantity if resize else order.quantity)
    if gateway.amends_stops and not resize:
        return _amend(position, order, wanted.stop_price, gateway)
    if gateway.replaces_stops:
        return _replace(position, order, wanted, gateway)
    # Neither: cancel, then place the next version at once.
    if not venue_stop_clear(position=position, gateway=gateway, reason_code="TRAILING"):
        return False
    venue_stop_ensure(position_id=position.pk, rules=rules, config=config)
    return True


def _amend(position: StrategyPosition, order: Order, stop_price: Decimal, gateway: ExchangeGateway) -> bool:
    lifecycle.order_note(order_id=order.pk, event_type=lifecycle.EventType.STOP_MOVE_REQUESTED, source=SOURCE,
                         reason_code="TRAILING", payload={"stop_price": plain(stop_price)})
    try:
        venue_order = gateway.amend_stop(order.symbol, order.client_order_id, stop_price)
    except RejectedError as exc:
        # Refused (the price fell to it meanwhile, or the stop is gone): the old stop, if it still
        # rests, still protects. Learn what the venue has; the monitor's next check does the rest.
        log.warning("venue stop %s not moved to %s: %s", order.client_order_id, stop_price, exc)
        try:
            _record(order, gateway, lambda: gateway.fetch_order(order.symbol, order.client_order_id))
        except VenueError:
            pass
        return False
    except VenueError as exc:
        # Outcome unknown: amending to a price is idempotent, so the next pass simply asks again.
        log.warning("venue stop %s move to %s: %s", order.client_order_id, stop_price, exc)
        return False
    lifecycle.order_stop_moved(order_id=order.pk, stop_price=venue_order.stop_price or stop_price, source=SOURCE)
    log.info("position #%s %s: venue stop %s moved %s -> %s", position.pk, position.symbol, order.client_order_id,
             plain(order.stop_price), plain(stop_price), extra={"trace_id": order.trace_id})
    return True


def _replace(position: StrategyPosition, order: Order, wanted: StopTarget, gateway: ExchangeGateway) -> bool:
    """The next version of the stop, sent as the replacement of the live one in one venue request."""
    from trading.services.submission import order_submit

    with transaction.atomic():
        position = StrategyPosition.objects.select_for_update().get(pk=position.pk)
        current = Order.objects.get(pk=order.pk)
        if position.status != P.OPEN or current.status != OrderStatus.ACCEPTED or _emergency_exit_running():
            # Sold, taken off for another exit, or an emergency exit is cancelling and selling:
            # nothing to move any more.
            return False
        new = _place_stop(position, wanted, replaces=order)
        if new is None:
            return False
    new = order_submit(order_id=new.pk, gateway=gateway)
    log.info("position #%s %s: venue stop %s replaced by %s (sell %s at %s): %s", position.pk, position.symbol,
             order.client_order_id, new.client_order_id, plain(new.quantity), plain(new.stop_price), new.status,
             extra={"trace_id": new.trace_id})
    return True
