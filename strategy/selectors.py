"""Reads of strategy state: positions, decisions, and the order facts the risk gates need."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Max, QuerySet

from strategy.engines import ExitReason
from strategy.models import StrategyDecision, StrategyPosition, VenueStop
from trading.models import TERMINAL_STATUSES, Order
from trading.selectors import clamp_limit

P = StrategyPosition.Status
STOP_EXITS = (str(ExitReason.STOP_LOSS), str(ExitReason.TRAILING_STOP))


def positions_active(*, venue: str) -> QuerySet[StrategyPosition]:
    """Open and closing positions (holdings we still answer for), oldest first."""
    return StrategyPosition.objects.filter(venue=venue, status__in=[P.OPEN, P.CLOSING]).order_by("opened_at", "id")


def positions_unprotected_on_venue(*, venue: str) -> list[StrategyPosition]:
    """Open positions whose protective stop is not on the venue (``venue_stop_reason`` says why)."""
    return list(StrategyPosition.objects.filter(venue=venue, status=P.OPEN, venue_stop=VenueStop.UNPROTECTED)
                .order_by("opened_at", "id"))


def positions_closed_since(*, venue: str, since: datetime) -> QuerySet[StrategyPosition]:
    return StrategyPosition.objects.filter(venue=venue, status=P.CLOSED, closed_at__gte=since).order_by("closed_at")


def last_stop_exits(*, venue: str, symbols: list[str]) -> dict[str, datetime]:
    """When each symbol's most recent stop-loss / trailing-stop exit was triggered."""
    out: dict[str, datetime] = {}
    rows = (StrategyPosition.objects.filter(venue=venue, symbol__in=symbols, exit_reason__in=STOP_EXITS,
                                            exit_triggered_at__isnull=False)
            .order_by("symbol", "-exit_triggered_at").values_list("symbol", "exit_triggered_at"))
    for symbol, at in rows:
        out.setdefault(symbol, at)
    return out


def symbols_with_unresolved_orders(*, venue: str) -> set[str]:
    """Symbols with any order whose outcome is not final yet (pending, in flight, unknown, or
    accepted and not done): a new entry there could double the exposure."""
    return set(Order.objects.filter(venue=venue).exclude(status__in=TERMINAL_STATUSES)
               .values_list("symbol", flat=True).distinct())


def pending_entry_orders(*, venue: str, strategy: str) -> QuerySet[Order]:
    """Entry orders not final yet that have no position: each will take a position slot."""
    return (Order.objects.filter(venue=venue, strategy=strategy, intent=Order.Intent.ENTRY, position__isnull=True)
            .exclude(status__in=TERMINAL_STATUSES))


def decided_symbols(*, strategy: str, tick_id: str) -> set[str]:
    return set(StrategyDecision.objects.filter(strategy=strategy, tick_id=tick_id).values_list("symbol", flat=True))


def decision_for_order(order: Order) -> StrategyDecision | None:
    return StrategyDecision.objects.filter(strategy=order.strategy, tick_id=order.tick_id, symbol=order.symbol).first()


def decisions_list(*, tick_id: str | None = None, symbol: str | None = None, decision: str | None = None,
                   reason_code: str | None = None, limit: int | None = None) -> QuerySet[StrategyDecision]:
    qs = StrategyDecision.objects.all()
    if tick_id:
        qs = qs.filter(tick_id=tick_id)
    if symbol:
        qs = qs.filter(symbol=symbol)
    if decision:
        qs = qs.filter(decision=decision)
    if reason_code:
        qs = qs.filter(reason_code=reason_code)
    return qs.order_by("-created_at", "-id")[: clamp_limit(limit)]


def last_decision() -> StrategyDecision | None:
    return StrategyDecision.objects.order_by("-created_at", "-id").first()


def latest_decisions_per_symbol(*, symbols: list[str] | None = None,
                                strategy: str | None = None) -> dict[str, StrategyDecision]:
    """The most recent decision of each symbol (of ``symbols``, or of every symbol seen; of one
    ``strategy``, or of any): what the last tick saw and why it did what it did."""
    qs = StrategyDecision.objects.all()
    if strategy is not None:
        qs = qs.filter(strategy=strategy)
    if symbols is not None:
        qs = qs.filter(symbol__in=symbols)
    latest_ids = qs.values("symbol").annotate(last_id=Max("id")).values_list("last_id", flat=True)
    return {d.symbol: d for d in StrategyDecision.objects.filter(id__in=list(latest_ids))}


# --- the operator's view of positions (read model of the cockpit) ---------------------------

def positions_list(*, venue: str, state: str = "all", symbol: str | None = None,
                   limit: int = 100) -> list[StrategyPosition]:
    """Positions newest first: ``open`` (open and closing: still held), ``closed``, or ``all``."""
    qs = StrategyPosition.objects.filter(venue=venue).select_related("entry_order")
    if state == "open":
        qs = qs.filter(status__in=[P.OPEN, P.CLOSING])
    elif state == "closed":
        qs = qs.filter(status=P.CLOSED)
    if symbol:
        qs = qs.filter(symbol=symbol)
    return list(qs.order_by("-opened_at", "-id")[:limit])


def positions_closed_between(*, venue: str, start: datetime | None = None,
                             end: datetime | None = None) -> QuerySet[StrategyPosition]:
    qs = StrategyPosition.objects.filter(venue=venue, status=P.CLOSED)
    if start is not None:
        qs = qs.filter(closed_at__gte=start)
    if end is not None:
        qs = qs.filter(closed_at__lt=end)
    return qs.order_by("closed_at", "id")


def position_exit_orders(*, positions: list[StrategyPosition]) -> dict[int, list[Order]]:
    """Each position's own exit orders (client ids ``P<id>`` / ``exit<n>``), oldest first."""
    by_tick = {f"P{p.pk}": p.pk for p in positions}
    out: dict[int, list[Order]] = {p.pk: [] for p in positions}
    if not by_tick:
        return out
    for order in Order.objects.filter(tick_id__in=list(by_tick), side=Order.Side.SELL).order_by("id"):
        out[by_tick[order.tick_id]].append(order)
    return out


def decisions_since(*, since: datetime, limit: int = 500) -> QuerySet[StrategyDecision]:
    """Decisions at or after ``since``, newest first."""
    return StrategyDecision.objects.filter(created_at__gte=since).order_by("-created_at", "-id")[:limit]


def first_position_opened_at(*, venue: str) -> datetime | None:
    return (StrategyPosition.objects.filter(venue=venue).order_by("opened_at", "id")
            .values_list("opened_at", flat=True).first())
