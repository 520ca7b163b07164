"""Client order ids: deterministic, venue-legal, recognisably ours."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.client_ids import MAX_LENGTH, PREFIX, VALID, is_ours, make_client_order_id


def test_same_intent_gives_the_same_id_in_any_process():
    a = make_client_order_id(strategy="blite", symbol="BTC/USDT", tick_id="20261124T1415", intent="entry")
    b = make_client_order_id(strategy="blite", symbol="BTC/USDT", tick_id="20261124T1415", intent="entry")
    assert a == b
    assert a.startswith(PREFIX + "blite-")
    assert is_ours(a)


ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="|")


@given(
    strategy=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    symbol=st.text(ASCII, min_size=1, max_size=40),
    tick=st.text(ASCII, min_size=1, max_size=40),
    intent=st.text(ASCII, min_size=1, max_size=20),
)
def test_every_id_fits_both_venues(strategy, symbol, tick, intent):
    cid = make_client_order_id(strategy=strategy, symbol=symbol, tick_id=tick, intent=intent)
    assert len(cid) <= MAX_LENGTH
    assert VALID.match(cid)


def test_different_intents_give_different_ids():
    ids = {make_client_order_id(strategy="blite", symbol=s, tick_id=t, intent=i)
           for s in ("BTC/USDT", "ETH/USDT") for t in ("20261124T1400", "20261124T1415") for i in ("entry", "exit1")}
    assert len(ids) == 8


@pytest.mark.parametrize(("field", "value"), [("strategy", "B-Lite!"), ("symbol", ""), ("intent", "a|b"),
                                             ("symbol", "BTC/\ud800"), ("tick_id", "tick\n")])
def test_bad_inputs_are_refused_with_the_field_named(field, value):
    args = {"strategy": "blite", "symbol": "BTC/USDT", "tick_id": "t", "intent": "entry", field: value}
    with pytest.raises(ValueError, match=field if field != "strategy" else "strategy code"):
        make_client_order_id(**args)


def test_foreign_ids_are_not_ours():
    assert not is_ours("x-TKT5PX2Fabcdef")
    assert not is_ours(None)
