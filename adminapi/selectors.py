"""The operator's read model (no writes here): the status and config overviews, positions with
their PnL, the PnL of each Hong Kong day, the equity curve, and the figures ``/admin/status``,
``/metrics``, tbot and the dashboard add.

Nothing is re-derived here. Each figure comes from where the money path defines it:
positions from ``strategy.selectors`` (projections of their orders' fills) valued with the
helpers of ``strategy.services.portfolio``; equity and the day's PnL from the ``equity_snapshots``
the data-syncer appends, with ``trading.services.equity.day_pnl`` (equity now minus equity at
the HK day's start); last prices from ``syncer.selectors.latest_prices``; HK day boundaries
from ``infra.clock``. Fees charged in a third asset and not yet valued (``fee_unvalued``) are
listed per asset and never added to quote figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings

from infra.clock import hk_day_start_utc, now_utc, to_hk
from strategy import selectors as strategy_selectors
from strategy.models import StrategyPosition, VenueStop
from strategy.services.portfolio import entry_cost, plain, position_realised_so_far, position_unrealised
from syncer.selectors import latest_prices
from trading import selectors as trading_selectors
from trading.config_schema import SCHEMA, ConfigValidationError, config_get, config_version, stored_rows, to_json
from trading.models import TERMINAL_STATUSES, Order, OrderStatus
from trading.selectors import is_halted, open_orders_count, unresolved_orders_count
from trading.services.equity import day_pnl

ZERO = Decimal(0)
HUNDRED = Decimal(100)
P = StrategyPosition.Status
MAX_PNL_DAYS = 366


def _venue(venue: str | None) -> str:
    return venue or settings.VENUE.name


def _num(value: Decimal | None) -> str | None:
    """Decimals go out as exact strings (the API's convention), without 18 trailing zeros."""
    return None if value is None else plain(value)


def _pct(part: Decimal, whole: Decimal) -> str | None:
    if not whole:
        return None
    return plain((part / whole * HUNDRED).quantize(Decimal("0.01")))


def _add_unvalued(into: dict[str, Decimal], fees: dict[str, Any] | None) -> None:
    for asset, amount in (fees or {}).items():
        into[asset] = into.get(asset, ZERO) + Decimal(str(amount))


# --- positions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PositionView:
    """One position as the operator sees it (every money figure in the quote asset)."""

    position: StrategyPosition
    last_price: Decimal | None
    unrealised: Decimal | None          # None: no price yet, or nothing held any more
    realised: Decimal
    fees: Decimal
    fee_unvalued: dict[str, Decimal]
    stop_price: Decimal | None
    take_profit_price: Decimal | None
    now: datetime
    venue_stop_order: Order | None = None      # the protective stop live on the venue, if any

    @property
    def is_open(self) -> bool:
        return self.position.status != P.CLOSED

    @property
    def exposure(self) -> Decimal:
        """What the still-held quantity is worth at the last price (entry price without one)."""
        if not self.is_open:
            return ZERO
        return self.position.remaining_quantity * (self.last_price or self.position.entry_price)

    @property
    def venue_stop_state(self) -> str:
        """protected (resting on the venue) | pending (on its way) | unprotected (and why) | none."""
        live = self.venue_stop_order
        if not self.is_open:
            return VenueStop.NONE
        if live is not None:
            return VenueStop.PROTECTED if live.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED) \
                else VenueStop.PENDING
        return VenueStop.UNPROTECTED if self.position.venue_stop == VenueStop.UNPROTECTED else VenueStop.NONE

    def as_json(self) -> dict[str, Any]:
        p = self.position
        last = self.last_price
        end = p.closed_at or self.now
        return {
            "id": p.pk,
            "symbol": p.symbol,
            "status": p.status,
            "quantity": _num(p.remaining_quantity if self.is_open else p.quantity),
            "entry_quantity": _num(p.quantity),
            "exited_quantity": _num(p.exited_quantity),
            "entry_price": _num(p.entry_price),
            "entry_cost": _num(entry_cost(p, p.quantity)),
            "last_price": _num(last),
            "exposure": _num(self.exposure),
            "unrealised_pnl": _num(self.unrealised),
            "realised_pnl": _num(self.realised),
            "fees": _num(self.fees),
            "fee_unvalued": {a: _num(v) for a, v in sorted(self.fee_unvalued.items())},
            "stop_price": _num(self.stop_price),
            "take_profit_price": _num(self.take_profit_price),
            # The protective stop on the venue: there while our processes are down (or why not).
            "venue_stop": {
                "state": self.venue_stop_state,
                "stop_price": _num(self.venue_stop_order.stop_price) if self.venue_stop_order else None,
                "client_order_id": self.venue_stop_order.client_order_id if self.venue_stop_order else None,
                "reason": (p.venue_stop_reason or None) if self.venue_stop_state == VenueStop.UNPROTECTED else None,
            },
            # How far the price may still fall before the stop / rise before the target, in %
            # of the last price (negative: already through it, the monitor is exiting).
            "stop_distance_pct": (_pct(last - self.stop_price, last)
                                  if self.is_open and last and self.stop_price is not None else None),
            "take_profit_distance_pct": (_pct(self.take_profit_price - last, last)
                                         if self.is_open and last and self.take_profit_price is not None else None),
            "opened_at": p.opened_at.isoformat(),
            "closed_at": p.closed_at.isoformat() if p.closed_at else None,
            "age_seconds": max(0, int((end - p.opened_at).total_seconds())),
            "exit_reason": p.exit_reason or None,
            "entry_client_order_id": p.entry_order.client_order_id,
            "trace_id": p.trace_id,
        }


