"""The shared rate limiter: one request budget per venue account, for every process at once.

Workers on several machines all talk to the same venue account, so the budget cannot live in
a process: it lives in Redis, and one Lua script decides atomically whether a request may go.

How the budget is kept
----------------------
* **Sliding window, in slots.** Each budget (Binance: request weight per minute and orders per
  10 s — the 200 000 orders a day are out of this system's reach and not counted; Bybit:
  requests per second per private endpoint, and per IP per 5 s) is a Redis hash of
  ``slot index -> units spent`` (a slot is 1 s for a one-minute window, 25 ms for a one-second
  one). A request may go when the units of every slot that may still overlap the window, plus
  its own, stay within the limit. The venues count in fixed windows; a budget kept over *any*
  window of that length can never break a fixed one, whatever the alignment of the two clocks.
  A small guard (1 s on a minute, 50 ms on a second) is added to the window to cover the time a
  request spends in flight between our acquire and the venue's counter.
* **Headroom.** Only ``budget_fraction`` (default 0.9) of each documented limit is used, leaving
  room for an operator's tools on the same IP and for the venue's own rounding.
* **One clock.** The script reads Redis ``TIME``, so processes on hosts with skewed clocks agree.
* **The venue corrects us.** ``observe`` reads ``X-MBX-USED-WEIGHT-1m`` / ``X-MBX-ORDER-COUNT-10s``
  (Binance) and ``X-Bapi-Limit`` / ``X-Bapi-Limit-Status`` (Bybit, per endpoint). When the venue
  counts more than we do (another client on the IP, Redis lost its state) the difference is
  booked as spent now. Bybit's ``X-Bapi-Limit`` also replaces the documented per-endpoint limit
  (accounts differ), for an hour, for every process.
* **Back-off for everyone.** ``penalize`` (429 / 418 / Bybit 10006 / 403) sets a key with the
  Retry-After as TTL; ``acquire`` refuses to send while it exists. A ban (418, Bybit's 403) also
  sets ``alphasniper:venue:banned:<venue>`` (JSON with ``until_ms``) for the risk gate,
  ``/health`` and ``tbot diagnose`` (``venue_ban_state``), and queues one operator alert.
* **Blocking, bounded.** ``acquire`` sleeps until the budget frees, at most ``max_wait_s``;
  when the wait would be longer it raises ``RateLimitHeldBackError`` (a ``RateLimitedError``:
  nothing was sent) at once, with ``retry_after_s`` saying when to come back, so a Celery task
  is not held for a minute it will not get.
* **Redis down.** Stops and emergency exits must still reach the venue, so the limiter falls
  back to an in-process budget of ``FALLBACK_SHARE`` of the limit (and logs it) instead of
  refusing everything.

Keys (``<account>`` is ``public`` for keyless market data, else a hash of venue and API key —
never the key itself)::

    alphasniper:ratelimit:<venue>:<account>:slots:<budget>   hash   slot -> units
    alphasniper:ratelimit:<venue>:<account>:limit:<budget>   string limit learnt from the venue (TTL 1 h)
    alphasniper:ratelimit:<venue>:<account>:backoff          string back-off end (ms), TTL = Retry-After
    alphasniper:ratelimit:<venue>:accounts                   set    accounts seen (for rate_limit_state)
    alphasniper:venue:banned:<venue>                         string JSON ban state, TTL = ban length
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from trading.exchanges.errors import RateLimitHeldBackError
from trading.exchanges.ratelimit_protocol import (
    BINANCE_ORDERS_PER_10S,
    BINANCE_WEIGHT_PER_MINUTE,
    BYBIT_IP_REQUESTS_PER_5S,
    BYBIT_LIMITS_PER_SECOND,
)

log = logging.getLogger(__name__)

VENUES = ("binance", "bybit")
DEFAULT_MAX_WAIT_S = 10.0
DEFAULT_BUDGET_FRACTION = 0.9
FALLBACK_SHARE = 0.25               # of each limit, per process, while Redis is unreachable
REDIS_RETRY_AFTER_S = 5.0           # after a Redis failure, use the in-process budget this long
BYBIT_DEFAULT_PRIVATE_PER_SECOND = 10   # private endpoints missing from BYBIT_LIMITS_PER_SECOND
LEARNED_LIMIT_TTL_MS = 3_600_000
MIN_BACKOFF_S = 0.1
BAN_KEY_PREFIX = "alphasniper:venue:banned:"
_PREFIX = "alphasniper:ratelimit:"
# Budget names each venue understands in ``budgets=`` (same knobs as the emulator's control API).
BUDGET_KNOBS = {"binance": ("weight_per_minute", "orders_per_10s"), "bybit": ("per_second", "ip_per_5s")}


@dataclass(frozen=True)
class Budget:
    """One counted limit: ``limit`` units (after headroom) per ``window_ms`` of the venue."""

    name: str
    limit: float
    window_ms: int
    slot_ms: int
    guard_ms: int
    learnable: bool = False          # Bybit endpoint limits: the venue's X-Bapi-Limit replaces ours

    @property
    def span(self) -> int:
        """How many slots before the current one still count (window + guard, rounded up)."""
        return -(-(self.window_ms + self.guard_ms) // self.slot_ms)


def account_id(venue: str, api_key: str) -> str:
    """Redis name of a venue account: ``public`` without a key, else a hash (never the key)."""
    if not api_key:
        return "public"
    return hashlib.sha256(f"alphasniper:{venue}:{api_key}".encode()).hexdigest()[:16]


def request_budgets(
    venue: str, method: str | None, path: str | None, weight: float, *,
    overrides: Mapping[str, float | None] | None = None, fraction: float = DEFAULT_BUDGET_FRACTION,
) -> list[tuple[Budget, float]]:
    """The budgets one request draws on, with its cost in each (see ``SharedRateLimiter``)."""
    overrides = overrides or {}

    def limit(knob: str, default: float) -> float | None:
        raw = overrides.get(knob, default)
        return None if raw is None else float(raw) * fraction

    items: list[tuple[Budget, float]] = []
    if venue == "binance":
        weight_limit = limit("weight_per_minute", BINANCE_WEIGHT_PER_MINUTE)
        if weight_limit is not None:
            items.append((Budget("weight_1m", weight_limit, 60_000, 1_000, 1_000), float(weight)))
        if (method or "").upper() == "POST" and path in ("/api/v3/order", "/api/v3/order/cancelReplace"):
            orders = limit("orders_per_10s", BINANCE_ORDERS_PER_10S)
            if orders is not None:
                items.append((Budget("orders_10s", orders, 10_000, 250, 500), 1.0))
        return items
    ip = limit("ip_per_5s", BYBIT_IP_REQUESTS_PER_5S)
    if ip is not None:
        items.append((Budget("ip_5s", ip, 5_000, 250, 250), 1.0))
    if path and path.startswith("/v5/") and not path.startswith("/v5/market/"):
        if "per_second" in overrides:
            per_second, learnable = limit("per_second", 0), False
        else:
            default = BYBIT_LIMITS_PER_SECOND.get(path, BYBIT_DEFAULT_PRIVATE_PER_SECOND)
            per_second, learnable = float(default) * fraction, True
        if per_second is not None:
            items.append((Budget(f"endpoint:{path}", per_second, 1_000, 25, 50, learnable), 1.0))
    return items


def _redis() -> redis_lib.Redis:
    from infra.redis import get_redis

    return get_redis()


# --------------------------------------------------------------------------- Lua
# KEYS: back-off key, venue ban key, then per budget: slots hash, learnt-limit key.
# ARGV: n budgets, headroom fraction, then per budget: name, limit, span, slot_ms, cost, learnable.
# Returns {1, 0, ""} when every budget took its cost, else {0, wait_ms, reason} and takes nothing.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ban = redis.call('PTTL', KEYS[2])
if ban > 0 then return {0, ban, 'banned'} end
local backoff = redis.call('PTTL', KEYS[1])
if backoff > 0 then return {0, backoff, 'backoff'} end
local n = tonumber(ARGV[1])
local fraction = tonumber(ARGV[2])
local wait, reason = 0, ''
local plan = {}
for i = 1, n do
  local a = 2 + (i - 1) * 6
  local name, limit, span = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local slot_ms, cost, learnable = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6]
  local slots_key, limit_key = KEYS[2 + 2 * i - 1], KEYS[2 + 2 * i]
  if learnable == '1' then
    local learnt = redis.call('GET', limit_key)
    if learnt then limit = tonumber(learnt) * fraction end
  end
  if cost > limit then cost = limit end
  local cur = math.floor(now / slot_ms)
  local first = cur - span
  local flat = redis.call('HGETALL', slots_key)
  local live, used = {}, 0
  for j = 1, #flat, 2 do
    local s, v = tonumber(flat[j]), tonumber(flat[j + 1])
    if s < first then
      redis.call('HDEL', slots_key, flat[j])
    else
      used = used + v
      live[#live + 1] = {s, v}
    end
  end
  if used + cost > limit + 1e-9 then
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local need, freed, at = used + cost - limit, 0, nil
    for _, sv in ipairs(live) do
      freed = freed + sv[2]
      if freed + 1e-9 >= need then at = (sv[1] + span + 1) * slot_ms; break end
    end
    local w = (at or ((cur + span + 1) * slot_ms)) - now
    if w < 1 then w = 1 end
    if w > wait then wait, reason = w, name end
  end
  plan[i] = {slots_key, cur, cost, (span + 2) * slot_ms}
end
if wait > 0 then return {0, math.ceil(wait), reason} end
for i = 1, n do
  local p = plan[i]
  if p[3] > 0 then
    redis.call('HINCRBYFLOAT', p[1], p[2], p[3])
    redis.call('PEXPIRE', p[1], p[4])
  end
end
return {1, 0, ''}
"""

