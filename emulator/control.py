"""A small typed client for the emulator's ``/__control/`` API (stdlib only).

Works against an in-thread emulator and one in another process alike::

    ctl = EmulatorControl("http://127.0.0.1:18001")
    ctl.reset()
    ctl.set_prices({"BTC/USDT": "31000"})
    ctl.set_faults([{"method": "POST", "path": "/api/v3/order", "times": 1, "action": "accept_then_drop"}])
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

Number = Decimal | str | int | float


class ControlRequestError(RuntimeError):
    """The emulator refused a control call (HTTP 400) or could not be reached."""


def _text(value: Number) -> str:
    return str(value)


class EmulatorControl:
    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ transport
    def _call(self, method: str, name: str, body: Mapping[str, Any] | None = None,
              query: Mapping[str, str] | None = None) -> Any:
        url = f"{self.base_url}/__control/{name}"
        if query:
            url += "?" + "&".join(f"{k}={urllib.request.quote(v)}" for k, v in query.items())
        data = json.dumps(body).encode() if body is not None else None
        if not url.startswith(("http://", "https://")):
            raise ControlRequestError(f"control URL must be http(s), got {url!r}")
        request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - scheme checked above
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310 - local URL
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ControlRequestError(f"{method} {name}: HTTP {exc.code} {exc.read().decode(errors='replace')}") \
                from None
        except OSError as exc:
            raise ControlRequestError(f"{method} {name}: {exc}") from exc

    # ------------------------------------------------------------------ lifecycle
    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def reset(self, *, balances: Mapping[str, Number] | None = None,
              prices: Mapping[str, Number] | None = None) -> None:
        """Back to the start state: orders, trades, klines, faults, limits, clock, request log."""
        body: dict[str, Any] = {}
        if balances is not None:
            body["balances"] = {k: _text(v) for k, v in balances.items()}
        if prices is not None:
            body["prices"] = {k: _text(v) for k, v in prices.items()}
        self._call("POST", "reset", body)

    # ------------------------------------------------------------------ market & account
    def set_price(self, symbol: str, price: Number) -> None:
        self.set_prices({symbol: price})

    def set_prices(self, prices: Mapping[str, Number]) -> None:
        """Set current prices; resting limit orders and stops (and held partial fills) that cross fill now."""
        self._call("POST", "prices", {"prices": {k: _text(v) for k, v in prices.items()}})

    def fill_pending(self) -> None:
        """Fill whatever crosses at the current prices (e.g. the rest of a partial fill)."""
        self._call("POST", "fill", {})

    def set_klines(self, symbol: str, interval: str, candles: Iterable[Sequence[Number]]) -> None:
        """Replace the (symbol, interval) series: rows ``[open_time_ms, open, high, low, close, volume]``."""
        rows = [[int(c[0]), *(_text(v) for v in c[1:6])] for c in candles]
        self._call("POST", "klines", {"symbol": symbol, "interval": interval, "candles": rows})

    def set_balances(self, balances: Mapping[str, Number], *, replace: bool = False) -> None:
        """Set free balances per asset (locked amounts stay); ``replace`` drops unlisted assets."""
        self._call("POST", "balances", {"balances": {k: _text(v) for k, v in balances.items()},
                                        "replace": replace})

    def set_market(self, symbol: str, *, stop_orders: bool | None = None, halted: bool | None = None) -> None:
        """What a market offers from now on (unset arguments stay as they are):

        * ``stop_orders=False``: no stop orders on it. Binance lists its ``orderTypes`` without
          STOP_LOSS / STOP_LOSS_LIMIT (so a gateway that loads markets sees it) and refuses one
          with -2010 "Stop loss orders are not supported for this symbol."; Bybit refuses a
          conditional order on it with 170227 "This feature is not supported.".
        * ``halted=True``: trading halted. New orders and stop amends are refused (Binance -2010
          "Market is closed.", Bybit 170151 "The trading pair is not open yet"); nothing trades,
          so resting orders wait (prices may still be set) and fill when ``halted=False`` resumes
          trading at the price of the moment; cancels and reads go on. The listing keeps saying TRADING, as in the
          moments before the venue's market list shows a halt, so the venue's refusal is what a
          gateway with fresh or cached rules meets.
        """
        body: dict[str, Any] = {"symbol": symbol}
        if stop_orders is not None:
            body["stop_orders"] = stop_orders
        if halted is not None:
            body["halted"] = halted
        self._call("POST", "market", body)

    def set_fee_rate(self, rate: Number) -> None:
        self._call("POST", "fee_rate", {"rate": _text(rate)})

    def set_clock_offset(self, offset_ms: int) -> None:
        """Shift the emulator's clock for every request (a standing skew, unlike the fault rule)."""
        self._call("POST", "clock", {"offset_ms": offset_ms})

    # ------------------------------------------------------------------ inspection
    def state(self) -> dict[str, Any]:
        """``{"orders": [...], "trades": [...], "balances": {asset: {free, locked}}, "prices": {...}, ...}``."""
        return self._call("GET", "state")

    def orders(self, *, client_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.state()["orders"]
        return [o for o in rows if client_id is None or o["client_id"] == client_id]

    def trades(self) -> list[dict[str, Any]]:
        return self.state()["trades"]

    def balances(self) -> dict[str, dict[str, Decimal]]:
        return {asset: {k: Decimal(v) for k, v in row.items()} for asset, row in self.state()["balances"].items()}

    def requests(self, *, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        """The request log: ``{method, path, params, status, code, time_ms, duration_ms, faults}`` per
        request (``code``: the venue's error code in the answer, e.g. -1003 or 10006, else None)."""
        query = {k: v for k, v in {"path": path, "method": method}.items() if v is not None}
        return self._call("GET", "requests", query=query)["requests"]

    def request_count(self, path: str | None = None, *, method: str | None = None) -> int:
        return len(self.requests(path=path, method=method))

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    # ------------------------------------------------------------------ limits & faults
    def set_rate_limit(self, **config: int | None) -> dict[str, Any]:
        """Binance: ``weight_per_minute``, ``orders_per_10s``; Bybit: ``per_second``, ``ip_per_5s``.

        ``None`` switches that limit off.
        """
        return self._call("POST", "rate_limit", dict(config))

    def set_faults(self, rules: Iterable[Mapping[str, Any]], *, append: bool = False) -> list[dict[str, Any]]:
        """Install fault rules (format in ``emulator/faults.py``); replaces existing ones unless ``append``."""
        return self._call("POST", "faults", {"rules": [dict(r) for r in rules], "append": append})["rules"]

    def add_fault(self, rule: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.set_faults([rule], append=True)

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")["rules"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")
