"""Our own venue error taxonomy.

Nothing outside ``trading/exchanges/`` ever sees a ccxt exception: every adapter translates
what the venue (or ccxt) said into one of these, and the rest of the system decides what to
do from the class alone:

* ``TransientError``      - a read failed for a reason that may pass (network, 5xx). Reads may retry.
* ``OutcomeUnknownError`` - a *write* (create/cancel) may or may not have reached the venue
                            (timeout, 5xx, dropped connection). Never blindly retried: the order
                            goes to SUBMIT_UNKNOWN and is resolved by asking the venue by client id.
* ``RejectedError``       - the venue said no. ``code`` / ``message`` are the venue's own.
  * ``DuplicateClientOrderIdError`` - the venue already has an order with this client id
                            (Binance -2010 "Duplicate order sent.", Bybit 110072 / 170141).
  * ``OrderNotFoundError``  - the venue has no such order.
  * ``InsufficientFundsError``
* ``RateLimitedError``    - 429 / 418 / Bybit 10006 / 403 "access too frequent". ``retry_after_s``
                            says how long everyone must back off; ``banned`` is True for a 418.
  * ``RateLimitHeldBackError`` - our own shared budget refused to send: nothing reached the venue.
* ``AuthError``           - bad key, bad signature, missing permission.
* ``ClockSkewError``      - Binance -1021 / Bybit 10002: our clock is outside the recvWindow.
"""

from __future__ import annotations


class VenueError(Exception):
    """Base class. ``venue`` is 'paper' | 'binance' | 'bybit'; ``code`` is the venue's code as a string."""

    def __init__(self, message: str, *, venue: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.venue = venue
        self.code = code
        self.message = message

    def __str__(self) -> str:
        prefix = f"[{self.venue}" + (f" {self.code}" if self.code else "") + "] " if self.venue else ""
        return f"{prefix}{self.message}"


class TransientError(VenueError):
    """A read that may succeed if tried again."""


class OutcomeUnknownError(VenueError):
    """A write whose effect on the venue is unknown. Resolve by querying, never by blind retry."""


class RejectedError(VenueError):
    """The venue refused the request; retrying the same request will not help."""


class DuplicateClientOrderIdError(RejectedError):
    """The venue already knows an order with this client id."""


class OrderNotFoundError(RejectedError):
    """The venue has no order with this id."""


class StopReplaceHalfDoneError(RejectedError):
    """A cancel-replace canceled the old order but the venue refused the new one (Binance 409,
    -2021): nothing rests now. ``canceled`` is the venue's answer for the old order, if it sent one."""

    def __init__(self, message: str, *, canceled: object | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)
        self.canceled = canceled


class InsufficientFundsError(RejectedError):
    """Not enough free balance for the order."""


class RateLimitedError(VenueError):
    """Rate limit hit. ``banned`` marks a 418 (IP ban): entries halt and operators are alerted."""

    def __init__(
        self, message: str, *, venue: str = "", code: str | None = None,
        retry_after_s: float = 1.0, banned: bool = False,
    ) -> None:
        super().__init__(message, venue=venue, code=code)
        self.retry_after_s = retry_after_s
        self.banned = banned


class RateLimitHeldBackError(RateLimitedError):
    """Raised by ``acquire`` *before* sending: the request never reached the venue.

    A subclass so that every ``except RateLimitedError`` keeps working, while a caller that
    cares (order submission) can tell "not sent" from "sent and refused".
    """


class AuthError(VenueError):
    """Credentials are missing, wrong or lack permission."""


class ClockSkewError(TransientError):
    """Our timestamp is outside the venue's recvWindow (Binance -1021, Bybit 10002)."""


class SendVetoedError(VenueError):
    """The sender's last look (``base.last_look``) refused the send after the rate-limit wait:
    nothing reached the venue. E.g. an entry whose trading was halted while it waited."""
