"""docker-compose.yml is the production path. No Docker engine runs here, so this checks what
a broken compose file would get wrong: commands that point at nothing, queues no worker
consumes, variables nobody documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands
from django.urls import resolve

from alphasniper_project.celery import Queue, app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
APP_SERVICES = ["migrate", "api-service", "data-syncer", "strategy-engine", "backtest-worker", "beat", "flower"]
RUNTIME_VARS = {"HOSTNAME"}


def documented_variables() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def commands_of(service: dict) -> list[list[str]]:
    """The argv(s) a service runs; `sh -c "a && b"` yields each part."""
    command = service["command"]
    argv = command if isinstance(command, list) else shlex.split(command)
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def test_every_process_of_the_architecture_is_a_service():
    assert {"postgres", "redis", *APP_SERVICES} <= set(SERVICES)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_command_points_at_real_code(name):
    for argv in commands_of(SERVICES[name]):
        program = argv[0]
        if program == "python" and argv[1] == "manage.py":
            assert argv[2] in get_commands(), f"{name}: no management command {argv[2]!r}"
        elif program == "gunicorn":
            module, _, attr = argv[1].partition(":")
            imported = __import__(module, fromlist=["_"])
            assert hasattr(imported, attr or "application"), f"{name}: {argv[1]} has no WSGI application"
            assert (ROOT / argv[argv.index("-c") + 1]).exists()
        elif program == "celery":
            assert argv[1:3] == ["-A", "alphasniper_project"]
            assert argv[3] in {"worker", "beat", "flower"}, f"{name}: unknown celery subcommand {argv[3]}"
            if argv[3] == "worker":
                queues = set(argv[argv.index("-Q") + 1].split(","))
                assert queues <= {q.value for q in Queue}, f"{name}: consumes unknown queues {queues}"
        else:
            pytest.fail(f"{name}: unexpected program {program!r}")


def test_every_queue_is_consumed_by_some_worker():
    consumed: set[str] = set()
    for name in APP_SERVICES:
        for argv in commands_of(SERVICES[name]):
            if argv[0] == "celery" and argv[3] == "worker":
                consumed |= set(argv[argv.index("-Q") + 1].split(","))
    assert {q.value for q in Queue} == consumed
    routed = {route["queue"] for route in app.conf.task_routes.values()}
    assert routed <= consumed


def test_exactly_one_beat_and_healthchecks_restarts_volumes():
    beats = [n for n in APP_SERVICES for argv in commands_of(SERVICES[n]) if argv[:4][-1:] == ["beat"]]
    assert beats == ["beat"]
    assert "replicas" not in str(SERVICES["beat"].get("deploy", {}))
    for name in ("postgres", "redis", "api-service", "data-syncer", "strategy-engine"):
        assert "healthcheck" in SERVICES[name], f"{name} has no healthcheck"
    for name in set(APP_SERVICES) - {"migrate"}:
        assert SERVICES[name]["restart"] == "unless-stopped"
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert set(COMPOSE["volumes"]) == {"pgdata", "redisdata"}


def test_api_healthcheck_url_exists():
    test = " ".join(SERVICES["api-service"]["healthcheck"]["test"])
    path = re.search(r"127\.0\.0\.1:9001(/[^'\"]+)", test).group(1)
    assert resolve(path)


def test_every_variable_compose_uses_is_documented():
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", COMPOSE_TEXT)) - RUNTIME_VARS
    for service in SERVICES.values():
        env = service.get("environment", {})
        used |= set(env if isinstance(env, dict) else (e.split("=")[0] for e in env))
    missing = used - documented_variables()
    assert not missing, f"used in docker-compose.yml but not in .env.example: {sorted(missing)}"


def test_every_variable_the_code_reads_is_documented():
    read: set[str] = set()
    for path in [ROOT / "gunicorn.conf.py", *ROOT.glob("alphasniper_project/*.py")]:
        read |= set(re.findall(r"""(?:env|environ)\.get\(\s*f?["']([A-Z][A-Z0-9_]*)["']""", path.read_text()))
    # per-venue variables are read through an f-string prefix
    read |= {f"{venue}_{suffix}" for venue in ("BINANCE", "BYBIT") for suffix in ("API_KEY", "API_SECRET", "BASE_URL")}
    assert {"DATABASE_URL", "REDIS_URL", "EXCHANGE", "ADMIN_TOKEN", "GUNICORN_WORKERS"} <= read  # the scan works
    missing = read - documented_variables() - {"DJANGO_SETTINGS_MODULE"}
    assert not missing, f"read by the code but not in .env.example: {sorted(missing)}"


SECRET_VARS = {"FLOWER_BASIC_AUTH", "POSTGRES_PASSWORD", "ADMIN_TOKEN", "DJANGO_SECRET_KEY", "DATABASE_URL",
               "BINANCE_API_SECRET", "BYBIT_API_SECRET", "TELEGRAM_BOT_TOKEN"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_no_secret_is_on_a_command_line(name):
    # `ps` shows every process's arguments to every user of the host
    command = " ".join(" ".join(argv) for argv in commands_of(SERVICES[name]))
    assert "basic-auth" not in command and "password" not in command.lower()
    assert not set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", command)) & SECRET_VARS


def test_flower_gets_its_login_from_the_environment_and_refuses_to_start_without_one():
    assert SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """docker compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (what this file uses)."""
    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name, "")
        if value:
            return value
        if op == ":?":
            raise ValueError(f"{name}: {arg}")
        return arg if op == ":-" else ""
    return re.sub(r"\$\{([A-Z][A-Z0-9_]*)(:-|:\?)?([^}]*)\}", one, text)


def test_the_database_password_is_written_once_and_every_app_process_gets_it():
    from alphasniper_project.env import database_settings

    # .env.example sets the password once; DATABASE_URL is not set there (compose builds it)
    example = env_example()
    assert "DATABASE_URL" not in example
    assert sum("change-me" in v for k, v in example.items() if k.startswith("POSTGRES")) == 1
    # given an operator changes the password in .env
    env = {**example, "POSTGRES_PASSWORD": "n3w-Passw0rd_"}
    postgres = {k: interpolate(v, env) for k, v in SERVICES["postgres"]["environment"].items()}
    for name in APP_SERVICES:
        # then every app process (migrate included) connects with what the postgres container was given
        db = database_settings(interpolate(SERVICES[name]["environment"]["DATABASE_URL"], env))
        assert (db["USER"], db["PASSWORD"], db["NAME"], db["HOST"]) == (
            postgres["POSTGRES_USER"], "n3w-Passw0rd_", postgres["POSTGRES_DB"], "postgres"), name
    # and without a password compose refuses to start
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(SERVICES["api-service"]["environment"]["DATABASE_URL"], {})
