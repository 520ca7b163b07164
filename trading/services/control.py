"""Operator control: halt, resume, config changes. Every call is one audited transaction.

Each service writes its change AND exactly one ``AuditLog`` row (who, source, reason_code,
reason, before, after, trace_id) in the same transaction, and writes a Telegram outbox row that
is delivered after commit (``infra.telegram``). The API, the Django admin and the tbot CLI call
these and nothing else, so the audit trail does not depend on which door the operator used.

Decisions recorded here:

* Halting while halted (or resuming while running) is idempotent: the state is left exactly
  as it was — the *original* halt's who/why/when stays visible — but the attempt is still
  audited (``before == after``) and announced. An operator action is a fact worth keeping even
  when it changes nothing.
* A config update whose values equal the current ones is likewise audited (``before == after``,
  ``changed`` empty) and bumps no version. Keys given with an unchanged value are not rewritten.
* All config/halt writes take one PostgreSQL advisory lock, so concurrent operators are
  serialised and every audit row's ``before`` is the true previous state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from infra.telegram import telegram_enqueue
from trading.config_schema import (
    HALT_KEY,
    SCHEMA,
    ConfigValidationError,
    HaltState,
    config_get,
    config_validate,
    config_version,
    to_json,
)
from trading.models import AuditLog, SystemConfig
from trading.selectors import is_halted

REASON_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
SOURCES = frozenset(AuditLog.Source.values)
_CONFIG_LOCK_KEY = 0x4153_434F_4E46  # "ASCONF": one advisory lock for every system_config write


class OperatorInputError(ValueError):
    """who / source / reason_code / reason are missing or malformed. ``problems`` is per field."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items()))


@dataclass(frozen=True)
class ConfigUpdateResult:
    changed: dict[str, dict[str, Any]]     # key -> {"before": json, "after": json}
    unchanged: list[str]                   # keys given with their current value
    version: int                           # config_version() after the update
    audit_id: int
    values: dict[str, Any] = field(default_factory=dict)   # the full effective config after, as JSON


def operator_input_problems(*, actor: Any, source: Any, reason_code: Any, reason: Any,
                            trace_id: Any) -> dict[str, list[str]]:
    """Every problem with the who/why of an operator action (empty dict = fine)."""
    problems: dict[str, list[str]] = {}
    if not isinstance(actor, str) or not actor.strip():
        problems["by"] = ["must say who is acting (non-empty)"]
    elif len(actor) > 100:
        problems["by"] = ["must be at most 100 characters"]
    if source not in SOURCES:
        problems["source"] = [f"must be one of {', '.join(sorted(SOURCES))}"]
    if not isinstance(reason_code, str) or not REASON_CODE_RE.match(reason_code):
        problems["reason_code"] = ["must match ^[A-Z][A-Z0-9_]{1,63}$ (e.g. MANUAL_HALT)"]
    if not isinstance(reason, str) or not reason.strip():
        problems["reason"] = ["must explain why (non-empty)"]
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 64:
        problems["trace_id"] = ["must be a non-empty string of at most 64 characters"]
    return problems


def _check_operator_input(**kwargs: Any) -> None:
    problems = operator_input_problems(**kwargs)
    if problems:
        raise OperatorInputError(problems)


def _lock_config() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [_CONFIG_LOCK_KEY])


def audit_record(*, action: str, actor: str, source: str, reason_code: str, reason: str, before: Any, after: Any,
                 trace_id: str) -> AuditLog:
    """The one writer of ``audit_log``: call it inside the transaction of the change it records."""
    return AuditLog.objects.create(action=action, actor=actor.strip(), source=source, reason_code=reason_code,
                                   reason=reason.strip(), before=before, after=after, trace_id=trace_id)


# --- halt / resume ------------------------------------------------------------------------


def halt_state_committed() -> HaltState:
    """The halt state for a transaction that is about to create or claim an entry (ARCHITECTURE
    invariant 9). It takes the shared side of the lock every halt write takes exclusively: a
    halt being written right now is waited for and then seen, and a halt that starts after this
    read waits until the caller's transaction has committed. So once a halt has committed, no
    entry is created or claimed for sending. Must run inside ``transaction.atomic``."""
    if not connection.in_atomic_block:
        raise RuntimeError("halt_state_committed() must run inside the transaction that writes the entry")
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", [_CONFIG_LOCK_KEY])
    return is_halted()


def _write_halt(*, halted: bool, actor: str, reason_code: str, reason: str, trace_id: str
                 ) -> tuple[HaltState, HaltState]:
    """Set the halt row (inside the caller's transaction). Returns (before, after); ``after is
    before`` when it was already in that state (idempotent: the original who/why/when stays)."""
    _lock_config()
    row = SystemConfig.objects.select_for_update().filter(key=HALT_KEY).first()
    before = HaltState.from_json(row.value if row else None)
    if before.halted == halted and row is not None:
        return before, before
    after = HaltState(halted=halted, by=actor.strip(), reason_code=reason_code, reason=reason.strip(),
                      at=timezone.now().isoformat(), trace_id=trace_id)
    if row is None:
        SystemConfig.objects.create(key=HALT_KEY, value=after.as_json(), version=1, updated_by=actor.strip())
    else:
        row.value, row.version, row.updated_by = after.as_json(), row.version + 1, actor.strip()
        row.save(update_fields=["value", "version", "updated_by", "updated_at"])
    return before, after


