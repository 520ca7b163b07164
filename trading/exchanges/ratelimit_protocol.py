"""The hook the venue adapters call around every HTTP request, and the weights they pass it.

ccxt's own throttle is off (``enableRateLimit=False``): the budget is shared by every worker,
so it lives in Redis (implemented elsewhere). An adapter calls, per HTTP request:

1. ``acquire(weight)`` before sending (may block until the budget allows it, or raise);
2. ``observe(headers)`` after any HTTP response, error responses included, so the limiter can
   resynchronise from the venue's own counters (Binance ``X-MBX-USED-WEIGHT-1m``,
   ``X-MBX-ORDER-COUNT-10s``; Bybit ``X-Bapi-Limit``, ``X-Bapi-Limit-Status``,
   ``X-Bapi-Limit-Reset-Timestamp``);
3. ``penalize(retry_after_s, banned)`` when the venue said "too many" (429 / 418 / Bybit 10006 /
   Bybit 403): every worker must back off for ``retry_after_s``; ``banned`` marks an IP ban.

A limiter may also offer ``acquire_request(method, path, weight)`` and
``observe_response(method, path, headers)``; the adapters prefer them when present, because
some budgets are per endpoint (Binance's order count, Bybit's per-endpoint limits).

Weights (``request_weight``):

* Binance counts *request weight* per IP per minute (default budget 6000/min) and, separately,
  new orders per account (100 per 10 s, 200 000 per day). Weights per Binance's spot docs:

  ==========================  =======
  GET /api/v3/exchangeInfo    20
  GET /api/v3/klines          2
  GET /api/v3/ticker/24hr     2 (one symbol)
  GET /api/v3/time            1
  GET /api/v3/account         20
  POST /api/v3/order          1 (also counts 1 order)
  GET /api/v3/order           4
  DELETE /api/v3/order        1
  POST /api/v3/order/cancelReplace  1 (also counts 1 order)
  GET /api/v3/openOrders      6 (one symbol)
  GET /api/v3/myTrades        20
  ==========================  =======

* Bybit counts *requests* per UID per endpoint per second (spot: order/create and order/cancel
  20/s; order/realtime, order/history, execution/list and wallet-balance 50/s) and per IP
  (600 per 5 s, breaking it is a 403 lasting >= 10 minutes). order/amend (moving a venue stop)
  shares the spot trade limit of 20/s but is counted per endpoint, so a burst of stop moves
  cannot use up the budget of order/create or order/cancel. Every Bybit request has weight 1;
  ``BYBIT_LIMITS_PER_SECOND`` gives the per-endpoint budgets for a limiter that keys by path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

BINANCE_WEIGHTS: dict[tuple[str, str], float] = {
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/ticker/24hr"): 2,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/account"): 20,
    ("POST", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1,
    ("POST", "/api/v3/order/cancelReplace"): 1,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/myTrades"): 20,
}
BINANCE_DEFAULT_WEIGHT = 1.0
BINANCE_WEIGHT_PER_MINUTE = 6000
BINANCE_ORDERS_PER_10S = 100

BYBIT_LIMITS_PER_SECOND: dict[str, int] = {
    "/v5/order/create": 20,
    "/v5/order/cancel": 20,
    "/v5/order/amend": 20,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/account/wallet-balance": 50,
}
BYBIT_IP_REQUESTS_PER_5S = 600


def request_weight(venue: str, method: str, path: str) -> float:
    """Weight of one request, as ``acquire`` receives it."""
    if venue == "binance":
        return BINANCE_WEIGHTS.get((method.upper(), path), BINANCE_DEFAULT_WEIGHT)
    return 1.0


@runtime_checkable
class RateLimiter(Protocol):
    def acquire(self, weight: float) -> None:
        """Block (or raise) until ``weight`` units of the venue budget may be spent."""

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from a response's rate-limit headers (any status)."""

    def penalize(self, retry_after_s: float, banned: bool) -> None:
        """The venue refused for rate reasons: nobody sends before ``retry_after_s`` has passed."""
