"""Where each setting of a baton test comes from, and what a bad one says.

command line  >  marker  >  ini option  >  [tool.baton.pytest]  >  top of [tool.baton]  >  default
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from baton.proxy.pytest_settings import TestSettings, check_marker
from tests.processes import BatonProcess, Upstream
from tests.test_pytest_plugin import record_echo

STATUS = """
import os

import httpx
import pytest

CASSETTE = {cassette!r}


@pytest.mark.baton(CASSETTE, allow_misses=True)
def test_unmarked_status(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=99").status_code == int(os.environ["EXPECTED"])


@pytest.mark.baton(CASSETTE, allow_misses=True, miss_status=503)
def test_marked_status(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=99").status_code == 503


@pytest.mark.baton(CASSETTE)
def test_allow_misses_unmarked(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=98")


@pytest.mark.baton(CASSETTE, allow_misses=False)
def test_allow_misses_marked_false(baton_replay):
    httpx.get(baton_replay.url + "/echo?item=97")
"""


def test_precedence_marker_ini_pytest_section_top_of_tool_baton(
    baton: Callable[..., BatonProcess],
    echo: Upstream,
    tmp_path: Path,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cassette = tmp_path / "echo.cassette"
    record_echo(baton, echo, cassette)
    pytester.makepyfile(test_status=STATUS.format(cassette=str(cassette)))
    top = "[tool.baton]\nmiss_status = 410\n"
    section = "[tool.baton.pytest]\nallow_misses = true\n"
    status = "miss_status = 404\n"
    ini = "[tool.pytest.ini_options]\nbaton_miss_status = 418\n"

    def run(pyproject: str, expected: int) -> pytest.RunResult:
        pytester.makefile(".toml", pyproject=pyproject)
        monkeypatch.setenv("EXPECTED", str(expected))
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)

    # allow_misses from [tool.baton.pytest]; the marker's allow_misses=False beats it.
    run(top + section, 410).assert_outcomes(passed=3, failed=1)
    run(top + section + status, 404).assert_outcomes(passed=3, failed=1)
    with_ini = run(top + section + status + ini, 418)
    with_ini.assert_outcomes(passed=3, failed=1)
    with_ini.stdout.fnmatch_lines(["*_ test_allow_misses_marked_false _*"])
    assert "configfile: pyproject.toml" in with_ini.stdout.str()
    assert "baton: configuration" in with_ini.stdout.str()


def test_the_command_line_beats_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cli="""
import pytest

@pytest.mark.baton(record_mode="once", upstream="http://127.0.0.1:9")
def test_wants_to_record(baton_replay):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "--baton-record-mode", "none", "-p", "no:cacheprovider", timeout=120
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_wants_to_record.cassette: no such cassette*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            'recrod_mode="once"',
            "ERROR: baton: test_bad.py::test_bad: @pytest.mark.baton: unknown keyword "
            "'recrod_mode' (did you mean 'record_mode'?); keywords: allow_hosts, *",
        ),
        (
            'allow_misses="yes"',
            "ERROR: baton: test_bad.py::test_bad: @pytest.mark.baton: allow_misses='yes': "
            "expected True or False, got 'yes'",
        ),
        (
            'record_mode="onse"',
            "ERROR: baton: test_bad.py::test_bad: @pytest.mark.baton: record_mode='onse': "
            "'onse' is not one of none, once, new_episodes, all (did you mean 'once'?)",
        ),
        (
            'match_on="method,pth"',
            "ERROR: *match_on='method,pth': unknown matcher 'pth' (did you mean 'path'?)*",
        ),
        ("miss_status=99", "ERROR: *miss_status=99: expected an HTTP status 100-599, got 99"),
        ("42", "ERROR: *@pytest.mark.baton: cassettes are paths, got 42"),
        (
            'upstream="127.0.0.1:8000"',
            "ERROR: *upstream='127.0.0.1:8000': expected the service's URL like "
            "'http://host:port'*",
        ),
        ('allow_hosts=["10.0.0.0/33"]', "ERROR: *allow_hosts=*'10.0.0.0/33' is not a network*"),
    ],
)
def test_a_bad_marker_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
import pytest

@pytest.mark.baton({marker})
def test_bad(baton_replay):
    pass

def test_unrelated():
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        (
            {"pyproject": '[tool.baton.pytest]\nrecord_mode = "onse"\n'},
            (),
            "ERROR: baton: pyproject.toml [[]tool.baton.pytest[]]: record_mode = 'onse': not one "
            "of none, once, new_episodes, all (did you mean 'once'?)",
        ),
        (
            {"pyproject": "[tool.baton.pytest]\nblock_netwrok = true\n"},
            (),
            "ERROR: baton: pyproject.toml [[]tool.baton.pytest[]]: unknown key 'block_netwrok' "
            "(did you mean 'block_network'?)*",
        ),
        (
            {"pyproject": '[tool.pytest.ini_options]\nbaton_on_exhausted = "strikt"\n'},
            (),
            "ERROR: baton: ini option baton_on_exhausted = 'strikt': 'strikt' is not one of "
            "repeat-last, strict (did you mean 'strict'?)",
        ),
        (
            {"pyproject": '[tool.pytest.ini_options]\nbaton_miss_status = "lots"\n'},
            (),
            "ERROR: baton: ini option baton_miss_status = 'lots': expected an HTTP status*",
        ),
        ({}, ("--allowed-hosts", "a,,b"), "ERROR: baton: --allowed-hosts: *empty host name*"),
    ],
)
def test_bad_configuration_is_a_usage_error(
    pytester: pytest.Pytester, files: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    if files:
        pytester.makefile(".toml", **files)
    pytester.makepyfile(test_any="def test_any():\n    pass\n")
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


# -- the precedence alone ------------------------------------------------------------------------


def test_resolve_applies_the_precedence_and_says_where_each_value_came_from() -> None:
    settings = TestSettings.resolve(
        options={"record_mode": "all", "allow_hosts": ("cli.example",)},
        marker={"record_mode": "once", "miss_status": 503, "allow_hosts": ["marker.example"]},
        ini={"miss_status": 418, "on_exhausted": "strict", "match_headers": ("X-Ini",)},
        configured={
            "on_exhausted": ("repeat-last", "baton.toml [pytest]"),
            "match_on": (("method", "path"), "baton.toml [pytest]"),
            "allow_hosts": (("config.example",), "baton.toml [pytest]"),
        },
    )
    assert settings.values["record_mode"] == "all"
    assert settings.sources["record_mode"] == "the command line"
    assert settings.values["miss_status"] == 503
    assert settings.sources["miss_status"] == "@pytest.mark.baton"
    assert settings.values["on_exhausted"] == "strict"
    assert settings.sources["on_exhausted"] == "ini option baton_on_exhausted"
    assert settings.replay_options.match_on == ("method", "path")
    assert settings.replay_options.match_headers == ("X-Ini",)
    assert settings.sources["allow_misses"] == "default" and settings.allow_misses is False
    # Allow-lists add up.
    assert settings.allow_hosts == ("cli.example", "marker.example", "config.example")


def test_check_marker_accepts_the_documented_signature() -> None:
    check_marker(
        ("a.cassette", Path("b.cassette")),
        {
            "record_mode": None,
            "allow_misses": False,
            "match_on": None,
            "match_headers": (),
            "ignore_query": ["ts"],
            "ignore_fields": "$.id",
            "on_exhausted": "repeat-last",
            "upstream": None,
            "block_network": True,
            "allow_hosts": "api.example.com,10.0.0.0/8",
            "fail_on_unused": True,
            "miss_status": 404,
            "match_secrets": True,
        },
    )
