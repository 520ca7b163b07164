"""The shared rate limiter: one budget per venue account across processes, kept in real Redis,
driven through real ccxt against the emulator with its rate limits on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis as redis_lib
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from emulator.server import DEFAULT_API_KEY, DEFAULT_API_SECRET
from tests.conftest import free_port
from tests.trading.exchanges.conftest import make_gateway
from trading.exchanges.errors import RateLimitedError
from trading.exchanges.ratelimit import (
    BAN_KEY_PREFIX,
    FALLBACK_SHARE,
    RateLimitHeldBackError,
    SharedRateLimiter,
    account_id,
    rate_limit_state,
    shared_rate_limiter,
    venue_ban_state,
)
from trading.exchanges.ratelimit_protocol import RateLimiter, request_weight

ROOT = Path(__file__).resolve().parents[3]
BALANCE_PATH = {"binance": "/api/v3/account", "bybit": "/v5/account/wallet-balance"}
REFUSAL_STATUSES = {403, 418, 429}
REFUSAL_CODES = {-1003, -1015, 10006, 10018}


def refusals(log: list[dict]) -> list[dict]:
    """Requests the venue refused for rate reasons (Bybit says 10006 with HTTP 200)."""
    return [r for r in log if r["status"] in REFUSAL_STATUSES or r["code"] in REFUSAL_CODES]


def run_workers(redis_client, specs: list[dict], *, before_go: Callable[[], None] | None = None) -> list[dict]:
    """Start one process per spec, wait until all are ready, release them together, collect results."""
    tag = uuid.uuid4().hex
    ready_key, go_key = f"test:workers:{tag}:ready", f"test:workers:{tag}:go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.trading.exchanges.ratelimit_worker",
             json.dumps({**spec, "ready_key": ready_key, "go_key": go_key})],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for spec in specs
    ]
    try:
        deadline = time.monotonic() + 90
        while int(redis_client.get(ready_key) or 0) < len(procs):
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                pytest.fail(f"a worker died before the start: {dead[0].stderr.read()[-2000:]}")
            assert time.monotonic() < deadline, "workers did not get ready"
            time.sleep(0.02)
        if before_go is not None:
            before_go()
        redis_client.set(go_key, "1")
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for result in results:
        assert result["errors"] == []
    return results


def worker_spec(handle, **spec) -> dict:
    return {"venue": handle.venue, "base_url": handle.base_url, "api_key": DEFAULT_API_KEY,
            "api_secret": DEFAULT_API_SECRET, **spec}


def budget_used(admitted: float, limit: float, window_ms: int, log: list[dict]) -> float:
    """Share of what the venue would have allowed over the burst's span: admitted units divided by
    limit x the number of venue windows any span of that length can touch."""
    span = max(r["time_ms"] for r in log) - min(r["time_ms"] for r in log)
    return admitted / (limit * (span // window_ms + 1))


# ---------------------------------------------------------------------- four processes, one budget
@pytest.mark.slow
def test_four_binance_processes_bursting_never_exceed_the_weight_budget(redis_client, control_for):
    handle, control = control_for("binance")
    budget = 300                              # request weight per minute (the real one is 6000)
    control.set_rate_limit(weight_per_minute=budget)
    attempts = 10 * budget // 2 // 4          # ticker weight 2: the four together ask for 10x the budget
    spec = worker_spec(handle, budgets={"weight_per_minute": budget},
                       steps=[{"call": "ticker", "times": attempts, "max_wait_s": 5}])

    results = run_workers(redis_client, [spec] * 4)

    log = control.requests()
    assert refusals(log) == []
    weight = sum(request_weight("binance", r["method"], r["path"]) for r in log)
    assert weight <= budget
    assert budget_used(weight, budget, 60_000, log) >= 0.8
    tickers = [r for r in log if r["path"] == "/api/v3/ticker/24hr"]
    assert sum(r["ok"] for r in results) == len(tickers)
    assert sum(r["held_back"] for r in results) == 4 * attempts - len(tickers)
    assert sum(r["venue_refused"] for r in results) == 0
    print(f"binance burst: {4 * attempts} calls tried by 4 processes, {len(log)} requests sent, "
          f"{len(refusals(log))} refused, weight {weight}/{budget} = {budget_used(weight, budget, 60_000, log):.0%}")


@pytest.mark.slow
def test_four_bybit_processes_bursting_are_paced_inside_the_endpoint_budget(redis_client, control_for):
    handle, control = control_for("bybit")
    per_second = 10                           # every private endpoint (spot wallet-balance is 50)
    control.set_rate_limit(per_second=per_second)
    attempts = 10 * per_second // 4
    spec = worker_spec(handle, budgets={"per_second": per_second},
                       steps=[{"call": "balances", "times": attempts, "max_wait_s": 5}])

    results = run_workers(redis_client, [spec] * 4)

    log = control.requests(path=BALANCE_PATH["bybit"])
    assert refusals(control.requests()) == []
    assert len(log) == 4 * attempts == sum(r["ok"] for r in results)      # all waited their turn
    assert budget_used(len(log), per_second, 1_000, log) >= 0.8
    print(f"bybit burst: {4 * attempts} calls by 4 processes, {len(log)} sent, {len(refusals(control.requests()))} "
          f"refused, budget used {budget_used(len(log), per_second, 1_000, log):.0%}")


# ---------------------------------------------------------------------- penalties
@pytest.mark.slow
@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_a_429_makes_another_process_back_off(venue, redis_client, control_for):
    handle, control = control_for(venue)
    here = make_gateway(handle, rate_limiter=SharedRateLimiter(venue, DEFAULT_API_KEY, budget_fraction=1.0))
    here.load_markets()

    def hit_the_limit() -> None:
        control.clear_requests()
        control.set_faults([{"path": BALANCE_PATH[venue], "times": 1, "action": "rate_limit_429",
                             "retry_after": 2}])
        with pytest.raises(RateLimitedError) as caught:
            here.fetch_balances()
        assert caught.value.banned is False and 1.5 <= caught.value.retry_after_s <= 2

    spec = worker_spec(handle, steps=[{"call": "balances", "times": 1, "max_wait_s": 0.2},
                                      {"call": "balances", "times": 1, "max_wait_s": 15}])
    (other,) = run_workers(redis_client, [spec], before_go=hit_the_limit)

    assert other == {"ok": 1, "held_back": 1, "venue_refused": 0, "errors": []}
    refused, sent = control.requests(path=BALANCE_PATH[venue])
    assert refusals([refused]) and not refusals([sent])
    # The other process sent nothing while the back-off lasted, then went.
    assert sent["time_ms"] >= refused["time_ms"] + 1950


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_a_ban_sets_the_shared_flag_and_alerts_once(venue, db, redis_client, control_for):
    handle, control = control_for(venue)
    gateway = make_gateway(handle, rate_limiter=shared_rate_limiter(venue, DEFAULT_API_KEY))
    gateway.load_markets()
    control.set_faults([{"path": BALANCE_PATH[venue], "times": 1, "action": "ban_418", "retry_after": 300}])

    with pytest.raises(RateLimitedError) as caught:
        gateway.fetch_balances()

    assert caught.value.banned is True and not isinstance(caught.value, RateLimitHeldBackError)
    state = venue_ban_state(venue)
    assert state is not None and state["venue"] == venue
    assert 299 <= state["remaining_s"] <= 300
    assert 299_000 <= state["until_ms"] - time.time() * 1000 <= 300_500
    assert 299_000 <= redis_client.pttl(BAN_KEY_PREFIX + venue) <= 300_000
    # Any process, even of another account, now refuses to send without asking the venue.
    sent_before = control.request_count()
    with pytest.raises(RateLimitHeldBackError) as held:
        SharedRateLimiter(venue, "another-account", max_wait_s=1).acquire(1)
    assert held.value.banned is True and held.value.retry_after_s > 290
    with pytest.raises(RateLimitedError):
        gateway.fetch_balances()
    assert control.request_count() == sent_before
    assert rate_limit_state(venue)["banned"]["until_ms"] == state["until_ms"]
    # A second 418 (another worker's request was in flight) does not alert the operator again.
    SharedRateLimiter(venue, DEFAULT_API_KEY).penalize(300, True)
    pytest.importorskip("infra.telegram")
    from infra.models import TelegramOutbox

    (alert,) = TelegramOutbox.objects.filter(reason_code="VENUE_BANNED")
    assert venue in alert.text and "banned" in alert.text


# ---------------------------------------------------------------------- the venue corrects us
def test_the_venues_weight_header_corrects_the_shared_budget(redis_client, control_for):
    handle, control = control_for("binance")
    control.set_rate_limit(weight_per_minute=200)
    for _ in range(8):                       # another client on our IP spends 160 of the 200
        assert requests.get(handle.base_url + "/api/v3/exchangeInfo", timeout=5).status_code == 200
    limiter = SharedRateLimiter("binance", DEFAULT_API_KEY, budgets={"weight_per_minute": 200},
                                budget_fraction=1.0, max_wait_s=0.5)
    gateway = make_gateway(handle, rate_limiter=limiter)
    gateway.load_markets()                   # 20 more; the answer says 180 are spent

    sent = 0
    with pytest.raises(RateLimitedError) as caught:
        for _ in range(100):
            gateway.fetch_ticker("BTC/USDT")
            sent += 1

    assert isinstance(caught.value, RateLimitHeldBackError)
    assert sent == 10                        # (200 - 180) / 2
    assert refusals(control.requests()) == []
    used = rate_limit_state("binance", api_key=DEFAULT_API_KEY)["accounts"][0]["budgets"]["weight_1m"]["used"]
    assert used == 200


def test_bybit_budgets_are_per_endpoint_and_learn_the_venues_limit(redis_client):
    limiter = SharedRateLimiter("bybit", "k1", budget_fraction=1.0, max_wait_s=0)
    limiter.observe_response("GET", "/v5/order/realtime", {"X-Bapi-Limit": "3", "X-Bapi-Limit-Status": "2",
                                                           "X-Bapi-Limit-Reset-Timestamp": "0"})
    # One request counted by the venue that we had not seen, and a limit of 3 instead of 50.
    limiter.acquire_request("GET", "/v5/order/realtime", 1)
    limiter.acquire_request("GET", "/v5/order/realtime", 1)
    with pytest.raises(RateLimitedError):
        limiter.acquire_request("GET", "/v5/order/realtime", 1)
    # Another process of the same account learnt it too; other endpoints keep their own budget.
    other = SharedRateLimiter("bybit", "k1", budget_fraction=1.0, max_wait_s=0)
    with pytest.raises(RateLimitedError):
        other.acquire_request("GET", "/v5/order/realtime", 1)
    for _ in range(20):
        other.acquire_request("POST", "/v5/order/create", 1)
    with pytest.raises(RateLimitedError):
        other.acquire_request("POST", "/v5/order/create", 1)
    budgets = rate_limit_state("bybit", api_key="k1")["accounts"][0]["budgets"]
    assert budgets["endpoint:/v5/order/realtime"]["used"] == 3
    assert budgets["endpoint:/v5/order/create"]["used"] == 20


def test_binance_orders_have_their_own_ten_second_budget(redis_client):
    limiter = SharedRateLimiter("binance", "k2", budgets={"orders_per_10s": 3}, budget_fraction=1.0, max_wait_s=0)
    for _ in range(3):
        limiter.acquire_request("POST", "/api/v3/order", 1)

    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire_request("POST", "/api/v3/order", 1)

    assert "orders_10s" in caught.value.message and 9 <= caught.value.retry_after_s <= 11
    limiter.acquire_request("GET", "/api/v3/order", 4)      # reads only spend weight


# ---------------------------------------------------------------------- keys, protocol, Redis down
def test_the_budget_is_keyed_by_a_hash_never_the_api_key(redis_client):
    api_key = "very-secret-api-key-123"
    limiter = shared_rate_limiter("binance", api_key)
    limiter.acquire(20)
    limiter.penalize(1, False)

    keys = list(redis_client.scan_iter("*"))
    assert keys and not [k for k in keys if api_key in k]
    assert any(account_id("binance", api_key) in k for k in keys)
    assert account_id("binance", api_key) != account_id("bybit", api_key)
    assert account_id("bybit", "") == "public"
    assert isinstance(limiter, RateLimiter)


def test_without_redis_a_process_keeps_a_share_of_the_budget(redis_client):
    unreachable = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5,
                                  retry=Retry(NoBackoff(), 0))
    limiter = SharedRateLimiter("binance", "k3", budgets={"weight_per_minute": 100}, budget_fraction=1.0,
                                max_wait_s=0, client=unreachable)

    limiter.acquire(100 * FALLBACK_SHARE)                   # a stop order can still go out

    with pytest.raises(RateLimitedError):
        limiter.acquire(1)
    limiter.penalize(5, False)
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire(0)
    assert 4 <= caught.value.retry_after_s <= 5