# KEYS: slots hash, learnt-limit key. ARGV: venue's used units ('' = unknown), span, slot_ms,
# venue's limit ('' = unknown), learnt-limit TTL ms. Books (venue used - our used) when positive.
_OBSERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local span, slot_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4], 'PX', tonumber(ARGV[5])) end
if ARGV[1] == '' then return '0' end
local venue_used = tonumber(ARGV[1])
local cur = math.floor(now / slot_ms)
local first = cur - span
local flat = redis.call('HGETALL', KEYS[1])
local used = 0
for j = 1, #flat, 2 do
  if tonumber(flat[j]) >= first then used = used + tonumber(flat[j + 1]) end
end
if venue_used > used then
  redis.call('HINCRBYFLOAT', KEYS[1], cur, venue_used - used)
  redis.call('PEXPIRE', KEYS[1], (span + 2) * slot_ms)
  return tostring(venue_used - used)
end
return '0'
"""

# KEYS: back-off key, venue ban key. ARGV: ms, banned (0/1), venue, account, retry_after_s.
# Never shortens a longer back-off or ban. Returns {newly_banned, until_ms}.
_PENALIZE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local until_ms = now + ms
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', ms)
end
if ARGV[2] ~= '1' then return {0, until_ms} end
local existing = redis.call('PTTL', KEYS[2])
if existing < ms then
  redis.call('SET', KEYS[2], cjson.encode({venue = ARGV[3], account = ARGV[4], since_ms = now,
    until_ms = until_ms, retry_after_s = tonumber(ARGV[5])}), 'PX', ms)
end
if existing > 0 then return {0, until_ms} end
return {1, until_ms}
"""


