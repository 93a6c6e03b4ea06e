"""The pytest plugin, used from a small test project of its own (pytester, in a subprocess)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from baton.cassettes import read_cassette
from tests.processes import BatonProcess, Upstream

PROJECT_TESTS = """
import json
import subprocess

import httpx
import pytest
import requests

CASSETTE = {cassette!r}
RECORDED_HOST = "http://127.0.0.1:{port}"


@pytest.mark.baton(CASSETTE)
def test_reverse_mode_with_httpx_and_requests(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=1").json()["query"] == {{"item": "1"}}
    assert requests.get(baton_replay.url + "/echo?item=2").json()["query"] == {{"item": "2"}}


@pytest.mark.baton(CASSETTE)
def test_curl_subprocess_through_the_proxy_env(baton_replay):
    out = subprocess.run(
        ["curl", "-sS", RECORDED_HOST + "/echo?item=1"],
        env=baton_replay.env, capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    assert json.loads(out)["query"] == {{"item": "1"}}
    assert baton_replay.ca_path.exists()


@pytest.mark.baton(CASSETTE)
def test_a_miss_fails_the_test(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=99")


@pytest.mark.baton(CASSETTE, allow_misses=True)
def test_misses_can_be_allowed(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=99").status_code == 502
"""


def record_echo(baton: Callable[..., BatonProcess], echo: Upstream, cassette: Path) -> None:
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
    )
    for item in (1, 2):
        httpx.get(f"{recorder.url}/echo?item={item}", trust_env=False, timeout=30)
    assert recorder.stop() == 0


def test_the_plugin_serves_cassettes_to_a_test_project(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    cassette = tmp_path / "echo.cassette"
    record_echo(baton, echo, cassette)
    pytester.makepyfile(test_project=PROJECT_TESTS.format(cassette=str(cassette), port=echo.port))

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_a_miss_fails_the_test*",
            "*1 request(s) matched no recorded interaction*",
            "*no recorded interaction matches GET /echo?item=99*",
            "*query: recorded item=1 | got item=99*",
        ]
    )


def test_the_record_mode_option_records_new_episodes(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    cassette = tmp_path / "episodes.cassette"
    record_echo(baton, echo, cassette)
    pytester.makepyfile(
        test_episodes=f"""
import httpx
import pytest

@pytest.mark.baton({str(cassette)!r})
def test_new_call(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=3").json()["query"] == {{"item": "3"}}
"""
    )
    result = pytester.runpytest_subprocess(
        "--baton-record-mode", "new_episodes", "-p", "no:cacheprovider", timeout=240
    )
    result.assert_outcomes(passed=1)
    assert [dict(i.request.query)["item"] for i in read_cassette(cassette)] == ["1", "2", "3"]
