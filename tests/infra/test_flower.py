"""Flower runs with a login, and the password is nowhere on its command line."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import requests

from infra import devstack
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_make_run_command_lines_carry_no_secret():
    env = {"FLOWER_BASIC_AUTH": "admin:hunter2-secret", "ADMIN_TOKEN": "token-secret-0123456789"}
    for name, argv in devstack.processes(env).items():
        assert not any("secret" in arg or "hunter2" in arg for arg in argv), name


@pytest.mark.slow
def test_flower_asks_for_the_login_it_read_from_its_environment(redis_client):
    password = secrets.token_urlsafe(12)
    port = free_port()
    env = {**os.environ, "FLOWER_BASIC_AUTH": f"admin:{password}", "FLOWER_PORT": str(port),
           "CELERY_BROKER_URL": os.environ["REDIS_URL"], "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(devstack.processes(env)["flower"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(150):
            try:
                anonymous = requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, "flower exited"
                time.sleep(0.2)
        else:
            pytest.fail("flower did not answer within 30 s")
        # what `ps` shows: the process's own argument vector
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "flower" in cmdline and password not in cmdline
        assert anonymous.status_code == 401
        assert requests.get(url, auth=("admin", "wrong"), timeout=5).status_code == 401
        assert requests.get(url, auth=("admin", password), timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
