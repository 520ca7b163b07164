"""Structured JSON logs with a ``trace_id`` on every line that has one.

A trace id follows one piece of work — an API request, a strategy tick for one symbol, one
order's submission — across processes: it is stored on decisions, orders, events and audit
rows, carried in Celery task arguments, and set here in a context variable so every log line
written while handling it carries it.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_trace_id: ContextVar[str | None] = ContextVar("trace_id", default=None)

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "trace_id"}


def new_trace_id() -> str:
    return secrets.token_hex(8)


def current_trace_id() -> str | None:
    return _trace_id.get()


@contextmanager
def trace_context(trace_id: str | None = None) -> Iterator[str]:
    """Run a block under ``trace_id`` (a new one when None)."""
    tid = trace_id or new_trace_id()
    token = _trace_id.set(tid)
    try:
        yield tid
    finally:
        _trace_id.reset(token)


# A log line is read by a person: a message past this many characters (a payload dump, a long
# repr) is cut, saying how much was left out. A traceback is kept whole.
MAX_MESSAGE_CHARS = 600
MAX_FIELD_CHARS = 200


def shorten(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, with the count of what was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit} chars)"


class TraceIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "trace_id", None):
            record.trace_id = _trace_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, msg, trace_id, process, extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": shorten(record.getMessage(), MAX_MESSAGE_CHARS),
            "process": record.processName if record.processName != "MainProcess" else record.process,
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id and trace_id != "-":
            payload["trace_id"] = trace_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                if not isinstance(value, bool | int | float | type(None)):
                    value = shorten(value if isinstance(value, str) else str(value), MAX_FIELD_CHARS)
                payload[name] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``LOG_FORMAT=text`` (the default of ``make run``): one line a person reads, message cut
    like the JSON one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(trace_id)s] %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = shorten(record.message, MAX_MESSAGE_CHARS)
        return super().formatMessage(record)


class TraceIdMiddleware:
    """Give each HTTP request a trace id (taken from ``X-Trace-Id`` when a caller sends one)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Trace-Id", "")
        trace_id = incoming if incoming.isalnum() and len(incoming) <= 64 else None
        with trace_context(trace_id) as tid:
            request.trace_id = tid
            response = self.get_response(request)
            response["X-Trace-Id"] = tid
            return response
