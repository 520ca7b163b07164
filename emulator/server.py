"""HTTP layer: venue requests, fault injection, request log, and the ``/__control/`` API."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from emulator.binance_api import BinanceApi
from emulator.bybit_api import BybitApi
from emulator.core import DEFAULT_BALANCES, DEFAULT_FEE_RATE, DEFAULT_SYMBOLS, Book, Clock, Reject, dec
from emulator.faults import FaultBook, FaultRule
from emulator.klines import INTERVAL_MS, Kline, KlineStore
from emulator.venue import Context, Request, Response, VenueApi

DEFAULT_API_KEY = "emulator-api-key"
DEFAULT_API_SECRET = "emulator-api-secret"
VENUES: dict[str, type[VenueApi]] = {"binance": BinanceApi, "bybit": BybitApi}
UNLIMITED: dict[str, dict[str, Any]] = {
    "binance": {"weight_per_minute": None, "orders_per_10s": None},
    "bybit": {"per_second": None, "ip_per_5s": None},
}
_LOG_CAPACITY = 200_000
_HIDDEN_PARAMS = frozenset({"signature"})


def _venue_code(payload: Any) -> int | None:
    """The venue's error code in an answer (Binance ``code``, Bybit non-zero ``retCode``), else None.

    Bybit answers its rate limit (10006) with HTTP 200, so the status alone does not show it.
    """
    if isinstance(payload, dict):
        code = payload.get("retCode", payload.get("code"))
        if isinstance(code, int) and not isinstance(code, bool) and code != 0:
            return code
    return None


class ControlError(Exception):
    """A malformed control request (HTTP 400)."""


class Emulator:
    """One venue's state and request handling, independent of the socket server."""

    def __init__(
        self, *, venue: str, api_key: str = DEFAULT_API_KEY, api_secret: str = DEFAULT_API_SECRET,
        symbols: Iterable[str] | None = None, balances: dict[str, Any] | None = None,
        fee_rate: Decimal | str | None = None, rate_limits: bool = True,
    ) -> None:
        if venue not in VENUES:
            raise ValueError(f"venue must be one of {sorted(VENUES)}, got {venue!r}")
        self.venue = venue
        self.clock = Clock()
        self.book = Book(
            symbols=tuple(symbols or DEFAULT_SYMBOLS), balances=dict(balances or DEFAULT_BALANCES),
            fee_rate=dec(fee_rate) if fee_rate is not None else DEFAULT_FEE_RATE, clock=self.clock,
        )
        self.klines = KlineStore()
        self.faults = FaultBook()
        self.api = VENUES[venue](Context(self.book, self.klines, self.clock, api_key, api_secret))
        # rate_limits=False (benchmarks): every budget off, also after each reset; headers still sent.
        self._unlimited = {} if rate_limits else UNLIMITED[venue]
        self.api.set_rate_limit(self._unlimited)
        self._log: deque[dict[str, Any]] = deque(maxlen=_LOG_CAPACITY)

    # ------------------------------------------------------------------ venue traffic
    def venue_request(self, method: str, target: str, headers: Any, raw_body: bytes) -> Response:
        started = time.monotonic()
        split = urlsplit(target)
        path, raw_query = split.path, split.query
        fx = self.faults.effects_for(method, path)
        if fx.latency_ms:
            time.sleep(fx.latency_ms / 1000)       # no lock is held here
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        body_json: dict[str, Any] | None = None
        content_type = (headers.get("Content-Type") or "").lower()
        if raw_body:
            if "json" in content_type:
                try:
                    loaded = json.loads(raw_body)
                except ValueError:
                    loaded = None
                body_json = loaded if isinstance(loaded, dict) else None
            else:
                params.update(parse_qsl(raw_body.decode(errors="replace"), keep_blank_values=True))
        req = Request(method=method, path=path, raw_query=raw_query, raw_body=raw_body, headers=headers,
                      params=params, body_json=body_json if body_json is not None else {},
                      now_ms=self.clock.now_ms(fx.skew_ms), effects=fx)
        if fx.replace is not None and not fx.process_then_replace:
            resp = self.api.fault_response(fx.replace, req)
        else:
            resp = self.api.handle(req)
            if fx.replace is not None:
                resp = self.api.fault_response(fx.replace, req)
        resp.drop = fx.drop
        logged = {k: v for k, v in {**params, **(body_json or {})}.items() if k not in _HIDDEN_PARAMS}
        self._log.append({
            "method": method, "path": path, "params": logged, "status": None if fx.drop else resp.status,
            "time_ms": req.now_ms, "duration_ms": round((time.monotonic() - started) * 1000, 3),
            "faults": fx.applied, "code": None if fx.drop else _venue_code(resp.payload),
        })
        return resp

    # ------------------------------------------------------------------ control API
    def control(self, method: str, target: str, raw_body: bytes) -> Response:
        split = urlsplit(target)
        name = split.path[len("/__control/"):].strip("/")
        query = dict(parse_qsl(split.query))
        try:
            body = json.loads(raw_body) if raw_body else {}
            if not isinstance(body, dict):
                raise ControlError("control bodies are JSON objects")
            return Response(200, self._control(method, name, query, body))
        except (ControlError, Reject, ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return Response(400, {"error": f"{type(exc).__name__}: {exc}"})

    def _control(self, method: str, name: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        route = (method, name)
        if route == ("GET", "health"):
            return {"ok": True, "venue": self.venue}
        if route == ("POST", "reset"):
            self.reset()
            if body.get("balances"):
                self.book.set_balances(body["balances"], replace=True)
            if body.get("prices"):
                self.book.set_prices(body["prices"])
            return {"ok": True}
        if route == ("POST", "prices"):
            self.book.set_prices(body["prices"])
            return {"ok": True}
        if route == ("POST", "fill"):
            self.book.match_all()
            return {"ok": True}
        if route == ("POST", "klines"):
            interval = body["interval"]
            if interval not in INTERVAL_MS:
                raise ControlError(f"unsupported interval {interval!r}")
            rows = [Kline(int(r[0]), dec(r[1]), dec(r[2]), dec(r[3]), dec(r[4]), dec(r[5])) for r in body["candles"]]
            self.klines.set(self.book.market(body["symbol"]).symbol, interval, rows)
            return {"ok": True, "count": len(rows)}
        if route == ("POST", "balances"):
            self.book.set_balances(body["balances"], replace=bool(body.get("replace", False)))
            return {"ok": True}
        if route == ("POST", "market"):
            unknown = set(body) - {"symbol", "stop_orders", "halted"}
            if unknown:
                raise ControlError(f"unknown market field(s) {sorted(unknown)}; known: symbol, stop_orders, halted")
            flags = {k: body[k] for k in ("stop_orders", "halted") if k in body}
            for key, value in flags.items():
                if not isinstance(value, bool):
                    raise ControlError(f"{key} must be a boolean, got {value!r}")
            market = self.book.set_market(str(body["symbol"]), **flags)
            return {"ok": True, "symbol": market.symbol, "stop_orders": market.stop_orders, "halted": market.halted}
        if route == ("POST", "fee_rate"):
            self.book.set_fee_rate(dec(body["rate"]))
            return {"ok": True}
        if route == ("POST", "clock"):
            self.clock.offset_ms = int(body["offset_ms"])
            return {"ok": True}
        if route == ("GET", "state"):
            return {**self.book.snapshot(), "venue": self.venue, "server_time_ms": self.clock.now_ms(),
                    "clock_offset_ms": self.clock.offset_ms}
        if route == ("GET", "requests"):
            return {"requests": self.requests(path=query.get("path"), method=query.get("method"))}
        if route == ("DELETE", "requests"):
            self._log.clear()
            return {"ok": True}
        if route == ("POST", "rate_limit"):
            return self.api.set_rate_limit(body)
        if route == ("GET", "faults"):
            return {"rules": self.faults.list()}
        if route == ("POST", "faults"):
            rules = [FaultRule.from_json(r) for r in body.get("rules", [])]
            self.faults.set(rules, append=bool(body.get("append", False)))
            return {"ok": True, "rules": self.faults.list()}
        if route == ("DELETE", "faults"):
            self.faults.clear()
            return {"ok": True}
        raise ControlError(f"no control endpoint {method} /__control/{name}")

    def reset(self) -> None:
        self.book.reset()
        self.klines.reset()
        self.faults.clear()
        self.api.reset_limits()
        self.api.set_rate_limit(self._unlimited)
        self.clock.offset_ms = 0
        self._log.clear()

    def requests(self, *, path: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
        return [r for r in list(self._log)
                if (path is None or r["path"] == path) and (method is None or r["method"] == method.upper())]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive: ccxt's requests session reuses connections
    disable_nagle_algorithm = True     # headers and body go out in two writes; Nagle would add ~40 ms
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the request log replaces this
        return

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        if self.path.startswith("/__control/"):
            resp = emulator.control(self.command, self.path, raw_body)
        else:
            resp = emulator.venue_request(self.command, self.path, self.headers, raw_body)
        if resp.drop:
            # accept_then_drop: the work is done, the client never hears about it.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if isinstance(resp.payload, str):
            data, content_type = resp.payload.encode(), "text/html; charset=utf-8"
        else:
            data, content_type = json.dumps(resp.payload, separators=(",", ":")).encode(), "application/json"
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired during a latency fault); nothing to tell it.
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


@dataclass
class EmulatorHandle:
    """A running emulator. ``stop()`` shuts the server down; usable as a context manager."""

    emulator: Emulator
    server: _Server
    thread: threading.Thread

    @property
    def venue(self) -> str:
        return self.emulator.venue

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def make_server(venue: str, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> _Server:
    return _Server((host, port), Emulator(venue=venue, **options))


def start_emulator(
    venue: str, port: int = 0, *, host: str = "127.0.0.1", api_key: str = DEFAULT_API_KEY,
    api_secret: str = DEFAULT_API_SECRET, symbols: Iterable[str] | None = None,
    balances: dict[str, Any] | None = None, fee_rate: Decimal | str | None = None, rate_limits: bool = True,
) -> EmulatorHandle:
    """Start one venue's emulator in a daemon thread. ``port=0`` picks a free port (see ``.port``).

    ``rate_limits=False`` switches the venue's request/order budgets off (benchmarks); the
    default keeps Binance 6000 weight/min + 100 orders/10 s, Bybit 20/s per order endpoint and
    600 requests/5 s per IP.
    """
    server = make_server(venue, host=host, port=port, api_key=api_key, api_secret=api_secret,
                         symbols=symbols, balances=balances, fee_rate=fee_rate, rate_limits=rate_limits)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"emulator-{venue}-{server.server_address[1]}", daemon=True)
    thread.start()
    return EmulatorHandle(emulator=server.emulator, server=server, thread=thread)
