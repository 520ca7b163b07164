"""Small shared helpers of the benchmark suite: statistics, results, the machine description."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation): the value at or below which ``pct`` % lie."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_stats(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """count / min / p50 / p90 / p99 / max / mean of a latency sample."""
    if not values:
        return {"count": 0}
    out = {"count": len(values), "min": min(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
           "p99": percentile(values, 99), "max": max(values), "mean": sum(values) / len(values)}
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in out.items()}


@dataclass(frozen=True)
class Target:
    """A summary key, what is good (``<=`` or ``>=`` a threshold), and its unit for the table."""

    key: str
    op: str
    threshold: float
    unit: str

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "SKIP"
        if self.op == "info":
            return "INFO"
        ok = value <= self.threshold if self.op == "<=" else value >= self.threshold
        return "PASS" if ok else "MISS"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GB RAM"
    except OSError:
        pass
    return "unknown RAM"


def machine_description(pg_version: str, redis_version: str) -> str:
    os_name = platform.platform(terse=True)
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    except OSError:
        pass
    return (f"{_cpu_model()}, {os.cpu_count()} cores, {_ram_gb()}, {os_name}, "
            f"Python {platform.python_version()}, PostgreSQL {pg_version}, Redis {redis_version}")


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def rss_mb(pid: int) -> float | None:
    """Resident set size of one process from /proc (no psutil needed)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc/<pid>/task/*/children)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
    except OSError:
        return []
    return out
