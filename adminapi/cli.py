"""The ``tbot`` console script: the same command as ``python manage.py tbot``.

``pyproject.toml``: ``[project.scripts] tbot = "adminapi.cli:main"``.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Set up Django and run the tbot management command. Returns the process exit code
    (0 ok, 1 findings/problems, 2 usage or configuration error)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alphasniper_project.settings")
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        import django

        django.setup()  # a bad environment exits 2 here, naming each variable
        from adminapi.management.commands.tbot import Command

        command = Command()
        command.standalone = True
        command.run_from_argv(["tbot", "tbot", *args])
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
