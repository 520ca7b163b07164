"""What the dashboard shows, read through each app's own selectors (no writes, no venue calls).

The money figures come from ``adminapi.selectors`` - the same read model as ``/admin/positions``,
``/admin/pnl`` and ``/admin/status`` - so the page and the API can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings

from adminapi import selectors as cockpit
from infra.clock import hk_day_start_utc, now_utc, timeframe_seconds
from strategy import selectors as strategy_selectors
from strategy.models import StrategyPosition
from strategy.params import STRATEGY_NAME
from syncer import selectors as market
from trading import selectors as trading_selectors
from trading.config_schema import ConfigValidationError, config_get
from trading.services.equity import plain

CHART_CANDLES = 72         # 1m: the last 72 minutes; 15m: the last 18 hours
LEVEL_RUNWAY = 6
TIMELINE_LIMIT = 200
# Decisions that are news on the timeline; a skip or a hold happens for every symbol at every tick.
TIMELINE_DECISIONS = ("enter", "blocked", "exit")


def _venue() -> str:
    return settings.VENUE.name


def universe_and_timeframe() -> tuple[list[str], str]:
    try:
        cfg = config_get()
        return list(cfg.universe), cfg.timeframe
    except ConfigValidationError:   # an invalid stored config: show what was traded by default
        from trading.config_schema import SCHEMA

        return list(SCHEMA["universe"].default), SCHEMA["timeframe"].default


def overview() -> dict[str, Any]:
    """The header: halt, heartbeats, equity, today's PnL, the open book."""
    return cockpit.operator_status()


def open_positions() -> list[dict[str, Any]]:
    return cockpit.positions_overview(state="open", limit=100)


def recent_closed_positions(limit: int = 10) -> list[dict[str, Any]]:
    return cockpit.positions_overview(state="closed", limit=limit)


def equity_curve(hours: int = 24) -> dict[str, Any]:
    return cockpit.equity_points(since=now_utc() - timedelta(hours=hours), max_points=1500)


# --- per symbol: candles with the trades on them --------------------------------------------------

@dataclass(frozen=True)
class Marker:
    kind: str              # entry | exit | stop | take_profit
    at: datetime
    price: Decimal
    label: str


def symbol_chart(*, symbol: str, timeframe: str) -> dict[str, Any]:
    """The symbol's newest candles, and the entries, exits and stop / target levels of every
    position that overlaps them."""
    venue = _venue()
    candles = market.candles_recent(venue=venue, symbol=symbol, timeframe=timeframe, count=CHART_CANDLES)
    markers: list[Marker] = []
    levels: list[dict[str, Any]] = []
    step = timedelta(seconds=timeframe_seconds(timeframe))
    first = candles[0].open_time if candles else now_utc() - step * CHART_CANDLES
    last_close = candles[-1].open_time + step if candles else now_utc()
    positions = [p for p in strategy_selectors.positions_list(venue=venue, symbol=symbol, limit=50)
                 if p.closed_at is None or p.closed_at >= first]
    for view in cockpit.position_views(positions, venue=venue):
        p = view.position
        markers.append(Marker("entry", p.opened_at, p.entry_price, f"entry #{p.pk} @ {plain(p.entry_price)}"))
        if p.exited_quantity > 0:
            exit_price = _exit_price(p)
            at = p.closed_at or p.exit_triggered_at or p.updated_at
            markers.append(Marker("exit", at, exit_price,
                                  f"exit #{p.pk} @ {plain(exit_price)} ({p.exit_reason or 'sold'})"))
        # An open position's levels reach a few candles past the last one, so they read as lines.
        end = p.closed_at or max(last_close, now_utc()) + LEVEL_RUNWAY * step
        start = max(p.opened_at, first)
        if view.stop_price is not None:
            levels.append({"kind": "stop", "start": start, "end": end, "price": view.stop_price,
                           "label": f"stop #{p.pk} {plain(view.stop_price)}"})
            # where the stop is now (open) or was when the position closed
            at = p.closed_at or min(max(last_close, p.opened_at), now_utc())
            markers.append(Marker("stop", at, view.stop_price, f"stop #{p.pk} @ {plain(view.stop_price)}"))
        if view.take_profit_price is not None and p.status != StrategyPosition.Status.CLOSED:
            levels.append({"kind": "take_profit", "start": start, "end": end, "price": view.take_profit_price,
                           "label": f"take-profit #{p.pk} {plain(view.take_profit_price)}"})
    return {"symbol": symbol, "timeframe": timeframe, "candles": candles, "markers": markers, "levels": levels}


