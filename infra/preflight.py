"""Start-up checks that turn a wrong URL into one clear line instead of a traceback."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import psycopg2
import redis as redis_lib

from alphasniper_project.env import redact_url


class PreflightError(Exception):
    pass


def check_database(url: str, *, wait_s: float = 0) -> str:
    """Connect once (or until ``wait_s`` has passed). Returns the server version."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn = psycopg2.connect(url, connect_timeout=3)
            try:
                with conn.cursor() as cur:
                    cur.execute("SHOW server_version")
                    return cur.fetchone()[0]
            finally:
                conn.close()
        except psycopg2.Error as exc:
            if time.monotonic() >= deadline:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise PreflightError(
                    f"cannot connect to PostgreSQL at DATABASE_URL={redact_url(url)}: {reason}") from None
            time.sleep(1)


def check_redis(url: str, *, name: str = "REDIS_URL", wait_s: float = 0) -> str:
    """PING once (or until ``wait_s`` has passed). Returns the server version."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client = redis_lib.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
            return str(client.info("server")["redis_version"])
        except redis_lib.RedisError as exc:
            if time.monotonic() >= deadline:
                raise PreflightError(f"cannot connect to Redis at {name}={redact_url(url)}: {exc}") from None
            time.sleep(1)


def describe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"
