"""tbot — the operator CLI: ``python manage.py tbot <subcommand>`` (or the ``tbot`` console script).

    tbot prepare                     can this deployment trade? (config, migrations, DB, Redis,
                                     broker, venue credentials, clock skew)
    tbot status                      the same content as GET /admin/status
    tbot diagnose                    why was no order placed? findings {code, severity, detail, fix}
    tbot config get [KEY ...]        the same content as GET /admin/config
    tbot config set KEY=VALUE ... --reason-code C --reason R [--by WHO]
    tbot positions [--status open|closed|all]   positions with PnL, stop and target (GET /admin/positions)
    tbot pnl [--days N]              today (HK day), per HK day and total (GET /admin/pnl)
    tbot halt --reason-code C --reason R [--by WHO]
    tbot resume --reason-code C --reason R [--by WHO]
    tbot emergency-exit --confirm EMERGENCY_EXIT --reason-code C --reason R [--by WHO] [--flatten-all]
    tbot backtest run|sweep|sweep-status ...   backtests and parameter sweeps (= manage.py backtest)

Every subcommand takes ``--json``, and then prints nothing but JSON on stdout (log lines go to
stderr). Writes go through the same services as the API (audit row with source ``cli``,
Telegram after commit). ``--by`` defaults to the OS user. The arguments are defined in
``adminapi.cli`` (Django-free, so ``tbot --help`` needs no configuration).

Exit codes: 0 ok; 1 findings / problems (a failed prepare check or a warning, a diagnose
warning or error, an emergency exit that left assets behind, a venue that could not be asked);
2 usage, input or configuration error.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand

from adminapi import cli, diagnostics
from adminapi.selectors import config_overview, operator_status, pnl_overview, positions_overview
from infra.logging import trace_context
from trading.config_schema import SCHEMA, ConfigValidationError, config_validate
from trading.selectors import is_halted as selectors_is_halted
from trading.services import control
from trading.services.emergency import emergency_exit
from trading.universe import UniverseNotTradable, VenueUnavailable, universe_check

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
SOURCE = "cli"
EMERGENCY_CONFIRMATION = cli.EMERGENCY_CONFIRMATION
SEVERITY_MARK = {"info": "  ", "warning": "! ", "error": "X "}


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for this uid (containers)
        return os.environ.get("USER") or f"uid-{os.getuid()}"


class Command(BaseCommand):
    help = ("Operator CLI: prepare | status | diagnose | positions | pnl | config | halt | resume | emergency-exit "
            "(see --help of each).")
    requires_system_checks: list[str] = []   # `prepare` is the check; tbot must work on a broken deployment
    standalone = False                         # True when run as the `tbot` console script

    def add_arguments(self, parser) -> None:
        if self.standalone:
            parser.prog = "tbot"   # before the subparsers copy it into their own usage lines
        cli.add_arguments(parser)

    # --- output ---------------------------------------------------------------------------

    def _emit(self, payload: dict[str, Any], text: str) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(payload, default=str, sort_keys=True))
        else:
            self.stdout.write(text)

    def _fail_usage(self, problems: dict[str, list[str]], *, error: str = "invalid_input") -> int:
        if self.as_json:
            self.stdout.write(json.dumps({"ok": False, "error": error, "fields": problems}, sort_keys=True))
        else:
            for field, items in problems.items():
                self.stderr.write(f"tbot: {field}: {'; '.join(items)}")
        return EXIT_USAGE

    # --- entry point ----------------------------------------------------------------------

    def handle(self, *args, **options) -> None:
        self.as_json = bool(options.get("json"))
        _logs_to_stderr()
        name = options["subcommand"]
        if name == "config":
            name = f"config_{options['config_action']}"
        if name != "prepare":          # prepare reports this itself, among its other checks
            problem = _database_problem()
            if problem:
                self._emit({"ok": False, "error": "database", "detail": problem}, f"tbot: {problem}")
                raise SystemExit(EXIT_USAGE)
        with trace_context() as trace_id:
            code = getattr(self, "cmd_" + name.replace("-", "_"))(options, trace_id)
        if code:
            raise SystemExit(code)

    # --- subcommands ----------------------------------------------------------------------

    def cmd_prepare(self, options, trace_id: str) -> int:
        checks = diagnostics.prepare_checks()
        # A warning is a problem too (no ADMIN_TOKEN: nobody can halt through the API): "ready"
        # only when there is none.
        problems = [c["code"] for c in checks if c["severity"] != diagnostics.INFO]
        lines = [f"{SEVERITY_MARK[c['severity']]}{c['code']}: {c['detail']}" + (f"\n    fix: {c['fix']}" if c["fix"]
                 and c["severity"] != "info" else "") for c in checks]
        if not problems:
            lines.append("prepare: OK — ready to trade")
        else:
            verdict = "FAILED" if diagnostics.has_errors(checks) else "WARNINGS"
            lines.append(f"prepare: {verdict} — fix the {len(problems)} problem(s) above before trading "
                         f"({', '.join(problems)})")
        self._emit({"ok": not problems, "problems": problems, "checks": checks}, "\n".join(lines))
        return EXIT_PROBLEMS if problems else EXIT_OK

    def cmd_status(self, options, trace_id: str) -> int:
        st = operator_status()
        halt = st["halt"]
        hb = ", ".join(f"{p} {'never' if a is None else f'{a:.0f}s'}" for p, a in st["heartbeats"].items())
        last = st["last_decision"]
        last_text = "none"
        if last:
            last_text = f"tick {last['tick_id']} {last['symbol']} {last['decision']} ({last['reason_code']})"
        lines = [
            f"venue:             {st['venue']}",
            "halted:            " + (f"YES since {halt['at']} by {halt['by']} ({halt['reason_code']}: {halt['reason']})"
                                     if st["halted"] else "no"),
            f"config version:    {st['config_version']}",
            f"open orders:       {st['open_orders']}",
            f"unresolved orders: {st['unresolved_orders']}",
            f"heartbeats:        {hb}" + (f" (Redis error: {st['heartbeat_error']})" if st["heartbeat_error"] else ""),
            f"last decision:     {last_text}",
            f"equity:            {_cell(st['equity'], 2)} {st['quote'] or ''}; "
            f"today's PnL {_cell(st['pnl_today'], 2)}; {st['open_positions']} open position(s), "
            f"exposure {_cell(st['open_exposure'], 2)}",
        ]
        self._emit(st, "\n".join(lines))
        return EXIT_OK

    def cmd_diagnose(self, options, trace_id: str) -> int:
        findings = diagnostics.diagnose_findings()
        problems = diagnostics.has_problems(findings)
        lines = [f"{SEVERITY_MARK[f['severity']]}{f['code']}: {f['detail']}" + (f"\n    fix: {f['fix']}" if f["fix"]
                 else "") for f in findings]
        self._emit({"ok": not problems, "findings": findings}, "\n".join(lines))
        return EXIT_PROBLEMS if problems else EXIT_OK

    def cmd_config_get(self, options, trace_id: str) -> int:
        overview = config_overview()
        overview["halt"] = selectors_is_halted().as_json()
        wanted = options["keys"]
        unknown = [k for k in wanted if k not in SCHEMA]
        if unknown:
            return self._fail_usage({k: [f"unknown config key; known keys: {', '.join(SCHEMA)}"] for k in unknown})
        if wanted:
            overview["keys"] = [k for k in overview["keys"] if k["key"] in wanted]
            overview["values"] = {k: v for k, v in overview["values"].items() if k in wanted}
        lines = [f"config version {overview['version']}" + ("" if overview["valid"] else " — INVALID (see below)")]
        for key in overview["keys"]:
            bounds = ""
            if key["minimum"] is not None or key["maximum"] is not None:
                low = "(" if key["exclusive_minimum"] else "["
                bounds = f"  range {low}{key['minimum'] or '-inf'}, {key['maximum'] or 'inf'}]"
            elif key["choices"]:
                bounds = f"  one of {', '.join(key['choices'])}"
            origin = (f"v{key['version']} by {key['updated_by']}" if key["source"] == "stored" else "default")
            lines.append(f"  {key['key']:<26} {_plain(key['value']):<24} ({origin}){bounds}"
                         + "".join(f"\n      X {p}" for p in key["problems"]))
        self._emit(overview, "\n".join(lines))
        return EXIT_OK if overview["valid"] else EXIT_PROBLEMS

    def cmd_config_set(self, options, trace_id: str) -> int:
        actor = options["by"] or default_actor()
        changes, problems = _parse_changes(options["changes"])
        problems.update(control.operator_input_problems(actor=actor, source=SOURCE, reason_code=options["reason_code"],
                                                        reason=options["reason"], trace_id=trace_id))
        try:
            values = config_validate(changes, strict=True) if changes else {}
        except ConfigValidationError as exc:
            problems.update(exc.problems)
            values = {}
        if problems:
            return self._fail_usage(problems)
        if "universe" in values:
            try:
                universe_check(values["universe"])
            except UniverseNotTradable as exc:
                return self._fail_usage(exc.problems, error="universe_not_tradable")
            except VenueUnavailable as exc:
                self._emit({"ok": False, "error": "venue_unavailable", "detail": str(exc)}, f"tbot: {exc}")
                return EXIT_PROBLEMS
        try:
            result = control.config_update(changes=changes, actor=actor, source=SOURCE,
                                           reason_code=options["reason_code"], reason=options["reason"],
                                           trace_id=trace_id)
        except (control.OperatorInputError, ConfigValidationError) as exc:
            return self._fail_usage(exc.problems)
        payload = {"ok": True, "changed": result.changed, "unchanged": result.unchanged, "version": result.version,
                   "audit_id": result.audit_id, "values": result.values, "trace_id": trace_id}
        lines = [f"config version {result.version}; audit #{result.audit_id}; trace_id {trace_id}"]
        lines += [f"  {k}: {_plain(v['before'])} -> {_plain(v['after'])}" for k, v in result.changed.items()]
        if result.unchanged:
            lines.append(f"  unchanged (already so): {', '.join(result.unchanged)}")
        self._emit(payload, "\n".join(lines))

    def cmd_backtest(self, options, trace_id: str) -> int:
        from backtest.management.commands.backtest import backtest_command

        return backtest_command({**options, "json": self.as_json}, stdout=self.stdout, stderr=self.stderr,
                                prog="tbot backtest")

    def cmd_positions(self, options, trace_id: str) -> int:
        rows = positions_overview(state=options["status"], limit=max(1, min(options["limit"], 1000)))
        lines = [f"{'#':>4} {'symbol':<10} {'status':<8} {'quantity':>14} {'entry':>12} {'last':>12} "
                 f"{'unrealised':>11} {'realised':>10} {'fees':>8} {'stop':>12} {'to stop':>8} {'target':>12} "
                 f"{'to target':>9}  age"]
        for r in rows:
            lines.append(f"{r['id']:>4} {r['symbol']:<10} {r['status']:<8} {r['quantity']:>14} {r['entry_price']:>12} "
                         f"{_cell(r['last_price']):>12} {_cell(r['unrealised_pnl'], 2):>11} "
                         f"{_cell(r['realised_pnl'], 2):>10} {_cell(r['fees'], 2):>8} {_cell(r['stop_price']):>12} "
                         f"{_cell(r['stop_distance_pct'], suffix='%'):>8} {_cell(r['take_profit_price']):>12} "
                         f"{_cell(r['take_profit_distance_pct'], suffix='%'):>9}  {_age(r['age_seconds'])}"
                         + _venue_stop_note(r["venue_stop"])
                         + (f"  unvalued fees: {r['fee_unvalued']}" if r["fee_unvalued"] else ""))
        self._emit({"ok": True, "positions": rows}, "\n".join(lines) if rows else f"no {options['status']} positions")
        return EXIT_OK

    def cmd_pnl(self, options, trace_id: str) -> int:
        body = pnl_overview(days=max(1, min(options["days"], 366)))
        quote = body["quote"] or ""

        def line(label: str, d: dict) -> str:
            return (f"{label:<12} pnl {_cell(d['pnl'], 2):>10} {quote}  realised {_cell(d['realised_pnl'], 2):>9}  "
                    f"fees {_cell(d['fees'], 2):>7}  trades {d['trades']:>3}  "
                    f"win rate {_cell(d['win_rate'], suffix='%'):>7}  profit factor {_cell(d['profit_factor']):>5}  "
                    f"max drawdown {_cell(d['max_drawdown'], 2):>8}")

        lines = []
        if body["today"]:
            t = body["today"]
            lines.append(line(f"today {t['day']}"[:12], t) + f"  unrealised {_cell(t['unrealised_pnl'], 2)}")
        else:
            lines.append("today: no equity recorded yet (the data-syncer records it every 30 s)")
        lines += [line(d["day"], d) for d in body["days"]]
        lines.append(line("total", body["total"]) + f"  unrealised {_cell(body['total']['unrealised_pnl'], 2)}")
        self._emit({"ok": True, **body}, "\n".join(lines))
        return EXIT_OK

    def _halt_or_resume(self, service, options, trace_id: str) -> int:
        actor = options["by"] or default_actor()
        try:
            state = service(actor=actor, source=SOURCE, reason_code=options["reason_code"], reason=options["reason"],
                            trace_id=trace_id)
        except control.OperatorInputError as exc:
            return self._fail_usage(exc.problems)
        text = (f"trading {'HALTED' if state.halted else 'running'} — by {state.by} at {state.at} "
                f"({state.reason_code}: {state.reason}); trace_id {trace_id}")
        self._emit({"ok": True, "halted": state.halted, "halt": state.as_json(), "trace_id": trace_id}, text)
        return EXIT_OK

    def cmd_halt(self, options, trace_id: str) -> int:
        return self._halt_or_resume(control.trading_halt, options, trace_id)

    def cmd_resume(self, options, trace_id: str) -> int:
        return self._halt_or_resume(control.trading_resume, options, trace_id)

    def cmd_emergency_exit(self, options, trace_id: str) -> int:
        actor = options["by"] or default_actor()
        problems = control.operator_input_problems(actor=actor, source=SOURCE, reason_code=options["reason_code"],
                                                   reason=options["reason"], trace_id=trace_id)
        if options["confirm"] != EMERGENCY_CONFIRMATION:
            problems["confirm"] = [f"must be exactly {EMERGENCY_CONFIRMATION}"]
        if problems:
            return self._fail_usage(problems)
        try:
            report = emergency_exit(actor=actor, source=SOURCE, reason_code=options["reason_code"],
                                              reason=options["reason"], flatten_all=options["flatten_all"],
                                              trace_id=trace_id)
        except (control.OperatorInputError, ConfigValidationError) as exc:
            return self._fail_usage(exc.problems)
        payload = {"ok": report.flat, **report.as_dict(), "trace_id": trace_id}
        verdict = ("already flat" if report.already_flat else "flat" if report.flat
                   else "NOT FLAT - check what is left, the unresolved orders and the errors")
        text = "\n".join([
            f"emergency exit: {verdict}",
            f"canceled orders:   {', '.join(report.canceled_orders) or 'none'}",
            f"exit orders:       {', '.join(report.exit_orders) or 'none'}",
            f"remaining:         {', '.join(f'{k} {v}' for k, v in report.remaining.items()) or 'nothing above dust'}",
            f"unresolved orders: {', '.join(report.unresolved_orders) or 'none'}",
            f"errors:            {'; '.join(report.errors) or 'none'}",
            f"trace_id:          {trace_id}",
        ])
        self._emit(payload, text)
        return EXIT_OK if report.flat else EXIT_PROBLEMS


def _logs_to_stderr() -> None:
    """A CLI's stdout is its answer (``--json`` must parse as a whole); log lines go to stderr."""
    import logging
    import sys

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def _plain(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _parse_changes(items: list[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``KEY=VALUE`` words as the JSON values update_config takes: integers as numbers, decimals
    as the exact string typed, a universe as a comma-separated list (or a JSON array)."""
    changes: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.setdefault("changes", []).append(f"{item!r} is not KEY=VALUE (e.g. risk_per_trade=0.0025)")
            continue
        if key in changes:
            problems[key] = ["given twice"]
            continue
        spec = SCHEMA.get(key)
        if spec is not None and spec.kind == "int" and re.fullmatch(r"-?[0-9]+", text.strip()):
            changes[key] = int(text)
        elif spec is not None and spec.kind == "symbols":
            if text.strip().startswith("["):
                try:
                    changes[key] = json.loads(text)
                except ValueError:
                    problems[key] = [f"{text!r} is not a JSON array; or give BASE/QUOTE,BASE/QUOTE"]
            else:
                changes[key] = [s.strip() for s in text.split(",")] if text.strip() else []
        else:
            changes[key] = text   # validation names unknown keys and wrong values
    return changes, problems


def _cell(value: str | None, places: int | None = None, suffix: str = "") -> str:
    """A decimal string for a table cell: '-' when absent, rounded to ``places`` when given."""
    if value is None:
        return "-"
    if places is not None:
        value = f"{Decimal(value):.{places}f}"
    return f"{value}{suffix}"


def _age(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _database_problem() -> str | None:
    """One clear line instead of a traceback when the database is unreachable or not migrated."""
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        pending = MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes())
    except DatabaseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot use the database at DATABASE_URL: {first}"
    if pending:
        return (f"the database at DATABASE_URL is not migrated ({len(pending)} migration(s) pending): "
                "run `python manage.py migrate`")
    return None


def _venue_stop_note(venue_stop: dict) -> str:
    """What rests on the venue for a position (there while our processes are down), or why nothing."""
    state = venue_stop["state"]
    if state == "protected":
        return f"  venue stop {venue_stop['stop_price']}"
    if state == "pending":
        return "  venue stop being placed"
    if state == "unprotected":
        return f"  NO VENUE STOP: {venue_stop['reason']}"
    return ""
