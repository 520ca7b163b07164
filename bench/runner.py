"""``python -m bench [--only NAME[,NAME]] [--quick]``: run the benchmarks, write JSON, print a table.

Each benchmark module (``bench/b_*.py``) has ``NAME``, ``TITLE``, ``TARGETS`` (summary keys with
their target) and ``run(stack, quick) -> dict``; the dict's ``summary`` holds the numeric
summary keys, everything else is detail for ``bench/results/<NAME>.json``.

Figures are compared across machines by their ratio to the same run's floors or peers
(``bench/b_floors.py``). The ``floors`` benchmark always runs first. A module that declares
``CROSSINGS`` (summary key -> ``Crossing``) or ``NEEDS_FLOORS = True`` gets the floors measured
again right before it (``stack.floors``); the runner turns each ``CROSSINGS`` entry into a
``reference`` (floor, ratio, basis), and a module may return its own ``reference`` entries
(a same-run peer, or crossings it counted) in its result.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from typing import Any

from bench.b_floors import brief as floors_brief
from bench.b_floors import measure as floors_measure
from bench.common import RESULTS, load_average, machine_description, say, utc_now_iso, write_json

MODULES = {
    "floors": "bench.b_floors",
    "signal_to_wire": "bench.b_signal_to_wire",
    "decide": "bench.b_decide",
    "events": "bench.b_events",
    "reconcile": "bench.b_reconcile",
    "ratelimit": "bench.b_ratelimit",
    "api": "bench.b_api",
    "memory": "bench.b_memory",
    "backtest": "bench.b_backtest",
    "sweep": "bench.b_sweep",
}
SUMMARY_KEYS = ["signal_to_wire_p50_ms", "signal_to_wire_p99_ms", "decide_candles_per_s", "event_append_per_s",
                "reconcile_requests_per_symbol", "reconcile_10k_s", "rate_limit_429s", "rate_limit_budget_used",
                "health_p99_ms", "admin_status_p99_ms", "metrics_ms", "worker_rss_mb", "worker_rss_growth_mb",
                "backtest_candles_per_s", "backtest_cold_start_s", "backtest_peak_rss_mb", "backtest_vs_vectorbt",
                "backtest_vs_backtesting_py",
                "sweep_runs_per_min_1_worker", "sweep_runs_per_min_2_workers", "sweep_scale_out_2_workers"]
ALWAYS_FIRST = "floors"      # every run measures the machine's floors, whatever --only says


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
    args.names = [ALWAYS_FIRST] + [n for n in names if n != ALWAYS_FIRST]
    return args


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _needs_floors(module: Any) -> bool:
    return module.NAME != ALWAYS_FIRST and (bool(getattr(module, "CROSSINGS", None))
                                            or getattr(module, "NEEDS_FLOORS", False))


def _references(module: Any, result: dict[str, Any], floors: dict[str, Any] | None) -> dict[str, Any]:
    """summary key -> {kind, floor_ms | peer, ratio, basis}: the declared crossings at the floors
    measured right before the module, then whatever the module measured itself."""
    refs: dict[str, Any] = {}
    if floors is not None:
        for key, crossing in (getattr(module, "CROSSINGS", None) or {}).items():
            refs[key] = crossing.reference(result["summary"].get(key), floors["floors"])
    refs.update(result.get("reference") or {})
    return refs


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    from bench.stack import bench_stack

    modules = {name: importlib.import_module(MODULES[name]) for name in args.names}
    summary: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    references: dict[str, Any] = {}
    floors_of_run: dict[str, Any] | None = None
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
            stack.floors = None
            try:
                if _needs_floors(module):
                    stack.floors = floors_measure(stack, quick=args.quick)
                    say(f"floors before {name}: {floors_brief(stack.floors)}")
                result = module.run(stack, quick=args.quick)
            except Exception as exc:       # one broken benchmark must not hide the others' numbers
                traceback.print_exc()
                result = {"summary": {t.key: None for t in module.TARGETS}, "error": f"{type(exc).__name__}: {exc}"}
            finally:
                stack.stop_all()
            if name == ALWAYS_FIRST and not result.get("error"):
                floors_of_run = {k: result[k] for k in ("floors", "postgres_settings")}
            refs = _references(module, result, stack.floors)
            result = {"benchmark": name, "title": module.TITLE, "quick": args.quick, "measured_at": utc_now_iso(),
                      "machine": machine, "load_average_before": load_before, "load_average_after": load_average(),
                      "duration_s": round(time.monotonic() - t0, 1),
                      "targets": {t.key: _target_text(t) for t in module.TARGETS},
                      **result, "reference": refs,
                      **({"floors_before": stack.floors} if stack.floors is not None else {})}
            references.update(refs)
            write_json(RESULTS / f"{name}.json", result)
            summary.update(result["summary"])
            module_errors[name] = bool(result.get("error"))
            for key in result["summary"]:
                if result.get("skipped") or result.get("error"):
                    notes[key] = result.get("skipped") or result.get("error")
            say(f"{name} done in {result['duration_s']}s: {result['summary']}")
    out = {**summary, "reference": references, "floors": floors_of_run,
           "machine": machine, "measured_at": utc_now_iso(), "quick": args.quick,
           "benchmarks_run": args.names, "notes": notes, "duration_s": round(time.monotonic() - started, 1)}
    write_json(RESULTS / "summary.json", out)
    _table(modules, summary, references, notes, module_errors)
    say(f"results in {RESULTS}/ (summary.json + one file per benchmark)")


def _target_text(target) -> str:
    return f"({target.unit})" if target.op == "info" else f"{target.op} {target.threshold:g} {target.unit}".strip()


def _reference_cells(ref: dict[str, Any] | None) -> tuple[str, str]:
    """(floor or peer, ratio) as the table shows them."""
    if not ref:
        return "", ""
    if ref["kind"] == "floor":
        return f"floor {_fmt(ref['floor_ms'])} ms", "-" if ref["ratio"] is None else f"x{ref['ratio']:g}"
    return f"peer {_fmt(ref['peer'])} {ref['peer_unit']}", "-" if ref["ratio"] is None else f"x{ref['ratio']:g}"


def _table(modules: dict, summary: dict[str, Any], references: dict[str, Any], notes: dict[str, str],
           module_errors: dict[str, bool]) -> None:
    rows = [("benchmark", "metric", "value", "target", "floor / peer (same run)", "ratio", "verdict")]
    for name, module in modules.items():
        for target in module.TARGETS:
            value = summary.get(target.key)
            verdict = target.verdict(value)
            if target.key in notes:
                shown = "ERROR" if value is None and module_errors.get(name) else verdict
                verdict = f"{shown} ({notes[target.key][:60]})"
            rows.append((name, target.key, _fmt(value), _target_text(target),
                         *_reference_cells(references.get(target.key)), verdict))
    last = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(last)]
    print()
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) if j < last else c for j, c in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  -------")
    print("ratio: the figure / its floor (latency: how many times the floors it crosses) or / its peer "
          "(throughput: the share of the peer's rate); compare ratios across machines (bench/README.md).")
    print(flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
