"""Emergency exit: halt, cancel every open order of ours, flatten, and report what is left.

Idempotent: a second call finds nothing open and nothing to sell, and places nothing. Every
order it places goes through the one door (``orders.order_place``: deterministic client ids,
events, the unknown-outcome rules), so a crash or a double click cannot sell twice. Venue calls
can take 20 s each, so the API runs it as a Celery task (``trading.emergency_exit``) where no
web-server timeout can kill it half way; the report is written as an audit row
(``emergency_exit.report``) that the API returns, or that the operator fetches by trace id.

"Flat" is a fact read back from the venue, never assumed: the holdings in scope are below dust
(what the venue would refuse to sell), nothing of ours is in flight, and the read-back
succeeded. Anything else is reported (``flat: false``) and the CLI exits non-zero.

What "flatten" sells:
* by default, the positions the system opened: for each base asset, what our own fills say we
  hold (``expected_holdings``), capped by what the venue shows as free;
* with ``flatten_all``, every non-quote holding on the venue worth more than dust.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models.functions import Now

from trading.client_ids import is_ours
from trading.exchanges.base import ExchangeGateway, MarketRules, VenueOrderStatus, round_to_step
from trading.exchanges.errors import OrderNotFoundError, VenueError
from trading.exchanges.factory import gateway_or_default
from trading.models import TERMINAL_STATUSES, EmergencyExitRun, Order, OrderEvent, OrderStatus
from trading.selectors import expected_holdings
from trading.services import lifecycle
from trading.services.control import audit_record
from trading.services.orders import order_place
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
    flat: bool = False                # read back: nothing in scope above dust, nothing in flight, no error
    already_flat: bool = False        # flat, and this call had nothing to cancel or sell

    def as_dict(self) -> dict:
        return asdict(self)


def emergency_exit(*, actor: str, source: str, reason_code: str, reason: str, flatten_all: bool, trace_id: str,
                   gateway: ExchangeGateway | None = None) -> EmergencyExitReport:
    from trading.config_schema import config_get
    from trading.selectors import is_halted

    gateway = gateway_or_default(gateway)
    _halt_and_audit(actor=actor, source=source, reason_code=reason_code, reason=reason, trace_id=trace_id,
                    flatten_all=flatten_all, halt_before=is_halted().as_json())
    report = EmergencyExitReport()
    read_back = False
    try:
        universe = set(config_get().universe)
        try:
            _cancel_open_orders(gateway, universe, report)
            _flatten(gateway, flatten_all=flatten_all, trace_id=trace_id, report=report)
        except VenueError as exc:
            # The venue failed us half-way (stops may be canceled, nothing sold yet): say so in the
            # report, read back what is held, and let the operator run it again.
            report.errors.append(f"stopped early: {type(exc).__name__}: {exc}")
        _read_back(gateway, flatten_all=flatten_all, report=report)
        read_back = True
    except BaseException as exc:     # an interrupt or exit too: it must never read as flat
        report.errors.append(f"failed: {type(exc).__name__}: {exc}" if str(exc) else f"failed: {type(exc).__name__}")
        raise
    finally:
        # A run is never left "running": the venue-stop service holds new stops back while one is
        # (strategy/services/venue_stops.py), so an unfinished run would leave positions bare. Flat
        # is what the venue was read back to hold, never assumed: no read-back, not flat.
        report.flat = (read_back and not report.remaining and not report.unresolved_orders
                       and not report.errors)
        report.already_flat = report.flat and not report.canceled_orders and not report.exit_orders
        with transaction.atomic():
            EmergencyExitRun.objects.filter(trace_id=trace_id).update(report=report.as_dict(),
                                                                      finished_at=Now())
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
        EmergencyExitRun.objects.get_or_create(trace_id=trace_id, defaults={"actor": actor, "source": source})
        audit_record(actor=actor, source=source, action="emergency_exit", reason_code=reason_code,
                     reason=reason, before={"halt": halt_before},
                     after={"halted": True, "flatten_all": flatten_all}, trace_id=trace_id)


def _cancel_open_orders(gateway: ExchangeGateway, universe: set[str], report: EmergencyExitReport) -> None:
    venue = gateway.name
    for order in Order.objects.filter(venue=venue).exclude(status__in=TERMINAL_STATUSES).order_by("id"):
        if order.status == OrderStatus.PENDING:
            # Never sent: cancel it here — only if it is still unsent under its row lock; a worker
            # that claimed it meanwhile owns it now, and it is handled as in flight below.
            lifecycle.order_cancel_unsent(order_id=order.pk, source=OrderEvent.Source.OPERATOR,
                                          reason_code="EMERGENCY_EXIT", detail="canceled before send")
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
    # Only what the venue says it canceled (an order that filled meanwhile was not canceled).
    if venue_order is not None and venue_order.status in (VenueOrderStatus.CANCELED, VenueOrderStatus.EXPIRED):
        report.canceled_orders.append(client_order_id)


def _is_dust(rules: MarketRules, quantity: Decimal, price: Decimal) -> bool:
    """Less than the venue would accept in one sell."""
    return quantity < rules.min_qty or quantity * price < rules.min_notional


def _sell_quantity(rules: MarketRules, wanted: Decimal, free: Decimal, price: Decimal) -> Decimal:
    qty = round_to_step(min(wanted, free), rules.lot_step)
    return Decimal(0) if _is_dust(rules, qty, price) else qty


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
        # Sent right here rather than enqueued: the report must say what became of each sell.
        order, _ = order_place(venue=venue, strategy=STRATEGY, symbol=symbol, side=Order.Side.SELL,
                               type=Order.Type.MARKET, intent=Order.Intent.EMERGENCY_EXIT, quantity=qty,
                               trace_id=trace_id, tick_id=f"emergency-{attempt}", reason_code="EMERGENCY_EXIT",
                               source=OrderEvent.Source.OPERATOR)
        order = order_submit(order_id=order.pk, gateway=gateway)
        report.exit_orders.append(order.client_order_id)
        if order.status == OrderStatus.SUBMIT_UNKNOWN:
            report.unresolved_orders.append(order.client_order_id)
        elif order.status == OrderStatus.REJECTED:
            report.errors.append(f"sell {qty} {symbol} rejected: {order.last_error}")


def _read_back(gateway: ExchangeGateway, *, flatten_all: bool, report: EmergencyExitReport) -> None:
    """What is left on the venue, read back: every asset in scope still above dust."""
    try:
        balances = gateway.fetch_balances()
        markets = gateway.load_markets()
    except VenueError as exc:
        report.errors.append(f"reading balances back: {exc}")
        return
    ours = expected_holdings(gateway.name)
    for asset, balance in sorted(balances.items()):
        if asset == QUOTE or balance.total <= 0 or not (flatten_all or ours.get(asset, Decimal(0)) > 0):
            continue
        rules = markets.get(f"{asset}/{QUOTE}")
        try:
            price = gateway.fetch_ticker(f"{asset}/{QUOTE}").last if rules else None
        except VenueError as exc:
            report.errors.append(f"price of {asset}: {exc}")
            price = None
        if rules is not None and price is not None and _is_dust(rules, balance.total, price):
            continue
        report.remaining[asset] = format(balance.total.normalize(), "f")


def _notify(*, actor: str, source: str, reason_code: str, trace_id: str, report: EmergencyExitReport) -> None:
    from infra.telegram import telegram_enqueue

    left = ", ".join(f"{a} {q}" for a, q in report.remaining.items()) or "nothing above dust"
    telegram_enqueue(
        text=(f"EMERGENCY EXIT by {actor} via {source}: {'FLAT' if report.flat else 'NOT FLAT'}. Canceled "
              f"{len(report.canceled_orders)} orders, placed {len(report.exit_orders)} exit orders; left on the "
              f"venue: {left}."
              + (f" Unresolved: {', '.join(report.unresolved_orders)}." if report.unresolved_orders else "")
              + (f" Errors: {'; '.join(report.errors)}." if report.errors else "")
              + f" reason_code={reason_code} trace_id={trace_id}"),
        trace_id=trace_id, reason_code=reason_code)
