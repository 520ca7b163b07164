"""Positions and the stop monitor.

A position is derived from ``orders``, never from venue balances:

* **open**    - the fills of a B-lite entry order open it (idempotent: one position per entry
                order). Entry = average fill price; stop = entry - stop_atr_multiple x ATR and
                take-profit = entry + take_profit_r x R, with ATR and multiples taken from the
                entry's decision row (what the strategy saw when it decided).
* **closing** - the stop monitor saw the stop / trailing stop / take-profit hit and placed a
                market sell (``exit<attempt>`` client id per position: a retry, a re-delivered
                task or a second worker computes the same id and cannot sell twice). The
                Telegram alert is written in the same transaction.
* **closed**  - the exit order filled (realised PnL = proceeds net of fees - entry cost incl.
                its fee), or an operator's emergency exit sold the holdings (``EMERGENCY_EXIT``).

An exit order that ends without selling everything (rejected, canceled, expired) puts the
position back to open with the next attempt number, so the next pass re-checks the price and
sells the rest under a new client id. After ``MAX_EXIT_ATTEMPTS`` the monitor stops trying
and alerts: an operator must look (an emergency exit then closes the position).

Stops keep working while trading is halted and while Redis is down: the halt only gates
entries, and the monitor's Redis lock is an optimisation it does without.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from infra.clock import ms_to_datetime
from infra.locks import LockNotAcquired, redis_lock
from infra.logging import new_trace_id, trace_context
from strategy import selectors
from strategy.engines import ExitReason, PositionStop, evaluate_exit, round_to_step
from strategy.models import StrategyPosition
from strategy.params import STRATEGY_NAME
from strategy.services import venue_stops
from strategy.services.portfolio import entry_cost, plain
from trading.config_schema import ConfigValidationError, config_get
from trading.exchanges.base import ExchangeGateway, MarketRules
from trading.exchanges.errors import VenueError
from trading.exchanges.factory import gateway_or_default
from trading.models import TERMINAL_STATUSES, Order, OrderEvent, OrderStatus
from trading.services.lifecycle import EventType
from trading.services.orders import OrderRefused, order_place

log = logging.getLogger(__name__)

P = StrategyPosition.Status
ZERO = Decimal(0)
MAX_EXIT_ATTEMPTS = 5
EXIT_INTENTS = {
    ExitReason.STOP_LOSS: Order.Intent.STOP_LOSS,
    ExitReason.TRAILING_STOP: Order.Intent.TRAILING_STOP,
    ExitReason.TAKE_PROFIT: Order.Intent.TAKE_PROFIT,
}
EMERGENCY_EXIT = "EMERGENCY_EXIT"
_Q18 = Decimal("1e-18")


def _telegram(*, text: str, trace_id: str, reason_code: str) -> None:
    from infra.telegram import telegram_enqueue

    telegram_enqueue(text=text, trace_id=trace_id, reason_code=reason_code)


# --- opening -------------------------------------------------------------------------------

def _base_fee(order: Order) -> Decimal:
    """Fees the venue took in the base asset (Binance charges a buy's fee in what was bought):
    we hold that much less than the filled quantity."""
    base = order.symbol.split("/")[0]
    fee = ZERO
    for payload in OrderEvent.objects.filter(order=order, event_type=EventType.FILL).values_list("payload", flat=True):
        if payload.get("fee_asset") == base and payload.get("fee") not in (None, ""):
            fee += Decimal(str(payload["fee"]))
    return fee


def _held_quantity(order: Order) -> Decimal:
    return order.filled_quantity - _base_fee(order)


def _stop_levels(order: Order, entry: Decimal) -> PositionStop:
    """Initial stop and target from the entry decision's ATR and the multiples used then."""
    decision = selectors.decision_for_order(order)
    if decision is None:
        raise LookupError(f"entry order {order.client_order_id} has no decision row for tick {order.tick_id}")
    inputs = decision.inputs
    return PositionStop.for_entry(
        entry_price=entry, atr=Decimal(str(inputs["engine"]["inputs"]["atr"])),
        stop_atr_multiple=Decimal(str(inputs["params"]["stop_atr_multiple"])),
        take_profit_r=Decimal(str(inputs["params"]["take_profit_r"])),
        tick_size=Decimal(str(inputs["market"]["tick_size"])))


def position_open_from_entry(*, order_id: int) -> StrategyPosition | None:
    """Open the position of a (partly) filled entry order. Idempotent: None if it exists or
    there is nothing to open yet."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.filled_quantity <= 0 or StrategyPosition.objects.filter(entry_order=order).exists():
            return None
        entry = (order.filled_quote / order.filled_quantity).quantize(_Q18)
        state = _stop_levels(order, entry)
        position = StrategyPosition.objects.create(
            strategy=order.strategy, venue=order.venue, symbol=order.symbol, entry_order=order, tick_id=order.tick_id,
            trace_id=order.trace_id, quantity=_held_quantity(order), entry_price=entry, entry_fee=order.fee_quote,
            stop_state=state.to_dict(), opened_at=timezone.now(),
        )
    log.info("position #%s opened: %s %s @ %s, stop %s, target %s", position.pk, position.symbol, position.quantity,
             entry, state.stop_price, state.take_profit_price, extra={"trace_id": order.trace_id})
    return position


# --- closing -------------------------------------------------------------------------------

def _close(position: StrategyPosition, *, reason: str) -> None:
    """Close a position with nothing sellable left (dust), without an exit order."""
    position.status = P.CLOSED
    position.exit_reason = position.exit_reason or reason
    position.realised_pnl = position.exit_proceeds - entry_cost(position, position.exited_quantity)
    position.closed_at = timezone.now()
    position.save()
    _notify_closed(position)


def _notify_closed(position: StrategyPosition) -> None:
    trace_id = position.exit_trace_id or position.trace_id
    by_venue_stop = position.exit_order is not None and position.exit_order.type == Order.Type.STOP_MARKET
    how = f" by its stop on the venue ({position.exit_order.client_order_id})" if by_venue_stop else ""
    _telegram(text=(f"AlphaSniper: position #{position.pk} {position.symbol} CLOSED ({position.exit_reason}){how}. "
                    f"Sold {plain(position.exited_quantity)} bought at {plain(position.entry_price)}; realised PnL "
                    f"{position.realised_pnl:.2f}."), trace_id=trace_id, reason_code=position.exit_reason or "CLOSED")


def _emergency_exit_for(position: StrategyPosition) -> Order | None:
    """The first emergency sell that sold part of this position (for the close reason)."""
    return (Order.objects.filter(venue=position.venue, symbol=position.symbol, intent=Order.Intent.EMERGENCY_EXIT,
                                 side=Order.Side.SELL, filled_quantity__gt=0, created_at__gte=position.opened_at)
            .order_by("created_at", "id").first())


def _dust_below(position: StrategyPosition) -> Decimal:
    """Less than this cannot be sold on the venue (a lot step, or the minimum quantity, from the
    market rules the entry was decided with); a remainder below it is nothing to hold."""
    decision = selectors.decision_for_order(position.entry_order)
    market = (decision.inputs.get("market") or {}) if decision is not None else {}
    return max(Decimal(str(market.get("lot_step") or 0)), Decimal(str(market.get("min_qty") or 0)))


def _emergency_shares(position: StrategyPosition) -> tuple[Decimal, Decimal]:
    """(quantity, proceeds net of fees) of the operator's emergency sells on this symbol that
    belong to this position: each sell's fills go to the positions it found open, oldest first,
    each taking at most what its own exits left it holding. Only what was really sold counts."""
    sells = list(Order.objects.filter(venue=position.venue, symbol=position.symbol, side=Order.Side.SELL,
                                      intent=Order.Intent.EMERGENCY_EXIT, filled_quantity__gt=0)
                 .order_by("created_at", "id"))
    if not sells:
        return ZERO, ZERO
    holders = list(StrategyPosition.objects.filter(venue=position.venue, symbol=position.symbol,
                                                   opened_at__lte=sells[-1].created_at)
                   .select_related("entry_order").order_by("opened_at", "id"))
    left = {p.pk: _held_quantity(p.entry_order) - _own_exits(p)[0] for p in holders}
    mine_qty = mine_proceeds = ZERO
    for sell in sells:
        to_share = sell.filled_quantity
        net = sell.filled_quote - sell.fee_quote
        for holder in holders:
            if holder.opened_at > sell.created_at or to_share <= 0:
                continue
            take = min(max(left[holder.pk], ZERO), to_share)
            left[holder.pk] -= take
            to_share -= take
            if holder.pk == position.pk:
                mine_qty += take
                mine_proceeds += net * take / sell.filled_quantity
    return mine_qty, mine_proceeds


def _first_fill_at(order: Order) -> datetime | None:
    """When the venue executed the order's first trade (the venue's clock): when a stop that rested
    on the venue fired - the moment the cooldown after a stop counts from, as it would from the
    monitor's own trigger."""
    payload = (OrderEvent.objects.filter(order=order, event_type=EventType.FILL).order_by("id")
               .values_list("payload", flat=True).first())
    stamp = (payload or {}).get("timestamp_ms")
    return ms_to_datetime(int(stamp)) if stamp is not None else None


