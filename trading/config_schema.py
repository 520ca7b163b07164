"""The typed schema of every ``system_config`` key: type, default, range, meaning.

``system_config`` stores one JSON value per key. This module is the only place that knows
what the keys are and what values they may hold:

* ``config_validate(changes)`` checks a proposed change and returns *every* problem (unknown
  key, wrong type, out of range), each under its key name — never just the first one.
* ``config_get()`` returns a frozen ``StrategyConfig`` snapshot: stored values where a row
  exists, defaults where it does not, ``Decimal`` for decimal fields. A stored value that no
  longer validates raises ``ConfigValidationError`` (fail closed: the strategy must not trade
  on a config nobody can vouch for).
* ``config_version()`` is the sum of the stored rows' versions. Every effective change bumps
  exactly one row's version (or creates a row at version 1), so the number strictly grows with
  every change and is 0 while everything is at its default.

Decimals are stored as JSON strings (``"1.5"``) so no precision is lost in a float round trip;
inputs may be given as JSON numbers or decimal strings.

The halt state lives under ``trading.halt`` (``HALT_KEY``) with the shape of ``HaltState``;
``/metrics`` reads ``system_config.value->'halted'`` there. It is not a strategy parameter and
is written only by ``trading.services.control.trading_halt`` / ``trading_resume``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

HALT_KEY = "trading.halt"

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}/[A-Z0-9]{2,20}$")
TIMEFRAMES = ("1m", "5m", "15m", "1h")
MAX_UNIVERSE = 50


class ConfigValidationError(Exception):
    """A proposed (or stored) config is invalid. ``problems`` maps each key to its problems."""

    def __init__(self, problems: Mapping[str, list[str]]) -> None:
        self.problems = {k: list(v) for k, v in problems.items()}
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in self.problems.items()))


@dataclass(frozen=True)
class KeySpec:
    """One config key. ``kind`` is ``int`` | ``decimal`` | ``choice`` | ``symbols``.

    Bounds: ``minimum``/``maximum`` are inclusive unless ``exclusive_minimum`` is set.
    """

    key: str
    kind: str
    default: Any
    description: str
    minimum: Decimal | int | None = None
    maximum: Decimal | int | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON description (for GET /admin/config and the Django admin help text)."""
        return {
            "key": self.key,
            "type": {"int": "integer", "decimal": "decimal", "choice": "string", "symbols": "list[symbol]"}[self.kind],
            "default": to_json(self.key, self.default),
            "minimum": None if self.minimum is None else str(self.minimum),
            "maximum": None if self.maximum is None else str(self.maximum),
            "exclusive_minimum": self.exclusive_minimum,
            "choices": list(self.choices),
            "description": self.description,
        }


D = Decimal
SCHEMA: dict[str, KeySpec] = {
    spec.key: spec
    for spec in (
        KeySpec("universe", "symbols", ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"),
                "Symbols the strategy trades: unified BASE/QUOTE, non-empty, unique."),
        KeySpec("timeframe", "choice", "15m", "Candle timeframe of the strategy.", choices=TIMEFRAMES),
        KeySpec("breakout_lookback", "int", 20, "Candles the breakout compares the close against.",
                minimum=2, maximum=500),
        KeySpec("volume_sma", "int", 20, "Candles in the volume moving average.", minimum=1, maximum=500),
        KeySpec("volume_multiplier", "decimal", D("1.5"), "Volume must exceed its SMA times this.",
                minimum=D(0), maximum=D(100), exclusive_minimum=True),
        KeySpec("ema_trend", "int", 200, "Period of the trend-filter EMA.", minimum=2, maximum=1000),
        KeySpec("atr_period", "int", 14, "Period of the ATR used for stops.", minimum=1, maximum=500),
        KeySpec("stop_atr_multiple", "decimal", D(2), "Initial stop distance in ATRs.",
                minimum=D(0), maximum=D(50), exclusive_minimum=True),
        KeySpec("take_profit_r", "decimal", D(3), "Take profit at this multiple of the initial risk (R).",
                minimum=D(0), maximum=D(100), exclusive_minimum=True),
        KeySpec("risk_per_trade", "decimal", D("0.005"), "Fraction of equity risked per trade.",
                minimum=D(0), maximum=D("0.05"), exclusive_minimum=True),
        KeySpec("max_position_notional", "decimal", D(1000), "Largest position, in quote currency.",
                minimum=D(0), maximum=D(10) ** 12, exclusive_minimum=True),
        KeySpec("max_open_positions", "int", 3, "Most positions open at once.", minimum=1, maximum=100),
        KeySpec("daily_loss_limit", "decimal", D("0.02"),
                "Halt new entries after losing this fraction of equity in one Hong Kong trading day.",
                minimum=D(0), maximum=D(1), exclusive_minimum=True),
        KeySpec("cooldown_candles", "int", 4, "Candles to wait after an exit before re-entering a symbol.",
                minimum=0, maximum=1000),
        KeySpec("stale_data_after_candles", "int", 2, "Candles of missing data after which a symbol is stale.",
                minimum=1, maximum=100),
        KeySpec("max_submit_attempts", "int", 5, "Sends of one client order id before giving up.",
                minimum=1, maximum=20),
    )
}


