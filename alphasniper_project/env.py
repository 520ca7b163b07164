"""The one place the environment is read.

Every setting the system takes comes from an environment variable listed in `.env.example`.
``load_config()`` validates all of them at once and raises ``ConfigError`` naming every bad
variable, so a misconfigured process stops at start with one clear line instead of failing
later in the middle of a trade. Production differs from development only by these values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

VENUES = ("paper", "binance", "bybit")
RUN_MODES = ("production", "development", "test")
MARKET_DATA_SOURCES = ("synthetic", "binance", "bybit", "replay")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """One or more environment variables are missing or invalid. The message names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class VenueConfig:
    """Credentials and endpoint of the one venue named by EXCHANGE. Paper has none."""

    name: str
    api_key: str = ""
    api_secret: str = ""
    base_url: str | None = None
    testnet: bool = False


@dataclass(frozen=True)
class AppConfig:
    run_mode: str
    secret_key: str
    debug: bool
    database_url: str
    redis_url: str
    broker_url: str
    admin_token: str
    venue: VenueConfig
    market_data_source: str
    market_data_seed: int
    market_data_base_url: str | None
    replay_dir: str
    telegram_bot_token: str
    telegram_chat_id: str
    telegram_api_url: str
    sentry_dsn: str
    flower_basic_auth: str
    log_level: str
    log_format: str
    allowed_hosts: list[str]
    paper_fee_rate: Decimal
    paper_slippage_bps: Decimal
    paper_initial_balances: dict[str, Decimal]


