"""The paper venue: an exchange that lives in our own database, and the price feeds it fills at.

* ``venue``     — ``PaperGateway``: its own books (``paper_*`` tables), matching, fees.
* ``feeds``     — where its prices come from (``MARKET_DATA_SOURCE``): synthetic, replay or a
                  real venue's public market data.
* ``synthetic`` — the seeded offline market (pure numpy; importable without Django).
* ``replay``    — candles from CSV files.

Nothing is imported here eagerly, so ``synthetic`` and ``replay`` stay importable on their own
(a benchmark, a notebook); ``from trading.exchanges.paper import PaperGateway`` still works.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"PaperGateway": "venue", "rules_for": "venue", "MarketDataSource": "feeds",
            "market_data_source": "feeds"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