def _own_exits(position: StrategyPosition) -> tuple[Decimal, Decimal, list[Order]]:
    """(quantity sold, proceeds net of fees, the orders) of the position's own exit orders
    (client ids ``P<id>`` / ``exit<n>``), whatever their status: fills are facts."""
    orders = list(Order.objects.filter(venue=position.venue, symbol=position.symbol, side=Order.Side.SELL,
                                       tick_id=f"P{position.pk}").order_by("id"))
    return (sum((o.filled_quantity for o in orders), ZERO),
            sum((o.filled_quote - o.fee_quote for o in orders), ZERO), orders)


def position_refresh(*, position_id: int, max_exit_attempts: int = MAX_EXIT_ATTEMPTS) -> StrategyPosition:
    """Bring one position in line with its orders (ARCHITECTURE invariant 10). The position is a
    projection of fills: quantity = the entry order's fills (net of base-asset fees), sold = its
    exit orders' fills plus its share of emergency sells — whenever they arrive, whatever each
    order's status. Status follows: closing while an exit is in flight, closed once nothing
    sellable is left, open otherwise (a closed position re-opens if more entry fills arrive)."""
    with transaction.atomic():
        position = StrategyPosition.objects.select_for_update().select_related("entry_order").get(pk=position_id)
        entry = Order.objects.get(pk=position.entry_order_id)
        def projected() -> tuple:
            return (position.status, position.quantity, position.entry_price, position.entry_fee,
                    position.exited_quantity, position.exit_proceeds, position.realised_pnl, position.closed_at,
                    position.exit_attempt, position.exit_order_id, position.exit_reason, position.exit_trace_id)

        before = projected()
        if entry.filled_quantity > 0:
            position.quantity = _held_quantity(entry)
            position.entry_price = (entry.filled_quote / entry.filled_quantity).quantize(_Q18)
            position.entry_fee = entry.fee_quote
        own_qty, own_proceeds, own_orders = _own_exits(position)
        em_qty, em_proceeds = _emergency_shares(position)
        position.exited_quantity = own_qty + em_qty
        position.exit_proceeds = own_proceeds + em_proceeds
        # A protective stop resting on the venue (or a version of it replaced or refused without
        # selling anything) is not an exit: it neither makes the position "closing" nor counts as
        # an exit attempt. Once it sells, it is the exit.
        exits = [o for o in own_orders if not venue_stops.is_resting_stop(o)]
        in_flight = [o for o in exits if o.status not in TERMINAL_STATUSES]
        ended = [o for o in exits if o.status in TERMINAL_STATUSES and o.type != Order.Type.STOP_MARKET]
        # Never lowered: the monitor may have given up (EXIT_FAILED) with fewer exits ended.
        position.exit_attempt = max(position.exit_attempt, len(ended))
        if exits:
            position.exit_order = exits[-1]
        fired = next((o for o in exits if o.type == Order.Type.STOP_MARKET), None)
        sold_by_market = any(o.filled_quantity > 0 for o in exits if o.type != Order.Type.STOP_MARKET)
        if fired is not None and not sold_by_market:
            # The venue's stop sold it: the same reason the bot-side monitor would have given.
            position.exit_reason = venue_stops.stop_exit_reason(fired, position)
            position.exit_trace_id = fired.trace_id
            position.exit_triggered_at = position.exit_triggered_at or _first_fill_at(fired) or fired.updated_at
        emergency = _emergency_exit_for(position) if em_qty > 0 else None
        if emergency is not None and not in_flight:
            position.exit_reason = EMERGENCY_EXIT
            position.exit_trace_id = emergency.trace_id
            position.exit_triggered_at = position.exit_triggered_at or emergency.created_at
        nothing_left = position.remaining_quantity <= 0 or position.remaining_quantity < _dust_below(position)
        was = position.status
        # The monitor closed it as dust the venue would not take (below its minimum order): it
        # stays closed until something is sold or more is bought - else every pass re-opens it.
        closed_as_dust = was == P.CLOSED and not exits and em_qty <= 0 and position.quantity == before[1]
        if in_flight:
            position.status = P.CLOSING
        elif (nothing_left and (exits or em_qty > 0)) or closed_as_dust:
            position.status = P.CLOSED
        else:
            position.status = P.OPEN
        if position.status == P.CLOSED:
            position.realised_pnl = position.exit_proceeds - entry_cost(position, position.exited_quantity)
            position.closed_at = position.closed_at or timezone.now()
        else:
            position.realised_pnl = None
            position.closed_at = None
        if projected() != before:
            position.save()
        if position.status == P.CLOSED and was != P.CLOSED:
            _notify_closed(position)
        elif was == P.CLOSED and position.status != P.CLOSED:
            log.warning("position #%s %s re-opened: %s more arrived after it closed", position.pk, position.symbol,
                        position.remaining_quantity, extra={"trace_id": position.trace_id})
        elif was == P.CLOSING and position.status == P.OPEN and ended:
            last = ended[-1]
            log.warning("position #%s: exit order %s ended %s with %s of %s sold; attempt %s next",
                        position.pk, last.client_order_id, last.status, last.filled_quantity, last.quantity,
                        position.exit_attempt, extra={"trace_id": position.exit_trace_id})
            failed = sum(1 for o in ended if o.status != OrderStatus.FILLED)
            if failed >= max_exit_attempts:
                _telegram(text=(f"AlphaSniper: EXIT FAILED for position #{position.pk} {position.symbol}: "
                                f"{failed} exit orders ended without selling {position.remaining_quantity}. The "
                                f"stop monitor has stopped trying - check the venue and use emergency exit."),
                          trace_id=position.exit_trace_id or position.trace_id, reason_code="EXIT_FAILED")
        return position