def _stop_levels(position: StrategyPosition) -> tuple[Decimal | None, Decimal | None]:
    state = position.stop_state or {}
    stop, target = state.get("stop_price"), state.get("take_profit_price")
    return (Decimal(str(stop)) if stop not in (None, "") else None,
            Decimal(str(target)) if target not in (None, "") else None)


def position_views(positions: list[StrategyPosition], *, venue: str, now: datetime | None = None
                   ) -> list[PositionView]:
    now = now or now_utc()
    prices = latest_prices(venue=venue, symbols=sorted({p.symbol for p in positions})) if positions else {}
    exits = strategy_selectors.position_exit_orders(positions=positions)
    out = []
    for p in positions:
        fees = p.entry_fee
        unvalued: dict[str, Decimal] = {}
        _add_unvalued(unvalued, p.entry_order.fee_unvalued)
        for order in exits.get(p.pk, []):
            fees += order.fee_quote
            _add_unvalued(unvalued, order.fee_unvalued)
        last = prices.get(p.symbol)
        is_open = p.status != P.CLOSED
        unrealised = position_unrealised(p, last) if is_open and last is not None else None
        stop, target = _stop_levels(p)
        live_stops = [o for o in exits.get(p.pk, []) if o.type == Order.Type.STOP_MARKET
                      and o.status not in TERMINAL_STATUSES]
        out.append(PositionView(position=p, last_price=last, unrealised=unrealised,
                                realised=position_realised_so_far(p) if p.exited_quantity or not is_open else ZERO,
                                fees=fees, fee_unvalued=unvalued, stop_price=stop, take_profit_price=target, now=now,
                                venue_stop_order=live_stops[-1] if live_stops else None))
    return out


def positions_overview(*, venue: str | None = None, state: str = "all", symbol: str | None = None,
                       limit: int = 100) -> list[dict[str, Any]]:
    """What ``GET /admin/positions`` and ``tbot positions`` show, newest first."""
    venue = _venue(venue)
    positions = strategy_selectors.positions_list(venue=venue, state=state, symbol=symbol, limit=limit)
    return [v.as_json() for v in position_views(positions, venue=venue)]


@dataclass(frozen=True)
class OpenBook:
    count: int
    exposure: Decimal
    unrealised: Decimal
    unpriced: tuple[str, ...]           # open positions without a last price (left out of unrealised)


def open_book(*, venue: str | None = None) -> OpenBook:
    venue = _venue(venue)
    views = position_views(list(strategy_selectors.positions_active(venue=venue).select_related("entry_order")),
                           venue=venue)
    return OpenBook(count=len(views), exposure=sum((v.exposure for v in views), ZERO),
                    unrealised=sum((v.unrealised or ZERO for v in views), ZERO),
                    unpriced=tuple(sorted({v.position.symbol for v in views if v.last_price is None})))


# --- PnL ----------------------------------------------------------------------------------------

def _trade_stats(closed: list[PositionView]) -> dict[str, Any]:
    """Realised figures of closed positions (a closed position is one trade)."""
    results = [v.realised for v in closed]
    fees = sum((v.fees for v in closed), ZERO)
    unvalued: dict[str, Decimal] = {}
    for v in closed:
        for asset, amount in v.fee_unvalued.items():
            unvalued[asset] = unvalued.get(asset, ZERO) + amount
    wins = [r for r in results if r > 0]
    losses = [r for r in results if r < 0]
    gross_win, gross_loss = sum(wins, ZERO), -sum(losses, ZERO)
    return {
        "realised_pnl": _num(sum(results, ZERO)),
        "fees": _num(fees),
        "fee_unvalued": {a: _num(v) for a, v in sorted(unvalued.items())},
        "trades": len(results),
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": _pct(Decimal(len(wins)), Decimal(len(results))),
        # gross profit / gross loss; None without a losing trade (it would be infinite)
        "profit_factor": plain((gross_win / gross_loss).quantize(Decimal("0.01"))) if gross_loss else None,
    }


