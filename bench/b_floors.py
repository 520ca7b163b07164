"""The machine's physical floors, measured in the same run as the figures they normalise.

Absolute latencies move 2-10x from one host to the next (disk flush, scheduler, CPU); the ratio
of a figure to the floors its path crosses moves much less. Each floor is a distribution
(p50 / p99 of many samples, after a warm-up), measured right before every benchmark that uses it
(``bench.runner``) and once as the ``floors`` benchmark itself:

* ``pg_commit``   a one-row INSERT + COMMIT in a plain (logged) table of the run's database, sent
                  as one round trip: the WAL flush a committed claim or event waits for. The
                  server's ``fsync`` / ``synchronous_commit`` are read and recorded; with either
                  off the figure is labelled as not durable.
* ``pg_roundtrip`` ``SELECT 1``: one statement's round trip (reads, locks, updates inside a
                  transaction).
* ``redis_rtt``   ``PING`` through redis-py: one Redis round trip (a broker hop, a lock, a Lua call).
* ``http_rtt``    ``GET /api/v3/ping`` on a keep-alive connection to the Binance emulator in its
                  own process: one loopback HTTP round trip to a trivial endpoint.
* ``ccxt_sign``   ccxt building and signing a Binance limit order (``create_order_request`` +
                  ``sign``: parameters, timestamp, query string, HMAC-SHA256) - no network.

A latency path is described by a ``Crossing``: how many of each floor it crosses; its floor is
the sum at the same percentile and its ratio ``figure / floor``. Paths whose database and Redis
work is not fixed (``/health``, ``/admin/status``) are counted in the run with
``count_round_trips``.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bench.common import Target, say, summary_stats

NAME = "floors"
TITLE = "physical floors: PostgreSQL commit, PostgreSQL / Redis / HTTP round trips, ccxt sign"
FLOORS = ("pg_commit", "pg_roundtrip", "redis_rtt", "http_rtt", "ccxt_sign")
TARGETS = [Target(f"floor_{name}_{pct}_ms", "info", 0, "ms") for name in FLOORS for pct in ("p50", "p99")]
WHAT = {
    "pg_commit": "one-row INSERT + COMMIT, one round trip, WAL flush (synchronous_commit)",
    "pg_roundtrip": "SELECT 1 on an open connection",
    "redis_rtt": "PING through redis-py on an open connection",
    "http_rtt": "GET /api/v3/ping, keep-alive, to the Binance emulator process",
    "ccxt_sign": "ccxt create_order_request + sign of a Binance limit order (no network)",
}
SAMPLES = {"pg_commit": 500, "pg_roundtrip": 2000, "redis_rtt": 3000, "http_rtt": 2000, "ccxt_sign": 3000}
QUICK_SAMPLES = {"pg_commit": 100, "pg_roundtrip": 300, "redis_rtt": 500, "http_rtt": 300, "ccxt_sign": 500}
WARMUP = 20
COMMIT_TABLE = "bench_floor_commit"


# ---------------------------------------------------------------------------------- sampling

def _sample(fn: Callable[[], Any], n: int) -> list[float]:
    """``n`` timings of ``fn`` in ms, after a warm-up."""
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _postgres(database_url: str, n_commit: int, n_roundtrip: int) -> tuple[list[float], list[float], dict[str, Any]]:
    import psycopg2

    conn = psycopg2.connect(database_url, connect_timeout=10)
    conn.autocommit = True       # BEGIN / COMMIT are ours, sent with the INSERT in one round trip
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                        "('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes', 'wal_level')")
            settings = dict(cur.fetchall())
            # A plain table: a TEMP or UNLOGGED one writes no WAL and would never wait for a flush.
            cur.execute(f"CREATE TABLE IF NOT EXISTS {COMMIT_TABLE} "
                        "(id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text NOT NULL)")
            cur.execute(f"TRUNCATE {COMMIT_TABLE}")
            commit = _sample(lambda: cur.execute(f"BEGIN; INSERT INTO {COMMIT_TABLE} (note) VALUES ('floor'); COMMIT"),
                             n_commit)
            cur.execute(f"SELECT count(*) FROM {COMMIT_TABLE}")
            rows = cur.fetchone()[0]
            roundtrip = _sample(lambda: (cur.execute("SELECT 1"), cur.fetchone()), n_roundtrip)
            cur.execute(f"DROP TABLE {COMMIT_TABLE}")
    finally:
        conn.close()
    if rows != n_commit + WARMUP:
        raise RuntimeError(f"the commit floor wrote {rows} rows, expected {n_commit + WARMUP}")
    durable = settings.get("fsync") == "on" and settings.get("synchronous_commit") in ("on", "remote_apply",
                                                                                         "remote_write", "local")
    return commit, roundtrip, {**settings, "durable_commit": durable}


def _redis(redis_url: str, n: int) -> list[float]:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return _sample(client.ping, n)
    finally:
        client.close()


def _http(base_url: str, n: int) -> list[float]:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)

    def ping() -> None:
        conn.request("GET", "/api/v3/ping")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"emulator /api/v3/ping answered {resp.status}")

    try:
        return _sample(ping, n)
    finally:
        conn.close()


def _sign(base_url: str, n: int) -> list[float]:
    from bench.stack import EMULATOR_KEY, EMULATOR_SECRET
    from trading.exchanges.binance import BinanceGateway

    gateway = BinanceGateway(api_key=EMULATOR_KEY, api_secret=EMULATOR_SECRET, base_url=base_url)
    gateway.load_markets()              # the market rules create_order_request reads (one request, untimed)
    # The gateway's own ccxt instance (configured exactly as the order path's): only trading/exchanges
    # imports ccxt, and what is timed is ccxt's work before a byte is sent - the part of
    # create_order between the market lookup and fetch().
    ex = gateway._ex
    counter = iter(range(10**9))

    def build_and_sign() -> dict[str, Any]:
        request = ex.create_order_request("BTC/USDT", "limit", "buy", "0.001", "20000.00",
                                          {"newClientOrderId": f"AS1-floor-{next(counter)}"})
        return ex.sign("order", ["private"], "POST", request)

    signed = build_and_sign()
    if "signature=" not in (signed.get("body") or ""):
        raise RuntimeError(f"ccxt produced no signed order request: {signed}")
    return _sample(build_and_sign, n)


def measure(stack: Any, *, quick: bool = False) -> dict[str, Any]:
    """Every floor's distribution, now. Starts (and stops) one emulator process for the HTTP floor."""
    counts = QUICK_SAMPLES if quick else SAMPLES
    t0 = time.monotonic()
    commit, roundtrip, pg_settings = _postgres(stack.env["DATABASE_URL"], counts["pg_commit"],
                                               counts["pg_roundtrip"])
    redis_ms = _redis(stack.env["REDIS_URL"], counts["redis_rtt"])
    emulator, base_url = stack.emulator("binance", symbols=["BTC/USDT"], rate_limits=False)
    try:
        http_ms = _http(base_url, counts["http_rtt"])
        sign_ms = _sign(base_url, counts["ccxt_sign"])
    finally:
        stack.stop(emulator)
    samples = {"pg_commit": commit, "pg_roundtrip": roundtrip, "redis_rtt": redis_ms, "http_rtt": http_ms,
               "ccxt_sign": sign_ms}
    floors: dict[str, Any] = {name: {"what": WHAT[name], "unit": "ms", **summary_stats(samples[name], digits=4)}
                              for name in FLOORS}
    if not pg_settings["durable_commit"]:
        floors["pg_commit"]["what"] += (f" - NOT DURABLE on this server (fsync={pg_settings.get('fsync')}, "
                                        f"synchronous_commit={pg_settings.get('synchronous_commit')})")
    return {"floors": floors, "postgres_settings": pg_settings, "measured_in_s": round(time.monotonic() - t0, 1)}


