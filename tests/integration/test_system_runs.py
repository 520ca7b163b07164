"""`make run` as a newcomer sees it: all five processes up, /health 200 (on heartbeats), a log
stream a person can read, and Ctrl-C stops everything. Runs the real devstack against the test
servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _fresh_database(name: str) -> str:
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    conn = psycopg2.connect(f"{base}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"{base}/{name}"


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.slow
def test_run_command_brings_up_a_healthy_system_and_stops_cleanly(tmp_path):
    api_port, flower_port = free_port(), free_port()
    redis_base = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DATABASE_URL": _fresh_database(f"systest_{os.getpid()}"),
        "REDIS_URL": f"{redis_base}/15",
        "API_PORT": str(api_port),
        "FLOWER_PORT": str(flower_port),
        "ALPHASNIPER_DATA_DIR": str(tmp_path),
        "ALPHASNIPER_ENV": "development",
    }
    env.pop("ADMIN_TOKEN", None)
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "infra.devstack", "run"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        status, body = 0, {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(f"http://127.0.0.1:{api_port}/health")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status = 0
            if status == 200:
                break
            time.sleep(1)
        output = log_path.read_text()
        assert status == 200, f"/health never became 200: {body}\n{output[-3000:]}"
        assert set(body["processes"]) == {"beat", "data-syncer", "strategy-engine"}
        # The generated admin token is printed once, and the API honours it.
        token = json.loads((tmp_path / "run" / "secrets.json").read_text())["ADMIN_TOKEN"]
        assert token in output
        # Flower may still be starting when /health is 200 (a busy machine): wait for its port, not its answer.
        flower_deadline = time.monotonic() + 60
        while time.monotonic() < flower_deadline:
            try:
                socket.create_connection(("127.0.0.1", flower_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/", timeout=3) as _:
            pytest.fail("Flower must require basic auth")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    output = log_path.read_text()
    for name in ("api", "data-syncer", "strategy-engine", "backtest-worker", "beat", "flower"):
        assert f"{name} started" in output
        assert f"{name} stopped" in output
    # Heartbeats ran (/health was 200 on them) without a log line per task: the stream is for people.
    assert "Task infra.heartbeat[" not in output and " succeeded in " not in output
    assert max(len(line) for line in output.splitlines()) < 1000
    leftover = subprocess.run(["pgrep", "-f", f"127.0.0.1:{api_port}"], capture_output=True, text=True).stdout
    assert leftover.strip() == "", "processes survived Ctrl-C"
