"""The newcomer's list for ``baton record`` and ``baton replay``: each trap a first trial hit.

Every test runs the real ``baton`` command as a subprocess against real
sockets and reads what a person would read: exit codes, the lines on stderr,
the files left behind, the bytes and timing a client gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.processes import run_baton


def assert_one_line_error(result: object, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)  # type: ignore[attr-defined]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("baton: error: "), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def empty_cassette(tmp_path: Path) -> Path:
    from baton.cassettes import CassetteWriter

    path = tmp_path / "empty.cassette"
    CassetteWriter(path, redactor=None).close()
    return path


# --- 1. a --mode URL without a scheme, or an unknown mode, is refused at start ------------------


@pytest.mark.parametrize(
    ("mode", "fix"),
    [
        ("reverse:127.0.0.1:9", "--mode reverse:http://127.0.0.1:9"),
        ("upstream:127.0.0.1:3128", "--mode upstream:http://127.0.0.1:3128"),
        ("reverse:localhost:9@8081", "--mode reverse:http://localhost:9@8081"),
    ],
)
def test_record_refuses_a_mode_url_without_a_scheme_and_names_the_fix(
    tmp_path: Path, mode: str, fix: str
) -> None:
    cassette = tmp_path / "never.cassette"
    result = run_baton(["record", "-o", str(cassette), "--mode", mode, "--listen-port", "0"])
    assert_one_line_error(result, f"--mode {mode}", "no scheme", fix)
    assert not cassette.exists()


@pytest.mark.parametrize("extra", [[], ["--mode", "regular"]], ids=["first", "second"])
def test_replay_refuses_a_mode_url_without_a_scheme_and_names_the_fix(
    empty_cassette: Path, extra: list[str]
) -> None:
    before = empty_cassette.read_bytes()
    mode = ["--mode", "reverse:127.0.0.1:9"]
    result = run_baton(["replay", str(empty_cassette), *extra, *mode, "--listen-port", "0"])
    assert_one_line_error(result, "no scheme", "--mode reverse:http://127.0.0.1:9")
    assert empty_cassette.read_bytes() == before


@pytest.mark.parametrize("command", ["record", "replay"])
def test_an_unknown_mode_is_refused_with_the_modes_there_are(
    empty_cassette: Path, tmp_path: Path, command: str
) -> None:
    target = ["-o", str(tmp_path / "x.cassette")] if command == "record" else [str(empty_cassette)]
    result = run_baton([command, *target, "--mode", "revrse:http://127.0.0.1:9"])
    assert_one_line_error(result, "unknown mode", "did you mean reverse?", "regular")
    assert not (tmp_path / "x.cassette").exists()


def test_record_refuses_reverse_without_a_url_and_a_scheme_mitmproxy_does_not_know(
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "never.cassette"
    bare = run_baton(["record", "-o", str(cassette), "--mode", "reverse"])
    assert_one_line_error(bare, "--mode reverse needs the URL", "reverse:http://")
    ftp = run_baton(["record", "-o", str(cassette), "--mode", "reverse:ftp://127.0.0.1:21"])
    assert_one_line_error(ftp, "ftp", "reverse:https://HOST:PORT")
    assert not cassette.exists()