@dataclass
class PositionsReport:
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)


def positions_sync(*, venue: str, strategy: str = STRATEGY_NAME) -> PositionsReport:
    """Open positions for filled entries, close positions whose exit filled. Idempotent."""
    report = PositionsReport()
    entries = Order.objects.filter(venue=venue, strategy=strategy, intent=Order.Intent.ENTRY, filled_quantity__gt=0,
                                   position__isnull=True).values_list("pk", flat=True)
    for order_id in entries:
        try:
            position = position_open_from_entry(order_id=order_id)
        except (LookupError, KeyError, ValueError) as exc:
            log.error("cannot open the position of entry order %s: %s", order_id, exc)
            continue
        if position is not None:
            report.opened.append(position.pk)
    for position_id in selectors.positions_active(venue=venue).values_list("pk", flat=True):
        if position_refresh(position_id=position_id).status == P.CLOSED:
            report.closed.append(position_id)
    return report


# --- the stop monitor ----------------------------------------------------------------------

@dataclass
class MonitorReport:
    checked: int = 0
    exits: list[str] = field(default_factory=list)          # client order ids placed
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: bool = False

    def as_dict(self) -> dict:
        return {"checked": self.checked, "exits": self.exits, "opened": self.opened, "closed": self.closed,
                "errors": self.errors, "skipped": self.skipped}


