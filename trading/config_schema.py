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
inputs may be given as JSON numbers or decimal strings, with at most ``DECIMAL_PLACES`` places.
``config_validate(..., strict=True)`` (the API and tbot) takes decimals only as plain strings,
exactly the strings ``decimal_pattern(spec)`` matches — the OpenAPI schema publishes that
pattern, so a client can know before sending whether a value is in range.

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
# Finer than any price or fraction the strategy needs; a value with more places is a typo or a
# float artefact (0.1 + 0.2), not an intent.
DECIMAL_PLACES = 8
PLAIN_DECIMAL_RE = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$")


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
        KeySpec("venue_stops", "choice", "on",
                "Keep a protective stop-market sell on the venue for every open position, so a position "
                "keeps its stop while our workers, broker, database or host are down.", choices=("on", "off")),
        KeySpec("venue_stop_step_pct", "decimal", D("0.5"),
                "Move the venue stop up once the trailing stop is this many % above it (fewer venue "
                "requests; the bot-side stop covers the gap meanwhile).",
                minimum=D(0), maximum=D(20), exclusive_minimum=True),
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
    venue_stops: str
    venue_stop_step_pct: Decimal
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


def _nonzero_digits(most: int) -> str:
    """1..``most`` digits, at least one of them not 0."""
    return "(?:" + "|".join(f"{'0' * z}[1-9][0-9]{{0,{most - 1 - z}}}" for z in range(most)) + ")"


def _fraction_at_most(limit: str, places: int, *, positive: bool) -> str:
    """Decimal places ``f`` (1..``places`` digits) with ``0.f <= 0.limit``; with ``positive`` also ``0.f > 0``."""
    padded = limit.ljust(places, "0")
    branches = []
    for i, top in enumerate(map(int, padded)):
        # Below the limit from place i on: the same digits before it, a smaller digit at it.
        prefix, rest = padded[:i], places - i - 1
        zero_so_far = positive and set(prefix) <= {"0"}
        low = 1 if zero_so_far else 0             # a 0 here would still be 0.000...: see the next branch
        if top > low:
            branches.append(f"{prefix}[{low}-{top - 1}][0-9]{{0,{rest}}}")
        if zero_so_far and top > 0 and rest > 0:   # a 0 here, then some non-zero digit later
            branches.append(f"{prefix}0{_nonzero_digits(rest)}")
    for j in range(1, places + 1):            # a prefix of the limit itself (trailing zeros dropped)
        if not (positive and set(padded[:j]) <= {"0"}):
            branches.append(padded[:j])
    return "(?:" + "|".join(branches) + ")"


def _integer_below(limit: str) -> str | None:
    """Integers 1 <= n < int(limit) written without leading zeros, or None when there are none."""
    branches = []
    if len(limit) > 1:
        branches.append(f"[1-9][0-9]{{0,{len(limit) - 2}}}")
    for i, top in enumerate(limit):
        low = 1 if i == 0 else 0
        if int(top) > low:
            branches.append(f"{limit[:i]}[{low}-{int(top) - 1}][0-9]{{{len(limit) - i - 1}}}")
    return "(?:" + "|".join(branches) + ")" if branches else None


def decimal_pattern(spec: KeySpec) -> str:
    """The regular expression of exactly the plain decimal strings ``config_validate(strict=True)``
    accepts for ``spec``: no sign or exponent, at most ``DECIMAL_PLACES`` places, inside the key's
    range. Published in the OpenAPI schema, so the schema and the API agree on every value.

    Only the shape every decimal key has today is supported (minimum 0, exclusive); a key with
    another lower bound must extend this, which the assertion makes impossible to forget."""
    assert spec.kind == "decimal" and spec.minimum == 0 and spec.exclusive_minimum and spec.maximum is not None
    places = DECIMAL_PLACES
    whole, _, fraction = format(Decimal(spec.maximum).normalize(), "f").partition(".")
    assert len(fraction) <= places, f"{spec.key}: maximum has more than {places} places"
    any_fraction = f"(?:\\.[0-9]{{1,{places}}})?"
    branches = []
    if whole != "0":
        branches.append(f"0\\.{_nonzero_digits(places)}")                 # 0 < x < 1
        below = _integer_below(whole)
        if below:
            branches.append(below + any_fraction)                          # 1 <= x < whole
        branches.append(f"{whole}(?:\\.{_fraction_at_most(fraction, places, positive=False)})?")
    else:
        branches.append(f"0\\.{_fraction_at_most(fraction, places, positive=True)}")
    return "^(?:" + "|".join(branches) + ")$"


