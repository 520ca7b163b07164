"""Scripted faults: rules matched against each venue request.

A rule is JSON (the control API accepts a list of them)::

    {"method": "POST", "path": "/api/v3/order", "times": 1, "action": "http_status", "status": 503}

* ``method``: HTTP method or ``"*"`` (default ``"*"``).
* ``path``: exact venue path, or an ``fnmatch`` glob such as ``"/v5/order/*"``.
* ``times``: how many matching requests the rule applies to; omitted = until cleared.
* ``action`` and its parameters:

  ===================  ====================================================================
  ``latency_ms``       ``ms``: sleep before handling (the request is still processed, so a
                       client timeout on a create leaves a real order behind).
  ``http_status``      ``status`` (500/502/503/504/...), ``json`` (bool, default false) or a
                       literal ``body``; ``process`` (bool, default false) handles the request
                       first, so the order exists although the client sees an error.
  ``accept_then_drop`` process the request, then close the connection without a response.
  ``rate_limit_429``   ``retry_after`` (s, default 5). Binance: HTTP 429 -1003 + Retry-After;
                       Bybit: retCode 10006 with X-Bapi-Limit-* headers.
  ``ban_418``          ``retry_after`` (s, default 120). Binance: HTTP 418 -1003 + Retry-After;
                       Bybit: HTTP 403 "access too frequent" (its IP ban).
  ``partial_fill``     ``fraction`` (default 0.5) of a crossing order fills now; the rest on
                       the next price update or ``/__control/fill``.
  ``clock_skew_ms``    ``ms``: the emulator's clock is shifted by this much for the request.
  ``duplicate``        an order create is answered as a duplicate client id.
  ===================  ====================================================================

Several rules may match one request; all of them apply (at most one response-replacing one).
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Any

ACTIONS = frozenset({
    "latency_ms", "http_status", "accept_then_drop", "rate_limit_429", "ban_418", "partial_fill",
    "clock_skew_ms", "duplicate",
})


@dataclass
class FaultRule:
    action: str
    path: str
    method: str = "*"
    times: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FaultRule:
        data = dict(raw)
        action = data.pop("action", None)
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; expected one of {sorted(ACTIONS)}")
        path = data.pop("path", None)
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("fault rule needs a 'path' starting with '/'")
        times = data.pop("times", None)
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("'times' must be a positive integer")
        method = str(data.pop("method", "*")).upper()
        if action == "http_status" and not isinstance(data.get("status"), int):
            raise ValueError("http_status needs an integer 'status'")
        if action in ("latency_ms", "clock_skew_ms") and not isinstance(data.get("ms"), int | float):
            raise ValueError(f"{action} needs a numeric 'ms'")
        return cls(action=action, path=path, method=method, times=times, params=data)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "method": self.method, "path": self.path, **self.params}
        if self.times is not None:
            out["times"] = self.times
        return out

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        return self.path == path or ("*" in self.path and fnmatch.fnmatchcase(path, self.path))


@dataclass
class Effects:
    """What the matched rules ask of one request."""

    latency_ms: float = 0.0
    skew_ms: int = 0
    partial_fraction: float | None = None
    duplicate: bool = False
    drop: bool = False
    replace: FaultRule | None = None       # http_status / rate_limit_429 / ban_418
    applied: list[str] = field(default_factory=list)

    @property
    def process_then_replace(self) -> bool:
        return self.replace is not None and bool(self.replace.params.get("process", False))


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def set(self, rules: list[FaultRule], *, append: bool = False) -> None:
        with self._lock:
            self._rules = [*self._rules, *rules] if append else list(rules)

    def clear(self) -> None:
        self.set([])

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_json() for r in self._rules]

    def effects_for(self, method: str, path: str) -> Effects:
        fx = Effects()
        with self._lock:
            if not self._rules:
                return fx
            keep: list[FaultRule] = []
            for rule in self._rules:
                hit = rule.matches(method, path)
                if hit:
                    self._apply(rule, fx)
                    if rule.times is not None:
                        rule.times -= 1
                if not (hit and rule.times == 0):
                    keep.append(rule)
            self._rules = keep
        return fx

    @staticmethod
    def _apply(rule: FaultRule, fx: Effects) -> None:
        fx.applied.append(rule.action)
        p = rule.params
        if rule.action == "latency_ms":
            fx.latency_ms += float(p["ms"])
        elif rule.action == "clock_skew_ms":
            fx.skew_ms += int(p["ms"])
        elif rule.action == "partial_fill":
            fx.partial_fraction = float(p.get("fraction", 0.5))
        elif rule.action == "duplicate":
            fx.duplicate = True
        elif rule.action == "accept_then_drop":
            fx.drop = True
        elif fx.replace is None:
            fx.replace = rule