def _sell_quantity(position: StrategyPosition, rules: MarketRules | None, held: Decimal | None) -> Decimal:
    """The position's remaining quantity - but never more than the venue says we hold free of
    the base asset (fees taken in it, a manual sale, a double-counted fill): a sell above the
    holding would only be rejected, over and over."""
    quantity = position.remaining_quantity
    if held is not None and held < quantity:
        log.warning("position #%s %s: the venue holds %s free, less than the position's %s; selling what is held",
                    position.pk, position.symbol, held, quantity)
        quantity = max(held, ZERO)
    return round_to_step(quantity, rules.lot_step) if rules else quantity


@dataclass(frozen=True)
class StopInTheWay:
    """An exit is due but the position's protective stop still rests on the venue."""

    order: Order
    reason: str
    clear: bool = True          # False: the exit is given up; only learn whether the stop has fired


def position_check(*, position_id: int, last_price: Decimal, rules: MarketRules | None,
                   now: datetime | None = None, max_exit_attempts: int = MAX_EXIT_ATTEMPTS,
                   held: Callable[[str], Decimal | None] | None = None) -> Order | StopInTheWay | None:
    """Ratchet the trailing stop with ``last_price``; on a stop / target hit place the one exit
    order of this attempt and alert, all in one transaction. Returns the exit order if placed, or
    ``StopInTheWay`` when the position's venue stop must be canceled before anything is sold."""
    with transaction.atomic():
        position = StrategyPosition.objects.select_for_update().get(pk=position_id)
        if position.status != P.OPEN:
            return None
        state = PositionStop.from_dict(position.stop_state)
        check = evaluate_exit(state, last_price)
        if check.reason_code is ExitReason.BAD_PRICE:
            log.warning("position #%s %s: %s; holding", position.pk, position.symbol, check.detail)
            return None
        if check.state != state:
            position.stop_state = check.state.to_dict()
            position.save(update_fields=["stop_state", "updated_at"])
        if not check.exit:
            return None
        if position.exit_attempt >= max_exit_attempts:
            # Given up (EXIT FAILED was sent): sell nothing - and leave its venue stop alone, the
            # one thing still protecting it; the caller only asks the venue whether it has fired.
            log.error("position #%s %s: %s but %s exit attempts failed; not trying again", position.pk,
                      position.symbol, check.reason_code, position.exit_attempt)
            stop_on_venue = venue_stops.live_stop(position)
            return StopInTheWay(stop_on_venue, str(check.reason_code), clear=False) if stop_on_venue else None
        stop_on_venue = venue_stops.live_stop(position)
        if stop_on_venue is not None:
            # Its resting stop reserves the coins: it comes off the venue first (the caller does
            # that outside this transaction, then checks again). If it fired meanwhile, that is the exit.
            return StopInTheWay(stop_on_venue, str(check.reason_code))
        reason = str(check.reason_code)
        holding = held(position.symbol) if held else None
        quantity = _sell_quantity(position, rules, holding)
        too_small = quantity <= 0 or bool(rules and (quantity < rules.min_qty
                                                     or quantity * last_price < rules.min_notional))
        if too_small and holding is not None and holding < position.remaining_quantity:
            # The holding is (nearly) gone without an exit of ours or an operator's emergency
            # exit: selling is impossible and the PnL unknown. Stop trying and tell an operator.
            position.exit_attempt = max_exit_attempts
            position.save(update_fields=["exit_attempt", "updated_at"])
            _telegram(text=(f"AlphaSniper: EXIT FAILED for position #{position.pk} {position.symbol}: "
                            f"{reason} hit at {last_price} but the venue holds only {holding} of the "
                            f"{position.remaining_quantity} the position expects. Check the account; an "
                            f"emergency exit closes the position."), trace_id=position.trace_id,
                      reason_code="EXIT_FAILED")
            return None
        if too_small:
            # Dust the venue will not take: nothing left to sell.
            position.exit_reason = reason
            position.exit_triggered_at = now or timezone.now()
            _close(position, reason=reason)
            return None
        trace_id = new_trace_id()
        tick_id = f"P{position.pk}"
        try:
            order, created = order_place(
                venue=position.venue, strategy=position.strategy, symbol=position.symbol, side=Order.Side.SELL,
                type=Order.Type.MARKET, intent=EXIT_INTENTS[check.reason_code], quantity=quantity,
                trace_id=trace_id, tick_id=tick_id, client_intent=f"exit{position.exit_attempt}", reason_code=reason)
        except OrderRefused as exc:
            # Another sell of ours (an operator's emergency exit) is selling this holding now.
            log.warning("position #%s %s: %s hit but not sold now: %s", position.pk, position.symbol, reason,
                        exc.detail)
            return None
        client_order_id = order.client_order_id
        trace_id = order.trace_id
        position.status = P.CLOSING
        position.exit_order = order
        position.exit_reason = reason
        position.exit_trace_id = trace_id
        position.exit_triggered_at = now or timezone.now()
        position.save()
        s = check.state
        _telegram(text=(f"AlphaSniper: {reason.replace('_', ' ')} on {position.symbol} - selling {plain(quantity)} "
                        f"at market. Last {plain(last_price)}, stop {plain(s.stop_price)} (initial "
                        f"{plain(s.initial_stop)}), target {plain(s.take_profit_price)}, entry "
                        f"{plain(position.entry_price)}. Position #{position.pk}, exit order {client_order_id} "
                        f"(attempt {position.exit_attempt})."),
                  trace_id=trace_id, reason_code=reason)
    log.info("position #%s %s: %s at %s, exit order %s%s", position.pk, position.symbol, reason, last_price,
             client_order_id, "" if created else " (already placed)", extra={"trace_id": trace_id})
    return order


