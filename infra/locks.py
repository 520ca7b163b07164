"""Redis locks with a token, a timeout and token-checked release.

A lock here is for efficiency only (ARCHITECTURE invariant 5): it stops two workers from
doing the same tick at once. Correctness comes from PostgreSQL uniqueness, so a lock that
expires under a slow worker may cost duplicate work, never a duplicate order.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from infra.redis import get_redis, key

# Release only if we still own it: compare-and-delete in one round trip.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class LockNotAcquired(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"lock {name!r} is held by someone else")
        self.name = name


def lock_key(name: str) -> str:
    return key("lock", name)


def acquire(name: str, *, ttl_s: float) -> str | None:
    """Try once. Returns the owner token, or None when someone else holds the lock."""
    token = secrets.token_hex(16)
    ok = get_redis().set(lock_key(name), token, nx=True, px=int(ttl_s * 1000))
    return token if ok else None


def release(name: str, token: str) -> bool:
    """Release if still ours. False means it expired and maybe someone else holds it now."""
    return bool(get_redis().eval(_RELEASE, 1, lock_key(name), token))


@contextmanager
def redis_lock(name: str, *, ttl_s: float = 60) -> Iterator[str]:
    """Hold ``name`` for the block or raise ``LockNotAcquired`` at once (no waiting, no deadlock:
    a holder that dies leaves a lock that expires after ``ttl_s``)."""
    token = acquire(name, ttl_s=ttl_s)
    if token is None:
        raise LockNotAcquired(name)
    try:
        yield token
    finally:
        release(name, token)


def held_locks(pattern: str = "*") -> dict[str, int]:
    """Currently held locks and their remaining ms (for diagnose)."""
    client = get_redis()
    out: dict[str, int] = {}
    for k in client.scan_iter(match=lock_key(pattern), count=200):
        out[k.removeprefix(lock_key(""))] = int(client.pttl(k))
    return out
