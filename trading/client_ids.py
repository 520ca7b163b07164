"""Deterministic client order ids (ARCHITECTURE invariant 1).

The id is derived from the *intent* — (strategy, symbol, tick, intent) — never from time or
randomness, so every process that reaches the same decision computes the same id, and the
database's unique constraint plus the venue's own client-id check stop a second order.

Format: ``AS1-<strategy>-<digest>``, at most 36 characters of ``[A-Za-z0-9_-]`` (both
Binance ``newClientOrderId`` and Bybit ``orderLinkId`` accept that). The ``AS1-`` prefix is how
reconciliation recognises our orders on the venue.
"""

from __future__ import annotations

import base64
import hashlib
import re

PREFIX = "AS1-"
MAX_LENGTH = 36
VALID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_STRATEGY = re.compile(r"^[a-z0-9]{1,8}$")


def make_client_order_id(*, strategy: str, symbol: str, tick_id: str, intent: str) -> str:
    """Same inputs, same id — in any process, on any day."""
    if not _STRATEGY.match(strategy):
        raise ValueError(f"strategy code {strategy!r} must be 1-8 lowercase letters or digits")
    for name, value in (("symbol", symbol), ("tick_id", tick_id), ("intent", intent)):
        if not value or "|" in value or not (value.isascii() and value.isprintable()):
            raise ValueError(f"{name} {value!r} must be non-empty printable ASCII without '|'")
    digest = hashlib.sha256(f"{strategy}|{symbol}|{tick_id}|{intent}".encode()).digest()
    room = MAX_LENGTH - len(PREFIX) - len(strategy) - 1
    # base32 keeps the alphabet inside [A-Z2-7]; 23+ chars = 115+ bits, collisions are not a concern.
    encoded = base64.b32encode(digest).decode().rstrip("=")[:room]
    cid = f"{PREFIX}{strategy}-{encoded}"
    assert VALID.match(cid) and len(cid) <= MAX_LENGTH
    return cid


def is_ours(client_order_id: str | None) -> bool:
    return bool(client_order_id) and client_order_id.startswith(PREFIX)