def stop_monitor_run(*, gateway: ExchangeGateway | None = None, now: datetime | None = None) -> MonitorReport:
    """One pass over every open position: update it from its orders, then check its stop
    against the venue's last price. Safe to run concurrently (row locks, deterministic ids)."""
    gateway = gateway_or_default(gateway)
    report = MonitorReport()
    lock = contextlib.nullcontext()
    try:
        lock = redis_lock(f"stop-monitor:{gateway.name}", ttl_s=60)
        lock.__enter__()
    except LockNotAcquired:
        report.skipped = True
        return report
    except Exception as exc:   # Redis down: stops must still work; correctness does not need the lock
        log.warning("stop monitor runs without its Redis lock: %s", exc)
        lock = contextlib.nullcontext()
    try:
        _monitor(gateway, report, now)
    finally:
        with contextlib.suppress(Exception):
            lock.__exit__(None, None, None)
    return report


def _monitor(gateway: ExchangeGateway, report: MonitorReport, now: datetime | None) -> None:
    from strategy.services.markets import market_rules

    synced = positions_sync(venue=gateway.name)
    report.opened, report.closed = synced.opened, synced.closed
    positions = list(selectors.positions_active(venue=gateway.name).filter(status=P.OPEN))
    if not positions:
        return
    try:
        rules = market_rules(gateway, symbols=[p.symbol for p in positions])
    except VenueError as exc:
        log.warning("market rules unavailable (%s); exits use the held quantity as is", exc)
        rules = {}
    balances: dict[str, Decimal] | None = None
    try:
        config = config_get()
    except ConfigValidationError as exc:
        # The bot-side stops below never depend on the config; only the venue stops wait for it.
        log.error("config invalid (%s): venue stops are not placed or moved this pass", exc)
        config = None
    budget = venue_stops.MoveBudget()

    def held(symbol: str) -> Decimal | None:
        """Free base-asset balance, fetched once per pass and only when an exit needs it."""
        nonlocal balances
        if balances is None:
            try:
                balances = {a: b.free for a, b in gateway.fetch_balances().items()}
            except VenueError as exc:
                log.warning("balances unavailable (%s); exits sell the position's quantity", exc)
                balances = {}
        base = symbol.split("/")[0]
        return balances.get(base, ZERO) if balances else None

    for position in positions:
        with trace_context(position.trace_id):
            try:
                ticker = gateway.fetch_ticker(position.symbol)
            except VenueError as exc:
                report.errors[position.symbol] = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("no price for %s (%s); its stop is checked next pass", position.symbol, exc)
                continue
            report.checked += 1
            rule = rules.get(position.symbol)
            try:
                outcome = position_check(position_id=position.pk, last_price=ticker.last, rules=rule, now=now,
                                         held=held)
                if isinstance(outcome, StopInTheWay) and not outcome.clear:
                    venue_stops.venue_stop_refresh(order=outcome.order, gateway=gateway)
                    position_refresh(position_id=position.pk)
                    outcome = None
                elif isinstance(outcome, StopInTheWay):
                    # Cancel the venue stop first; only once it is off (and did not fill) sell.
                    cleared = venue_stops.venue_stop_clear(position=position, gateway=gateway,
                                                           reason_code=outcome.reason)
                    balances = None     # the coins it reserved are free now: read the holding afresh
                    position_refresh(position_id=position.pk)
                    outcome = None
                    if cleared:
                        again = position_check(position_id=position.pk, last_price=ticker.last, rules=rule, now=now,
                                               held=held)
                        outcome = again if isinstance(again, Order) else None
                if outcome is None and config is not None:
                    venue_stops.venue_stop_ensure(position_id=position.pk, rules=rule, config=config)
                    venue_stops.venue_stop_follow(position_id=position.pk, gateway=gateway, rules=rule,
                                                  config=config, budget=budget)
            except Exception as exc:
                # One position's trouble (e.g. the broker refusing the submit task after commit)
                # must not stop the others' stops; the order sweeper re-sends committed orders.
                log.exception("stop check of position #%s failed", position.pk)
                report.errors[position.symbol] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if outcome is not None:
                report.exits.append(outcome.client_order_id)


