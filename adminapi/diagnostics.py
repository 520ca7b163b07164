"""What ``tbot prepare`` and ``tbot diagnose`` look at. Reads only; nothing here changes state.

* ``prepare_checks()`` — "can this deployment trade?": configuration, migrations, PostgreSQL,
  Redis, the broker, venue credentials (a signed read) and clock skew against the venue.
* ``diagnose_findings()`` — "why was no order placed?": halt state, the latest decision of every
  symbol with its reason code, process heartbeats, held locks, free balance, rate-limit state,
  unresolved orders and Telegram delivery problems.

Every item is ``{code, severity, detail, fix}`` (``severity``: info | warning | error); each
check survives the failure of any other (a dead Redis is a finding, not a traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from infra.clock import TIMEFRAME_SECONDS
from trading.exchanges.factory import get_gateway

INFO, WARNING, ERROR = "info", "warning", "error"


def finding(code: str, severity: str, detail: str, fix: str = "", **data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "severity": severity, "detail": detail, "fix": fix}
    if data:
        out["data"] = data
    return out


def _guard(name: str, check: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    try:
        return check()
    except Exception as exc:  # one broken dependency must not hide the other findings
        detail = f"{name} check failed: {type(exc).__name__}: {exc}"[:500]
        return [finding(f"{name.upper()}_CHECK_FAILED", ERROR, detail, "see the error; the other findings still hold")]


def _venue_env() -> str:
    prefix = settings.VENUE.name.upper()
    return f"{prefix}_API_KEY / {prefix}_API_SECRET" + (f" and {prefix}_BASE_URL" if settings.VENUE.base_url else "")


def _venue_error_class() -> type[Exception]:
    from trading.exchanges.errors import VenueError

    return VenueError


# --- prepare --------------------------------------------------------------------------------

def _check_configuration() -> list[dict[str, Any]]:
    from infra.telegram import telegram_enabled
    from trading.config_schema import ConfigValidationError, config_get

    out = []
    config = settings.CONFIG
    out.append(finding("CONFIG_ENV_OK", INFO,
                       f"environment valid: ALPHASNIPER_ENV={config.run_mode}, venue={settings.VENUE.name}"
                       + (" (testnet)" if settings.VENUE.testnet else "")
                       + (f", base URL {settings.VENUE.base_url}" if settings.VENUE.base_url else "")))
    if not settings.ADMIN_TOKEN:
        out.append(finding("ADMIN_TOKEN_UNSET", WARNING, "ADMIN_TOKEN is not set: the /admin API refuses every call",
                           "set ADMIN_TOKEN (at least 16 random characters) in the environment"))
    if not telegram_enabled():
        out.append(finding("TELEGRAM_DISABLED", INFO, "Telegram is disabled: operator actions are not announced",
                           "set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID to enable it"))
    try:
        cfg = config_get()
        out.append(finding("STRATEGY_CONFIG_OK", INFO,
                           f"strategy config valid (version {cfg.version}): {len(cfg.universe)} symbols, "
                           f"timeframe {cfg.timeframe}"))
    except ConfigValidationError as exc:
        out.append(finding("STRATEGY_CONFIG_INVALID", ERROR, f"stored strategy config is invalid: {exc}",
                           "fix the named keys with `tbot`/API update_config or the Django admin"))
    return out


def _check_migrations() -> list[dict[str, Any]]:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    unapplied = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    if unapplied:
        return [finding("MIGRATIONS_UNAPPLIED", ERROR, f"{len(unapplied)} unapplied migration(s): "
                        + ", ".join(unapplied[:20]), "run `python manage.py migrate`", unapplied=unapplied)]
    return [finding("MIGRATIONS_OK", INFO, "all migrations applied")]


def _check_database() -> list[dict[str, Any]]:
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
    return [finding("DATABASE_OK", INFO, f"PostgreSQL {version} answers")]


def _check_redis() -> list[dict[str, Any]]:
    import redis as redis_lib

    from infra.redis import get_redis

    out = []
    try:
        version = get_redis().info("server")["redis_version"]
        out.append(finding("REDIS_OK", INFO, f"Redis {version} answers"))
    except redis_lib.RedisError as exc:
        out.append(finding("REDIS_DOWN", ERROR, f"Redis at REDIS_URL does not answer: {exc}",
                           "start Redis or fix REDIS_URL; without it there are no locks and no heartbeats"))
    try:
        client = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        out.append(finding("BROKER_OK", INFO, "Celery broker answers"))
    except redis_lib.RedisError as exc:
        out.append(finding("BROKER_DOWN", ERROR, f"Celery broker does not answer: {exc}",
                           "start the broker or fix CELERY_BROKER_URL; no task can run without it"))
    return out


def _check_venue() -> list[dict[str, Any]]:
    """The same venue check a worker runs at start, with the same rules (``venue_checks``)."""
    from trading.exchanges.startup import venue_checks

    venue_error = _venue_error_class()
    try:
        gateway = get_gateway()
    except venue_error as exc:
        return [finding("VENUE_CREDENTIALS_FAILED", ERROR, f"could not build the {settings.VENUE.name} gateway: {exc}",
                        f"check {_venue_env()}")]
    cfg, _ = _config()
    return [finding(c.code, c.severity, c.detail, c.fix) for c in venue_checks(gateway=gateway, universe=cfg.universe)]


def prepare_checks() -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for name, check in (("configuration", _check_configuration), ("migrations", _check_migrations),
                        ("database", _check_database), ("redis", _check_redis), ("venue", _check_venue)):
        checks.extend(_guard(name, check))
    return checks


# --- diagnose -------------------------------------------------------------------------------

def _diag_halt() -> list[dict[str, Any]]:
    from trading.selectors import is_halted

    halt = is_halted()
    if halt.halted:
        return [finding("HALTED", ERROR,
                        f"trading is halted since {halt.at} by {halt.by} ({halt.reason_code}: {halt.reason})",
                        "if the cause is dealt with: tbot resume --reason-code <CODE> --reason '<why>'",
                        **halt.as_json())]
    return [finding("NOT_HALTED", INFO, "trading is not halted")]


def _config():
    from trading.config_schema import ConfigValidationError, config_defaults, config_get

    try:
        return config_get(), []
    except ConfigValidationError as exc:
        return config_defaults(), [finding(
            "STRATEGY_CONFIG_INVALID", ERROR, f"stored strategy config is invalid: {exc}",
            "fix the named keys (update_config); the strategy refuses to run on it")]


def _diag_decisions() -> list[dict[str, Any]]:
    from strategy.selectors import latest_decisions_per_symbol

    cfg, out = _config()
    latest = latest_decisions_per_symbol(symbols=list(cfg.universe))
    if not latest:
        out.append(_no_decisions(cfg))
        return out
    stale_after = timedelta(seconds=2 * TIMEFRAME_SECONDS.get(cfg.timeframe, 900) + 300)
    now = timezone.now()
    for symbol in cfg.universe:
        d = latest.get(symbol)
        if d is None:
            out.append(finding("NO_DECISION_FOR_SYMBOL", WARNING, f"{symbol}: no decision recorded yet",
                               "check candles are synced for it (data-syncer) and the strategy tick runs",
                               symbol=symbol))
            continue
        data = {"symbol": symbol, "tick_id": d.tick_id, "decision": d.decision, "reason_code": d.reason_code,
                "trace_id": d.trace_id}
        detail = f"{symbol}: {d.decision} ({d.reason_code}) at tick {d.tick_id}"
        if now - d.created_at > stale_after:
            out.append(finding("DECISION_STALE", WARNING, f"{detail} — last decision is {now - d.created_at} old",
                               "check beat, the strategy-engine heartbeat and candle sync", **data))
        elif d.decision == "blocked":
            out.append(finding("DECISION_BLOCKED", WARNING, detail,
                               "the risk gate blocked the entry: see reason_code (halt, limits, stale data, balance)",
                               **data))
        else:
            gaps = _entry_gaps(d)
            if gaps:
                detail += " — " + "; ".join(gap.describe() for gap in gaps)
                data["gaps"] = {g.condition: {"met": g.met, "value": g.value, "level": g.level,
                                              "gap_pct": round(g.gap_pct, 4)} for g in gaps}
            out.append(finding("LATEST_DECISION", INFO, detail,
                               "" if d.decision == "enter" else "none needed: the strategy saw no entry", **data))
    return out


def _entry_gaps(decision) -> list:
    """For a plain skip: how far each entry condition is from holding (the engine's own inputs)."""
    from strategy.engines.blite import entry_gaps

    if decision.decision != "skip" or not isinstance(decision.inputs, dict):
        return []
    engine = decision.inputs.get("engine")
    inputs = engine.get("inputs") if isinstance(engine, dict) else None
    return entry_gaps(inputs) if isinstance(inputs, dict) else []


def _no_decisions(cfg) -> dict[str, Any]:
    """No decision at all: waiting for the first candle close, or something that schedules or runs
    ticks is missing. Only the second is a warning."""
    from infra import heartbeat
    from infra.clock import last_closed_candle_close, tick_id_for, to_hk
    from syncer.selectors import tick_synced

    step = timedelta(seconds=TIMEFRAME_SECONDS.get(cfg.timeframe, 900))
    now = timezone.now()
    last_close = last_closed_candle_close(now, cfg.timeframe)
    next_close = last_close + step
    try:
        ages = heartbeat.ages()
    except Exception as exc:  # Redis down: that has its own finding (health)
        ages = {p: None for p in heartbeat.PROCESSES}
        ages["error"] = str(exc)
    for process, role in (("beat", "nothing schedules the ticks"),
                          ("strategy-engine", "nothing runs the ticks (queue 'strategy')")):
        age = ages.get(process)
        if age is None or age > heartbeat.STALE_AFTER_S:
            when = "has never sent a heartbeat" if age is None else f"last sent a heartbeat {age:.0f} s ago"
            return finding("NO_DECISIONS", WARNING, f"no decision recorded yet, and {process} {when}: {role}",
                           f"start {process} (`make run` and docker compose start it); `tbot status` shows "
                           "the heartbeats", process=process)
    tick_id = tick_id_for(last_close)
    if tick_synced(venue=settings.VENUE.name, timeframe=cfg.timeframe, tick_id=tick_id) is not None \
            and now - last_close > timedelta(minutes=2):
        return finding("NO_DECISIONS", WARNING, f"the candles of tick {tick_id} were synced but the strategy "
                       "recorded no decision for them", f"look for tick {tick_id} in the strategy-engine's log",
                       tick_id=tick_id)
    wait = int((next_close - now).total_seconds())
    return finding("WAITING_FOR_FIRST_TICK", INFO,
                   f"no tick has decided yet: the next {cfg.timeframe} candle closes at "
                   f"{to_hk(next_close):%H:%M} HKT (in {wait // 60} min {wait % 60} s); every symbol of the "
                   "universe gets a decision then", "", next_tick_id=tick_id_for(next_close))


def _diag_health() -> list[dict[str, Any]]:
    from infra.health import check_health

    _healthy, report = check_health()
    out = []
    for name, component in report["components"].items():
        if not component["ok"]:
            out.append(finding("COMPONENT_DOWN", ERROR, f"{name} is down: {component.get('error')}",
                               f"restore {name}; trading fails closed without it", component=name))
    for name, process in report["processes"].items():
        if not process["ok"]:
            out.append(finding("PROCESS_STALE", ERROR, f"{name}: {process.get('error')}",
                               f"start or restart {name} (see `make run` / docker compose)", process=name,
                               heartbeat_age_s=process.get("heartbeat_age_s")))
    if not out:
        out.append(finding("HEALTH_OK", INFO, "database, Redis, broker and every process heartbeat are fine"))
    return out


def _diag_locks() -> list[dict[str, Any]]:
    from infra.locks import held_locks

    locks = held_locks()
    if not locks:
        return [finding("NO_LOCKS_HELD", INFO, "no Redis locks are held")]
    out = []
    for name, ttl_ms in sorted(locks.items()):
        if ttl_ms < 0:
            out.append(finding("LOCK_WITHOUT_TTL", WARNING, f"lock {name!r} is held with no expiry",
                               f"if no worker is running that work: redis-cli DEL alphasniper:lock:{name}", lock=name))
        else:
            out.append(finding("LOCK_HELD", INFO, f"lock {name!r} is held ({ttl_ms} ms left)",
                               "work on it is in progress (it expires on its own)", lock=name, ttl_ms=ttl_ms))
    return out


def _diag_balance() -> list[dict[str, Any]]:
    cfg, _ = _config()
    quotes = sorted({s.split("/")[1] for s in cfg.universe if "/" in s})
    gateway = get_gateway()
    try:
        balances = gateway.fetch_balances()
    except _venue_error_class() as exc:
        return [finding("VENUE_ERROR", ERROR, f"cannot read balances on {settings.VENUE.name}: {exc}",
                        f"check {_venue_env()} and venue reachability (`tbot prepare`)")]
    out = []
    for quote in quotes:
        balance = balances.get(quote)
        free = Decimal(balance.free) if balance is not None else Decimal(0)
        if free <= 0:
            out.append(finding("NO_FREE_BALANCE", ERROR, f"free {quote} balance is 0: no entry can be sized",
                               f"deposit {quote} or release it from open orders", asset=quote, free="0"))
        else:
            shown = format(free.normalize(), "f")
            out.append(finding("FREE_BALANCE", INFO, f"free {quote}: {shown}", "", asset=quote, free=shown))
    return out


def _diag_ratelimit() -> list[dict[str, Any]]:
    """The venue's ban / back-off / budget use, from the shared limiter's own reporting."""
    from trading.exchanges.ratelimit import rate_limit_state

    venue = settings.VENUE.name
    state = rate_limit_state(venue)
    out = []
    ban = state.get("banned")
    if ban:
        out.append(finding("VENUE_BANNED", ERROR, f"{venue} has banned our IP/account; {ban.get('remaining_s')} s left",
                           "wait for the ban to expire; then reduce request volume (universe size, timeframe)",
                           **{k: v for k, v in ban.items() if k != "venue"}))
    for account in state.get("accounts", []):
        if account.get("backoff_s"):
            out.append(finding("RATE_LIMITED", WARNING,
                               f"{venue} asked us to back off: {account['backoff_s']} s left (account "
                               f"{account.get('account')})", "wait; if it recurs reduce request volume",
                               account=account.get("account"), backoff_s=account["backoff_s"]))
        for name, budget in (account.get("budgets") or {}).items():
            pct = budget.get("used_pct")
            if pct is not None and pct >= 80:
                out.append(finding("RATE_LIMIT_NEAR", WARNING,
                                   f"{venue} budget {name} is {pct}% used ({budget.get('used')}/{budget.get('limit')} "
                                   f"per {budget.get('window_s')} s)", "requests will be delayed until it frees",
                                   budget=name, used_pct=pct))
    if not out:
        out.append(finding("RATE_LIMIT_CLEAR", INFO, f"no ban, back-off or exhausted budget for {venue}", ""))
    return out


def _diag_orders() -> list[dict[str, Any]]:
    from trading.selectors import unresolved_orders, unresolved_orders_count

    count = unresolved_orders_count()
    if not count:
        return [finding("NO_UNRESOLVED_ORDERS", INFO, "no order is in submitted / submit_unknown")]
    orders = list(unresolved_orders(limit=10))
    listed = ", ".join(f"{o.client_order_id} ({o.status}, {o.symbol})" for o in orders)
    return [finding("UNRESOLVED_ORDERS", WARNING, f"{count} order(s) with an unresolved send: {listed}",
                    "reconciliation resolves them by client order id; check the data-syncer and `tbot status`",
                    client_order_ids=[o.client_order_id for o in orders])]


def _diag_fees() -> list[dict[str, Any]]:
    """Fees paid in a third asset (BNB) that could not be valued in quote yet: PnL and the day's
    loss limit see them only through equity until they are."""
    from trading.selectors import unvalued_fees

    rows = unvalued_fees()
    if not rows:
        return []
    totals: dict[str, Decimal] = {}
    for row in rows:
        for asset, amount in row["fees"].items():
            totals[asset] = totals.get(asset, Decimal(0)) + Decimal(amount)
    listed = ", ".join(f"{format(v.normalize(), 'f')} {a}" for a, v in sorted(totals.items()))
    return [finding("FEES_UNVALUED", WARNING,
                    f"{len(rows)} order(s) paid fees not yet valued in quote: {listed}; their PnL leaves them out",
                    "reconciliation values them at the venue's price of the fill's time once the venue answers "
                    "(it needs the ASSET/quote market); check the data-syncer",
                    client_order_ids=[r["client_order_id"] for r in rows][:20])]


def _diag_venue_stops() -> list[dict[str, Any]]:
    """Open positions whose protective stop is not on the venue: while our processes are down
    nothing protects them."""
    from strategy.selectors import positions_unprotected_on_venue

    return [finding("VENUE_STOP_UNPROTECTED", WARNING,
                    f"position #{p.pk} {p.symbol} has no stop on the venue: {p.venue_stop_reason}",
                    "the bot-side stop still watches it while the stop monitor runs; a position the venue cannot "
                    "protect needs an operator's eye during any outage (or an emergency exit)",
                    position=p.pk, symbol=p.symbol)
            for p in positions_unprotected_on_venue(venue=settings.VENUE.name)]


def _diag_telegram() -> list[dict[str, Any]]:
    from infra.telegram import telegram_enabled, telegram_problems

    problems = telegram_problems(since=timezone.now() - timedelta(hours=24))
    out = []
    if problems["failed"]:
        last = problems["failed"][0]
        out.append(finding("TELEGRAM_FAILED", WARNING,
                           f"{len(problems['failed'])} Telegram message(s) failed in the last 24 h; last error: "
                           f"{last.last_error}", "check TELEGRAM_BOT_TOKEN / TELEGRAM_CHAT_ID and that the bot is in "
                           "the chat", outbox_ids=[r.pk for r in problems["failed"]]))
    if problems["overdue"]:
        out.append(finding("TELEGRAM_BACKLOG", WARNING,
                           f"{len(problems['overdue'])} Telegram message(s) pending past their delivery time",
                           "check the data-syncer worker (queue 'sync') and the broker",
                           outbox_ids=[r.pk for r in problems["overdue"]]))
    if not telegram_enabled():
        out.append(finding("TELEGRAM_DISABLED", INFO, "Telegram is disabled (TELEGRAM_BOT_TOKEN unset)",
                           "set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID to be notified"))
    return out


def diagnose_findings() -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = []
    for name, check in (("halt", _diag_halt), ("decisions", _diag_decisions), ("health", _diag_health),
                        ("locks", _diag_locks), ("balance", _diag_balance), ("ratelimit", _diag_ratelimit),
                        ("orders", _diag_orders), ("fees", _diag_fees), ("venue_stops", _diag_venue_stops),
                        ("telegram", _diag_telegram)):
        findings.extend(_guard(name, check))
    return findings


def has_problems(items: list[dict[str, Any]]) -> bool:
    """Exit-code rule of diagnose: any warning or error is a finding worth exit 1."""
    return any(item["severity"] in (WARNING, ERROR) for item in items)


def has_errors(items: list[dict[str, Any]]) -> bool:
    return any(item["severity"] == ERROR for item in items)