def brief(measured: Mapping[str, Any]) -> str:
    f = measured["floors"]
    return ", ".join(f"{n} {f[n]['p50']:.3f}/{f[n]['p99']:.3f}" for n in FLOORS) + " ms (p50/p99)"


def run(stack: Any, quick: bool) -> dict[str, Any]:
    measured = measure(stack, quick=quick)
    say(f"floors: {brief(measured)}")
    summary = {f"floor_{name}_{pct}_ms": measured["floors"][name][pct] for name in FLOORS for pct in ("p50", "p99")}
    return {"summary": summary, **measured}


# ---------------------------------------------------------------------------------- crossings

@dataclass(frozen=True)
class Crossing:
    """The floors one latency figure's path crosses, and how many times each.

    ``pct`` picks the floors' percentile matching the figure (p50 with p50, p99 with p99);
    ``unit_ms`` converts the figure to ms (1000 for a figure in seconds)."""

    counts: Mapping[str, float]
    pct: str = "p50"
    unit_ms: float = 1.0
    note: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.counts) - set(FLOORS)
        if unknown:
            raise ValueError(f"unknown floor(s) {sorted(unknown)}; floors are {', '.join(FLOORS)}")
        if self.pct not in ("p50", "p99"):
            raise ValueError(f"pct must be p50 or p99, got {self.pct!r}")

    def basis(self) -> str:
        terms = [f"{_count(c)} {name}" for name in FLOORS if (c := self.counts.get(name))]
        return " + ".join(terms) + f" (floors at {self.pct})"

    def floor_ms(self, floors: Mapping[str, Any]) -> float:
        return sum(count * floors[name][self.pct] for name, count in self.counts.items())

    def reference(self, value: float | None, floors: Mapping[str, Any]) -> dict[str, Any]:
        """``{"floor_ms", "ratio", "basis"}`` for the summary and the table."""
        floor = self.floor_ms(floors)
        ratio = None if value is None or floor <= 0 else round(value * self.unit_ms / floor, 2)
        out = {"kind": "floor", "floor_ms": round(floor, 4), "ratio": ratio, "basis": self.basis()}
        return {**out, "note": self.note} if self.note else out