@dataclass(frozen=True)
class StrategyConfig:
    """A consistent snapshot of the strategy config; ``version`` is ``config_version()`` at read time."""

    universe: tuple[str, ...]
    timeframe: str
    breakout_lookback: int
    volume_sma: int
    volume_multiplier: Decimal
    ema_trend: int
    atr_period: int
    stop_atr_multiple: Decimal
    take_profit_r: Decimal
    risk_per_trade: Decimal
    max_position_notional: Decimal
    max_open_positions: int
    daily_loss_limit: Decimal
    cooldown_candles: int
    stale_data_after_candles: int
    max_submit_attempts: int
    version: int = 0

    def as_json(self) -> dict[str, Any]:
        """Every key as stored in JSON (Decimals as strings), without ``version``."""
        return {key: to_json(key, getattr(self, key)) for key in SCHEMA}


@dataclass(frozen=True)
class HaltState:
    """The value stored under ``trading.halt``: the last halt/resume and who did it, why, when."""

    halted: bool = False
    by: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    at: str | None = None          # ISO-8601 UTC
    trace_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> HaltState:
        """Lenient read: a missing or malformed row means "not halted" only if it says so;
        any dict with a truthy ``halted`` is a halt (fail closed)."""
        if not isinstance(value, Mapping):
            return cls()
        known = {f.name for f in fields(cls)} - {"halted"}
        rest = {k: (None if value.get(k) is None else str(value.get(k))) for k in known}
        return cls(halted=bool(value.get("halted")), **rest)


# --- validation ---------------------------------------------------------------------------------

def _check_bounds(spec: KeySpec, value: Decimal | int, problems: list[str]) -> None:
    if spec.minimum is not None:
        if spec.exclusive_minimum and not value > spec.minimum:
            problems.append(f"must be > {spec.minimum}, got {value}")
        elif not spec.exclusive_minimum and value < spec.minimum:
            problems.append(f"must be >= {spec.minimum}, got {value}")
    if spec.maximum is not None and value > spec.maximum:
        problems.append(f"must be <= {spec.maximum}, got {value}")