def halt_set(*, halted: bool, actor: str, source: str, reason_code: str, reason: str, trace_id: str) -> HaltState:
    """Set the halt state WITHOUT an audit row or a notification.

    For composite operator actions that audit and notify once for the whole action themselves
    (``trading.services.emergency.emergency_exit`` records the halt state before/after in its own
    audit row). Everything else uses ``trading_halt`` / ``trading_resume``."""
    _check_operator_input(actor=actor, source=source, reason_code=reason_code, reason=reason, trace_id=trace_id)
    with transaction.atomic():
        _before, after = _write_halt(halted=halted, actor=actor, reason_code=reason_code, reason=reason,
                                     trace_id=trace_id)
    return after


def _set_halt(*, halted: bool, action: str, actor: str, source: str, reason_code: str, reason: str,
              trace_id: str) -> HaltState:
    _check_operator_input(actor=actor, source=source, reason_code=reason_code, reason=reason, trace_id=trace_id)
    with transaction.atomic():
        before, after = _write_halt(halted=halted, actor=actor, reason_code=reason_code, reason=reason,
                                    trace_id=trace_id)
        audit_record(action=action, actor=actor, source=source, reason_code=reason_code, reason=reason,
               before=before.as_json(), after=after.as_json(), trace_id=trace_id)
        if after is before:
            text = (f"AlphaSniper: {action} by {actor} via {source} changed nothing — trading already "
                    f"{'halted' if halted else 'running'} (since {before.at or '-'}, by {before.by or '-'}).\n"
                    f"Reason given: {reason}")
        else:
            verb = "HALTED" if halted else "RESUMED"
            text = f"AlphaSniper: trading {verb} by {actor} via {source}.\nReason: {reason}"
        telegram_enqueue(text=text, trace_id=trace_id, reason_code=reason_code)
    return after


def trading_halt(*, actor: str, source: str, reason_code: str, reason: str, trace_id: str) -> HaltState:
    """Stop new entries. Stops, take-profits and emergency exit keep working."""
    return _set_halt(halted=True, action="trading.halt", actor=actor, source=source, reason_code=reason_code,
                     reason=reason, trace_id=trace_id)


def trading_resume(*, actor: str, source: str, reason_code: str, reason: str, trace_id: str) -> HaltState:
    """Allow new entries again."""
    return _set_halt(halted=False, action="trading.resume", actor=actor, source=source, reason_code=reason_code,
                     reason=reason, trace_id=trace_id)


# --- config -------------------------------------------------------------------------------

def _normalised(key: str, stored: Any) -> Any:
    """A stored value in canonical JSON form (so 1.5 and "1.5" compare equal); invalid stays as is."""
    try:
        return to_json(key, config_validate({key: stored})[key])
    except ConfigValidationError:
        return stored


def config_update(*, changes: dict[str, Any], actor: str, source: str, reason_code: str, reason: str,
                  trace_id: str) -> ConfigUpdateResult:
    """Validate every key first (``ConfigValidationError`` lists all problems; nothing is written),
    then write the changed keys, bumping each changed row's version, and one audit row with the
    before/after of every key given."""
    input_problems = operator_input_problems(actor=actor, source=source, reason_code=reason_code, reason=reason,
                                             trace_id=trace_id)
    try:
        values = config_validate(changes)
    except ConfigValidationError as exc:
        raise ConfigValidationError({**input_problems, **exc.problems}) from None
    if input_problems:
        raise OperatorInputError(input_problems)

    with transaction.atomic():
        _lock_config()
        rows = {row.key: row for row in SystemConfig.objects.select_for_update().filter(key__in=list(values))}
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        changed: dict[str, dict[str, Any]] = {}
        unchanged: list[str] = []
        for key, value in values.items():
            new = to_json(key, value)
            row = rows.get(key)
            old = _normalised(key, row.value) if row is not None else to_json(key, SCHEMA[key].default)
            before[key], after[key] = old, new
            if old == new:          # the effective value stays the same: nothing to write
                unchanged.append(key)
                continue
            if row is None:
                SystemConfig.objects.create(key=key, value=new, version=1, updated_by=actor.strip())
            else:
                row.value, row.version, row.updated_by = new, row.version + 1, actor.strip()
                row.save(update_fields=["value", "version", "updated_by", "updated_at"])
            changed[key] = {"before": old, "after": new}
        audit = audit_record(action="config.update", actor=actor, source=source, reason_code=reason_code, reason=reason,
                       before=before, after=after, trace_id=trace_id)
        version = config_version()
        if changed:
            lines = "\n".join(f"  {k}: {v['before']} -> {v['after']}" for k, v in changed.items())
            text = (f"AlphaSniper: config updated by {actor} via {source} (version {version}).\n{lines}\n"
                    f"Reason: {reason}")
        else:
            text = f"AlphaSniper: config update by {actor} via {source} changed nothing.\nReason: {reason}"
        telegram_enqueue(text=text, trace_id=trace_id, reason_code=reason_code)
    return ConfigUpdateResult(changed=changed, unchanged=unchanged, version=version, audit_id=audit.pk,
                              values=config_get().as_json())
