"""Template filters of the dashboard: Hong Kong time (labelled HKT), money, percentages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django import template

from infra.clock import to_hk

register = template.Library()


def _moment(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@register.filter
def hkt(value, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A UTC moment as Hong Kong wall time, labelled: ``2026-12-01 22:45:00 HKT``."""
    moment = _moment(value)
    return "-" if moment is None else f"{to_hk(moment).strftime(fmt)} HKT"


@register.filter
def hktime(value) -> str:
    return hkt(value, "%H:%M:%S")


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@register.filter
def money(value, places: int = 2) -> str:
    number = _decimal(value)
    return "-" if number is None else f"{number:,.{int(places)}f}"


@register.filter
def signed(value, places: int = 2) -> str:
    number = _decimal(value)
    return "-" if number is None else f"{number:+,.{int(places)}f}"


@register.filter
def pct(value, places: int = 2) -> str:
    number = _decimal(value)
    return "-" if number is None else f"{number:+.{int(places)}f}%"


@register.filter
def sign_class(value) -> str:
    """``pos`` / ``neg`` / empty: green and red in the stylesheet."""
    number = _decimal(value)
    if number is None or number == 0:
        return ""
    return "pos" if number > 0 else "neg"


@register.filter
def age(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


@register.filter
def get(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def num(value) -> str:
    """A float from a decision's inputs, to 8 significant digits, without trailing zeros."""
    if value is None or value == "":
        return "-"
    try:
        return f"{float(value):,.8g}" if abs(float(value)) < 1e8 else f"{float(value):,.0f}"
    except (TypeError, ValueError):
        return str(value)
