"""The venue check at worker start and in `tbot prepare`: one clear line per problem."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.trading.exchanges.conftest import GATEWAY_CLASSES, SettableMarket, make_paper_gateway
from trading.exchanges.startup import is_warning, venue_startup_check

KEY_VARS = {"binance": "BINANCE_API_KEY / BINANCE_API_SECRET", "bybit": "BYBIT_API_KEY / BYBIT_API_SECRET"}
UNIVERSE = ["BTC/USDT", "ETH/USDT"]


def test_a_healthy_venue_has_no_problem(emulator, gateway_factory):
    assert venue_startup_check(gateway=gateway_factory(emulator), universe=UNIVERSE) == []


@pytest.mark.parametrize("bad", ["api_secret", "api_key"])
def test_rejected_keys_name_the_variables(emulator, gateway_factory, bad):
    gateway = gateway_factory(emulator, **{bad: "wrong"})

    (problem,) = venue_startup_check(gateway=gateway, universe=UNIVERSE)

    prefix = f"{KEY_VARS[emulator.venue]} rejected by {emulator.venue}: "
    assert problem.startswith(prefix) and len(problem) > len(prefix)
    assert "fetch_balances" not in problem and "wrong" not in problem


def test_unlisted_and_malformed_symbols_are_named(emulator, gateway_factory):
    problems = venue_startup_check(gateway=gateway_factory(emulator),
                                   universe=["BTC/USDT", "DOGE/USDT", "btc-usdt", "ETH/USDT"])

    assert problems == [
        "universe symbol 'btc-usdt' is malformed: expected BASE/QUOTE in capitals, e.g. BTC/USDT",
        f"universe symbol DOGE/USDT is not listed on {emulator.venue}",
    ]


@pytest.mark.parametrize("venue", ["binance", "bybit"])
def test_an_unreachable_venue_is_one_line_saying_where(venue):
    port = free_port()
    gateway = GATEWAY_CLASSES[venue](api_key="k", api_secret="s", base_url=f"http://127.0.0.1:{port}",
                                     timeout_ms=1000)

    (problem,) = venue_startup_check(gateway=gateway, universe=UNIVERSE)

    assert problem.startswith(f"{venue} is unreachable at http://127.0.0.1:{port}")
    assert problem.endswith("Connection refused)")


def test_a_ban_is_reported_as_such(emulator, control, gateway_factory):
    markets = "/api/v3/exchangeInfo" if emulator.venue == "binance" else "/v5/market/instruments-info"
    control.set_faults([{"path": markets, "action": "ban_418", "retry_after": 600}])

    (problem,) = venue_startup_check(gateway=gateway_factory(emulator), universe=UNIVERSE)

    assert problem.startswith(f"{emulator.venue} has banned this IP (retry after 600 s)")


def test_clock_skew_over_a_second_is_a_warning(emulator, control, gateway_factory):
    control.set_clock_offset(3000)

    (warning,) = venue_startup_check(gateway=gateway_factory(emulator), universe=UNIVERSE)

    assert is_warning(warning)
    assert f"clock skew vs {emulator.venue} is +" in warning


def test_paper(db, tmp_path):
    market = SettableMarket(tmp_path)
    gateway = make_paper_gateway(market)

    assert venue_startup_check(gateway=gateway, universe=UNIVERSE) == []
    assert venue_startup_check(gateway=gateway, universe=["BTC/USDT", "XRP/USDT", "BTC"]) == [
        "universe symbol 'BTC' is malformed: expected BASE/QUOTE in capitals, e.g. BTC/USDT",
        "universe symbol XRP/USDT has no market data on paper: KeyError: 'XRP/USDT'",
    ]


def test_clock_skew_over_five_seconds_stops_a_worker_and_tbot_prepare_alike(emulator, control, gateway_factory):
    # One check, one rule: what refuses a worker's start is what `tbot prepare` calls an error.
    from trading.exchanges.startup import venue_checks

    control.set_clock_offset(8000)
    problems = venue_startup_check(gateway=gateway_factory(emulator), universe=UNIVERSE)
    assert problems and not any(is_warning(p) for p in problems)       # the worker refuses to start
    skew = [c for c in venue_checks(gateway=gateway_factory(emulator), universe=UNIVERSE) if c.code == "CLOCK_SKEW"]
    assert skew and {c.severity for c in skew} == {"error"}             # and tbot prepare says error
