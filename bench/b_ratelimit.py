"""Shared rate limit: four processes bursting at 10x the budget, emulator limits ON.

Four processes (``bench.workers.burst``), each with a Binance gateway built like the factory
builds it (``shared_rate_limiter``: one Redis budget per account, 90 % headroom), create resting
limit orders against the emulator with its real Binance limits (6,000 weight/min, 100 orders /
10 s). Together they attempt 10x the order budget (100 orders/s, 25/s each) for the window; the
shared limiter must hold the excess back. From the emulator's request log, inside the window:

* ``rate_limit_429s`` - answers refused for rate reasons (HTTP 429 / 418, codes -1003 / -1015);
* ``rate_limit_budget_used`` - orders the venue accepted / orders the venue would allow in the
  window (10 per second), as a fraction.

Each process stops starting attempts at the end of the window and never waits past it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

from bench.common import ROOT, Target
from bench.stack import EMULATOR_KEY, EMULATOR_SECRET

NAME = "ratelimit"
TITLE = "4 processes at 10x the Binance order budget through the shared Redis limiter"
TARGETS = [Target("rate_limit_429s", "<=", 0, "refusals"), Target("rate_limit_budget_used", ">=", 0.8, "of budget")]
PROCESSES = 4
VENUE_ORDERS_PER_S = 10          # Binance: 100 orders per 10 s per account
OVERDRIVE = 10


def run(stack: Any, quick: bool) -> dict[str, Any]:
    from emulator import EmulatorControl
    from infra.redis import get_redis

    duration = 10.0 if quick else 30.0
    emu, base_url = stack.emulator("binance", symbols=["BTC/USDT"], rate_limits=True)
    ctl = EmulatorControl(base_url)
    ctl.set_balances({"USDT": "1000000000"})
    redis = get_redis()
    for k in redis.scan_iter("alphasniper:ratelimit:*"):
        redis.delete(k)
    tag = uuid.uuid4().hex[:6]
    ready_key, go_key = f"bench:burst:{tag}:ready", f"bench:burst:{tag}:go"
    procs = []
    for p in range(PROCESSES):
        spec = {"api_key": EMULATOR_KEY, "api_secret": EMULATOR_SECRET, "base_url": base_url,
                "ready_key": ready_key, "go_key": go_key, "duration_s": duration, "tag": f"{tag}p{p}x",
                "attempts_per_s": VENUE_ORDERS_PER_S * OVERDRIVE / PROCESSES}
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.workers.burst", json.dumps(spec)], cwd=ROOT,
                                      env={**stack.env, "LOG_LEVEL": "ERROR"}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    deadline = time.monotonic() + 90
    while int(redis.get(ready_key) or 0) < PROCESSES:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError("a burst process died before the start: " +
                               " ".join(p.stderr.read()[-1500:] for p in procs if p.poll() is not None))
        time.sleep(0.02)
    ctl.clear_requests()
    go_ms = time.time() * 1000
    redis.set(go_key, "1")
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"burst process failed: {err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    end_ms = go_ms + duration * 1000
    log = ctl.requests()
    orders = [r for r in log if r["method"] == "POST" and r["path"] == "/api/v3/order"]
    refused = [r for r in log if r["status"] in (418, 429) or r["code"] in (-1003, -1015)]
    accepted_in_window = [r for r in orders if r["status"] == 200 and go_ms <= r["time_ms"] <= end_ms]
    allowed = VENUE_ORDERS_PER_S * duration
    stack.stop(emu)
    return {
        "summary": {"rate_limit_429s": len(refused),
                    "rate_limit_budget_used": round(len(accepted_in_window) / allowed, 3)},
        "processes": PROCESSES, "window_s": duration, "attempted_per_s": VENUE_ORDERS_PER_S * OVERDRIVE,
        "venue_order_budget_per_s": VENUE_ORDERS_PER_S, "limiter_headroom": "0.9 of the documented limit",
        "attempts": sum(r["attempts"] for r in results), "sent": sum(r["sent"] for r in results),
        "held_back_by_limiter": sum(r["held_back"] for r in results),
        "venue_refused": sum(r["venue_refused"] for r in results),
        "accepted_in_window": len(accepted_in_window), "allowed_in_window": allowed,
        "refusals": refused[:20], "errors": [e for r in results for e in r["errors"]][:20],
        "per_process": results,
    }
