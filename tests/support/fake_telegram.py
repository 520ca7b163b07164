"""A local stand-in for the Telegram Bot API: stdlib http.server in a thread on 127.0.0.1.

It records every sendMessage call and answers from a script of status codes (200 when the
script is empty), so tests can assert on what Telegram would have received, and on retries.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODIES = {
    200: {"ok": True, "result": {"message_id": 1}},
    400: {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
    429: {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 1}},
    500: {"ok": False, "error_code": 500, "description": "Internal Server Error"},
}


class FakeTelegram:
    def __init__(self) -> None:
        self.calls: list[dict] = []          # every request: {"path", "token", "body", "status"}
        self.script: list[int] = []          # status codes to answer, in order; then 200
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with fake._lock:
                    status = fake.script.pop(0) if fake.script else 200
                    token = self.path.split("/")[1].removeprefix("bot") if self.path.startswith("/bot") else None
                    fake.calls.append({"path": self.path, "token": token, "body": body, "status": status})
                payload = json.dumps(BODIES.get(status, {"ok": False, "description": f"HTTP {status}"})).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def delivered(self) -> list[dict]:
        """Bodies of the calls that were answered 200 (what the chat actually shows)."""
        return [c["body"] for c in self.calls if c["status"] == 200]

    def start(self) -> FakeTelegram:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
