"""Crash points for the crash tests (ARCHITECTURE: "kill -9 the worker at each step").

Production never sets ALPHASNIPER_CRASH_AT, and then ``crash_point`` is a dictionary lookup.
A crash test starts a real worker with ALPHASNIPER_CRASH_AT=<point> and
ALPHASNIPER_CRASH_MARKER=<file>: the first time execution reaches that point the process
SIGKILLs itself — no cleanup, no finally blocks, exactly like ``kill -9`` — and the marker
file makes sure the restarted worker does not crash again.
"""

from __future__ import annotations

import os
import signal

POINTS = ("before_send", "after_venue_accept", "before_accept_commit", "after_accept_commit")


def crash_point(name: str) -> None:
    if os.environ.get("ALPHASNIPER_CRASH_AT") != name:
        return
    marker = os.environ.get("ALPHASNIPER_CRASH_MARKER", "")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except (FileExistsError, FileNotFoundError):
        return
    os.kill(os.getpid(), signal.SIGKILL)
