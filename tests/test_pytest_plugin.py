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
            "*1 request matched no recorded interaction*",
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


MISSES = """
import httpx
import pytest

CASSETTE = {cassette!r}
RECORDED = "http://127.0.0.1:{port}"


@pytest.mark.baton(CASSETTE)
def test_miss_on_the_fast_server(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=91")


@pytest.mark.baton(CASSETTE)
def test_miss_through_the_proxy(baton_replay):
    httpx.get(RECORDED + "/echo?item=92", proxy=baton_replay.proxy_url)


@pytest.mark.baton(CASSETTE)
def test_miss_then_an_assertion_of_its_own(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=93").status_code == 200
"""


def test_each_miss_is_reported_once(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    cassette = tmp_path / "echo.cassette"
    record_echo(baton, echo, cassette)
    pytester.makepyfile(test_misses=MISSES.format(cassette=str(cassette), port=echo.port))

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)

    result.assert_outcomes(failed=3)
    output = "\n".join(result.outlines)
    # pytest repeats each failure's message whole in its short summary when CI is set
    # (it truncates it to one line only on a terminal); count the report above it.
    output = output.split("short test summary info")[0]
    # Before: the failure, the captured log of the server, and pluggy's teardown warning.
    for item in (91, 92, 93):
        assert output.count(f"no recorded interaction matches GET /echo?item={item}") == 1, output
    assert "PluggyTeardownRaisedWarning" not in output
    # A test that failed on its own assertion gets the misses beside its failure.
    result.stdout.fnmatch_lines(
        [
            "*test_miss_then_an_assertion_of_its_own*",
            "*assert 502 == 200*",
            "*Captured baton call*",
            "baton: 1 request matched no recorded interaction*",
            "*query: recorded item=1 | got item=93*",
        ]
    )


UNUSED = """
import httpx
import pytest

CASSETTE = {cassette!r}
RECORDED = "http://127.0.0.1:{port}"


@pytest.mark.baton(CASSETTE)
def test_asks_for_item_1_only(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=1")
    httpx.get(baton_replay.url + "/echo?item=1")  # served again: still only item 2 unused


@pytest.mark.baton(CASSETTE)
def test_asks_for_both(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=2")
    httpx.get(baton_replay.url + "/echo?item=1")


@pytest.mark.baton(CASSETTE)
def test_asks_one_on_each_server(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=1")
    httpx.get(RECORDED + "/echo?item=2", proxy=baton_replay.proxy_url)


@pytest.mark.baton(CASSETTE)
def test_asks_for_nothing(baton_replay):
    pass
"""


def test_unused_interactions_fail_the_test_when_asked(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    cassette = tmp_path / "echo.cassette"
    record_echo(baton, echo, cassette)
    pytester.makepyfile(test_unused=UNUSED.format(cassette=str(cassette), port=echo.port))

    asked = pytester.runpytest_subprocess(
        "--baton-fail-on-unused", "-p", "no:cacheprovider", timeout=240
    )
    not_asked = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)

    asked.assert_outcomes(passed=2, failed=2)
    not_asked.assert_outcomes(passed=4)
    asked.stdout.fnmatch_lines(
        [
            "*_ test_asks_for_item_1_only _*",
            "baton: 1 recorded interaction unused (fail_on_unused, from the command line):",
            f"  1. GET http://127.0.0.1:{echo.port}/echo?item=2 -> 200",
            "*_ test_asks_for_nothing _*",
            "baton: 2 recorded interactions unused*",
            f"  1. GET http://127.0.0.1:{echo.port}/echo?item=1 -> 200",
            f"  2. GET http://127.0.0.1:{echo.port}/echo?item=2 -> 200",
        ]
    )
    assert "test_asks_one_on_each_server FAILED" not in "\n".join(asked.outlines)


def test_interactions_recorded_during_the_test_are_not_unused(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    cassette = tmp_path / "episodes.cassette"
    record_echo(baton, echo, cassette)
    pytester.makefile(".toml", pyproject="[tool.baton.pytest]\nfail_on_unused = true\n")
    pytester.makepyfile(
        test_new=f"""
import httpx
import pytest

@pytest.mark.baton({str(cassette)!r}, upstream={echo.url!r})
def test_new_and_old(baton_replay):
    for item in (1, 2, 3):
        assert httpx.get(baton_replay.url + f"/echo?item={{item}}").json()["query"] == {{"item": str(item)}}

@pytest.mark.baton({str(cassette)!r}, upstream={echo.url!r})
def test_new_only(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=4")
"""
    )
    result = pytester.runpytest_subprocess(
        "--baton-record-mode", "new_episodes", "-p", "no:cacheprovider", timeout=240
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_new_only _*",
            "baton: 3 recorded interactions unused (fail_on_unused, from pyproject.toml*",
            "*/echo?item=1 -> 200",
            "*/echo?item=2 -> 200",
            "*/echo?item=3 -> 200",
        ]
    )


def test_no_warnings_under_w_error(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    """Every path the plugin has (fast server, mitmproxy, recording, a miss) under -W error."""
    cassette = tmp_path / "echo.cassette"
    record_echo(baton, echo, cassette)
    pytester.makepyfile(test_project=PROJECT_TESTS.format(cassette=str(cassette), port=echo.port))
    pytester.makepyfile(
        test_recording=f"""
import httpx
import pytest

@pytest.mark.baton(upstream={echo.url!r}, record_mode="once")
def test_records_its_default_cassette(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=7").json()["query"] == {{"item": "7"}}
"""
    )

    result = pytester.runpytest_subprocess(
        "-W", "error", "--block-network", "-p", "no:cacheprovider", timeout=240
    )

    result.assert_outcomes(passed=4, failed=1)  # the one failure is the miss, on purpose
    output = result.stdout.str() + result.stderr.str()
    assert "warnings summary" not in output and "Warning" not in output, output
    assert (
        pytester.path / "cassettes/test_recording/test_records_its_default_cassette.cassette"
    ).exists()


def test_a_polled_request_asked_once_leaves_nothing_unused(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    cassette = tmp_path / "polled.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
    )
    for item in (1, 1, 1, 2):  # item 1 polled three times while recording
        httpx.get(f"{recorder.url}/echo?item={item}", trust_env=False, timeout=30)
    assert recorder.stop() == 0
    pytester.makepyfile(
        test_polled=f"""
import httpx
import pytest

@pytest.mark.baton({str(cassette)!r})
def test_polls_once(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=1")
    httpx.get(baton_replay.url + "/echo?item=2")

@pytest.mark.baton({str(cassette)!r})
def test_never_polls(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=2")
"""
    )
    result = pytester.runpytest_subprocess(
        "--baton-fail-on-unused", "-p", "no:cacheprovider", timeout=240
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_never_polls _*",
            "baton: 3 recorded interactions unused*",
            "  1. GET */echo?item=1 -> 200",
            "  2. GET */echo?item=1 -> 200",
            "  3. GET */echo?item=1 -> 200",
        ]
    )