def positions_refresh_for_order(*, order_id: int) -> None:
    """New fills of one order landed: bring the positions they belong to up to date at once
    (an entry's fills open or grow its position, an exit's or an emergency sell's shrink or
    close it). The stop monitor's ``positions_sync`` is the safety net for anything missed."""
    order = Order.objects.get(pk=order_id)
    if order.intent == Order.Intent.ENTRY:
        position = StrategyPosition.objects.filter(entry_order=order).first()
        if position is None:
            position = position_open_from_entry(order_id=order_id)
        else:
            position = position_refresh(position_id=position.pk)
        if position is not None and position.status == P.OPEN:
            # The entry's fill is known: its protective stop goes to the venue now, not at the
            # monitor's next pass.
            venue_stops.venue_stop_ensure_now(position_id=position.pk)
        return
    if order.side != Order.Side.SELL:
        return
    if order.tick_id.startswith("P") and order.tick_id[1:].isdigit():
        ids = [int(order.tick_id[1:])]
    else:   # an emergency or manual sell: every position it may have sold from
        ids = list(StrategyPosition.objects.filter(venue=order.venue, symbol=order.symbol)
                   .exclude(status=P.CLOSED).values_list("pk", flat=True))
    for position_id in ids:
        if StrategyPosition.objects.filter(pk=position_id).exists():
            position_refresh(position_id=position_id)


def on_fills_recorded(sender, order_id: int, **kwargs) -> None:
    """Receiver of ``trading.services.lifecycle.fills_recorded`` (after commit)."""
    try:
        positions_refresh_for_order(order_id=order_id)
    except LookupError as exc:      # an entry placed without a strategy decision: no position to keep
        log.info("order %s opens no position: %s", order_id, exc)
    except Exception:
        # Never let the projection's trouble touch the order path; the monitor will retry.
        log.exception("positions of order %s not refreshed now; the stop monitor will", order_id)