def _coerce(spec: KeySpec, raw: Any) -> tuple[Any, list[str]]:
    """Returns (normalised python value, problems)."""
    problems: list[str] = []
    if spec.kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            return None, [f"must be an integer, got {type(raw).__name__} {raw!r}"]
        _check_bounds(spec, raw, problems)
        return raw, problems
    if spec.kind == "decimal":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
            return None, [f"must be a decimal number (JSON number or string), got {type(raw).__name__} {raw!r}"]
        try:
            value = Decimal(str(raw).strip())
        except InvalidOperation:
            return None, [f"must be a decimal number, got {raw!r}"]
        if not value.is_finite():
            return None, [f"must be a finite decimal number, got {raw!r}"]
        _check_bounds(spec, value, problems)
        return value, problems
    if spec.kind == "choice":
        if not isinstance(raw, str):
            return None, [f"must be a string, one of {', '.join(spec.choices)}; got {type(raw).__name__} {raw!r}"]
        if raw not in spec.choices:
            return None, [f"must be one of {', '.join(spec.choices)}, got {raw!r}"]
        return raw, problems
    if spec.kind == "symbols":
        if not isinstance(raw, list | tuple):
            return None, [f"must be a list of symbols like 'BTC/USDT', got {type(raw).__name__} {raw!r}"]
        if not raw:
            problems.append("must not be empty")
        if len(raw) > MAX_UNIVERSE:
            problems.append(f"must hold at most {MAX_UNIVERSE} symbols, got {len(raw)}")
        seen: set[str] = set()
        for item in raw:
            if not isinstance(item, str) or not SYMBOL_RE.match(item):
                problems.append(f"{item!r} is not a unified symbol like 'BTC/USDT' (upper-case BASE/QUOTE)")
            elif item in seen:
                problems.append(f"{item!r} is listed twice")
            else:
                seen.add(item)
        return tuple(raw), problems
    raise AssertionError(f"unknown kind {spec.kind}")  # pragma: no cover


def config_validate(changes: Any) -> dict[str, Any]:
    """Validate a mapping of key -> proposed JSON value.

    Returns the normalised values (Decimals, tuples) or raises ``ConfigValidationError``
    listing every problem of every key.
    """
    if not isinstance(changes, Mapping):
        raise ConfigValidationError({"changes": [f"must be an object of key -> value, got {type(changes).__name__}"]})
    if not changes:
        raise ConfigValidationError({"changes": ["must name at least one key to change"]})
    problems: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for key, raw in changes.items():
        spec = SCHEMA.get(key)
        if spec is None:
            hint = " (use halt/resume for the halt state)" if key == HALT_KEY else ""
            problems[str(key)] = [f"unknown config key{hint}; known keys: {', '.join(SCHEMA)}"]
            continue
        value, key_problems = _coerce(spec, raw)
        if key_problems:
            problems[key] = key_problems
        else:
            values[key] = value
    if problems:
        raise ConfigValidationError(problems)
    return values


def to_json(key: str, value: Any) -> Any:
    """The JSON form a normalised value is stored in."""
    spec = SCHEMA[key]
    if spec.kind == "decimal":
        return str(value)
    if spec.kind == "symbols":
        return list(value)
    return value


# --- reads -----------------------------------------------------------------------------------

def stored_rows() -> dict[str, Any]:
    """``{key: SystemConfig row}`` for the schema's keys that have a row."""
    from trading.models import SystemConfig

    return {row.key: row for row in SystemConfig.objects.filter(key__in=list(SCHEMA))}


def config_version() -> int:
    """Sum of stored row versions of the strategy keys; grows with every change, 0 = all defaults."""
    from django.db.models import Sum

    from trading.models import SystemConfig

    return int(SystemConfig.objects.filter(key__in=list(SCHEMA)).aggregate(v=Sum("version"))["v"] or 0)


def config_from_values(stored: Mapping[str, Any], *, version: int = 0) -> StrategyConfig:
    """A snapshot from stored JSON values (missing keys take their defaults).

    Raises ``ConfigValidationError`` naming every stored key whose value is invalid."""
    values = {key: spec.default for key, spec in SCHEMA.items()}
    present = {k: v for k, v in stored.items() if k in SCHEMA}
    if present:
        values.update(config_validate(present))
    return StrategyConfig(**values, version=version)


def config_get() -> StrategyConfig:
    """The current config, defaults filled in for keys without a row, read in one query."""
    rows = stored_rows()
    version = sum(row.version for row in rows.values())
    return config_from_values({k: row.value for k, row in rows.items()}, version=version)


def config_defaults() -> StrategyConfig:
    return StrategyConfig(**{key: spec.default for key, spec in SCHEMA.items()}, version=0)
