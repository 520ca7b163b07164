from __future__ import annotations

import pytest

from emulator import start_emulator
from tests.support.venues import Venue, emulated_venue, paper_venue


@pytest.fixture(scope="session")
def emulators():
    from trading.config_schema import config_defaults

    universe = list(config_defaults().universe)     # the venue lists every symbol we trade by default
    handles = {venue: start_emulator(venue, port=0, rate_limits=False, symbols=universe)
               for venue in ("binance", "bybit")}
    yield handles
    for handle in handles.values():
        handle.stop()


@pytest.fixture(params=["paper", "binance", "bybit"])
def venue(request, emulators, transactional_db) -> Venue:
    """The same order-path test on all three venues. Transactional: the paper venue commits on
    its own, like a real venue, so tests must see real commits."""
    if request.param == "paper":
        return paper_venue()
    return emulated_venue(emulators[request.param])


@pytest.fixture(params=["binance", "bybit"])
def emulated(request, emulators, transactional_db) -> Venue:
    return emulated_venue(emulators[request.param])