def _short(raw: Any, limit: int = 40) -> str:
    """``repr`` of a proposed value for an error message, cut short (a 4 KB value is not a message)."""
    text = repr(raw)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _coerce(spec: KeySpec, raw: Any, *, strict: bool = False) -> tuple[Any, list[str]]:
    """Returns (normalised python value, problems)."""
    problems: list[str] = []
    if spec.kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            return None, [f"must be an integer, got {type(raw).__name__} {_short(raw)}"]
        _check_bounds(spec, raw, problems)
        return raw, problems
    if spec.kind == "decimal":
        if strict and not isinstance(raw, str):
            return None, [f"must be a decimal string like \"{spec.default}\", got {type(raw).__name__} "
                          f"{_short(raw)} (a JSON number is a binary float: it may not be the value you wrote)"]
        if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
            return None, [f"must be a decimal number (JSON number or string), got {type(raw).__name__} {_short(raw)}"]
        if strict and not PLAIN_DECIMAL_RE.match(raw):
            return None, [f"must be a plain decimal like \"{spec.default}\" (digits, optionally a point and "
                          f"decimals; no sign, exponent or spaces), got {_short(raw)}"]
        try:
            value = Decimal(str(raw).strip())
        except InvalidOperation:
            return None, [f"must be a decimal number, got {_short(raw)}"]
        if not value.is_finite():
            return None, [f"must be a finite decimal number, got {_short(raw)}"]
        places = -int(value.as_tuple().exponent)
        if places > DECIMAL_PLACES:
            return None, [f"must have at most {DECIMAL_PLACES} decimal places, got {places}"]
        _check_bounds(spec, value, problems)
        return value, problems
    if spec.kind == "choice":
        if not isinstance(raw, str):
            return None, [f"must be a string, one of {', '.join(spec.choices)}; got {type(raw).__name__} {_short(raw)}"]
        if raw not in spec.choices:
            return None, [f"must be one of {', '.join(spec.choices)}, got {_short(raw)}"]
        return raw, problems
    if spec.kind == "symbols":
        if not isinstance(raw, list | tuple):
            return None, [f"must be a list of symbols like 'BTC/USDT', got {type(raw).__name__} {_short(raw)}"]
        if not raw:
            problems.append("must not be empty")
        if len(raw) > MAX_UNIVERSE:
            problems.append(f"must hold at most {MAX_UNIVERSE} symbols, got {len(raw)}")
        seen: set[str] = set()
        for item in raw:
            if not isinstance(item, str) or not SYMBOL_RE.match(item):
                problems.append(f"{_short(item)} is not a unified symbol like 'BTC/USDT' (upper-case BASE/QUOTE)")
            elif item in seen:
                problems.append(f"{_short(item)} is listed twice")
            else:
                seen.add(item)
        return tuple(raw), problems
    raise AssertionError(f"unknown kind {spec.kind}")  # pragma: no cover


def config_validate(changes: Any, *, strict: bool = False) -> dict[str, Any]:
    """Validate a mapping of key -> proposed JSON value.

    Returns the normalised values (Decimals, tuples) or raises ``ConfigValidationError``
    listing every problem of every key. ``strict``: decimals only as plain strings (what an
    operator types), as the API and tbot take them; stored values and the Django admin's JSON
    may also be numbers.
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
        value, key_problems = _coerce(spec, raw, strict=strict)
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