class _LocalWindows:
    """The same slot arithmetic in process memory: the fallback while Redis is unreachable."""

    def __init__(self) -> None:
        self._slots: dict[str, dict[int, float]] = {}

    def try_acquire(self, items: list[tuple[Budget, float]], share: float) -> tuple[bool, float, str]:
        now = int(time.time() * 1000)
        wait_ms, reason = 0, ""
        for budget, cost in items:
            limit = budget.limit * share
            cost = min(cost, limit)
            cur = now // budget.slot_ms
            slots = self._slots.setdefault(budget.name, {})
            for s in [s for s in slots if s < cur - budget.span]:
                del slots[s]
            used = sum(slots.values())
            if used + cost > limit + 1e-9:
                need, freed, at = used + cost - limit, 0.0, (cur + budget.span + 1) * budget.slot_ms
                for s in sorted(slots):
                    freed += slots[s]
                    if freed + 1e-9 >= need:
                        at = (s + budget.span + 1) * budget.slot_ms
                        break
                if at - now > wait_ms:
                    wait_ms, reason = max(at - now, 1), budget.name
        if wait_ms:
            return False, wait_ms / 1000, reason
        for budget, cost in items:
            slots = self._slots[budget.name]
            cur = now // budget.slot_ms
            slots[cur] = slots.get(cur, 0.0) + min(cost, budget.limit * share)
        return True, 0.0, ""


