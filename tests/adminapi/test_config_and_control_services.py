"""trading.config_schema and trading.services.control, called directly (the API, the admin and
tbot are thin doors onto these)."""

from __future__ import annotations

import re
import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.models import TelegramOutbox
from tests.adminapi.conftest import audit_count, config_rows
from trading.config_schema import (
    HALT_KEY,
    SCHEMA,
    ConfigValidationError,
    HaltState,
    StrategyConfig,
    config_get,
    config_validate,
    config_version,
    decimal_pattern,
)
from trading.models import AuditLog, SystemConfig
from trading.services.control import (
    OperatorInputError,
    config_update,
    is_halted,
    trading_halt,
    trading_resume,
)

WHO = {"actor": "svc-test", "source": "system", "reason_code": "TEST_CASE", "reason": "because", "trace_id": "tr1"}


# --- schema -------------------------------------------------------------------------------------

def test_every_key_has_a_default_that_passes_its_own_validation():
    from trading.config_schema import to_json

    defaults = {key: to_json(key, spec.default) for key, spec in SCHEMA.items()}
    assert set(config_validate(defaults)) == set(SCHEMA)
    assert set(SCHEMA) == {f for f in StrategyConfig.__dataclass_fields__ if f != "version"}


@pytest.mark.django_db
def test_config_get_fills_defaults_for_missing_rows_with_decimals_for_decimal_fields():
    cfg = config_get()
    assert cfg.universe == ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
    assert cfg.timeframe == "15m" and cfg.breakout_lookback == 20 and cfg.ema_trend == 200
    assert cfg.volume_multiplier == Decimal("1.5") and isinstance(cfg.volume_multiplier, Decimal)
    assert cfg.risk_per_trade == Decimal("0.005") and cfg.daily_loss_limit == Decimal("0.02")
    assert cfg.max_position_notional == Decimal(1000) and cfg.max_submit_attempts == 5
    assert cfg.version == 0 == config_version()
    with pytest.raises(AttributeError):
        cfg.timeframe = "1h"   # frozen snapshot


@pytest.mark.django_db
def test_config_get_accepts_json_numbers_for_decimals_and_refuses_a_bad_stored_value():
    SystemConfig.objects.create(key="take_profit_r", value=2.5)
    assert config_get().take_profit_r == Decimal("2.5")
    SystemConfig.objects.create(key="max_open_positions", value="three")
    with pytest.raises(ConfigValidationError) as exc:
        config_get()
    assert list(exc.value.problems) == ["max_open_positions"]


def test_validation_returns_every_problem_with_its_key():
    with pytest.raises(ConfigValidationError) as exc:
        config_validate({"universe": ["BTC/USDT", "BTC/USDT", "ETH-USDT"], "timeframe": 15, "nope": 1,
                         "risk_per_trade": "0.05", "daily_loss_limit": "1.5"})
    problems = exc.value.problems
    assert set(problems) == {"universe", "timeframe", "nope", "daily_loss_limit"}   # 0.05 is allowed (<=)
    assert len(problems["universe"]) == 2
    assert "universe:" in str(exc.value)


@pytest.mark.parametrize("raw", ["0.0012345678901234567890123456789012345678901234567",
                                 0.1 + 0.2, "1.500000000"])
def test_a_decimal_with_more_than_8_places_is_refused_at_every_door(raw):
    with pytest.raises(ConfigValidationError) as exc:
        config_validate({"risk_per_trade": raw})
    assert "at most 8 decimal places" in exc.value.problems["risk_per_trade"][0]


DECIMAL_KEYS = [key for key, spec in SCHEMA.items() if spec.kind == "decimal"]
CANDIDATES = st.one_of(
    st.decimals(min_value=-1, max_value=10**13, allow_nan=False, places=9).map(str),
    st.from_regex(r"\A[0-9]{1,14}(\.[0-9]{0,10})?\Z"),
    st.text(alphabet="0123456789.-+eE ", max_size=16),
    st.sampled_from(["0", "0.0", "0.00000001", "0.000000001", "0.05", "0.050000001", "1", "100", "100.00000001",
                     "50", "1000000000000", "1000000000000.00000001", "01", "1.", ".5", "NaN", "Infinity"]),
)