def _count(c: float) -> str:
    return str(int(c)) if float(c).is_integer() else f"{c:g}"


def peer_reference(value: float | None, peer: float | None, *, unit: str, basis: str) -> dict[str, Any]:
    """A throughput (or a latency without fixed crossings) against a same-run peer: ratio = value / peer."""
    ratio = None if value is None or not peer else round(value / peer, 3)
    return {"kind": "peer", "peer": peer, "peer_unit": unit, "ratio": ratio, "basis": basis}


class RoundTrips:
    """What ``count_round_trips`` counted."""

    def __init__(self) -> None:
        self.pg_statements = 0
        self.redis_round_trips = 0

    def as_dict(self) -> dict[str, int]:
        return {"pg_statements": self.pg_statements, "redis_round_trips": self.redis_round_trips}


@contextmanager
def count_round_trips() -> Iterator[RoundTrips]:
    """Count the PostgreSQL statements (Django's default connection) and Redis round trips
    (every redis-py client, pipelines as one) that the calling thread makes inside the block.

    Used on a real call (``check_health()``, ``operator_status()``) to learn how many floors a
    request crosses, so the definition follows the code. Other threads (the bench's heartbeat
    writer) are not counted."""
    from django.db import connection
    from redis.connection import AbstractConnection

    counted = RoundTrips()
    me = threading.get_ident()
    # redis-py has no hook per request; every round trip (a command, or a pipeline's batch)
    # goes through send_packed_command once, so the method is wrapped for the block only.
    original = AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):
        if threading.get_ident() == me:
            counted.redis_round_trips += 1
        return original(self, command, check_health)

    def statement(execute, sql, params, many, context):
        counted.pg_statements += 1
        return execute(sql, params, many, context)

    AbstractConnection.send_packed_command = send_packed_command
    try:
        with connection.execute_wrapper(statement):
            yield counted
    finally:
        AbstractConnection.send_packed_command = original
