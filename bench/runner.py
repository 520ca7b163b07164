"""``python -m bench [--only NAME[,NAME]] [--quick]``: run the benchmarks, write JSON, print a table.

Each benchmark module (``bench/b_*.py``) has ``NAME``, ``TITLE``, ``TARGETS`` (summary keys with
their target) and ``run(stack, quick) -> dict``; the dict's ``summary`` holds the numeric
summary keys, everything else is detail for ``bench/results/<NAME>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from typing import Any

from bench.common import RESULTS, load_average, machine_description, say, utc_now_iso, write_json

MODULES = {
    "signal_to_wire": "bench.b_signal_to_wire",
    "decide": "bench.b_decide",
    "events": "bench.b_events",
    "reconcile": "bench.b_reconcile",
    "ratelimit": "bench.b_ratelimit",
    "api": "bench.b_api",
    "memory": "bench.b_memory",
    "sweep": "bench.b_sweep",
}
SUMMARY_KEYS = ["signal_to_wire_p50_ms", "signal_to_wire_p99_ms", "decide_candles_per_s", "event_append_per_s",
                "reconcile_requests_per_symbol", "reconcile_10k_s", "rate_limit_429s", "rate_limit_budget_used",
                "health_p99_ms", "admin_status_p99_ms", "metrics_ms", "worker_rss_mb", "worker_rss_growth_mb",
                "sweep_runs_per_min_1_worker", "sweep_runs_per_min_2_workers", "sweep_scale_out_2_workers"]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(MODULES)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not a measurement)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(MODULES)}")
    args.names = names
    return args


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    from bench.stack import bench_stack

    modules = {name: importlib.import_module(MODULES[name]) for name in args.names}
    summary: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    notes: dict[str, str] = {}
    module_errors: dict[str, bool] = {}
    started = time.monotonic()
    with bench_stack() as stack:
        machine = machine_description(stack.pg_version, stack.redis_version)
        say(f"machine: {machine}")
        for name, module in modules.items():
            say(f"--- {name}: {module.TITLE}{' (quick)' if args.quick else ''}")
            t0 = time.monotonic()
            load_before = load_average()
            try:
                result = module.run(stack, quick=args.quick)
            except Exception as exc:       # one broken benchmark must not hide the others' numbers
                traceback.print_exc()
                result = {"summary": {t.key: None for t in module.TARGETS}, "error": f"{type(exc).__name__}: {exc}"}
            finally:
                stack.stop_all()
            result = {"benchmark": name, "title": module.TITLE, "quick": args.quick, "measured_at": utc_now_iso(),
                      "machine": machine, "load_average_before": load_before, "load_average_after": load_average(),
                      "duration_s": round(time.monotonic() - t0, 1),
                      "targets": {t.key: _target_text(t) for t in module.TARGETS},
                      **result}
            write_json(RESULTS / f"{name}.json", result)
            summary.update(result["summary"])
            module_errors[name] = bool(result.get("error"))
            for key in result["summary"]:
                if result.get("skipped") or result.get("error"):
                    notes[key] = result.get("skipped") or result.get("error")
            say(f"{name} done in {result['duration_s']}s: {result['summary']}")
    out = {**summary, "machine": machine, "measured_at": utc_now_iso(), "quick": args.quick,
           "benchmarks_run": args.names, "notes": notes, "duration_s": round(time.monotonic() - started, 1)}
    write_json(RESULTS / "summary.json", out)
    _table(modules, summary, notes, module_errors)
    say(f"results in {RESULTS}/ (summary.json + one file per benchmark)")


def _target_text(target) -> str:
    return f"({target.unit})" if target.op == "info" else f"{target.op} {target.threshold:g} {target.unit}".strip()


def _table(modules: dict, summary: dict[str, Any], notes: dict[str, str], module_errors: dict[str, bool]) -> None:
    rows = [("benchmark", "metric", "value", "target", "verdict")]
    for name, module in modules.items():
        for target in module.TARGETS:
            value = summary.get(target.key)
            verdict = target.verdict(value)
            if target.key in notes:
                shown = "ERROR" if value is None and module_errors.get(name) else verdict
                verdict = f"{shown} ({notes[target.key][:60]})"
            rows.append((name, target.key, _fmt(value), _target_text(target), verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) if j < 4 else c for j, c in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  -------")
    print(flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
