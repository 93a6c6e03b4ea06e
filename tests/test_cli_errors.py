"""Bad input to the CLI: one line naming the thing and what to do, exit code 2, nothing lost."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from baton.cassettes import CassetteWriter
from baton.cassettes.codec import make_header, pack
from tests.processes import run_baton
from tests.test_cassette_format import sample


def assert_one_line_error(result: object, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)  # type: ignore[attr-defined]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(sample(1))
        writer.append(sample(2))
    return path


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty file"),
        (os.urandom(2048), "not a baton cassette"),
        (b"\x85\xa6form", "header is incomplete"),
        (pack(make_header() | {"version": 9}), "upgrade baton"),
        (pack(make_header()) + b"\xc1\xc1\xc1garbage", "not valid msgpack"),
        (pack(make_header()) + pack({"id": 1}), "field"),
    ],
    ids=["empty", "random", "truncated-header", "newer-version", "corrupt", "wrong-shape"],
)
def test_show_refuses_bad_files_in_one_line(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad.cassette"
    path.write_bytes(content)
    result = run_baton(["show", str(path)])
    assert_one_line_error(result, str(path), fragment)
    assert path.read_bytes() == content


def test_show_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run_baton(["show", str(tmp_path / "nope.cassette")]), "no such file")


def test_show_prints_a_torn_cassette_and_warns(good: Path) -> None:
    with open(good, "ab") as handle:
        handle.write(pack({"id": "x"})[:3])
    result = run_baton(["show", str(good), "--no-headers"])
    assert result.returncode == 0
    assert "#1 GET http://example.test/items/1?page=1" in result.stdout
    assert "#2 GET" in result.stdout
    assert "torn object at byte" in result.stderr and "baton repair" in result.stderr


def test_show_json_lines_use_the_format_field_names(good: Path) -> None:
    import json

    lines = run_baton(["show", str(good), "--format", "json"]).stdout.splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 2
    assert first["request"]["path"] == "/items/1"
    assert first["request"]["query"] == [["page", "1"]]
    assert first["response"]["body"] == '{"n": 1}'


def test_record_refuses_a_torn_cassette_and_leaves_it_alone(good: Path) -> None:
    with open(good, "ab") as handle:
        handle.write(b"\x87\xa2id")
    before = good.read_bytes()
    result = run_baton(["record", "-o", str(good), "--listen-port", "0"])
    assert_one_line_error(result, "torn object", "baton repair")
    assert good.read_bytes() == before


def test_record_refuses_a_file_that_is_not_a_cassette(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n")
    assert_one_line_error(
        run_baton(["record", "-o", str(path), "--listen-port", "0"]), "not a baton cassette"
    )
    assert path.read_text() == "my notes\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--mode", "bogus"], "mode"),
        (["--set", "no_such_option=1"], "no_such_option"),
        (["--redact-regex", "(unclosed"], "does not compile"),
        (["--redact-json-path", "$.a[b"], "JSON path"),
    ],
    ids=["mode", "set", "regex", "json-path"],
)
def test_record_refuses_bad_settings(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run_baton(["record", "-o", str(tmp_path / "x.cassette"), "--listen-port", "0", *args])
    assert_one_line_error(result, fragment)


def test_record_refuses_a_port_in_use(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        result = run_baton(
            ["record", "-o", str(tmp_path / "x.cassette"), "--listen-port", str(port)]
        )
        assert_one_line_error(result, str(port))
    finally:
        busy.close()


def test_record_into_a_missing_directory(tmp_path: Path) -> None:
    result = run_baton(
        ["record", "-o", str(tmp_path / "no" / "such" / "x.cassette"), "--listen-port", "0"]
    )
    assert_one_line_error(result, "cannot open for writing")


def test_repair_refuses_what_is_not_a_cassette(tmp_path: Path) -> None:
    path = tmp_path / "x.cassette"
    path.write_bytes(b"hello")
    assert_one_line_error(run_baton(["repair", str(path)]), "not a baton cassette")
    assert path.read_bytes() == b"hello"


def test_a_wrong_flag_is_a_usage_error() -> None:
    result = run_baton(["show", "--bogus"])
    assert result.returncode == 2
    assert "No such option" in result.stderr
