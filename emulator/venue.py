"""What the HTTP layer hands a venue front-end, and what it gets back."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.core import Book, Clock
from emulator.faults import Effects, FaultRule
from emulator.klines import KlineStore


@dataclass
class Request:
    method: str
    path: str
    raw_query: str                 # exactly as sent (what Bybit signs for GET)
    raw_body: bytes                # exactly as sent (what both venues sign for POST)
    headers: Mapping[str, str]     # case-insensitive (http.client.HTTPMessage)
    params: dict[str, str]         # query + form body (Binance) or query only (Bybit GET)
    body_json: dict[str, Any] | None
    now_ms: int                    # the emulator's clock for this request, skew faults applied
    effects: Effects


@dataclass
class Response:
    status: int
    payload: Any                   # dict / list -> JSON; str -> text/html
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False             # close the connection without answering


@dataclass
class Context:
    book: Book
    klines: KlineStore
    clock: Clock
    api_key: str
    api_secret: str


class FixedWindow:
    """A counter over aligned fixed windows (deterministic: no sliding, no decay)."""

    def __init__(self, size_ms: int) -> None:
        self.size_ms = size_ms
        self._window = -1
        self.used = 0
        self._lock = threading.Lock()

    def add(self, amount: int, now_ms: int) -> int:
        with self._lock:
            window = now_ms // self.size_ms
            if window != self._window:
                self._window, self.used = window, 0
            self.used += amount
            return self.used

    def peek(self, now_ms: int) -> int:
        with self._lock:
            return self.used if now_ms // self.size_ms == self._window else 0

    def reset_at_ms(self, now_ms: int) -> int:
        return (now_ms // self.size_ms + 1) * self.size_ms

    def clear(self) -> None:
        with self._lock:
            self._window, self.used = -1, 0


class VenueApi:
    """Base class of the venue front-ends."""

    name = ""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def handle(self, req: Request) -> Response:
        raise NotImplementedError

    def fault_response(self, rule: FaultRule, req: Request) -> Response:
        raise NotImplementedError

    def set_rate_limit(self, config: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def reset_limits(self) -> None:
        raise NotImplementedError


def http_error_page(status: int) -> str:
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Timeout", 403: "Forbidden", 404: "Not Found"}.get(status, "Error")
    return f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
