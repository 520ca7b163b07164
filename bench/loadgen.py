"""A small open-loop HTTP load generator (stdlib only): a fixed request rate, latency measured
from each request's *scheduled* send time (so a slow server cannot slow the generator down and
hide its own queueing - no coordinated omission). Keep-alive connections, one per thread."""

from __future__ import annotations

import http.client
import queue
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    sent: int = 0
    late_sends: int = 0            # scheduled sends the generator itself started > 5 ms late


def run_load(host: str, port: int, path: str, *, rate: float, duration_s: float, headers: dict[str, str] | None = None,
             threads: int = 16, timeout_s: float = 5.0) -> LoadResult:
    result = LoadResult()
    lock = threading.Lock()
    work: queue.Queue[float | None] = queue.Queue()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        while True:
            scheduled = work.get()
            if scheduled is None:
                break
            try:
                conn.request("GET", path, headers=headers or {})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
                with lock:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - scheduled) * 1000
            with lock:
                result.latencies_ms.append(elapsed)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    interval = 1 / rate
    start = time.perf_counter() + 0.05
    n = int(rate * duration_s)
    for i in range(n):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.005:
            result.late_sends += 1
        work.put(due)
        result.sent += 1
    for _ in pool:
        work.put(None)
    for t in pool:
        t.join(timeout=timeout_s + 5)
    return result
