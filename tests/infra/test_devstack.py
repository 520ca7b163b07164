"""The embedded servers behind `make run` are real, and keep their data between runs."""

from __future__ import annotations

import psycopg2
import pytest
import redis

from infra import devstack
from tests.conftest import free_port


@pytest.mark.slow
def test_embedded_postgres_and_redis_keep_data_across_restarts(tmp_path):
    profile = devstack.Profile("persist", pg_port=free_port(), redis_port=free_port(), database="persist",
                               root=tmp_path)
    try:
        db_url = devstack.start_postgres(profile)
        redis_url = devstack.start_redis(profile)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('order-1')")
        redis.Redis.from_url(redis_url).set("kept", "lock-1")

        devstack.stop_postgres(profile)
        devstack.stop_redis(profile)
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(db_url, connect_timeout=2)

        assert devstack.start_postgres(profile) == db_url
        devstack.start_redis(profile)
        with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM kept")
            assert cur.fetchall() == [("order-1",)]
        assert redis.Redis.from_url(redis_url).get("kept") == b"lock-1"
    finally:
        devstack.stop_postgres(profile)
        devstack.stop_redis(profile)


def test_make_run_announces_the_ports_its_processes_really_bind():
    env = {"API_PORT": "9123", "FLOWER_PORT": "5999", "FLOWER_BASIC_AUTH": "admin:pw"}
    urls = devstack.served_urls(env)
    argv = devstack.processes(env)
    assert urls == {"api": "http://127.0.0.1:9123", "flower": "http://127.0.0.1:5999"}
    assert argv["api"][argv["api"].index("--bind") + 1] == "127.0.0.1:9123"
    assert "--port=5999" in argv["flower"]


def test_a_fresh_local_run_picks_a_lively_seed_once_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(devstack, "RUN", devstack.Profile("run", pg_port=1, redis_port=1, database="x",
                                                          root=tmp_path))
    seed = devstack._local_market_seed(fresh=True)
    assert (tmp_path / "market.json").exists()
    # later runs keep it, so the stored candles stay one series
    assert devstack._local_market_seed(fresh=True) == seed
    assert devstack._local_market_seed(fresh=False) == seed


def test_data_from_before_the_lively_seed_keeps_the_old_default_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(devstack, "RUN", devstack.Profile("run", pg_port=1, redis_port=1, database="x",
                                                          root=tmp_path))
    assert devstack._local_market_seed(fresh=False) == "42"
