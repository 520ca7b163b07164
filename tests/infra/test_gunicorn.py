"""The api process (gunicorn) starts cleanly where the app user cannot write its home."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_starts_without_a_control_socket_error_when_home_is_not_writable():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    # A HOME no one can create ~/.gunicorn in (the image's /app is the app user's read-only home).
    env.update(HOME="/proc/version", GUNICORN_WORKERS="1", LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "alphasniper_project.wsgi", "-c", "gunicorn.conf.py",
                             "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(150):
            try:
                assert requests.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        time.sleep(1)          # the control server thread logs within a moment of the master starting
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "Control server error" not in output and "control socket" not in output.lower(), output
