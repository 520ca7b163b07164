"""A worker refuses to start on a venue it cannot trade: one line naming the problem, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from emulator import start_emulator
from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def binance():
    handle = start_emulator("binance", port=0, symbols=["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"])
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def _clean_redis(redis_client):
    """No rate-limit back-off or ban another test left in Redis: the worker checks the venue through it."""


def start_worker(**env_overrides: str) -> subprocess.CompletedProcess:
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "EXCHANGE": "binance", **env_overrides}
    # A worker that passes the check would run forever: the timeout is the "it started" verdict.
    try:
        return subprocess.run([sys.executable, "-m", "celery", "-A", "alphasniper_project", "worker", "--pool",
                               "solo", "-Q", "orders", "--without-mingle", "--without-gossip"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, returncode=None, stdout=str(exc.stdout), stderr=str(exc.stderr))


def our_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("alphasniper: ")]


def test_wrong_secret_is_named(binance):
    result = start_worker(BINANCE_API_KEY=DEFAULT_API_KEY, BINANCE_API_SECRET="wrong-secret",
                          BINANCE_BASE_URL=binance.base_url)
    assert result.returncode == 2
    assert any("BINANCE_API_KEY / BINANCE_API_SECRET rejected by binance" in line for line in our_lines(result))
    assert "Traceback" not in result.stderr


def test_a_universe_symbol_the_venue_does_not_list_is_named(binance):
    # the default universe includes XRP/USDT, which this emulator does not list
    result = start_worker(BINANCE_API_KEY=DEFAULT_API_KEY, BINANCE_API_SECRET=DEFAULT_API_SECRET,
                          BINANCE_BASE_URL=binance.base_url)
    assert result.returncode == 2
    assert our_lines(result) == ["alphasniper: universe symbol XRP/USDT is not listed on binance"]


def test_a_venue_we_can_trade_lets_the_worker_start(binance):
    from trading.services.control import config_update

    config_update(changes={"universe": ["BTC/USDT", "ETH/USDT"]}, actor="test", source="cli",
                  reason_code="TEST_SETUP", reason="emulator lists these", trace_id="t")
    result = start_worker(BINANCE_API_KEY=DEFAULT_API_KEY, BINANCE_API_SECRET=DEFAULT_API_SECRET,
                          BINANCE_BASE_URL=binance.base_url)
    assert result.returncode is None, result.stderr[-2000:]      # still running when we stopped waiting
    assert our_lines(result) == []
