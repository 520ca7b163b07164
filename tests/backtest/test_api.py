"""GET /admin/backtests and /admin/backtests/<id> on runs the real engine made; every error a
4xx JSON body naming the problem."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from backtest.models import BacktestRun, BacktestTrade

pytestmark = pytest.mark.django_db
TOKEN = "test-admin-token-for-backtests-0123456789"
ARGS = ["--universe", "BTC/USDT,ETH/USDT", "--timeframe", "1h", "--start", "2024-03-01", "--end", "2024-03-20",
        "--source", "synthetic", "--seed", "5", "--set", "ema_trend=50", "--set", "volume_multiplier=1.2"]


@pytest.fixture
def api(settings) -> APIClient:
    settings.ADMIN_TOKEN = TOKEN
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


@pytest.fixture
def runs(tmp_path) -> list[int]:
    """Three runs made by `manage.py backtest run`, oldest first."""
    ids = []
    for extra in (["--set", "take_profit_r=2"], ["--set", "take_profit_r=3"], ["--set", "take_profit_r=4"]):
        out = io.StringIO()
        call_command("backtest", "run", *ARGS, *extra, "--out", str(tmp_path), "--json", stdout=out)
        ids.append(json.loads(out.getvalue())["run_id"])
    return ids


def test_the_list_is_newest_first_and_pages_on_with_before(api, runs):
    body = api.get("/admin/backtests").json()
    assert [r["id"] for r in body] == runs[::-1]
    newest = body[0]
    assert newest["status"] == "done" and newest["universe"] == ["BTC/USDT", "ETH/USDT"]
    assert newest["overrides"]["take_profit_r"] == "4"
    assert newest["metrics"] == BacktestRun.objects.get(pk=runs[2]).metrics
    assert isinstance(newest["metrics"]["fees_paid"], str)               # money is a decimal string
    page = api.get("/admin/backtests?limit=2").json()
    assert [r["id"] for r in page] == [runs[2], runs[1]]
    assert [r["id"] for r in api.get(f"/admin/backtests?limit=2&before={page[-1]['id']}").json()] == [runs[0]]
    assert api.get("/admin/backtests?status=failed").json() == []


def test_one_run_has_its_metrics_trades_and_equity_curve(api, runs):
    run = BacktestRun.objects.get(pk=runs[0])
    body = api.get(f"/admin/backtests/{run.pk}").json()
    assert body["metrics"] == run.metrics and body["metrics"]["trades"] > 0
    stored = list(BacktestTrade.objects.filter(run=run).order_by("entry_time", "id"))
    assert len(body["trades"]) == len(stored)
    first = body["trades"][0]
    assert first["symbol"] == stored[0].symbol
    assert first["entry_price"] == format(stored[0].entry_price.normalize(), "f")     # exact, as a string
    assert isinstance(first["pnl_quote"], str) and isinstance(first["quantity"], str)
    assert body["spec"]["config"]["take_profit_r"] == "2"
    assert body["candles_processed"] == run.candles_processed
    assert sum(body["decisions"].values()) > 0
    assert len(body["equity"]) == len(run.equity)                          # 19 days of hours: under max_points
    assert body["equity"][-1]["equity"] == f"{run.equity[-1][1]:.8f}".rstrip("0").rstrip(".")
    thinned = api.get(f"/admin/backtests/{run.pk}?max_points=50").json()["equity"]
    assert len(thinned) < 60 and thinned[-1] == body["equity"][-1]


@pytest.mark.parametrize(("url", "status", "field"), [
    ("/admin/backtests?limit=0", 400, "limit"),
    ("/admin/backtests?limit=ten", 400, "limit"),
    ("/admin/backtests?before=", 400, "before"),
    ("/admin/backtests?status=lost", 400, "status"),
    ("/admin/backtests?page=2", 400, "page"),
    ("/admin/backtests/1?max_points=5", 400, "max_points"),
    ("/admin/backtests/1?points=5", 400, "points"),
])
def test_bad_queries_are_400_json_naming_the_parameter(api, url, status, field):
    response = api.get(url)
    assert response.status_code == status and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "invalid_request" and field in body["fields"]


@pytest.mark.parametrize("run_id", ["999999", "abc", "0", "99999999999999999999999"])
def test_an_unknown_run_is_a_404_json(api, runs, run_id):
    response = api.get(f"/admin/backtests/{run_id}")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found" and run_id in response.json()["detail"]


def test_without_the_token_nothing_is_shown():
    response = APIClient().get("/admin/backtests")
    assert response.status_code == 401 and response.json()["error"]


def test_the_schema_describes_both_endpoints(api):
    import yaml

    schema = yaml.safe_load(api.get("/admin/schema").content)
    listing = schema["paths"]["/admin/backtests"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "before", "status", "sweep"}
    detail = schema["paths"]["/admin/backtests/{run_id}"]["get"]
    assert {"200", "400", "401", "403", "404"} <= set(detail["responses"])