def _bool(env: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    problems.append(f"{name}={raw!r} is not a boolean (use true or false)")
    return default


def _decimal(env: Mapping[str, str], name: str, default: str, problems: list[str], *,
             low: Decimal, high: Decimal) -> Decimal:
    raw = env.get(name, default).strip() or default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        problems.append(f"{name}={raw!r} is not a number")
        return Decimal(default)
    if not low <= value <= high:
        problems.append(f"{name}={raw} is out of range ({low}..{high})")
    return value


def _balances(env: Mapping[str, str], name: str, default: str, problems: list[str]) -> dict[str, Decimal]:
    """``USDT=10000,BTC=0.1`` -> {"USDT": Decimal("10000"), "BTC": Decimal("0.1")}."""
    raw = env.get(name, default).strip() or default
    out: dict[str, Decimal] = {}
    for item in raw.split(","):
        asset, _, amount = item.strip().partition("=")
        try:
            value = Decimal(amount)
            if not asset.isalnum() or value < 0:
                raise InvalidOperation
        except InvalidOperation:
            problems.append(f"{name} item {item.strip()!r} must look like ASSET=AMOUNT (e.g. USDT=10000)")
            continue
        out[asset.upper()] = value
    return out


def _check_url(name: str, value: str, schemes: tuple[str, ...], problems: list[str]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.hostname or parts.path):
        problems.append(f"{name}={redact_url(value)!r} is not a valid URL (expected {' or '.join(schemes)}://…)")


def _check_base_url(name: str, value: str, problems: list[str]) -> str | None:
    """Venue REST root override: scheme, host and port only; the venue's own paths are appended."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{name}={value!r} must be scheme://host[:port], e.g. http://127.0.0.1:18001")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        problems.append(f"{name}={value!r} must not carry a path; the venue's paths (/api/v3, /v5) are appended")
        return None
    return value.rstrip("/")


def redact_url(url: str) -> str:
    """Hide the password of a URL when we print it."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def load_config(env: Mapping[str, str] | None = None) -> AppConfig:
    env = os.environ if env is None else env
    problems: list[str] = []

    run_mode = env.get("ALPHASNIPER_ENV", "production").strip().lower()
    if run_mode not in RUN_MODES:
        problems.append(f"ALPHASNIPER_ENV={run_mode!r} is not one of {', '.join(RUN_MODES)}")
        run_mode = "production"
    production = run_mode == "production"

    database_url = env.get("DATABASE_URL", "").strip()
    if not database_url:
        problems.append("DATABASE_URL is not set (e.g. postgres://user:pass@host:5432/alphasniper)")
    else:
        _check_url("DATABASE_URL", database_url, ("postgres", "postgresql"), problems)

    redis_url = env.get("REDIS_URL", "").strip()
    if not redis_url:
        problems.append("REDIS_URL is not set (e.g. redis://host:6379/0)")
    else:
        _check_url("REDIS_URL", redis_url, ("redis", "rediss", "unix"), problems)
    broker_url = env.get("CELERY_BROKER_URL", "").strip() or redis_url
    if env.get("CELERY_BROKER_URL", "").strip():
        _check_url("CELERY_BROKER_URL", broker_url, ("redis", "rediss", "unix"), problems)

    secret_key = env.get("DJANGO_SECRET_KEY", "").strip()
    if not secret_key:
        if production:
            problems.append("DJANGO_SECRET_KEY is not set (required in production)")
        secret_key = "insecure-development-key-not-for-production"

    admin_token = env.get("ADMIN_TOKEN", "").strip()
    if production and not admin_token:
        problems.append("ADMIN_TOKEN is not set (required in production: the /admin API refuses every call)")
    elif admin_token and len(admin_token) < 16:
        problems.append("ADMIN_TOKEN is too short (use at least 16 random characters)")

    venue_name = env.get("EXCHANGE", "paper").strip().lower()
    venue = VenueConfig(name="paper")
    testnet = _bool(env, "EXCHANGE_TESTNET", False, problems)
    if venue_name not in VENUES:
        problems.append(f"EXCHANGE={venue_name!r} is not one of {', '.join(VENUES)}")
    elif venue_name != "paper":
        # Only the chosen venue's variables are read: the other venue is never configured.
        prefix = venue_name.upper()
        key = env.get(f"{prefix}_API_KEY", "").strip()
        secret = env.get(f"{prefix}_API_SECRET", "").strip()
        for var, value in ((f"{prefix}_API_KEY", key), (f"{prefix}_API_SECRET", secret)):
            if not value:
                problems.append(f"{var} is required when EXCHANGE={venue_name}")
        base_url = _check_base_url(f"{prefix}_BASE_URL", env.get(f"{prefix}_BASE_URL", "").strip(), problems)
        venue = VenueConfig(name=venue_name, api_key=key, api_secret=secret, base_url=base_url, testnet=testnet)

    source = env.get("MARKET_DATA_SOURCE", "synthetic").strip().lower()
    if source not in MARKET_DATA_SOURCES:
        problems.append(f"MARKET_DATA_SOURCE={source!r} is not one of {', '.join(MARKET_DATA_SOURCES)}")
    replay_dir = env.get("MARKET_DATA_REPLAY_DIR", "").strip()
    if source == "replay" and not replay_dir:
        problems.append("MARKET_DATA_REPLAY_DIR is required when MARKET_DATA_SOURCE=replay")
    seed_raw = env.get("MARKET_DATA_SEED", "42").strip()
    try:
        seed = int(seed_raw)
    except ValueError:
        problems.append(f"MARKET_DATA_SEED={seed_raw!r} is not an integer")
        seed = 42

    market_data_base_url = _check_base_url("MARKET_DATA_BASE_URL", env.get("MARKET_DATA_BASE_URL", "").strip(),
                                           problems)

    tg_token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    tg_chat = env.get("TELEGRAM_CHAT_ID", "").strip()
    if bool(tg_token) != bool(tg_chat):
        missing = "TELEGRAM_CHAT_ID" if tg_token else "TELEGRAM_BOT_TOKEN"
        problems.append(f"{missing} is not set (Telegram needs both TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID)")
    tg_api = env.get("TELEGRAM_API_URL", "https://api.telegram.org").strip().rstrip("/")
    _check_url("TELEGRAM_API_URL", tg_api, ("http", "https"), problems)

    sentry_dsn = env.get("SENTRY_DSN", "").strip()
    if sentry_dsn:
        _check_url("SENTRY_DSN", sentry_dsn, ("http", "https"), problems)

    log_level = env.get("LOG_LEVEL", "INFO").strip().upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"LOG_LEVEL={log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        log_level = "INFO"
    log_format = env.get("LOG_FORMAT", "json").strip().lower()
    if log_format not in ("json", "text"):
        problems.append(f"LOG_FORMAT={log_format!r} is not one of json, text")
        log_format = "json"

    paper_fee_rate = _decimal(env, "PAPER_FEE_RATE", "0.001", problems, low=Decimal(0), high=Decimal("0.01"))
    paper_slippage = _decimal(env, "PAPER_SLIPPAGE_BPS", "5", problems, low=Decimal(0), high=Decimal(500))
    paper_balances = _balances(env, "PAPER_INITIAL_BALANCES", "USDT=10000", problems)

    debug = _bool(env, "DJANGO_DEBUG", False, problems)
    allowed_hosts = [h.strip() for h in env.get("ALLOWED_HOSTS", "*").split(",") if h.strip()]

    if problems:
        raise ConfigError(problems)
    return AppConfig(
        run_mode=run_mode,
        secret_key=secret_key,
        debug=debug,
        database_url=database_url,
        redis_url=redis_url,
        broker_url=broker_url,
        admin_token=admin_token,
        venue=venue,
        market_data_source=source,
        market_data_seed=seed,
        market_data_base_url=market_data_base_url,
        replay_dir=replay_dir,
        telegram_bot_token=tg_token,
        telegram_chat_id=tg_chat,
        telegram_api_url=tg_api,
        sentry_dsn=sentry_dsn,
        flower_basic_auth=env.get("FLOWER_BASIC_AUTH", "").strip(),
        log_level=log_level,
        log_format=log_format,
        allowed_hosts=allowed_hosts,
        paper_fee_rate=paper_fee_rate,
        paper_slippage_bps=paper_slippage,
        paper_initial_balances=paper_balances,
    )


def database_settings(url: str) -> dict:
    """Django DATABASES['default'] from a postgres:// URL."""
    parts = urlsplit(url)
    options: dict[str, str] = {}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "alphasniper",
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
