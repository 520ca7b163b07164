"""tbot — the operator CLI: ``python manage.py tbot <subcommand>`` (or the ``tbot`` console script).

    tbot prepare                     can this deployment trade? (config, migrations, DB, Redis,
                                     broker, venue credentials, clock skew)
    tbot status                      the same content as GET /admin/status
    tbot diagnose                    why was no order placed? findings {code, severity, detail, fix}
    tbot positions [--status open|closed|all]   positions with PnL, stop and target (GET /admin/positions)
    tbot pnl [--days N]              today (HK day), per HK day and total (GET /admin/pnl)
    tbot halt --reason-code C --reason R [--by WHO]
    tbot resume --reason-code C --reason R [--by WHO]
    tbot emergency-exit --confirm EMERGENCY_EXIT --reason-code C --reason R [--by WHO] [--flatten-all]

Every subcommand takes ``--json``. Writes go through the same services as the API (audit row
with source ``cli``, Telegram after commit). ``--by`` defaults to the OS user.

Exit codes: 0 ok; 1 findings / problems (a failed prepare check, a diagnose warning or error,
an emergency exit that left assets behind); 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand

from adminapi import diagnostics
from adminapi.selectors import operator_status, pnl_overview, positions_overview
from infra.logging import trace_context
from trading.config_schema import ConfigValidationError
from trading.services import control
from trading.services.emergency import emergency_exit

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
SOURCE = "cli"
EMERGENCY_CONFIRMATION = "EMERGENCY_EXIT"
SEVERITY_MARK = {"info": "  ", "warning": "! ", "error": "X "}


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for this uid (containers)
        return os.environ.get("USER") or f"uid-{os.getuid()}"


class Command(BaseCommand):
    help = ("Operator CLI: prepare | status | diagnose | positions | pnl | halt | resume | emergency-exit "
            "(see --help of each).")
    requires_system_checks: list[str] = []   # `prepare` is the check; tbot must work on a broken deployment
    standalone = False                         # True when run as the `tbot` console script

    def add_arguments(self, parser) -> None:
        if self.standalone:
            parser.prog = "tbot"   # before the subparsers copy it into their own usage lines
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        def add(name: str, help_text: str, *, writes: bool = False):
            p = sub.add_parser(name, help=help_text, description=help_text)
            p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
            if writes:
                p.add_argument("--by", default=None, help="who is acting (default: the OS user)")
                p.add_argument("--reason-code", required=True, help="e.g. MANUAL_HALT (^[A-Z][A-Z0-9_]{1,63}$)")
                p.add_argument("--reason", required=True, help="why, in words")
            return p

        add("prepare", "Check configuration, migrations, DB, Redis, broker, venue credentials and clock skew.")
        add("status", "Halt state, config version, venue, order counts, heartbeats, last decision.")
        add("diagnose", "Why was no order placed? Findings with code, severity, detail and fix.")
        pos = add("positions", "Positions with unrealised / realised PnL, fees, stop and take-profit distance, age.")
        pos.add_argument("--status", choices=["open", "closed", "all"], default="open")
        pos.add_argument("--limit", type=int, default=50)
        add("pnl", "PnL today (Hong Kong day), per HK day and total.").add_argument("--days", type=int, default=7)
        add("halt", "Halt new entries (audited; idempotent).", writes=True)
        add("resume", "Resume new entries (audited; idempotent).", writes=True)
        em = add("emergency-exit", "Halt, cancel open orders and flatten positions.", writes=True)
        em.add_argument("--confirm", required=True, help=f"must be exactly {EMERGENCY_CONFIRMATION}")
        em.add_argument("--flatten-all", action="store_true",
                        help="also sell every non-quote asset on the venue, not only the strategy's positions")

    # --- output ---------------------------------------------------------------------------

    def _emit(self, payload: dict[str, Any], text: str) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(payload, default=str, sort_keys=True))
        else:
            self.stdout.write(text)

    def _fail_usage(self, problems: dict[str, list[str]]) -> int:
        if self.as_json:
            self.stdout.write(json.dumps({"ok": False, "error": "invalid_input", "fields": problems}, sort_keys=True))
        else:
            for field, items in problems.items():
                self.stderr.write(f"tbot: {field}: {'; '.join(items)}")
        return EXIT_USAGE

    # --- entry point ----------------------------------------------------------------------

    def handle(self, *args, **options) -> None:
        self.as_json = bool(options.get("json"))
        name = options["subcommand"]
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
        ok = not diagnostics.has_errors(checks)
        lines = [f"{SEVERITY_MARK[c['severity']]}{c['code']}: {c['detail']}" + (f"\n    fix: {c['fix']}" if c["fix"]
                 and c["severity"] != "info" else "") for c in checks]
        lines.append("prepare: OK — ready to trade" if ok else "prepare: FAILED — fix the errors above")
        self._emit({"ok": ok, "checks": checks}, "\n".join(lines))
        return EXIT_OK if ok else EXIT_PROBLEMS

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
