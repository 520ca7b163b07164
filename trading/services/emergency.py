"""Emergency exit: halt, cancel every open order of ours, flatten, and report what is left.

Idempotent: a second call finds nothing open and nothing to sell, and places nothing. Every
order it places goes through the same lifecycle as the strategy's (deterministic client ids,
events, the unknown-outcome rules), so a crash or a double click cannot sell twice. It runs
synchronously — an operator wants to see what is left on the venue when the call returns.

What "flatten" sells:
* by default, the positions the system opened: for each base asset, what our own fills say we
  hold (``expected_holdings``), capped by what the venue shows as free;
* with ``flatten_all``, every non-quote holding on the venue worth more than dust.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal

from django.db import transaction

from trading.client_ids import is_ours, make_client_order_id
from trading.exchanges.base import ExchangeGateway, MarketRules
from trading.exchanges.errors import OrderNotFoundError, VenueError
from trading.models import TERMINAL_STATUSES, AuditLog, Order, OrderEvent, OrderStatus
from trading.services import lifecycle
from trading.services.reconciliation import expected_holdings
from trading.services.submission import order_resolve, order_submit

log = logging.getLogger(__name__)

STRATEGY = "ops"
QUOTE = "USDT"


@dataclass
class EmergencyExitReport:
    canceled_orders: list[str] = field(default_factory=list)
    exit_orders: list[str] = field(default_factory=list)
    remaining: dict[str, str] = field(default_factory=dict)        # asset -> quantity still held
    unresolved_orders: list[str] = field(default_factory=list)     # outcome still unknown: operator attention
    errors: list[str] = field(default_factory=list)
    already_flat: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def emergency_exit(*, actor: str, source: str, reason_code: str, reason: str, flatten_all: bool, trace_id: str,
                   gateway: ExchangeGateway | None = None) -> EmergencyExitReport:
    from trading.config_schema import config_get
    from trading.services.control import is_halted

    if gateway is None:
        from trading.exchanges.factory import get_gateway

        gateway = get_gateway()
    _halt_and_audit(actor=actor, source=source, reason_code=reason_code, reason=reason, trace_id=trace_id,
                    flatten_all=flatten_all, halt_before=is_halted().as_json())
    report = EmergencyExitReport()
    universe = set(config_get().universe)
    _cancel_open_orders(gateway, universe, report)
    _flatten(gateway, flatten_all=flatten_all, trace_id=trace_id, report=report)
    _read_back(gateway, flatten_all=flatten_all, report=report)
    report.already_flat = not report.canceled_orders and not report.exit_orders
    _notify(actor=actor, source=source, reason_code=reason_code, trace_id=trace_id, report=report)
    log.info("emergency exit done: %s", report.as_dict())
    return report


def _halt_and_audit(*, actor: str, source: str, reason_code: str, reason: str, trace_id: str, flatten_all: bool,
                    halt_before: dict) -> None:
    """Stop new entries first, so nothing opens while we close — and audit the call in the same
    transaction. What it then cancels and sells is in ``order_events`` under the same trace id
    (source ``operator``, reason EMERGENCY_EXIT), and in the report it returns."""
    from trading.services.control import halt_set

    with transaction.atomic():
        halt_set(halted=True, actor=actor, source=source, reason_code=reason_code, reason=reason, trace_id=trace_id)
        AuditLog.objects.create(actor=actor, source=source, action="emergency_exit", reason_code=reason_code,
                                reason=reason, before={"halt": halt_before},
                                after={"halted": True, "flatten_all": flatten_all}, trace_id=trace_id)


def _cancel_open_orders(gateway: ExchangeGateway, universe: set[str], report: EmergencyExitReport) -> None:
    venue = gateway.name
    for order in Order.objects.filter(venue=venue).exclude(status__in=TERMINAL_STATUSES).order_by("id"):
        if order.status == OrderStatus.PENDING:
            # Never sent: cancel it here; the lifecycle's claim makes sure no worker sends it after.
            lifecycle.order_mark_canceled(order_id=order.pk, source=OrderEvent.Source.OPERATOR,
                                          reason_code="EMERGENCY_EXIT", payload={"detail": "canceled before send"})
            order.refresh_from_db()
            if order.status == OrderStatus.CANCELED:
                report.canceled_orders.append(order.client_order_id)
                continue
        if order.status in (OrderStatus.SUBMITTED, OrderStatus.SUBMIT_UNKNOWN):
            if order.status == OrderStatus.SUBMIT_UNKNOWN:
                order_resolve(order_id=order.pk, gateway=gateway)
            order.refresh_from_db()
            if order.status in (OrderStatus.SUBMITTED, OrderStatus.SUBMIT_UNKNOWN):
                report.unresolved_orders.append(order.client_order_id)
                continue
        if order.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
            _cancel_on_venue(gateway, order.symbol, order.client_order_id, report)
    # Orders under our prefix that the DB does not know about (reconciliation would import them).
    for symbol in sorted(universe):
        try:
            for venue_order in gateway.fetch_open_orders(symbol):
                if is_ours(venue_order.client_order_id) and venue_order.client_order_id not in report.canceled_orders:
                    _cancel_on_venue(gateway, symbol, venue_order.client_order_id, report)
        except VenueError as exc:
            report.errors.append(f"open orders on {symbol}: {exc}")


def _cancel_on_venue(gateway: ExchangeGateway, symbol: str, client_order_id: str,
                     report: EmergencyExitReport) -> None:
    order = Order.objects.filter(client_order_id=client_order_id).first()
    if order is not None:
        lifecycle.order_note(order_id=order.pk, event_type=lifecycle.EventType.CANCEL_REQUESTED,
                             source=OrderEvent.Source.OPERATOR, reason_code="EMERGENCY_EXIT")
    try:
        venue_order = gateway.cancel_order(symbol, client_order_id)
    except OrderNotFoundError:
        venue_order = gateway.fetch_order(symbol, client_order_id)   # it filled or closed meanwhile
    except VenueError as exc:
        report.errors.append(f"cancel {client_order_id}: {exc}")
        return
    if order is not None and venue_order is not None:
        from trading.services.submission import order_record_venue_state

        order_record_venue_state(order_id=order.pk, venue_order=venue_order, gateway=gateway,
                                 source=OrderEvent.Source.OPERATOR)
    report.canceled_orders.append(client_order_id)


def _sell_quantity(rules: MarketRules, wanted: Decimal, free: Decimal, price: Decimal) -> Decimal:
    qty = (min(wanted, free) / rules.lot_step).to_integral_value(rounding=ROUND_DOWN) * rules.lot_step
    if qty < rules.min_qty or qty * price < rules.min_notional:
        return Decimal(0)     # dust: the venue would refuse it
    return qty


def _flatten(gateway: ExchangeGateway, *, flatten_all: bool, trace_id: str, report: EmergencyExitReport) -> None:
    venue = gateway.name
    balances = gateway.fetch_balances()
    if flatten_all:
        targets = {asset: b.free for asset, b in balances.items() if asset != QUOTE and b.free > 0}
    else:
        targets = {asset: qty for asset, qty in expected_holdings(venue).items() if qty > 0}
    markets = gateway.load_markets() if targets else {}
    for asset, wanted in sorted(targets.items()):
        symbol = f"{asset}/{QUOTE}"
        rules = markets.get(symbol)
        if rules is None:
            report.errors.append(f"{asset}: no {symbol} market to sell into")
            continue
        # Any sell of ours still on its way (a stop exit, an earlier emergency exit) is already
        # selling these coins: selling them again would only be refused, or sell what isn't ours.
        in_flight = Order.objects.filter(venue=venue, symbol=symbol, side=Order.Side.SELL).exclude(
            status__in=TERMINAL_STATUSES).first()
        if in_flight is not None:
            report.unresolved_orders.append(in_flight.client_order_id)
            continue
        free = balances[asset].free if asset in balances else Decimal(0)
        price = gateway.fetch_ticker(symbol).last
        qty = _sell_quantity(rules, wanted, free, price)
        if qty == 0:
            continue
        # The n-th emergency exit on this symbol: the same call retried computes the same id.
        attempt = Order.objects.filter(venue=venue, symbol=symbol, intent=Order.Intent.EMERGENCY_EXIT).count()
        cid = make_client_order_id(strategy=STRATEGY, symbol=symbol, tick_id=f"emergency-{attempt}",
                                   intent="emergency_exit")
        order, _ = lifecycle.order_create(new=lifecycle.NewOrder(
            client_order_id=cid, venue=venue, strategy=STRATEGY, symbol=symbol, side=Order.Side.SELL,
            type=Order.Type.MARKET, intent=Order.Intent.EMERGENCY_EXIT, quantity=qty, trace_id=trace_id,
            reason_code="EMERGENCY_EXIT"), source=OrderEvent.Source.OPERATOR, enqueue=False)
        order = order_submit(order_id=order.pk, gateway=gateway)
        report.exit_orders.append(order.client_order_id)
        if order.status == OrderStatus.SUBMIT_UNKNOWN:
            report.unresolved_orders.append(order.client_order_id)
        elif order.status == OrderStatus.REJECTED:
            report.errors.append(f"sell {qty} {symbol} rejected: {order.last_error}")


def _read_back(gateway: ExchangeGateway, *, flatten_all: bool, report: EmergencyExitReport) -> None:
    try:
        balances = gateway.fetch_balances()
    except VenueError as exc:
        report.errors.append(f"reading balances back: {exc}")
        return
    ours = expected_holdings(gateway.name)
    for asset, balance in sorted(balances.items()):
        if asset == QUOTE or balance.total <= 0:
            continue
        if flatten_all or ours.get(asset, Decimal(0)) > 0:
            report.remaining[asset] = format(balance.total.normalize(), "f")


def _notify(*, actor: str, source: str, reason_code: str, trace_id: str, report: EmergencyExitReport) -> None:
    from infra.telegram import telegram_enqueue

    left = ", ".join(f"{a} {q}" for a, q in report.remaining.items()) or "nothing"
    with transaction.atomic():
        telegram_enqueue(
            text=(f"EMERGENCY EXIT by {actor} via {source}: canceled {len(report.canceled_orders)} orders, "
                  f"placed {len(report.exit_orders)} exit orders; left on the venue: {left}."
                  + (f" Unresolved: {', '.join(report.unresolved_orders)}." if report.unresolved_orders else "")
                  + f" reason_code={reason_code} trace_id={trace_id}"),
            trace_id=trace_id, reason_code=reason_code)
