"""The daily Telegram summary (beat, 08:00 Hong Kong time): the previous HK trading day's PnL,
positions opened / closed, orders, halts, and what is open now.

Sent once per day: a second beat, a re-delivered task or a manual re-run finds the outbox row
of that day (deterministic trace id ``daily-YYYYMMDD``) and sends nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from infra.clock import hk_day_start_utc, now_utc, to_hk
from infra.models import TelegramOutbox
from strategy import selectors
from strategy.models import StrategyPosition
from strategy.services.portfolio import position_unrealised
from syncer.selectors import latest_prices
from trading.models import AuditLog, Order
from trading.selectors import equity_at_day_start

REASON_CODE = "DAILY_SUMMARY"
_SUMMARY_LOCK = 0x4153_5355_4D4D   # "ASSUMM": serialises concurrent summary runs


@dataclass(frozen=True)
class SummaryResult:
    day: str
    trace_id: str
    sent: bool          # False: already sent for this day
    text: str


def daily_summary_text(*, venue: str, day_start: datetime, day_end: datetime) -> str:
    prices = latest_prices(venue=venue)
    day = to_hk(day_start).date()
    closed = list(selectors.positions_closed_since(venue=venue, since=day_start).filter(closed_at__lt=day_end))
    realised = sum((p.realised_pnl or Decimal(0) for p in closed), Decimal(0))
    wins = sum(1 for p in closed if (p.realised_pnl or 0) > 0)
    opened = StrategyPosition.objects.filter(venue=venue, opened_at__gte=day_start, opened_at__lt=day_end).count()
    reasons = Counter(p.exit_reason for p in closed)
    orders = Order.objects.filter(venue=venue, created_at__gte=day_start, created_at__lt=day_end)
    by_intent = Counter(orders.values_list("intent", flat=True))
    by_status = Counter(orders.values_list("status", flat=True))
    halts = list(AuditLog.objects.filter(action__in=["trading.halt", "trading.resume"], created_at__gte=day_start,
                                         created_at__lt=day_end).order_by("created_at"))
    start, end = (equity_at_day_start(venue=venue, day_start=day_start),
                  equity_at_day_start(venue=venue, day_start=day_end))
    lines = [
        f"AlphaSniper daily summary - HK day {day:%Y-%m-%d} ({venue})",
        (f"PnL of the day: {end.equity - start.equity:.2f} {end.quote} (equity {start.equity:.2f} -> "
         f"{end.equity:.2f})" if start and end else "PnL of the day: unknown (no equity recorded at the day's "
                                                     "start or end)"),
        f"Realised PnL: {realised:.2f} from {len(closed)} closed position(s), {wins} winning"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if reasons else ""),
        f"Positions opened: {opened}",
        f"Orders: {orders.count()}"
        + (f" - by intent {dict(sorted(by_intent.items()))}, by status {dict(sorted(by_status.items()))}"
           if by_intent else ""),
    ]
    if halts:
        lines.append("Halts / resumes:")
        lines += [f"  {to_hk(a.created_at):%H:%M} {a.action.split('.')[-1]} by {a.actor} ({a.reason_code})"
                  for a in halts]
    else:
        lines.append("Halts: none")
    active = list(selectors.positions_active(venue=venue))
    unrealised = sum((position_unrealised(p, prices[p.symbol]) for p in active if p.symbol in prices), Decimal(0))
    lines.append(f"Open positions now: {len(active)} (unrealised {unrealised:.2f})")
    for p in active:
        price = prices.get(p.symbol)
        pnl = "n/a" if price is None else f"{position_unrealised(p, price):.2f}"
        stop = p.stop_state.get("stop_price", "?")
        lines.append(f"  #{p.pk} {p.symbol} {p.remaining_quantity} @ {p.entry_price} stop {stop} "
                     f"[{p.status}] unrealised {pnl}")
    from trading.selectors import is_halted

    halt = is_halted()
    lines.append("Trading is HALTED" + (f" ({halt.reason_code} by {halt.by})" if halt.halted else "") if halt.halted
                 else "Trading is running")
    return "\n".join(lines)


def daily_summary_send(*, venue: str | None = None, now: datetime | None = None) -> SummaryResult:
    """Enqueue the summary of the HK day before ``now`` (default: now), once per day."""
    from infra.telegram import telegram_enqueue

    if venue is None:
        from django.conf import settings

        venue = settings.VENUE.name
    today_start = hk_day_start_utc(now or now_utc())
    day_start = hk_day_start_utc(today_start - timedelta(hours=12))
    day = to_hk(day_start).date()
    trace_id = f"daily-{day:%Y%m%d}"
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_SUMMARY_LOCK])
        existing = TelegramOutbox.objects.filter(trace_id=trace_id, reason_code=REASON_CODE).first()
        if existing is not None:
            return SummaryResult(day=f"{day:%Y-%m-%d}", trace_id=trace_id, sent=False, text=existing.text)
        text = daily_summary_text(venue=venue, day_start=day_start, day_end=today_start)
        row = telegram_enqueue(text=text, trace_id=trace_id, reason_code=REASON_CODE)
    return SummaryResult(day=f"{day:%Y-%m-%d}", trace_id=trace_id, sent=True, text=row.text)
