"""One worker process of the shared-rate-limit tests: a gateway with the Redis limiter, driven
against an emulator. ``python -m tests.trading.exchanges.ratelimit_worker '<json spec>'``.

Spec: ``venue, base_url, api_key, api_secret, budgets, budget_fraction, ready_key, go_key,
steps=[{"call": "balances"|"ticker", "times": n, "max_wait_s": s}]``. The worker loads the
markets, counts itself into ``ready_key``, waits for ``go_key`` (so that every worker starts its
burst together), runs the steps and prints one JSON line: how many calls went through, how many
the limiter held back, and how many the venue refused.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(raw_spec: str) -> None:
    spec = json.loads(raw_spec)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alphasniper_project.settings")
    import django

    django.setup()
    from infra.redis import get_redis
    from trading.exchanges.binance import BinanceGateway
    from trading.exchanges.bybit import BybitGateway
    from trading.exchanges.errors import RateLimitedError
    from trading.exchanges.ratelimit import RateLimitHeldBackError, SharedRateLimiter

    limiter = SharedRateLimiter(spec["venue"], spec["api_key"], budgets=spec.get("budgets"),
                                budget_fraction=spec.get("budget_fraction", 1.0), max_wait_s=5.0)
    cls = BinanceGateway if spec["venue"] == "binance" else BybitGateway
    gateway = cls(api_key=spec["api_key"], api_secret=spec["api_secret"], base_url=spec["base_url"],
                  timeout_ms=10_000, rate_limiter=limiter)
    gateway.load_markets()
    redis = get_redis()
    redis.incr(spec["ready_key"])
    deadline = time.monotonic() + 60
    while not redis.exists(spec["go_key"]):
        if time.monotonic() > deadline:
            raise SystemExit("never got the go signal")
        time.sleep(0.002)

    calls = {"balances": gateway.fetch_balances, "ticker": lambda: gateway.fetch_ticker("BTC/USDT")}
    result = {"ok": 0, "held_back": 0, "venue_refused": 0, "errors": []}
    for step in spec["steps"]:
        limiter.max_wait_s = float(step["max_wait_s"])
        for _ in range(step["times"]):
            try:
                calls[step["call"]]()
                result["ok"] += 1
            except RateLimitedError as exc:
                result["held_back" if isinstance(exc, RateLimitHeldBackError) else "venue_refused"] += 1
            except Exception as exc:     # reported to the test, which fails on any
                result["errors"].append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
