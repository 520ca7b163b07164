"""Build the one gateway this process uses — for the venue named by EXCHANGE, and no other."""

from __future__ import annotations

import threading

from django.conf import settings

from trading.exchanges.base import ExchangeGateway

_lock = threading.Lock()
_gateway: ExchangeGateway | None = None


def _universe() -> list[str]:
    from trading.config_schema import config_get

    return list(config_get().universe)


def build_gateway() -> ExchangeGateway:
    venue = settings.VENUE
    if venue.name == "paper":
        from trading.exchanges.paper import PaperGateway
        from trading.exchanges.paper.feeds import market_data_source

        return PaperGateway(source=market_data_source(), fee_rate=settings.PAPER_FEE_RATE,
                            slippage_bps=settings.PAPER_SLIPPAGE_BPS,
                            initial_balances=settings.PAPER_INITIAL_BALANCES, universe=_universe)
    from trading.exchanges.ratelimit import shared_rate_limiter

    limiter = shared_rate_limiter(venue.name, venue.api_key)
    if venue.name == "binance":
        from trading.exchanges.binance import BinanceGateway

        return BinanceGateway(api_key=venue.api_key, api_secret=venue.api_secret, base_url=venue.base_url,
                              testnet=venue.testnet, rate_limiter=limiter)
    if venue.name == "bybit":
        from trading.exchanges.bybit import BybitGateway

        return BybitGateway(api_key=venue.api_key, api_secret=venue.api_secret, base_url=venue.base_url,
                            testnet=venue.testnet, rate_limiter=limiter)
    raise ValueError(f"unknown venue {venue.name!r}")  # settings validation makes this unreachable


def get_gateway() -> ExchangeGateway:
    """The process-wide gateway (built on first use)."""
    global _gateway
    if _gateway is None:
        with _lock:
            if _gateway is None:
                _gateway = build_gateway()
    return _gateway


def gateway_or_default(gateway: ExchangeGateway | None) -> ExchangeGateway:
    """``gateway`` if a caller (a test, a tool) passed one, else this process's gateway."""
    return gateway if gateway is not None else get_gateway()


def reset_gateway() -> None:
    """Forget the cached gateway (tests that switch venues)."""
    global _gateway
    _gateway = None