def _exit_price(position: StrategyPosition) -> Decimal:
    """Average price the exits sold at (proceeds are net of fees; add the fees back)."""
    orders = strategy_selectors.position_exit_orders(positions=[position]).get(position.pk, [])
    qty = sum((o.filled_quantity for o in orders), Decimal(0))
    if qty:
        return sum((o.filled_quote for o in orders), Decimal(0)) / qty
    return position.exit_proceeds / position.exited_quantity


# --- why no entry ------------------------------------------------------------------------------------

def _pct(value: float | None, ref: float | None) -> float | None:
    if value is None or not ref:
        return None
    return (value - ref) / ref * 100


def why_no_entry(*, symbols: list[str]) -> list[dict[str, Any]]:
    """Per symbol, from its latest decision's inputs (what B-lite saw on the last closed candle,
    ``strategy.engines.blite``): how far the close is from the breakout level (the highest high
    of the lookback), the volume from its threshold (multiplier x its SMA), the close from the
    trend EMA - each needs to be above for an entry - and what blocked a signal, if anything."""
    latest = strategy_selectors.latest_decisions_per_symbol(strategy=STRATEGY_NAME, symbols=symbols)
    rows = []
    for symbol in symbols:
        d = latest.get(symbol)
        if d is None:
            rows.append({"symbol": symbol, "decision": None})
            continue
        engine = (d.inputs or {}).get("engine") or {}
        seen = engine.get("inputs") or {}
        close, level = seen.get("close"), seen.get("donchian_high")
        volume, threshold = seen.get("volume"), seen.get("volume_threshold")
        ema = seen.get("ema")
        gate = (d.inputs or {}).get("gate") or {}
        rows.append({
            "symbol": symbol, "decision": d.decision, "reason_code": d.reason_code, "tick_id": d.tick_id,
            "at": d.created_at, "trace_id": d.trace_id, "engine_reason": engine.get("reason_code"),
            "close": close, "breakout_level": level, "breakout_pct": _pct(close, level),
            "breakout_ok": seen.get("breakout"),
            "volume": volume, "volume_threshold": threshold,
            "volume_pct_of_threshold": (volume / threshold * 100) if volume is not None and threshold else None,
            "volume_ok": seen.get("volume_ok"),
            "ema": ema, "trend_pct": _pct(close, ema), "trend_ok": seen.get("trend_ok"),
            "candles_used": seen.get("candles_used"), "candles_required": seen.get("candles_required"),
            "blocked_by": gate.get("blocked_by"), "blocked_detail": gate.get("detail"),
        })
    return rows


# --- today's timeline ---------------------------------------------------------------------------------

def timeline_today(*, limit: int = TIMELINE_LIMIT) -> list[dict[str, Any]]:
    """Since the Hong Kong day began, newest first: decisions that acted or were blocked,
    every order event, and every operator action (halts, resumes, config, emergency exits)."""
    start = hk_day_start_utc(now_utc())
    items: list[dict[str, Any]] = []
    for d in strategy_selectors.decisions_since(since=start, limit=limit * 5):
        if d.decision in TIMELINE_DECISIONS:
            gate = (d.inputs or {}).get("gate") or {}
            items.append({"at": d.created_at, "kind": "decision", "symbol": d.symbol,
                          "what": f"{d.decision} ({d.reason_code})",
                          "detail": gate.get("detail") or f"tick {d.tick_id}", "trace_id": d.trace_id})
    for e in trading_selectors.order_events_between(start=start, limit=limit):
        o = e.order
        items.append({"at": e.created_at, "kind": "order", "symbol": o.symbol,
                      "what": f"{e.event_type} {o.side} {o.intent}",
                      "detail": _event_detail(e.payload, o.client_order_id), "trace_id": e.trace_id})
    for a in trading_selectors.audit_between(start=start, limit=limit):
        items.append({"at": a.created_at, "kind": "halt" if a.action.startswith("trading.") else "operator",
                      "symbol": "", "what": f"{a.action} by {a.actor} via {a.source}",
                      "detail": f"{a.reason_code}: {a.reason}", "trace_id": a.trace_id})
    items.sort(key=lambda i: i["at"], reverse=True)
    return items[:limit]


def _tidy(value: Any) -> str:
    """A stored decimal without its 18 trailing zeros."""
    try:
        return plain(Decimal(str(value)))
    except ArithmeticError:
        return str(value)


def _event_detail(payload: dict | None, client_order_id: str) -> str:
    payload = payload or {}
    if payload.get("quantity") not in (None, ""):
        price = f" @ {_tidy(payload['price'])}" if payload.get("price") not in (None, "") else ""
        return f"{_tidy(payload['quantity'])}{price} ({client_order_id})"
    if payload.get("detail") or payload.get("error"):
        return f"{payload.get('detail') or payload.get('error')} ({client_order_id})"
    return client_order_id
