"""A new universe must be one the venue lists and the account can fund, at every door that
changes it; otherwise the answer names each symbol and nothing is written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from emulator import start_emulator
from infra.models import TelegramOutbox
from tests.adminapi.conftest import audit_count, config_rows, who
from tests.conftest import free_port
from tests.support.venues import emulated_venue
from trading.config_schema import config_get
from trading.exchanges.base import Balance, MarketRules
from trading.exchanges.binance import BinanceGateway
from trading.universe import universe_problems

pytestmark = pytest.mark.django_db


def written() -> tuple:
    return audit_count(), config_rows(), TelegramOutbox.objects.count()


def set_universe(api, symbols):
    return api.post("/admin/update_config", {**who(reason_code="UNIVERSE"), "changes": {"universe": symbols}},
                    format="json")


@pytest.fixture(scope="module")
def binance():
    handle = start_emulator("binance", port=0, symbols=["BTC/USDT", "ETH/USDT", "ETH/BTC"],
                            balances={"USDT": "5000"})
    yield handle
    handle.stop()


@pytest.fixture
def binance_gateway(binance, monkeypatch):
    venue = emulated_venue(binance)
    monkeypatch.setattr("trading.exchanges.factory._gateway", venue.gateway)   # what get_gateway() returns
    return venue.gateway


# --- the rules ------------------------------------------------------------------------------

def _rules(symbol: str) -> MarketRules:
    base, quote = symbol.split("/")
    one = Decimal(1)
    return MarketRules(symbol, base + quote, base, quote, one, one, one, one)


def test_rules_name_each_unlisted_symbol_mixed_quotes_and_an_unheld_quote():
    markets = {s: _rules(s) for s in ("BTC/USDT", "ETH/BTC", "SOL/BTC")}
    balances = {"USDT": Balance("USDT", Decimal(100), Decimal(0)), "BTC": Balance("BTC", Decimal(0), Decimal(0))}
    problems = universe_problems(["BTC/USDT", "DOGE/USDT", "ETH/BTC", "SOL/BTC"], venue="binance",
                                 markets=markets, balances=balances)
    assert problems == [
        "DOGE/USDT is not listed on binance",
        "the universe mixes quote assets (BTC: ETH/BTC, SOL/BTC; USDT: BTC/USDT); equity, sizing and PnL are "
        "counted in one quote, so every symbol must share it",
        "ETH/BTC, SOL/BTC: the account holds no BTC to buy with (it holds USDT)",
    ]
    assert universe_problems(["BTC/USDT"], venue="binance", markets=markets, balances=balances) == []


# --- the API --------------------------------------------------------------------------------

def test_eth_btc_without_btc_is_refused_naming_the_symbol_and_nothing_is_written(api):
    # given the paper account holds only USDT (PAPER_INITIAL_BALANCES)
    before = written()
    # when an operator switches the universe to ETH/BTC
    response = set_universe(api, ["ETH/BTC"])
    # then the answer names the symbol and the missing asset, and nothing changed
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "universe_not_tradable"
    assert body["fields"] == {"changes": {"universe": [
        "ETH/BTC: the account holds no BTC to buy with (it holds USDT)"]}}
    assert written() == before
    assert "ETH/BTC" not in config_get().universe


def test_a_symbol_the_venue_does_not_list_is_refused(api, binance_gateway):
    response = set_universe(api, ["BTC/USDT", "DOGE/USDT"])
    assert response.status_code == 409
    assert response.json()["fields"]["changes"]["universe"] == ["DOGE/USDT is not listed on binance"]
    assert written() == (0, {}, 0)


def test_a_listed_symbol_in_another_quote_is_refused_too(api, binance_gateway):
    response = set_universe(api, ["BTC/USDT", "ETH/BTC"])
    assert response.status_code == 409
    problems = response.json()["fields"]["changes"]["universe"]
    assert problems[0].startswith("the universe mixes quote assets (BTC: ETH/BTC; USDT: BTC/USDT)")
    assert problems[1] == "ETH/BTC: the account holds no BTC to buy with (it holds USDT)"
    assert written() == (0, {}, 0)


def test_a_universe_the_venue_lists_and_the_account_funds_is_stored(api, binance_gateway):
    response = set_universe(api, ["ETH/USDT", "BTC/USDT"])
    assert response.status_code == 200, response.content
    assert config_get().universe == ("ETH/USDT", "BTC/USDT")
    assert audit_count() == 1


def test_when_the_venue_cannot_be_asked_the_universe_is_not_changed(api, monkeypatch):
    down = BinanceGateway(api_key="k", api_secret="s", base_url=f"http://127.0.0.1:{free_port()}", testnet=False,
                          timeout_ms=1000)
    monkeypatch.setattr("trading.exchanges.factory._gateway", down)
    response = set_universe(api, ["BTC/USDT"])
    assert response.status_code == 503
    assert response.json()["error"] == "venue_unavailable"
    assert response.json()["detail"].startswith("cannot check the universe against binance")
    assert written() == (0, {}, 0)


def test_other_keys_do_not_ask_the_venue(api, monkeypatch):
    def no_venue():
        raise AssertionError("the venue was asked")

    monkeypatch.setattr("trading.exchanges.factory.get_gateway", no_venue)
    response = api.post("/admin/update_config", {**who(reason_code="TUNE"), "changes": {"timeframe": "1h"}},
                        format="json")
    assert response.status_code == 200


# --- the Django admin -------------------------------------------------------------------------

def test_the_django_admin_refuses_an_unfundable_universe(admin_client):
    response = admin_client.post("/django-admin/trading/systemconfig/add/", {
        "key": "universe", "value": '["ETH/BTC"]', "reason_code": "UNIVERSE", "reason": "try BTC pairs",
    })
    assert response.status_code == 200          # the form again, with the error
    assert "ETH/BTC: the account holds no BTC to buy with" in response.content.decode()
    assert written() == (0, {}, 0)
