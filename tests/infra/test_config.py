"""A misconfigured process stops at start with one line naming the problem — never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alphasniper_project.env import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "DATABASE_URL": "postgres://u:p@db:5432/alphasniper",
    "REDIS_URL": "redis://redis:6379/0",
    "ADMIN_TOKEN": "a" * 24,
    "DJANGO_SECRET_KEY": "k" * 40,
}


def problems(**overrides: str) -> list[str]:
    env = {**GOOD, **overrides}
    env = {k: v for k, v in env.items() if v is not None}
    try:
        load_config(env)
    except ConfigError as exc:
        return exc.problems
    return []


def test_valid_production_environment_defaults_to_paper():
    config = load_config(GOOD)
    assert config.venue.name == "paper"
    assert config.broker_url == GOOD["REDIS_URL"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"EXCHANGE": "kraken"}, "EXCHANGE='kraken' is not one of paper, binance, bybit"),
        ({"EXCHANGE": "binance"}, "BINANCE_API_KEY is required when EXCHANGE=binance"),
        ({"EXCHANGE": "bybit", "BYBIT_API_KEY": "k"}, "BYBIT_API_SECRET is required when EXCHANGE=bybit"),
        ({"ADMIN_TOKEN": ""}, "ADMIN_TOKEN is not set"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL="),
        ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ({"REDIS_URL": "nonsense"}, "REDIS_URL="),
        ({"EXCHANGE_TESTNET": "maybe", "EXCHANGE": "paper"}, "EXCHANGE_TESTNET='maybe' is not a boolean"),
        ({"TELEGRAM_BOT_TOKEN": "123:abc"}, "TELEGRAM_CHAT_ID is not set"),
        ({"MARKET_DATA_SOURCE": "replay"}, "MARKET_DATA_REPLAY_DIR is required"),
    ],
)
def test_each_bad_variable_is_named(overrides, named):
    found = problems(**overrides)
    assert any(named in p for p in found), found


def test_base_url_override_must_not_carry_a_path():
    found = problems(EXCHANGE="binance", BINANCE_API_KEY="k", BINANCE_API_SECRET="s",
                     BINANCE_BASE_URL="http://127.0.0.1:18001/api/v3")
    assert any("BINANCE_BASE_URL" in p and "path" in p for p in found)
    config = load_config({**GOOD, "EXCHANGE": "binance", "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s",
                          "BINANCE_BASE_URL": "http://127.0.0.1:18001/"})
    assert config.venue.base_url == "http://127.0.0.1:18001"


def test_only_the_chosen_venue_is_configured():
    config = load_config({**GOOD, "EXCHANGE": "bybit", "BYBIT_API_KEY": "k", "BYBIT_API_SECRET": "s",
                          "BINANCE_API_KEY": "other", "BINANCE_BASE_URL": "not even a url"})
    assert config.venue.name == "bybit"
    assert config.venue.api_key == "k"


def test_all_problems_are_reported_at_once():
    found = problems(EXCHANGE="binance", ADMIN_TOKEN="", REDIS_URL="")
    assert len(found) >= 4


def _run(argv: list[str], env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "BYBIT_", "EXCHANGE"))}
    env.pop("ALPHASNIPER_ENV", None)
    env.update({"DJANGO_SECRET_KEY": "k" * 40, "ADMIN_TOKEN": "a" * 24})
    env.update(env_overrides)
    return subprocess.run([sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("env_overrides", "message"),
    [
        ({"EXCHANGE": "kraken"}, "EXCHANGE='kraken' is not one of"),
        ({"EXCHANGE": "binance"}, "BINANCE_API_KEY is required when EXCHANGE=binance"),
        ({"ADMIN_TOKEN": ""}, "ADMIN_TOKEN is not set"),
    ],
)
@pytest.mark.parametrize("entry_point", [["manage.py", "check"], ["-m", "celery", "-A", "alphasniper_project",
                                                                   "worker", "--pool", "solo"]])
def test_processes_refuse_to_start_with_one_clear_line(entry_point, env_overrides, message):
    result = _run(entry_point, env_overrides)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("alphasniper: configuration error:")
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_unreachable_database_is_one_clear_line():
    result = _run(["manage.py", "preflight"], {"DATABASE_URL": "postgres://nobody@127.0.0.1:1/nowhere"})
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at DATABASE_URL=postgres://nobody@127.0.0.1:1/nowhere" in result.stderr
    assert "Traceback" not in result.stderr