class SharedRateLimiter:
    """``RateLimiter`` (see ``ratelimit_protocol``) over Redis, shared by every process of an account.

    Besides the protocol's ``acquire(weight)`` / ``observe(headers)`` it offers
    ``acquire_request(method, path, weight)`` and ``observe_response(method, path, headers)``,
    which the ccxt adapters prefer: Binance's order count and Bybit's per-endpoint limits need
    to know which endpoint a request goes to.

    ``budgets`` overrides the documented limits (before headroom), with the emulator's knob
    names: Binance ``weight_per_minute`` / ``orders_per_10s``, Bybit ``per_second`` (every
    private endpoint; disables learning from ``X-Bapi-Limit``) / ``ip_per_5s``; ``None`` turns a
    budget off.
    """

    def __init__(
        self, venue: str, api_key: str, *, budgets: Mapping[str, float | None] | None = None,
        max_wait_s: float = DEFAULT_MAX_WAIT_S, budget_fraction: float = DEFAULT_BUDGET_FRACTION,
        client: redis_lib.Redis | None = None,
    ) -> None:
        if venue not in VENUES:
            raise ValueError(f"no shared rate limiter for venue {venue!r}; expected one of {VENUES}")
        unknown = set(budgets or {}) - set(BUDGET_KNOBS[venue])
        if unknown:
            raise ValueError(f"unknown {venue} budget(s) {sorted(unknown)}; expected {BUDGET_KNOBS[venue]}")
        if any(v is not None and not float(v) > 0 for v in (budgets or {}).values()):
            raise ValueError(f"budgets must be positive numbers or None (off), got {dict(budgets or {})}")
        if max_wait_s < 0 or not 0 < budget_fraction <= 1:
            raise ValueError("max_wait_s must be >= 0 and budget_fraction in (0, 1]")
        self.venue = venue
        self.account = account_id(venue, api_key)
        self.max_wait_s = float(max_wait_s)
        self.budget_fraction = float(budget_fraction)
        self._overrides = dict(budgets or {})
        self._client = client
        self._scripts: dict[int, tuple[Any, Any, Any]] = {}
        self._lock = threading.Lock()
        self._local = _LocalWindows()
        self._local_backoff_until = 0.0      # monotonic; this process's own copy of the back-off
        self._local_banned = False
        self._redis_warned_at = 0.0
        self._redis_down_until = 0.0         # monotonic; while set, skip Redis (each try may take seconds)
        try:
            self._r().sadd(f"{_PREFIX}{venue}:accounts", self.account)
        except redis_lib.RedisError as exc:
            self._redis_trouble("register the account", exc)

    # ------------------------------------------------------------------ keys & budgets
    def _key(self, *parts: str) -> str:
        return f"{_PREFIX}{self.venue}:{self.account}:" + ":".join(parts)

    def budgets_for(self, method: str | None, path: str | None, weight: float) -> list[tuple[Budget, float]]:
        """The budgets one request draws on, with its cost in each."""
        return request_budgets(self.venue, method, path, weight, overrides=self._overrides,
                               fraction=self.budget_fraction)

    # ------------------------------------------------------------------ redis plumbing
    def _r(self) -> redis_lib.Redis:
        return self._client if self._client is not None else _redis()

    def _script(self, index: int) -> Any:
        client = self._r()
        scripts = self._scripts.get(id(client))
        if scripts is None:
            scripts = tuple(client.register_script(s) for s in (_ACQUIRE_LUA, _OBSERVE_LUA, _PENALIZE_LUA))
            self._scripts = {id(client): scripts}
        return scripts[index]

    def _redis_ok(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _redis_trouble(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        self._redis_down_until = now + REDIS_RETRY_AFTER_S
        if now - self._redis_warned_at > 60:
            self._redis_warned_at = now
            log.warning("rate limiter for %s could not %s in Redis (%s): using an in-process budget of %d%% "
                        "until Redis answers", self.venue, what, exc, int(FALLBACK_SHARE * 100))

    # ------------------------------------------------------------------ acquire
    def acquire(self, weight: float) -> None:
        """Protocol entry point without the endpoint: Binance weight, or Bybit's IP budget."""
        self._acquire(self.budgets_for(None, None, weight))

    def acquire_request(self, method: str, path: str, weight: float) -> None:
        self._acquire(self.budgets_for(method, path, weight))

    def _acquire(self, items: list[tuple[Budget, float]]) -> None:
        deadline = time.monotonic() + self.max_wait_s
        while True:
            granted, wait_s, reason = self._try(items)
            if granted:
                return
            left = deadline - time.monotonic()
            if wait_s > left:
                what = {"banned": f"{self.venue} has banned us", "backoff": f"{self.venue} told us to back off"}.get(
                    reason, f"the {reason} budget is spent")
                raise RateLimitHeldBackError(
                    f"held back by the shared rate limiter: {what}; next chance in {wait_s:.2f} s, longer than "
                    f"the {self.max_wait_s:g} s this call may wait", venue=self.venue,
                    retry_after_s=round(wait_s, 3), banned=reason == "banned")
            # A little jitter so that waiting processes do not all arrive in the same millisecond.
            time.sleep(min(max(wait_s, 0.002) + random.uniform(0, 0.003), max(left, 0.0)))  # noqa: S311

    def _try(self, items: list[tuple[Budget, float]]) -> tuple[bool, float, str]:
        with self._lock:
            local_left = self._local_backoff_until - time.monotonic()
            if local_left > 0:
                return False, local_left, "banned" if self._local_banned else "backoff"
        keys = [self._key("backoff"), BAN_KEY_PREFIX + self.venue]
        args: list[Any] = [len(items), self.budget_fraction]
        for budget, cost in items:
            keys += [self._key("slots", budget.name), self._key("limit", budget.name)]
            args += [budget.name, budget.limit, budget.span, budget.slot_ms, cost, int(budget.learnable)]
        if not self._redis_ok():
            with self._lock:
                return self._local.try_acquire(items, FALLBACK_SHARE)
        try:
            granted, wait_ms, reason = self._script(0)(keys=keys, args=args)
        except redis_lib.RedisError as exc:
            self._redis_trouble("take from the budget", exc)
            with self._lock:
                return self._local.try_acquire(items, FALLBACK_SHARE)
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        return bool(int(granted)), int(wait_ms) / 1000, reason

    # ------------------------------------------------------------------ observe
    def observe(self, headers: Mapping[str, str]) -> None:
        """Protocol entry point: Binance's headers are account-wide; Bybit's need the endpoint."""
        self.observe_response(None, None, headers)

    def observe_response(self, method: str | None, path: str | None, headers: Mapping[str, str]) -> None:
        lower = {str(k).lower(): str(v) for k, v in headers.items()}
        corrections: list[tuple[Budget, str, str]] = []     # (budget, venue used, venue limit)
        for budget, _cost in self.budgets_for(method, path, 0):
            if budget.name == "weight_1m" and "x-mbx-used-weight-1m" in lower:
                corrections.append((budget, lower["x-mbx-used-weight-1m"], ""))
            elif budget.name == "orders_10s" and "x-mbx-order-count-10s" in lower:
                corrections.append((budget, lower["x-mbx-order-count-10s"], ""))
            elif budget.name.startswith("endpoint:") and "x-bapi-limit-status" in lower:
                limit, remaining = _number(lower.get("x-bapi-limit")), _number(lower["x-bapi-limit-status"])
                if limit is not None and remaining is not None:
                    corrections.append((budget, _fmt(max(limit - remaining, 0)),
                                        _fmt(limit) if budget.learnable and limit > 0 else ""))
        for budget, used, limit in corrections:
            if _number(used) is None or not self._redis_ok():
                continue
            try:
                self._script(1)(keys=[self._key("slots", budget.name), self._key("limit", budget.name)],
                                args=[used, budget.span, budget.slot_ms, limit, LEARNED_LIMIT_TTL_MS])
            except redis_lib.RedisError as exc:
                self._redis_trouble("record the venue's usage", exc)

    # ------------------------------------------------------------------ penalize
    def penalize(self, retry_after_s: float, banned: bool) -> None:
        """Everyone backs off for ``retry_after_s``; a ban is also flagged and alerted (once)."""
        retry_after_s = max(float(retry_after_s), MIN_BACKOFF_S)
        with self._lock:
            until = time.monotonic() + retry_after_s
            if until > self._local_backoff_until:
                self._local_backoff_until, self._local_banned = until, banned
        newly_banned, until_ms = int(banned), int(time.time() * 1000 + retry_after_s * 1000)
        if self._redis_ok():
            try:
                newly_banned, until_ms = self._script(2)(
                    keys=[self._key("backoff"), BAN_KEY_PREFIX + self.venue],
                    args=[int(retry_after_s * 1000), int(banned), self.venue, self.account, retry_after_s])
            except redis_lib.RedisError as exc:
                self._redis_trouble("record the back-off", exc)
        if banned:
            log.error("%s banned us (IP ban) for %.0f s: no requests to it until it lifts", self.venue,
                      retry_after_s, extra={"reason_code": "VENUE_BANNED"})
            if int(newly_banned):
                _alert_ban(self.venue, retry_after_s, int(until_ms))
        else:
            log.warning("%s rate-limited us: every process backs off for %.1f s", self.venue, retry_after_s,
                        extra={"reason_code": "VENUE_RATE_LIMITED"})


def _number(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _alert_ban(venue: str, retry_after_s: float, until_ms: int) -> None:
    """Queue one operator alert; Telegram is optional (module may be absent) and never raises into us."""
    try:
        from infra.telegram import telegram_enqueue
    except ImportError:
        return
    try:
        from infra.logging import current_trace_id, new_trace_id

        trace_id = current_trace_id() or new_trace_id()
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until_ms / 1000))
        telegram_enqueue(
            text=(f"{venue} banned this system's IP (HTTP {418 if venue == 'binance' else 403}) for "
                  f"{retry_after_s:.0f} s, until {until}. New entries are halted and every worker waits; "
                  "check request volume (universe size, timeframes, reconciliation interval)."),
            trace_id=trace_id, reason_code="VENUE_BANNED")
    except Exception as exc:   # an alert must never turn a rate-limit answer into another failure
        log.warning("could not queue the VENUE_BANNED alert for %s: %s", venue, exc)


# --------------------------------------------------------------------------- public API
def shared_rate_limiter(venue: str, api_key: str) -> SharedRateLimiter:
    """The limiter the factory gives a gateway: Redis from REDIS_URL, waits from settings."""
    from django.conf import settings

    return SharedRateLimiter(
        venue, api_key,
        max_wait_s=float(getattr(settings, "RATE_LIMIT_MAX_WAIT_S", DEFAULT_MAX_WAIT_S)),
        budget_fraction=float(getattr(settings, "RATE_LIMIT_BUDGET_FRACTION", DEFAULT_BUDGET_FRACTION)),
    )


def venue_ban_state(venue: str, *, client: redis_lib.Redis | None = None) -> dict[str, Any] | None:
    """``{"venue", "account", "since_ms", "until_ms", "retry_after_s", "remaining_s"}`` while the
    venue has banned us, else None. What the risk gate and ``/health`` read."""
    r = client if client is not None else _redis()
    key = BAN_KEY_PREFIX + venue
    pipe = r.pipeline()
    pipe.get(key)
    pipe.pttl(key)
    raw, ttl_ms = pipe.execute()
    if raw is None or ttl_ms == -2:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        state = {"venue": venue}
    if not isinstance(state, dict):
        state = {"venue": venue}
    state["remaining_s"] = round(max(ttl_ms, 0) / 1000, 3) if ttl_ms >= 0 else None
    return state


def rate_limit_state(venue: str, *, api_key: str | None = None,
                     client: redis_lib.Redis | None = None) -> dict[str, Any]:
    """What ``tbot diagnose`` shows: the ban, and per account the back-off and each budget's use.

    ``{"venue", "banned": venue_ban_state(...), "accounts": [{"account", "backoff_s",
    "budgets": {name: {"used", "limit", "window_s", "used_pct"}}}]}``. Limits are the documented
    ones with the default headroom (or what the venue told us); with ``api_key`` only that account.
    """
    r = client if client is not None else _redis()
    if api_key is not None:
        accounts = [account_id(venue, api_key)]
    else:
        accounts = sorted(a.decode() if isinstance(a, bytes) else a for a in r.smembers(f"{_PREFIX}{venue}:accounts"))
    seconds, micros = r.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    out: dict[str, Any] = {"venue": venue, "banned": venue_ban_state(venue, client=r), "accounts": []}
    for account in accounts:
        prefix = f"{_PREFIX}{venue}:{account}:"
        backoff_ms = r.pttl(prefix + "backoff")
        entry: dict[str, Any] = {"account": account, "backoff_s": round(max(backoff_ms, 0) / 1000, 3),
                                 "budgets": {}}
        for slots_key in sorted(_text(k) for k in r.scan_iter(match=prefix + "slots:*", count=100)):
            name = slots_key.removeprefix(prefix + "slots:")
            budget = _reference_budget(venue, name)
            if budget is None:
                continue
            learnt = _number(r.get(prefix + "limit:" + name)) if budget.learnable else None
            limit = learnt * DEFAULT_BUDGET_FRACTION if learnt is not None else budget.limit
            first = now // budget.slot_ms - budget.span
            used = sum(float(v) for s, v in r.hgetall(slots_key).items() if int(_text(s)) >= first)
            entry["budgets"][name] = {"used": round(used, 3), "limit": round(limit, 3),
                                      "window_s": budget.window_ms / 1000,
                                      "used_pct": round(100 * used / limit, 1) if limit else None}
        out["accounts"].append(entry)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reference_budget(venue: str, name: str) -> Budget | None:
    """The documented budget behind a stored name (for reporting)."""
    if name == "orders_10s":
        method, path = "POST", "/api/v3/order"
    elif name.startswith("endpoint:"):
        method, path = "GET", name.removeprefix("endpoint:")
    else:
        method, path = None, None
    return next((b for b, _ in request_budgets(venue, method, path, 0) if b.name == name), None)
