"""tbot: the same services as the API (audit with source 'cli'), --json on every subcommand,
exit codes 0 ok / 1 findings / 2 usage or configuration error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from adminapi import cli
from adminapi.management.commands.tbot import default_actor
from infra import heartbeat
from infra.locks import acquire
from infra.models import TelegramOutbox
from infra.redis import get_redis
from tests.adminapi.conftest import TOKEN, audit_count, make_decision, make_order
from tests.support.cli import tbot
from trading.models import AuditLog
from trading.services.control import trading_halt

ROOT = Path(__file__).resolve().parents[2]
WRITE_ARGS = ["--by", "erin", "--reason-code", "CLI_HALT", "--reason", "halting from the shell"]




@pytest.fixture
def all_alive(redis_client):
    for process in heartbeat.PROCESSES:
        heartbeat.record(process)


# --- writes -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_tbot_halt_then_the_api_status_shows_the_same_halt(api):
    # when an operator halts from the CLI
    code, out, _ = tbot("halt", *WRITE_ARGS, "--json")
    # then it succeeded and said so in JSON
    assert code == 0
    result = json.loads(out)
    assert result["ok"] is True and result["halted"] is True
    # and GET /admin/status shows the same who and why
    status = api.get("/admin/status").json()
    assert status["halted"] is True
    assert (status["halt"]["by"], status["halt"]["reason_code"], status["halt"]["reason"]) == (
        "erin", "CLI_HALT", "halting from the shell")
    # and the audit row says it came from the CLI, with the trace id tbot reported
    row = AuditLog.objects.get()
    assert (row.source, row.actor, row.action, row.trace_id) == ("cli", "erin", "trading.halt", result["trace_id"])
    # and the same Telegram path as the API was used
    assert TelegramOutbox.objects.get().trace_id == result["trace_id"]


@pytest.mark.django_db
def test_tbot_resume_defaults_by_to_the_os_user(api):
    tbot("halt", *WRITE_ARGS)
    code, out, _ = tbot("resume", "--reason-code", "ALL_CLEAR", "--reason", "fixed")
    assert code == 0 and "running" in out
    assert api.get("/admin/status").json()["halted"] is False
    row = AuditLog.objects.order_by("id").last()
    assert row.actor == default_actor() and row.source == "cli" and row.action == "trading.resume"


@pytest.mark.django_db
def test_tbot_halt_with_a_bad_reason_code_exits_2_names_the_field_and_writes_nothing():
    code, out, _ = tbot("halt", "--by", "erin", "--reason-code", "lower", "--reason", "x", "--json")
    assert code == 2
    assert json.loads(out) == {"ok": False, "error": "invalid_input",
                               "fields": {"reason_code": ["must match ^[A-Z][A-Z0-9_]{1,63}$ (e.g. MANUAL_HALT)"]}}
    assert audit_count() == 0


@pytest.mark.django_db
def test_missing_required_options_is_a_usage_error():
    # in-process (call_command) argparse errors surface as CommandError ...
    with pytest.raises(CommandError, match="--reason-code"):
        call_command("tbot", "halt", "--by", "erin")
    # ... and through the console-script entry point as exit code 2
    assert cli.main(["halt", "--by", "erin"]) == 2
    assert cli.main(["no-such-subcommand"]) == 2
    assert audit_count() == 0


@pytest.mark.django_db
def test_tbot_emergency_exit_requires_the_confirmation():
    code, out, _ = tbot("emergency-exit", *WRITE_ARGS, "--confirm", "yes", "--json")
    assert code == 2
    assert set(json.loads(out)["fields"]) == {"confirm"}
    assert audit_count() == 0


@pytest.fixture
def paper_gateway():
    """A fresh in-process paper venue (the process-wide gateway is rebuilt before and after)."""
    pytest.importorskip("trading.services.emergency")
    from trading.exchanges.factory import get_gateway, reset_gateway

    reset_gateway()
    yield get_gateway()
    reset_gateway()


@pytest.mark.django_db
def test_tbot_emergency_exit_flattens_a_position_on_the_paper_venue(api, paper_gateway, redis_client):
    # given the account holds BTC on the (paper) venue
    from trading.exchanges.base import OrderRequest, OrderType, Side

    paper_gateway.create_order(OrderRequest(client_order_id="manual-btc-1", symbol="BTC/USDT", side=Side.BUY,
                                            type=OrderType.MARKET, quantity=Decimal("0.01")))
    # (the venue keeps its fee in the coin bought)
    assert paper_gateway.fetch_balances()["BTC"].free == Decimal("0.01") * (1 - paper_gateway.fee_rate)
    # when the operator pulls the emergency exit from the CLI, flattening everything
    code, out, _ = tbot("emergency-exit", *WRITE_ARGS, "--confirm", "EMERGENCY_EXIT", "--flatten-all", "--json")
    # then one exit order sold the BTC, nothing is left, and tbot exits 0
    result = json.loads(out)
    assert code == 0, result
    assert len(result["exit_orders"]) == 1 and result["remaining"] == {} and result["already_flat"] is False
    assert paper_gateway.fetch_balances()["BTC"].total == 0
    # and trading is halted, with one audit row from the CLI carrying tbot's trace id
    assert api.get("/admin/status").json()["halted"] is True
    row = AuditLog.objects.get()
    assert (row.action, row.source, row.actor, row.trace_id) == ("emergency_exit", "cli", "erin", result["trace_id"])
    # and pulling it again finds nothing to do
    code, out, _ = tbot("emergency-exit", *WRITE_ARGS, "--confirm", "EMERGENCY_EXIT", "--flatten-all", "--json")
    again = json.loads(out)
    assert code == 0 and again["exit_orders"] == [] and again["already_flat"] is True


# --- reads --------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_tbot_status_json_is_the_same_content_as_the_api(api, all_alive):
    make_order(status="submit_unknown")
    make_decision(tick_id="T9")
    trading_halt(actor="fay", source="api", reason_code="MANUAL_HALT", reason="x", trace_id="t1")
    code, out, _ = tbot("status", "--json")
    assert code == 0
    cli_status = json.loads(out)
    api_status = api.get("/admin/status").json()
    assert set(cli_status) == set(api_status)
    for key in ("halted", "halt", "config_version", "venue", "open_orders", "unresolved_orders", "heartbeat_error"):
        assert cli_status[key] == api_status[key], key
    assert cli_status["last_decision"]["tick_id"] == api_status["last_decision"]["tick_id"] == "T9"
    # the human form says the same
    code, text, _ = tbot("status")
    assert "YES since" in text and "MANUAL_HALT" in text and "unresolved orders: 1" in text


@pytest.mark.django_db
def test_json_flag_is_accepted_before_or_after_the_subcommand(all_alive):
    assert json.loads(tbot("--json", "status")[1])["venue"]
    assert json.loads(tbot("status", "--json")[1])["venue"]


@pytest.mark.django_db
def test_diagnose_explains_why_no_order_was_placed(redis_client, settings):
    # given: halted, decisions without an entry, a held lock, a stale worker, an unresolved order,
    # a rate-limit ban and a failed Telegram message
    trading_halt(actor="gus", source="cli", reason_code="VENUE_DOWN", reason="binance maintenance", trace_id="t2")
    make_decision(symbol="BTC/USDT", decision="skip", reason_code="NO_BREAKOUT")
    make_decision(symbol="ETH/USDT", decision="blocked", reason_code="HALTED")
    acquire("tick:20250101T0800", ttl_s=60)
    heartbeat.record("beat")
    make_order(client_order_id="AS-unres-1", status="submit_unknown")
    venue = settings.VENUE.name
    get_redis().sadd(f"alphasniper:ratelimit:{venue}:accounts", "acct1")
    get_redis().set(f"alphasniper:ratelimit:{venue}:acct1:backoff", "1767225600000", px=60_000)
    get_redis().set(f"alphasniper:venue:banned:{venue}", json.dumps({"venue": venue, "until_ms": 1}), px=60_000)
    TelegramOutbox.objects.create(text="x", trace_id="t", status="failed", last_error="HTTP 400: chat not found")
    # when
    code, out, _ = tbot("diagnose", "--json")
    # then it exits 1 and every cause is a finding with code, severity, detail and fix
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False
    findings = result["findings"]
    assert all(set(f) >= {"code", "severity", "detail", "fix"} for f in findings)
    assert all(f["severity"] in ("info", "warning", "error") for f in findings)
    by_code: dict[str, list[dict]] = {}
    for f in findings:
        by_code.setdefault(f["code"], []).append(f)
    halted = by_code["HALTED"][0]
    assert halted["severity"] == "error" and "VENUE_DOWN" in halted["detail"] and "tbot resume" in halted["fix"]
    assert any("NO_BREAKOUT" in f["detail"] for f in by_code["LATEST_DECISION"])
    assert "HALTED" in by_code["DECISION_BLOCKED"][0]["detail"]
    assert {f["data"]["symbol"] for f in by_code["NO_DECISION_FOR_SYMBOL"]} == {"SOL/USDT", "BNB/USDT", "XRP/USDT"}
    assert by_code["LOCK_HELD"][0]["data"]["lock"] == "tick:20250101T0800"
    assert {f["data"]["process"] for f in by_code["PROCESS_STALE"]} == {"data-syncer", "strategy-engine"}
    assert "AS-unres-1" in by_code["UNRESOLVED_ORDERS"][0]["detail"]
    assert by_code["RATE_LIMITED"][0]["severity"] == "warning"
    assert by_code["VENUE_BANNED"][0]["severity"] == "error"
    assert "chat not found" in by_code["TELEGRAM_FAILED"][0]["detail"]
    # balance: the paper venue's reading of the quote asset
    assert by_code["FREE_BALANCE"][0]["data"]["asset"] == "USDT"


@pytest.mark.django_db
def test_diagnose_human_output_lists_fixes(redis_client):
    trading_halt(actor="gus", source="cli", reason_code="VENUE_DOWN", reason="x", trace_id="t3")
    code, out, _ = tbot("diagnose")
    assert code == 1
    assert "X HALTED:" in out and "fix: if the cause is dealt with: tbot resume" in out


@pytest.mark.django_db
def test_prepare_checks_config_migrations_db_redis_broker_and_venue(all_alive):
    code, out, _ = tbot("prepare", "--json")
    result = json.loads(out)
    codes = {c["code"] for c in result["checks"]}
    assert {"CONFIG_ENV_OK", "MIGRATIONS_OK", "DATABASE_OK", "REDIS_OK", "BROKER_OK", "STRATEGY_CONFIG_OK"} <= codes
    # the paper venue lists the universe, answers a signed read, and its clock is ours
    assert {"UNIVERSE_LISTED", "VENUE_CREDENTIALS_OK", "CLOCK_OK"} <= codes
    assert code == (0 if result["ok"] else 1)


@pytest.mark.django_db
def test_prepare_names_an_invalid_stored_config(all_alive):
    from trading.models import SystemConfig

    SystemConfig.objects.create(key="timeframe", value="3m")
    code, out, _ = tbot("prepare", "--json")
    bad = [c for c in json.loads(out)["checks"] if c["code"] == "STRATEGY_CONFIG_INVALID"]
    assert code == 1 and "timeframe" in bad[0]["detail"]


@pytest.mark.django_db
def test_prepare_reports_redis_and_broker_down(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    code, out, _ = tbot("prepare", "--json")
    codes = {c["code"] for c in json.loads(out)["checks"]}
    assert code == 1 and {"REDIS_DOWN", "BROKER_DOWN"} <= codes


# --- real processes -----------------------------------------------------------------------------

def _subprocess_env() -> dict[str, str]:
    s = connection.settings_dict
    auth = f"{s['USER']}:{s['PASSWORD']}@" if s["PASSWORD"] else (f"{s['USER']}@" if s["USER"] else "")
    from django.conf import settings

    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{auth}{s['HOST']}:{s['PORT']}/{s['NAME']}",   # the pytest-django test DB
        "REDIS_URL": settings.REDIS_URL,
        "ADMIN_TOKEN": TOKEN,
        "TELEGRAM_BOT_TOKEN": "", "TELEGRAM_CHAT_ID": "",
        "LOG_LEVEL": "WARNING",
    }


@pytest.mark.django_db(transaction=True)
def test_tbot_halt_in_a_real_process_then_status_over_the_api(api):
    # when `python manage.py tbot halt ... --json` runs as its own process against the test DB
    proc = subprocess.run([sys.executable, "manage.py", "tbot", "halt", *WRITE_ARGS, "--json"], cwd=ROOT,
                          env=_subprocess_env(), capture_output=True, text=True, timeout=120)
    # then it exits 0 with its JSON on stdout
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["halted"] is True
    # and this process sees the halt through GET /admin/status
    status = api.get("/admin/status").json()
    assert status["halted"] is True
    assert (status["halt"]["by"], status["halt"]["reason_code"], status["halt"]["trace_id"]) == (
        "erin", "CLI_HALT", result["trace_id"])
    assert AuditLog.objects.get().source == "cli"
    # and the console-script entry point reads the same state
    proc = subprocess.run([sys.executable, "-m", "adminapi.cli", "status", "--json"], cwd=ROOT,
                          env=_subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["halt"]["reason"] == "halting from the shell"


def test_a_configuration_error_exits_2_naming_the_variable():
    env = {**os.environ, "EXCHANGE": "kraken"}
    proc = subprocess.run([sys.executable, "-m", "adminapi.cli", "status"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "EXCHANGE='kraken' is not one of paper, binance, bybit" in proc.stderr


@pytest.mark.django_db
def test_tbot_on_an_unmigrated_database_says_to_migrate_and_exits_2():
    import subprocess
    import sys
    from pathlib import Path

    import psycopg2
    from django.db import connection

    db = connection.settings_dict
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    admin = psycopg2.connect(f"{server}/postgres")
    admin.autocommit = True
    name = f"empty_{os.getpid()}"
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        result = subprocess.run([sys.executable, "-m", "adminapi.cli", "status"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[2], timeout=60,
                                env={**os.environ, "DATABASE_URL": f"{server}/{name}"})
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    assert result.returncode == 2
    assert "not migrated" in result.stdout + result.stderr and "python manage.py migrate" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- prepare says "ready" only when nothing is wrong ----------------------------------------------

@pytest.mark.django_db
def test_prepare_never_says_ready_after_a_problem_and_exits_1(settings, all_alive):
    # given a deployment prepare finds nothing wrong with
    code, out, _ = tbot("prepare")
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "prepare: OK — ready to trade"
    # when the API token is missing (a warning: nobody could halt through the API)
    settings.ADMIN_TOKEN = ""
    code, out, _ = tbot("prepare")
    # then the warning is shown, nothing says "ready", and the exit code is 1
    assert code == 1
    assert "ADMIN_TOKEN_UNSET" in out and "ready" not in out.lower()
    assert out.strip().splitlines()[-1] == ("prepare: WARNINGS — fix the 1 problem(s) above before trading "
                                            "(ADMIN_TOKEN_UNSET)")
    result = json.loads(tbot("prepare", "--json")[1])
    assert result["ok"] is False and result["problems"] == ["ADMIN_TOKEN_UNSET"]


# --- config get / set ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_config_get_shows_what_the_api_shows(api):
    code, out, _ = tbot("config", "get", "--json")
    assert code == 0
    cli_config, api_config = json.loads(out), api.get("/admin/config").json()
    assert cli_config["values"] == api_config["values"] and cli_config["version"] == api_config["version"]
    code, out, _ = tbot("config", "get", "risk_per_trade", "universe")
    assert code == 0
    assert "risk_per_trade" in out and "0.005" in out and "range (0, 0.05]" in out and "BTC/USDT,ETH/USDT" in out
    assert "timeframe" not in out
    code, out, _ = tbot("config", "get", "risk", "--json")
    assert code == 2 and "unknown config key" in json.loads(out)["fields"]["risk"][0]


@pytest.mark.django_db
def test_config_set_goes_through_the_audited_service_and_the_api_sees_it(api):
    # when an operator changes two keys from the shell
    code, out, _ = tbot("config", "set", "risk_per_trade=0.0025", "timeframe=1h", "max_open_positions=2",
                        *WRITE_ARGS[:2], "--reason-code", "TUNE_RISK", "--reason", "calmer market", "--json")
    # then tbot reports the change ...
    assert code == 0, out
    result = json.loads(out)
    assert result["changed"]["risk_per_trade"] == {"before": "0.005", "after": "0.0025"}
    assert result["changed"]["max_open_positions"] == {"before": 3, "after": 2}
    # ... the API shows the new values ...
    values = api.get("/admin/config").json()["values"]
    assert (values["risk_per_trade"], values["timeframe"], values["max_open_positions"]) == ("0.0025", "1h", 2)
    # ... and one audit row from the CLI carries who, why and tbot's trace id
    row = AuditLog.objects.get()
    assert (row.action, row.source, row.actor, row.reason_code, row.trace_id) == (
        "config.update", "cli", "erin", "TUNE_RISK", result["trace_id"])
    code, text, _ = tbot("config", "set", "timeframe=1h", *WRITE_ARGS)
    assert code == 0 and "unchanged (already so): timeframe" in text


@pytest.mark.django_db
@pytest.mark.parametrize(("words", "field", "fragment"), [
    (["risk_per_trade=0.0012345678901234567890"], "risk_per_trade", "at most 8 decimal places"),
    (["risk_per_trade=0.5"], "risk_per_trade", "must be <= 0.05"),
    (["max_open_positions=two"], "max_open_positions", "integer"),
    (["risk=0.01"], "risk", "unknown config key"),
    (["risk_per_trade"], "changes", "is not KEY=VALUE"),
    (["universe=btc/usdt"], "universe", "not a unified symbol"),
])
def test_config_set_names_a_bad_value_exits_2_and_writes_nothing(words, field, fragment):
    code, out, _ = tbot("config", "set", *words, *WRITE_ARGS, "--json")
    assert code == 2
    result = json.loads(out)
    assert result["ok"] is False and fragment in " ".join(result["fields"][field])
    assert audit_count() == 0


@pytest.mark.django_db
def test_config_set_refuses_a_universe_the_account_cannot_fund():
    code, out, _ = tbot("config", "set", "universe=ETH/BTC", *WRITE_ARGS, "--json")
    assert code == 2
    assert json.loads(out) == {"ok": False, "error": "universe_not_tradable", "fields": {"universe": [
        "ETH/BTC: the account holds no BTC to buy with (it holds USDT)"]}}
    assert audit_count() == 0


@pytest.mark.django_db(transaction=True)
def test_config_json_in_a_real_process_is_nothing_but_json_on_stdout():
    env = {**_subprocess_env(), "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}
    for args in (["config", "set", "timeframe=5m", *WRITE_ARGS, "--json"], ["config", "get", "--json"]):
        proc = subprocess.run([sys.executable, "-m", "adminapi.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["values"]["timeframe"] == "5m"     # the whole of stdout parses


# --- tbot with no configuration, and in a `make run` checkout ------------------------------------

def _bare_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **extra}


@pytest.mark.parametrize("args", [["--help"], ["config", "set", "--help"], ["emergency-exit", "-h"]])
def test_tbot_help_works_with_no_configuration_at_all(args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "adminapi.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=_bare_env(ALPHASNIPER_DATA_DIR=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: tbot") and proc.stderr == ""
    if args == ["--help"]:
        assert all(name in proc.stdout for name in ("prepare", "status", "diagnose", "config", "emergency-exit"))


@pytest.mark.django_db(transaction=True)
def test_tbot_in_a_make_run_checkout_finds_the_local_stack_by_itself(tmp_path, monkeypatch):
    from infra import devstack

    # given `make run` wrote its environment (here: the test database) under the data dir
    monkeypatch.setattr(devstack, "RUN", devstack.Profile("run", 0, 0, "x", root=tmp_path / "run"))
    stack = _subprocess_env()
    path = devstack.write_local_env({**stack, "ALPHASNIPER_ENV": "development", "API_PORT": "9001"})
    assert path == tmp_path / "run" / "env.json" and oct(path.stat().st_mode & 0o777) == "0o600"
    # when tbot runs there with no DATABASE_URL, REDIS_URL or ADMIN_TOKEN in its environment
    proc = subprocess.run([sys.executable, "-m", "adminapi.cli", "status", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=_bare_env(ALPHASNIPER_DATA_DIR=str(tmp_path)))
    # then it used that stack, said so on stderr, and answered
    assert proc.returncode == 0, proc.stderr
    assert "using the local `make run` stack" in proc.stderr and str(path) in proc.stderr
    assert json.loads(proc.stdout)["venue"] == "paper"


# --- diagnose before the first tick, and how far a skip is from an entry -------------------------

@pytest.mark.django_db
def test_before_the_first_tick_diagnose_says_when_it_comes_not_to_check_beat(all_alive):
    # given a fresh system: beat and the workers are alive, no tick has decided yet
    code, out, _ = tbot("diagnose", "--json")
    findings = {f["code"]: f for f in json.loads(out)["findings"]}
    # then it says it is waiting for the next candle close, as information, not a problem
    assert "NO_DECISIONS" not in findings
    waiting = findings["WAITING_FOR_FIRST_TICK"]
    assert waiting["severity"] == "info" and "HKT (in " in waiting["detail"] and "candle closes at" in waiting["detail"]
    assert "beat" not in waiting["detail"] + waiting["fix"]


@pytest.mark.django_db
def test_with_no_decision_and_no_beat_diagnose_names_beat(redis_client):
    heartbeat.record("strategy-engine")
    code, out, _ = tbot("diagnose", "--json")
    no_decisions = next(f for f in json.loads(out)["findings"] if f["code"] == "NO_DECISIONS")
    assert code == 1 and no_decisions["severity"] == "warning"
    assert "beat has never sent a heartbeat: nothing schedules the ticks" in no_decisions["detail"]


@pytest.mark.django_db
def test_a_synced_tick_without_decisions_is_named(all_alive, settings, monkeypatch):
    from datetime import timedelta
    from types import SimpleNamespace

    from django.utils import timezone

    from adminapi import diagnostics
    from infra.clock import last_closed_candle_close, tick_id_for
    from syncer.selectors import tick_key

    # given it is 5 minutes after a 15m candle closed, and the syncer has synced that tick
    close = last_closed_candle_close(timezone.now(), "15m")
    monkeypatch.setattr(diagnostics, "timezone", SimpleNamespace(now=lambda: close + timedelta(minutes=5)))
    tick = tick_id_for(close)
    get_redis().set(tick_key(settings.VENUE.name, "15m", tick), json.dumps({"ok": True}))
    # then "no decision" is a problem, naming the tick to look for
    code, out, _ = tbot("diagnose", "--json")
    finding = next(f for f in json.loads(out)["findings"] if f["code"] == "NO_DECISIONS")
    assert code == 1 and f"the candles of tick {tick} were synced" in finding["detail"]


@pytest.mark.django_db
def test_a_plain_skip_says_how_far_each_symbol_is_from_an_entry(all_alive):
    from strategy.engines.blite import BLiteParams, decide_entries
    from strategy.engines.candles import CandleBatch
    from tests.strategy.helpers import entry_series, with_last

    # given the strategy skipped BTC: close 2 % under the channel high, volume under its threshold
    candles = entry_series()
    close = max(c.high for c in candles[-21:-1]) * 0.98
    candles = with_last(candles, open=close, close=close, high=close + 0.05, low=close - 0.05, volume=100.0)
    (signal,) = decide_entries(CandleBatch.from_candles({"BTC/USDT": candles}, timeframe="1m"), BLiteParams())
    assert str(signal.reason_code) == "NO_BREAKOUT"
    make_decision(symbol="BTC/USDT", decision="skip", reason_code="NO_BREAKOUT",
                  inputs=json.loads(json.dumps({"engine": signal.to_dict()})))
    # when the operator asks why nothing was bought
    code, out, _ = tbot("diagnose")
    line = next(x for x in out.splitlines() if "BTC/USDT: skip (NO_BREAKOUT)" in x)
    # then the line says how far each condition is
    assert "close 107.849 needs +2.04% to pass the breakout level (highest high) 110.05" in line
    assert "volume 100 needs +" in line and "to pass the volume threshold" in line
    assert "is above the trend EMA" in line
    gaps = next(f for f in json.loads(tbot("diagnose", "--json")[1])["findings"]
                if f.get("data", {}).get("symbol") == "BTC/USDT")["data"]["gaps"]
    assert gaps["breakout"]["met"] is False and gaps["trend"]["met"] is True
