"""Process liveness. Each long-running process proves it is alive by writing a timestamp
to Redis: the workers through a heartbeat task beat sends to their queue (so a heartbeat
also proves the queue drains), beat from its scheduler loop (``infra.beat``)."""

from __future__ import annotations

import time

from infra.redis import get_redis, key

HEARTBEAT_KEY = key("heartbeats")
STALE_AFTER_S = 60
PROCESSES = ("beat", "data-syncer", "strategy-engine")


def record(process: str, *, at: float | None = None) -> None:
    get_redis().hset(HEARTBEAT_KEY, process, f"{time.time() if at is None else at:.3f}")


def ages() -> dict[str, float | None]:
    """Seconds since each known process last beat; None for one that never did."""
    raw = get_redis().hgetall(HEARTBEAT_KEY)
    now = time.time()
    return {p: (round(now - float(raw[p]), 1) if p in raw else None) for p in PROCESSES}