def _drawdown(venue: str, start: datetime | None, end: datetime | None) -> dict[str, Any]:
    dd = trading_selectors.equity_max_drawdown(venue=venue, start=start, end=end)
    if dd is None:
        return {"max_drawdown": None, "max_drawdown_pct": None}
    amount, fraction = dd
    return {"max_drawdown": _num(amount),
            "max_drawdown_pct": None if fraction is None else plain((fraction * HUNDRED).quantize(Decimal("0.01")))}


def _closed_views(venue: str, start: datetime | None, end: datetime | None) -> list[PositionView]:
    closed = list(strategy_selectors.positions_closed_between(venue=venue, start=start, end=end)
                  .select_related("entry_order"))
    return position_views(closed, venue=venue)


def pnl_today(*, venue: str | None = None, now: datetime | None = None) -> dict[str, Any] | None:
    """The Hong Kong day so far: ``pnl`` = equity now minus equity at the day's start (the
    figure the daily loss limit uses), and the realised / unrealised / fee breakdown. None
    before the data-syncer has recorded any equity."""
    venue = _venue(venue)
    now = now or now_utc()
    latest = trading_selectors.equity_latest(venue=venue)
    if latest is None:
        return None
    start = hk_day_start_utc(now)
    day = day_pnl(venue=venue, day_start=start, equity_now=latest.equity)
    book = open_book(venue=venue)
    return {
        "day": to_hk(start).date().isoformat(),
        "day_start": start.isoformat(),
        "pnl": _num(day.total),
        "pnl_pct": _pct(day.total, day.equity_start),
        "equity_start": _num(day.equity_start),
        "equity_now": _num(day.equity_now),
        "equity_at": latest.taken_at.isoformat(),
        "unrealised_pnl": _num(book.unrealised),
        **_trade_stats(_closed_views(venue, start, None)),
        **_drawdown(venue, start, None),
    }