@pytest.mark.parametrize("key", DECIMAL_KEYS)
@settings(max_examples=300, deadline=None)
@given(raw=CANDIDATES)
def test_the_published_decimal_pattern_matches_exactly_what_the_api_accepts(key, raw):
    # what the OpenAPI schema tells a client ...
    matches = re.fullmatch(decimal_pattern(SCHEMA[key]), raw) is not None
    # ... is what the API (strict validation) does
    try:
        config_validate({key: raw}, strict=True)
        accepted = True
    except ConfigValidationError:
        accepted = False
    assert matches == accepted


@pytest.mark.parametrize("key", DECIMAL_KEYS)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_every_string_the_pattern_generates_is_accepted(key, data):
    raw = data.draw(st.from_regex(decimal_pattern(SCHEMA[key]), fullmatch=True))
    spec = SCHEMA[key]
    value = config_validate({key: raw}, strict=True)[key]
    assert spec.minimum < value <= spec.maximum


def test_halt_state_reads_leniently_and_fails_closed():
    assert HaltState.from_json(None) == HaltState()
    assert HaltState.from_json("garbage").halted is False
    assert HaltState.from_json({"halted": 1, "by": "x"}).halted is True


# --- services -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_service_rejects_bad_operator_input_and_writes_nothing():
    with pytest.raises(OperatorInputError) as exc:
        trading_halt(actor=" ", source="email", reason_code="bad", reason="", trace_id="")
    assert set(exc.value.problems) == {"by", "source", "reason_code", "reason", "trace_id"}
    with pytest.raises(ConfigValidationError) as exc:
        config_update(changes={"timeframe": "2m"}, **{**WHO, "reason_code": "x"})
    assert set(exc.value.problems) == {"timeframe", "reason_code"}
    assert audit_count() == 0 and config_rows() == {} and TelegramOutbox.objects.count() == 0


@pytest.mark.django_db
def test_change_audit_and_notification_share_one_transaction():
    # given a caller whose surrounding transaction fails after the halt
    with pytest.raises(RuntimeError), transaction.atomic():
        trading_halt(**WHO)
        assert is_halted().halted is True
        raise RuntimeError("boom")
    # then the halt, its audit row and its Telegram row are all gone
    assert is_halted().halted is False
    assert audit_count() == 0 and TelegramOutbox.objects.count() == 0


@pytest.mark.django_db
def test_halt_resume_cycle_versions_the_halt_row():
    trading_halt(**WHO)
    trading_halt(**{**WHO, "reason": "again"})
    trading_resume(**WHO)
    row = SystemConfig.objects.get(key=HALT_KEY)
    assert row.version == 2 and row.value["halted"] is False
    assert [a.action for a in AuditLog.objects.order_by("id")] == ["trading.halt", "trading.halt", "trading.resume"]
    assert config_version() == 0      # the halt row is not strategy config


@pytest.mark.django_db(transaction=True)
def test_concurrent_config_updates_form_an_unbroken_audit_chain():
    # given two operators changing the same key at the same time, many times
    values = {"a": ["1m", "5m"], "b": ["15m", "1h"]}
    errors: list[BaseException] = []

    def operator(name: str) -> None:
        try:
            for i in range(8):
                config_update(changes={"timeframe": values[name][i % 2]}, **{**WHO, "actor": name,
                                                                               "trace_id": f"{name}{i}"})
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=operator, args=(n,)) for n in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    # then every audit row's "before" is exactly the previous row's "after" (no lost update),
    # and the row's version counts exactly the effective changes
    rows = list(AuditLog.objects.filter(action="config.update").order_by("id"))
    assert len(rows) == 16
    previous = "15m"
    changes = 0
    for row in rows:
        assert row.before["timeframe"] == previous
        changes += row.before != row.after
        previous = row.after["timeframe"]
    row = SystemConfig.objects.get(key="timeframe")
    assert row.value == previous and row.version == changes
