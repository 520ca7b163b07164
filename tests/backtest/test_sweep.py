"""Sweeps on real Celery workers: every run is a task on the ``backtest`` queue, taken by a
worker that consumes nothing else; progress is counted in ``backtest_runs``; the ranking puts
in-sample and out-of-sample side by side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection

from alphasniper_project.celery import Queue, app
from backtest.models import BacktestRun, BacktestSweep
from tests.support.cli import tbot

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SWEEP = ["backtest", "sweep", "--universe", "BTC/USDT,SOL/USDT", "--timeframe", "1h", "--start", "2024-03-01",
         "--end", "2024-04-01", "--source", "synthetic", "--seed", "3", "--set", "volume_multiplier=1.2",
         "--param", "ema_trend=50,100", "--param", "take_profit_r=2,3", "--in-sample", "0.6", "--metric", "sharpe",
         "--wait-timeout", "240"]


@pytest.fixture
def backtest_worker(_isolated_redis, redis_client):
    """A real worker on the backtest queue only, as docker-compose's backtest-worker runs one."""
    from django.conf import settings

    db = connection.settings_dict
    node = f"backtest-{uuid.uuid4().hex[:8]}@test"
    # The worker listens on the broker the sweep sends to (under `make test` the broker URL is derived
    # from REDIS_URL when settings load, before the test's Redis isolation moves REDIS_URL).
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "REDIS_URL": settings.REDIS_URL, "CELERY_BROKER_URL": app.conf.broker_url, "LOG_FORMAT": "text"}
    log = open(ROOT / ".data" / f"{node.split('@')[0]}.log", "w") if (ROOT / ".data").is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "alphasniper_project", "worker", "-Q", "backtest",
                             "-n", node, "--concurrency", "2", "--without-heartbeat", "--without-mingle",
                             "--without-gossip", "--loglevel", "INFO"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not any(node in reply for reply in (app.control.ping(destination=[node], timeout=0.5) or [])):
            assert proc.poll() is None, "the backtest worker exited at start"
            assert time.monotonic() < deadline, "the backtest worker did not answer a ping within 90 s"
        yield node
    finally:                    # also when it never answered: no worker outlives its test
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)




def test_a_walk_forward_grid_sweep_runs_on_the_backtest_worker_and_ranks_in_and_out_of_sample(backtest_worker):
    code, out, err = tbot(*SWEEP)
    assert code == 0, out + err
    sweep = BacktestSweep.objects.get()
    runs = list(BacktestRun.objects.filter(sweep=sweep))
    # 2 x 2 parameter sets, each in-sample and out-of-sample: 8 tasks, all done by the worker
    assert sweep.total_runs == 8 and len(runs) == 8
    assert {r.status for r in runs} == {"done"}, [r.error for r in runs]
    assert f"sweep #{sweep.pk}: 8 of 8 runs finished (8 done, 0 failed" in out
    # the walk-forward split: the first 60 % of March in-sample, the rest out-of-sample, on an hour boundary
    split = sweep.split_ms
    assert split % 3_600_000 == 0
    for run in runs:
        start, end = run.spec["start_ms"], run.spec["end_ms"]
        assert (start, end) == ((sweep.base_spec["start_ms"], split) if run.segment == "in_sample"
                                else (split, sweep.base_spec["end_ms"]))
        assert run.spec["config"]["volume_multiplier"] == "1.2"          # the base override is in every run
        assert run.spec["config"]["ema_trend"] == run.overrides["ema_trend"]
    # ranked by in-sample Sharpe, best first, with the out-of-sample figure beside it
    from backtest.selectors import sweep_ranking

    ranking = sweep_ranking(sweep=sweep)
    in_sample = [row["segments"]["in_sample"]["metrics"]["sharpe"] for row in ranking]
    defined = [v for v in in_sample if v is not None]
    assert defined == sorted(defined, reverse=True) and len(ranking) == 4
    table = out.splitlines()
    assert "IS sharpe" in table[1] and "OOS sharpe" in table[1]
    best = ranking[0]
    assert table[2].split()[:3] == ["1", f"ema_trend={best['overrides']['ema_trend']},",
                                    f"take_profit_r={best['overrides']['take_profit_r']}"]
    # and later, from any terminal
    code, status_out, _ = tbot("--json", "backtest", "sweep-status", str(sweep.pk))
    assert code == 0 and '"finished": 8' in status_out
    # and on the dashboard: the same ranking, in-sample and out-of-sample side by side
    from django.contrib.auth import get_user_model
    from django.test import Client

    from backtest.report import format_metric

    get_user_model().objects.create_user("olivia", password="pw-for-the-sweep-page", is_staff=True)
    browser = Client()
    browser.login(username="olivia", password="pw-for-the-sweep-page")
    page = browser.get(f"/dashboard/backtests/?sweep={sweep.pk}").content.decode()
    assert page.count('<tr data-rank="') == 4
    first_row = page[page.index('<tr data-rank="1">'):page.index('<tr data-rank="2">')]
    assert format_metric("sharpe", best["segments"]["out_of_sample"]["metrics"]["sharpe"]) in first_row
    assert f"ema_trend={best['overrides']['ema_trend']}" in first_row


def test_the_backtest_queue_is_its_own(backtest_worker):
    """Sweep tasks go to the backtest queue only, and its worker consumes nothing else: a sweep can
    never sit in front of an order."""
    assert app.amqp.router.route({}, "backtest.run")["queue"].name == Queue.BACKTEST
    assert app.amqp.router.route({}, "trading.submit_order")["queue"].name == Queue.ORDERS
    active = app.control.inspect(destination=[backtest_worker], timeout=5).active_queues()
    assert [q["name"] for q in active[backtest_worker]] == ["backtest"]


def test_a_random_search_draws_the_samples_and_a_bad_value_stops_the_sweep_before_anything_is_queued(redis_client):
    code, _out, err = tbot(*SWEEP[:-2], "--param", "atr_period=7,0")
    assert code == 2 and err.strip() == "tbot backtest: atr_period: must be >= 1, got 0"
    assert not BacktestSweep.objects.exists() and not BacktestRun.objects.exists()
    code, out, _ = tbot("--json", *SWEEP, "--search", "random", "--samples", "3", "--no-wait")
    assert code == 0
    sweep = BacktestSweep.objects.get()
    sets = {(r.overrides["ema_trend"], r.overrides["take_profit_r"]) for r in sweep.runs.all()}
    assert sweep.total_runs == 6 and len(sets) == 3                 # 3 of the 4 sets, each in and out of sample
    broker = redis.Redis.from_url(app.conf.broker_url)              # where the sweep sent its tasks
    assert broker.llen(Queue.BACKTEST) == 6                         # queued for whichever worker comes
    broker.delete(Queue.BACKTEST)
