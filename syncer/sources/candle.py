"""The candle record every market-data source in this package returns.

Field-for-field the same as ``trading.exchanges.base.Candle`` (open_time_ms: int UTC epoch
ms of the candle's open; Decimal prices and volume), so a gateway can turn one into the
other with ``Candle(**dataclasses.asdict(c))``. It is defined here rather than imported so
that data sources stay free of the trading package (the paper venue imports sources, not
the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["SourceCandle"]


@dataclass(frozen=True)
class SourceCandle:
    """One candle, oldest-first lists of these are what sources return."""

    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