def pnl_overview(*, venue: str | None = None, days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    """What ``GET /admin/pnl`` and ``tbot pnl`` show: today, each of the last ``days`` HK days
    that has equity or trades (newest first), and the total since the first snapshot."""
    venue = _venue(venue)
    now = now or now_utc()
    days = max(1, min(days, MAX_PNL_DAYS))
    first = trading_selectors.equity_first_taken_at(venue=venue)
    first_position = strategy_selectors.first_position_opened_at(venue=venue)
    began = min((t for t in (first, first_position) if t is not None), default=now)
    per_day = []
    start = hk_day_start_utc(now)
    for _ in range(days):
        if start < hk_day_start_utc(began):
            break
        # the next HK midnight, found from midday of the next day (robust to any day length)
        end = hk_day_start_utc(start + timedelta(hours=36))
        end_snap = trading_selectors.equity_last_at_or_before(venue=venue, moment=min(end, now))
        entry: dict[str, Any] = {"day": to_hk(start).date().isoformat(), "day_start": start.isoformat(),
                                 "pnl": None, "equity_start": None, "equity_end": None}
        if end_snap is not None and end_snap.taken_at >= start - timedelta(hours=1):
            d = day_pnl(venue=venue, day_start=start, equity_now=end_snap.equity)
            entry.update({"pnl": _num(d.total), "equity_start": _num(d.equity_start), "equity_end": _num(d.equity_now)})
        entry.update(_trade_stats(_closed_views(venue, start, end)))
        entry.update(_drawdown(venue, start, end))
        per_day.append(entry)
        start = hk_day_start_utc(start - timedelta(hours=12))
    latest = trading_selectors.equity_latest(venue=venue)
    first_snap = trading_selectors.equity_last_at_or_before(venue=venue, moment=first) if first else None
    book = open_book(venue=venue)
    closed_all = _closed_views(venue, None, None)
    open_views = position_views(list(strategy_selectors.positions_active(venue=venue).select_related("entry_order")),
                                venue=venue)
    total = {
        "since": first.isoformat() if first else None,
        "pnl": _num(latest.equity - first_snap.equity) if latest and first_snap else None,
        "equity_start": _num(first_snap.equity) if first_snap else None,
        "equity_now": _num(latest.equity) if latest else None,
        "unrealised_pnl": _num(book.unrealised),
        **_trade_stats(closed_all),
        **_drawdown(venue, None, None),
    }
    # Partial exits of positions still open are realised too (not yet a finished trade).
    partial = sum((v.realised for v in open_views), ZERO)
    total["realised_pnl"] = _num(Decimal(total["realised_pnl"]) + partial)
    return {"venue": venue, "quote": latest.quote if latest else None, "today": pnl_today(venue=venue, now=now),
            "days": per_day, "total": total}


# --- equity curve ---------------------------------------------------------------------------------

def equity_points(*, venue: str | None = None, since: datetime, until: datetime | None = None,
                  max_points: int = 2000) -> dict[str, Any]:
    venue = _venue(venue)
    rows = trading_selectors.equity_series(venue=venue, since=since, until=until, max_points=max_points)
    latest = trading_selectors.equity_latest(venue=venue)
    return {"venue": venue, "quote": latest.quote if latest else None, "since": since.isoformat(),
            "points": [{"t": t.isoformat(), "equity": _num(e), "free_quote": _num(f)} for t, e, f in rows]}


# --- status ---------------------------------------------------------------------------------------

def cockpit_figures(*, venue: str | None = None) -> dict[str, Any]:
    """Equity, today's PnL and the open book: what ``/admin/status`` and ``/metrics`` add."""
    venue = _venue(venue)
    latest = trading_selectors.equity_latest(venue=venue)
    today = None
    if latest is not None:
        today = day_pnl(venue=venue, day_start=hk_day_start_utc(now_utc()), equity_now=latest.equity)
    book = open_book(venue=venue)
    return {
        "equity": _num(latest.equity) if latest else None,
        "equity_at": latest.taken_at.isoformat() if latest else None,
        "quote": latest.quote if latest else None,
        "pnl_today": _num(today.total) if today else None,
        "open_positions": book.count,
        "open_exposure": _num(book.exposure),
        "unrealised_pnl": _num(book.unrealised),
    }


# --- status and config overviews (GET /admin/status, /admin/config, tbot status) --------------

def config_overview() -> dict[str, Any]:
    """Every key with its effective value, default, version and where the value comes from.

    Unlike ``config_get()`` this never raises: an invalid stored value is shown with its problems."""
    rows = stored_rows()
    problems: dict[str, list[str]] = {}
    try:
        effective = config_get().as_json()
    except ConfigValidationError as exc:
        problems = exc.problems
        effective = {k: (rows[k].value if k in rows else to_json(k, spec.default)) for k, spec in SCHEMA.items()}
    keys = []
    for key, spec in SCHEMA.items():
        row = rows.get(key)
        keys.append({
            **spec.describe(),
            "value": effective[key],
            "source": "stored" if row else "default",
            "version": row.version if row else 0,
            "updated_at": row.updated_at if row else None,
            "updated_by": row.updated_by if row else None,
            "problems": problems.get(key, []),
        })
    return {"version": sum(r.version for r in rows.values()), "valid": not problems, "values": effective,
            "keys": keys}


def heartbeat_ages() -> tuple[dict[str, float | None], str | None]:
    """Heartbeat ages per process, and the error when Redis could not be read."""
    from infra import heartbeat

    try:
        return heartbeat.ages(), None
    except Exception as exc:  # status must answer even when Redis is down
        return {p: None for p in heartbeat.PROCESSES}, f"{type(exc).__name__}: {exc}"[:300]


def system_status() -> dict[str, Any]:
    """What GET /admin/status and ``tbot status`` show."""
    halt = is_halted()
    ages, heartbeat_error = heartbeat_ages()
    decision = strategy_selectors.last_decision()
    return {
        "halted": halt.halted,
        "halt": halt.as_json(),
        "config_version": config_version(),
        "venue": settings.VENUE.name,
        "open_orders": open_orders_count(),
        "unresolved_orders": unresolved_orders_count(),
        "heartbeats": ages,
        "heartbeat_error": heartbeat_error,
        "last_decision": None if decision is None else {
            "tick_id": decision.tick_id, "symbol": decision.symbol, "decision": decision.decision,
            "reason_code": decision.reason_code, "trace_id": decision.trace_id, "created_at": decision.created_at,
        },
    }


def operator_status() -> dict[str, Any]:
    """``GET /admin/status``: the system's state plus how the account is doing."""
    return {**system_status(), **cockpit_figures()}


def order_fills_for_chart(*, venue: str, symbol: str, since: datetime) -> list[Order]:
    return list(trading_selectors.orders_of_symbol_between(venue=venue, symbol=symbol, start=since))
