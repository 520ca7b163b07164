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


def child_exit(server, worker):
    # Per-process request metrics of a dead worker must not linger in /metrics.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
