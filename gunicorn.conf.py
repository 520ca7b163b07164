"""gunicorn settings for the api-service (also used by `make run`)."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:9001")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 10
# Load the app in the master first: a bad environment then stops gunicorn with our one-line
# configuration error instead of every worker failing to boot in a loop.
preload_app = True
accesslog = None
errorlog = "-"
loglevel = "warning"
# gunicorn >= 25 opens a control socket for `gunicornc` under $XDG_RUNTIME_DIR or ~/.gunicorn;
# in the image the app user's home (/app) is not writable, so every start logged "Control
# server error: Permission denied". Nothing here uses gunicornc: processes are managed by
# compose / make run, so the socket stays off.
control_socket_disable = True


def child_exit(server, worker):
    # Per-process request metrics of a dead worker must not linger in /metrics.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
