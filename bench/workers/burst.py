"""One process of the shared-rate-limit benchmark: a Binance gateway with the factory's shared
limiter (``trading.exchanges.ratelimit.shared_rate_limiter``), creating resting limit orders as
fast as a fixed schedule asks (its share of 10x the account's order budget) until the window
ends. Prints one JSON line: attempts, sent, held back by our limiter, refused by the venue."""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal


def main(raw: str) -> None:
    spec = json.loads(raw)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alphasniper_project.settings")
    import django

    django.setup()
    from infra.redis import get_redis
    from trading.exchanges.base import OrderRequest, OrderType, Side
    from trading.exchanges.binance import BinanceGateway
    from trading.exchanges.errors import RateLimitedError, VenueError
    from trading.exchanges.ratelimit import shared_rate_limiter

    try:        # the limiter's own refusal has its own class in newer code; older code said it in the message
        from trading.exchanges.errors import RateLimitHeldBackError
    except ImportError:
        RateLimitHeldBackError = None  # noqa: N806

    limiter = shared_rate_limiter("binance", spec["api_key"])
    gateway = BinanceGateway(api_key=spec["api_key"], api_secret=spec["api_secret"], base_url=spec["base_url"],
                             rate_limiter=limiter)
    gateway.load_markets()
    redis = get_redis()
    redis.incr(spec["ready_key"])
    wait_deadline = time.monotonic() + 60
    while not redis.exists(spec["go_key"]):
        if time.monotonic() > wait_deadline:
            raise SystemExit("never got the go signal")
        time.sleep(0.001)
    start = time.monotonic()
    end = start + spec["duration_s"]
    interval = 1 / spec["attempts_per_s"]
    out = {"attempts": 0, "sent": 0, "held_back": 0, "venue_refused": 0, "errors": []}
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = start + i * interval
        if due > now:
            time.sleep(min(due - now, end - now))
            continue
        # Never wait past the window: the benchmark is bounded (the factory default is 10 s).
        limiter.max_wait_s = max(0.0, end - time.monotonic())
        cid = f"AS1-bench-{spec['tag']}{i}"
        i += 1
        out["attempts"] += 1
        try:
            gateway.create_order(OrderRequest(client_order_id=cid, symbol="BTC/USDT", side=Side.BUY,
                                              type=OrderType.LIMIT, quantity=Decimal("0.001"),
                                              price=Decimal("20000.00")))
            out["sent"] += 1
        except RateLimitedError as exc:
            held = (isinstance(exc, RateLimitHeldBackError) if RateLimitHeldBackError is not None
                    else exc.message.startswith("held back by the shared rate limiter"))
            out["held_back" if held else "venue_refused"] += 1
        except VenueError as exc:
            out["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
