"""Stateful replay in the pytest plugin: a cassette the plugin recorded answers each test in
its own session, with reads the recording never made answered from their state."""

from __future__ import annotations

import pytest

from baton.cassettes import read_cassette
from baton.replay.state import recorded_state
from tests.processes import start_upstream

PROJECT = """
import uuid

import httpx
import pytest

UPSTREAM = {upstream!r}


def shop_scenario(base, extra_read):
    with httpx.Client(base_url=base, trust_env=False) as client:
        token = client.post("/login", json={{"user": "ann"}}).json()["token"]
        client.headers["Authorization"] = "Bearer " + token
        assert client.get("/cart").json() == {{"items": [], "total": 0}}
        if extra_read:  # a read the recording never made, before the write
            assert client.get("/cart").json() == {{"items": [], "total": 0}}
        line = {{"sku": "apple", "qty": 1, "request_id": str(uuid.uuid4())}}
        assert client.post("/cart/items", json=line).status_code == 201
        cart = client.get("/cart").json()
        assert cart["total"] == 3
        assert cart["items"][0]["request_id"] == line["request_id"]


@pytest.mark.baton("cassettes/shop.cassette", upstream=UPSTREAM)
def test_first(baton_replay):
    assert baton_replay.recording  # the cassette does not exist yet: this test records it
    shop_scenario(baton_replay.url, extra_read=False)


@pytest.mark.baton("cassettes/shop.cassette", upstream=UPSTREAM)
def test_second_starts_afresh(baton_replay):
    assert not baton_replay.recording  # replayed from what test_first recorded
    shop_scenario(baton_replay.url, extra_read=True)
"""


def test_the_plugin_records_state_and_each_test_replays_in_its_own_session(
    pytester: pytest.Pytester,
) -> None:
    shop = start_upstream("fidelity-shop")
    pytester.makepyfile(test_shop=PROJECT.format(upstream=shop.url))
    try:
        first = pytester.runpytest_subprocess(
            "--baton-record-mode=once", "-p", "no:cacheprovider", timeout=240
        )
    finally:
        shop.stop()
    # test_first recorded the cassette; test_second_starts_afresh replayed it, from the start
    # (a session of its own), with an extra read answered from its state.
    first.assert_outcomes(passed=2)
    cassette = pytester.path / "cassettes" / "shop.cassette"
    states = [recorded_state(i) for i in read_cassette(cassette)]
    assert [(s.writes, s.write) for s in states if s is not None] == [
        (0, True),
        (1, False),
        (1, True),
        (2, False),
    ]
