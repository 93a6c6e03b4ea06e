"""@pytest.mark.baton(..., faults=[...]): the plugin's replay injects faults, on both paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.proxy.pytest_settings import check_marker
from tests.test_faults import _cassette

PROJECT_TESTS = """
import httpx
import pytest

CASSETTE = {cassette!r}


@pytest.mark.baton(CASSETTE, faults=["status=503,path=/status", "reset,path=/reset"])
def test_the_fast_path_answers_the_fault(baton_replay):
    answer = httpx.get(baton_replay.url + "/status")
    assert answer.status_code == 503
    assert answer.headers["x-baton-fault"] == "status=503,path=/status"
    with pytest.raises(httpx.ReadError):
        httpx.get(baton_replay.url + "/reset")
    assert httpx.get(baton_replay.url + "/plain").status_code == 200
    assert baton_replay.faults.counts["status=503,path=/status"] == 1


@pytest.mark.baton(CASSETTE, faults=["status=503,rate=0.5"], fault_seed=4)
def test_the_proxy_path_answers_the_fault(baton_replay):
    with httpx.Client(proxy=baton_replay.proxy_url) as client:
        statuses = [client.get("http://api.test/plain").status_code for _ in range(40)]
    assert set(statuses) == {{200, 503}}

"""


def test_the_marker_injects_faults_on_both_paths(tmp_path: Path, pytester: pytest.Pytester) -> None:
    cassette = _cassette(tmp_path / "api.cassette")
    pytester.makepyfile(test_project=PROJECT_TESTS.format(cassette=str(cassette)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--durations=5", timeout=240)
    result.assert_outcomes(passed=2)


def test_a_bad_rule_in_the_marker_is_named() -> None:
    with pytest.raises(ValueError, match=r"faults=\['explode'\]: .*unknown fault 'explode'"):
        check_marker(["api.cassette"], {"faults": ["explode"]})
    with pytest.raises(ValueError, match="expected an integer seed"):
        check_marker(["api.cassette"], {"faults": ["reset"], "fault_seed": "x"})
