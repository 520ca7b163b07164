"""The ``tbot`` console script: the same command as ``python manage.py tbot``.

``pyproject.toml``: ``[project.scripts] tbot = "adminapi.cli:main"``.

This module imports nothing of Django at import time, so that ``tbot --help`` (and a usage
error) answer on a machine with no configuration at all. The arguments are defined here, once,
for both doors.

Inside a ``make run`` checkout with ``DATABASE_URL`` unset, tbot uses the local stack: ``make
run`` writes the environment its processes run with to ``.data/run/env.json``
(``infra.devstack``), and tbot reads it — saying so on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

EMERGENCY_CONFIRMATION = "EMERGENCY_EXIT"
DESCRIPTION = "AlphaSniper operator CLI (the same services, audit and Telegram as the /admin API)."
EPILOG = ("Exit codes: 0 ok; 1 findings or problems; 2 usage, input or configuration error. "
          "--json prints nothing but JSON on stdout.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The whole tbot command line (used by the management command and by ``--help`` here)."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

    def add(name: str, help_text: str, *, writes: bool = False, parent=sub):
        p = parent.add_parser(name, help=help_text, description=help_text)
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
    from backtest import cli as backtest_cli  # Django-free, like this module

    backtest = sub.add_parser("backtest", help="Backtest the strategy, sweep its parameters (same as manage.py "
                                               "backtest).", description="Backtest the strategy: run | sweep | "
                                                                          "sweep-status.")
    backtest_cli.add_arguments(backtest)
    config = sub.add_parser("config", help="Read or change the strategy config (GET / POST update_config).",
                            description="Read or change the strategy config.")
    config_sub = config.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    get = add("get", "Every config key (or the KEYs given): value, default, range, version.", parent=config_sub)
    get.add_argument("keys", nargs="*", metavar="KEY")
    put = add("set", "Change config keys through the same validated, audited service as the API.", writes=True,
              parent=config_sub)
    put.add_argument("changes", nargs="+", metavar="KEY=VALUE",
                     help="e.g. risk_per_trade=0.0025 timeframe=1h universe=BTC/USDT,ETH/USDT")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tbot", description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return parser


def use_local_stack(environ: dict[str, str] | os._Environ = os.environ) -> str | None:
    """With DATABASE_URL unset, take the environment of a local ``make run`` (if one was started
    here). Variables already set win. Returns the file used, or None."""
    if environ.get("DATABASE_URL"):
        return None
    from infra.devstack import read_local_env  # Django-free

    found = read_local_env()
    if found is None:
        return None
    path, values = found
    for name, value in values.items():
        environ.setdefault(name, value)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    """Set up Django and run the tbot management command. Returns the process exit code
    (0 ok, 1 findings/problems, 2 usage or configuration error)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or any(a in ("-h", "--help") for a in args):
        try:
            build_parser().parse_args(args)   # help and usage need no configuration
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 0
    local = use_local_stack()
    if local:
        sys.stderr.write(f"tbot: DATABASE_URL is unset; using the local `make run` stack ({local})\n")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alphasniper_project.settings")
    try:
        import django

        django.setup()  # a bad environment exits 2 here, naming each variable
        from adminapi.management.commands.tbot import Command

        command = Command()
        command.standalone = True
        command.run_from_argv(["tbot", "tbot", *args])
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
