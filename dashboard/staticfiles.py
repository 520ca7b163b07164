"""Serves ``vendor/plotly.min.js`` straight from the installed ``plotly`` package.

The dashboard's charts need plotly.js; the ``plotly`` Python package ships the matching build,
so we serve that file (WhiteNoise, through the staticfiles finders) instead of copying 4.8 MB
into the repository or loading it from a CDN. Exactly one file is exposed, not the whole
package data directory.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PUBLIC_NAME = "vendor/plotly.min.js"


def _package_data() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyJsFinder(BaseFinder):
    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path != PUBLIC_NAME:
            return [] if find_all else None
        found = str(_package_data() / "plotly.min.js")
        return [found] if find_all else found

    def list(self, ignore_patterns):
        storage = FileSystemStorage(location=str(_package_data()))
        storage.prefix = "vendor"
        yield "plotly.min.js", storage
