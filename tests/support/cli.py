"""Run the operator CLI in-process, as the ``tbot`` script does, and keep what it printed."""

from __future__ import annotations

import io

from django.core.management import call_command


def tbot(*args: str) -> tuple[int, str, str]:
    """``manage.py tbot ...`` in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("tbot", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()
