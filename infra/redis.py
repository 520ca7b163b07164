"""The one door to Redis: a process-wide client built from REDIS_URL.

Redis holds only what may be lost: locks, heartbeats, the shared rate-limit budget.
PostgreSQL holds the truth.
"""

from __future__ import annotations

import os
import threading

import redis as redis_lib
from django.conf import settings

_lock = threading.Lock()
_clients: dict[tuple[int, str], redis_lib.Redis] = {}

KEY_PREFIX = "alphasniper:"


def get_redis() -> redis_lib.Redis:
    """A client for this process (re-created after fork, since sockets must not be shared)."""
    key = (os.getpid(), settings.REDIS_URL)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = redis_lib.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30,
                    decode_responses=True,
                )
                _clients[key] = client
    return client


def key(*parts: str) -> str:
    return KEY_PREFIX + ":".join(parts)
