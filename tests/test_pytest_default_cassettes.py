"""``@pytest.mark.baton`` alone: each test gets cassettes/<module>/<test>.cassette, recorded once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.cassettes import read_cassette
from baton.proxy.pytest_settings import default_cassette, safe_file_name
from tests.processes import Upstream, start_upstream

PROJECT = """
import httpx
import pytest

UPSTREAM = {upstream!r}


@pytest.mark.baton(upstream=UPSTREAM)
def test_plain(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=plain").json()["query"] == {{"item": "plain"}}


class TestCart:
    @pytest.mark.baton(upstream=UPSTREAM)
    def test_in_a_class(self, baton_replay):
        assert httpx.get(baton_replay.url + "/echo?item=class").json()["query"] == {{"item": "class"}}


@pytest.mark.baton(upstream=UPSTREAM)
@pytest.mark.parametrize("item", ["simple", "a/b", "../up", "x:y*?", "with space", "caf\\u00e9"])
def test_parametrized(baton_replay, item):
    answer = httpx.get(baton_replay.url + "/echo", params={{"item": item}}).json()
    assert answer["query"] == {{"item": item}}
"""


def _cassettes(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.cassette"))}


def test_default_cassettes_are_recorded_once_then_replayed(pytester: pytest.Pytester) -> None:
    upstream = start_upstream("echo")
    pytester.makepyfile(test_shop=PROJECT.format(upstream=upstream.url))
    try:
        first = pytester.runpytest_subprocess(
            "--baton-record-mode=once", "-p", "no:cacheprovider", timeout=240
        )
    finally:
        upstream.stop()
    first.assert_outcomes(passed=8)

    folder = pytester.path / "cassettes" / "test_shop"
    names = sorted(_cassettes(folder))
    assert "TestCart.test_in_a_class.cassette" in names
    assert "test_plain.cassette" in names
    assert "test_parametrized[simple].cassette" in names
    # Unsafe ids become safe names, each with a hash of the original, so none collide.
    unsafe = [n for n in names if n.startswith("test_parametrized[") and "simple" not in n]
    assert len(unsafe) == 5
    for name in unsafe:
        assert re.fullmatch(r"test_parametrized\[[A-Za-z0-9._=,+@-]+\]-[0-9a-f]{8}\.cassette", name)
    assert all(p.parent == folder for p in _cassettes(folder).values())  # "../up" stayed inside
    queries = {
        name: [dict(i.request.query)["item"] for i in read_cassette(path)]
        for name, path in _cassettes(folder).items()
    }
    assert queries["test_plain.cassette"] == ["plain"]
    assert queries["TestCart.test_in_a_class.cassette"] == ["class"]
    assert sorted(q[0] for n, q in queries.items() if n.startswith("test_parametrized")) == sorted(
        ["simple", "a/b", "../up", "x:y*?", "with space", "café"]
    )

    # The upstream is gone: the same tests pass from their cassettes, in none and in once.
    replay = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)
    replay.assert_outcomes(passed=8)
    again = pytester.runpytest_subprocess(
        "--baton-record-mode=once", "-p", "no:cacheprovider", timeout=240
    )
    again.assert_outcomes(passed=8)
    assert sorted(_cassettes(folder)) == names


def test_a_missing_default_cassette_says_how_to_record_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_new="""
import pytest

@pytest.mark.baton
def test_new(baton_replay):
    pass

def test_fixture_alone(baton_replay):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(errors=2)
    expected = pytester.path / "cassettes" / "test_new" / "test_new.cassette"
    result.stdout.fnmatch_lines(
        [
            f"*baton: {expected}: no such cassette; record it with --baton-record-mode=once "
            "(and upstream='http://host:port' in the marker, the real service to record from)",
        ]
    )
    assert "test_fixture_alone.cassette: no such cassette" in "\n".join(result.outlines)
    assert not (pytester.path / "cassettes").exists()  # record mode none writes nothing


def test_recording_without_an_upstream_says_what_is_missing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_rec="""
import pytest

@pytest.mark.baton
def test_rec(baton_replay):
    baton_replay.url
"""
    )
    result = pytester.runpytest_subprocess(
        "--baton-record-mode=once", "-p", "no:cacheprovider", timeout=120
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*baton: recording *test_rec.cassette (record mode once) needs the real service's "
            "address: @pytest.mark.baton(upstream='http://host:port')"
        ]
    )


@pytest.fixture
def echo_service() -> Iterator[Upstream]:
    upstream = start_upstream("echo")
    yield upstream
    upstream.stop()


def test_the_cassette_folder_comes_from_the_ini_file_or_baton_s_configuration(
    pytester: pytest.Pytester, echo_service: Upstream
) -> None:
    pytester.mkpydir("tests")
    pytester.mkpydir("tests/api")
    (pytester.path / "tests" / "api" / "test_users.py").write_text(
        f"""
import httpx
import pytest

@pytest.mark.baton(upstream={echo_service.url!r})
def test_list(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?users=all").status_code == 200
"""
    )
    try:
        # baton's configuration: a folder relative to the configuration file.
        pytester.makefile(".toml", pyproject='[tool.baton]\ncassette_dir = "recorded"\n')
        from_config = pytester.runpytest_subprocess(
            "--baton-record-mode=once", "-p", "no:cacheprovider", timeout=240
        )
        # The ini option beats it.
        pytester.makefile(
            ".toml",
            pyproject='[tool.baton]\ncassette_dir = "recorded"\n'
            '[tool.pytest.ini_options]\nbaton_cassette_dir = "from-ini"\n',
        )
        from_ini = pytester.runpytest_subprocess(
            "--baton-record-mode=once", "-p", "no:cacheprovider", timeout=240
        )
    finally:
        echo_service.stop()
    from_config.assert_outcomes(passed=1)
    from_ini.assert_outcomes(passed=1)
    # A shared folder mirrors the test tree, so two test_users.py never share a file.
    assert list(_cassettes(pytester.path / "recorded")) == [
        "tests/api/test_users/test_list.cassette"
    ]
    assert list(_cassettes(pytester.path / "from-ini")) == [
        "tests/api/test_users/test_list.cassette"
    ]


# -- naming, alone ---------------------------------------------------------------------------


def test_safe_file_names() -> None:
    assert safe_file_name("test_x[1-a]") == "test_x[1-a]"
    assert safe_file_name("TestA.test_b[x=1,y=2]") == "TestA.test_b[x=1,y=2]"
    slash, colon = safe_file_name("t[a/b]"), safe_file_name("t[a:b]")
    assert slash.startswith("t[a-b]-") and colon.startswith("t[a-b]-") and slash != colon
    assert "/" not in safe_file_name("t[../../etc]")
    long = safe_file_name("t[" + "x" * 400 + "]")
    assert len(long) <= 150 and long != safe_file_name("t[" + "x" * 401 + "]")


def test_default_cassette_paths(tmp_path: Path) -> None:
    test_file = tmp_path / "tests" / "test_cart.py"
    assert default_cassette(test_file, "test_a", None, tmp_path) == (
        tmp_path / "tests" / "cassettes" / "test_cart" / "test_a.cassette"
    )
    shared = tmp_path / "cassettes"
    assert default_cassette(test_file, "TestC.test_a", shared, tmp_path) == (
        shared / "tests" / "test_cart" / "TestC.test_a.cassette"
    )
    elsewhere = Path("/somewhere/else/test_cart.py")
    assert default_cassette(elsewhere, "test_a", shared, tmp_path) == (
        shared / "test_cart" / "test_a.cassette"
    )
