"""One configuration for every command: found, validated whole, overridden by flags, shown."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from baton.cassettes import read_cassette
from tests.processes import Upstream, run_baton, start_baton, unused_port
from tests.test_cli_errors import assert_one_line_error


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_show(cwd: Path, *args: str) -> dict[str, dict[str, dict[str, object]]]:
    result = run_baton(["config", "show", "--format", "json", *args], cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_the_issue_example_a_misspelt_gate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.baton.diff]\nfail_on = "breakng"\n')
    result = run_baton(["diff", "a.cassette", "--target", "http://127.0.0.1:9"], cwd=tmp_path)
    assert_one_line_error(
        result, "pyproject.toml", "[tool.baton.diff]", "fail_on", "did you mean 'breaking'?"
    )


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "[replay]\nlisten_prot = 9000\n",
            ["[replay]", "unknown key 'listen_prot'", "listen_port"],
        ),
        ("[replya]\nlisten_port = 9000\n", ["unknown section [replya]", "did you mean 'replay'"]),
        ("[replay]\nlisten_port = '9000'\n", ["listen_port", "expected an integer"]),
        ("[replay]\nmiss_status = 700\n", ["miss_status = 700", "100<=x<=599"]),
        ("[replay]\non_exhausted = 'stict'\n", ["not one of repeat-last, strict", "'strict'"]),
        ("[replay]\nmatch_on = ['method', 'pth']\n", ["unknown matcher 'pth'", "'path'"]),
        ("[record]\noutput = '.'\n", ["output", "is a folder"]),
        ("listen_port = 9000\n", ["unknown key 'listen_port'", "command's section"]),
        ("[diff.endpoints.'GET /x']\nignor = ['body.a']\n", ["unknown key 'ignor'", "'ignore'"]),
        ("[replay\n", ["not valid TOML"]),
        ("[replay]\nmax_body_size = -5\n", ["max_body_size = -5", "is not a size"]),
    ],
    ids=[
        "typo",
        "section",
        "type",
        "range",
        "choice",
        "matcher",
        "folder",
        "not-shared",
        "endpoint",
        "toml",
        "size",
    ],
)
def test_baton_toml_is_validated_whole_before_any_command(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    write(tmp_path / "baton.toml", text)
    # `show` takes none of these keys: the whole file is still checked, once.
    result = run_baton(["show", "x.cassette"], cwd=tmp_path)
    assert_one_line_error(result, "baton.toml", *fragments)


def test_the_file_is_found_upward_and_baton_toml_wins_in_one_folder(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.baton.replay]\nlisten_port = 7001\n")
    nested = tmp_path / "services" / "cart"
    write(nested / "pyproject.toml", "[project]\nname = 'cart'\n")  # no [tool.baton]: skipped
    shown = config_show(nested, "replay")
    assert shown["file"] == str(tmp_path / "pyproject.toml")
    row = shown["sections"]["replay"]["listen_port"]
    assert row == {"value": 7001, "source": f"{tmp_path / 'pyproject.toml'} [tool.baton.replay]"}

    write(tmp_path / "baton.toml", "[replay]\nlisten_port = 7002\n")
    shown = config_show(nested, "replay")
    assert shown["sections"]["replay"]["listen_port"]["value"] == 7002

    write(nested / "baton.toml", "[replay]\nlisten_port = 7003\n")
    assert config_show(nested, "replay")["sections"]["replay"]["listen_port"]["value"] == 7003


def test_config_and_no_config_flags(tmp_path: Path) -> None:
    write(tmp_path / "baton.toml", "[replay]\nlisten_port = 7002\n")
    other = write(tmp_path / "elsewhere" / "team.toml", "[replay]\nmiss_status = 599\n")
    shown = config_show(tmp_path, "replay", "--config", str(other))
    assert shown["sections"]["replay"]["miss_status"]["value"] == 599
    assert shown["sections"]["replay"]["listen_port"] == {"value": 8080, "source": "default"}
    shown = config_show(tmp_path, "replay", "--no-config")
    assert shown["file"] is None
    missing = run_baton(["show", "x.cassette", "--config", str(tmp_path / "nope.toml")])
    assert_one_line_error(missing, "nope.toml", "no such configuration file")


def test_config_show_text_names_each_source(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        "[tool.baton]\nredact_header = [\"X-Team-Token\"]\n[tool.baton.record]\nfsync = 'every'\n",
    )
    result = run_baton(["config", "show", "record"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"# configuration: {tmp_path / 'pyproject.toml'}"
    assert any(
        line.startswith('fsync = "every"') and line.endswith("[tool.baton.record]")
        for line in lines
    ), lines
    assert any(
        line.startswith('redact_header = ["X-Team-Token"]') and line.endswith("[tool.baton]")
        for line in lines
    ), lines
    assert any(line.startswith("listen_port = 8080") and "# default" in line for line in lines)
    unknown = run_baton(["config", "show", "replya"], cwd=tmp_path)
    assert_one_line_error(unknown, "'replya'", "did you mean 'replay'")


def test_a_flag_overrides_the_file_which_overrides_the_default(tmp_path: Path) -> None:
    port = unused_port()
    write(tmp_path / "baton.toml", f"[record]\nlisten_port = {port}\noutput = 'out.cassette'\n")
    from_file = start_baton(["record"], cwd=tmp_path)
    try:
        assert from_file.port == port
    finally:
        assert from_file.stop() == 0
    from_flag = start_baton(["record", "--listen-port", "0"], cwd=tmp_path)
    try:
        assert from_flag.port not in (port, 0)
    finally:
        assert from_flag.stop() == 0


def test_shared_redaction_from_the_top_reaches_record_and_paths_are_the_files(
    tmp_path: Path, echo: Upstream
) -> None:
    project = tmp_path / "project"
    write(
        project / "pyproject.toml",
        '[tool.baton]\nredact_header = ["X-Team-Token"]\n'
        f"[tool.baton.record]\noutput = 'cassettes/echo.cassette'\n"
        f"mode = ['reverse:{echo.url}']\nlisten_port = 0\n",
    )
    workdir = project / "src" / "deep"  # run from below: paths stay relative to the file
    workdir.mkdir(parents=True)
    (project / "cassettes").mkdir()
    recorder = start_baton(["record"], cwd=workdir)
    try:
        answer = httpx.get(f"{recorder.url}/echo", headers={"X-Team-Token": "tok-4242-secret"})
        assert answer.status_code == 200
    finally:
        assert recorder.stop() == 0
    cassette = project / "cassettes" / "echo.cassette"
    (interaction,) = read_cassette(cassette)
    assert b"tok-4242-secret" not in cassette.read_bytes()
    value = dict((k.lower(), v) for k, v in interaction.request.headers)["x-team-token"]
    assert value.startswith("REDACTED-")


def test_help_shows_even_with_a_broken_file(tmp_path: Path) -> None:
    write(tmp_path / "baton.toml", "[replay]\nlisten_prot = 1\n")
    result = run_baton(["replay", "--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert "--listen-port" in result.stdout and "--config" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["show", "--bogus"],
        ["replay", "x.cassette", "--miss-status", "700"],
        ["replay", "x.cassette", "--record-mode", "sometimes"],
        ["diff", "x.cassette", "--concurrency", "many"],
        ["diff", "x.cassette"],
        ["record"],
        ["show"],
        ["no-such-command"],
        ["import", "x.har", "-o", "y.cassette", "--from", "pcap"],
        ["export", "x.cassette", "--format", "xml"],
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_every_bad_flag_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run_baton(args, cwd=tmp_path)
    assert_one_line_error(result, "error:")
    assert "--help" in result.stderr  # where to look next


def test_match_options_from_the_file_reach_the_replay_server(tmp_path: Path) -> None:
    from baton.cassettes import CassetteWriter
    from tests.test_cassette_format import sample

    cassette = tmp_path / "items.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(sample(1))  # GET /items/1?page=1
    for text, expected in [("", 502), ("[replay]\nmatch_on = ['method', 'path']\n", 200)]:
        write(tmp_path / "baton.toml", text)
        server = start_baton(["replay", str(cassette), "--listen-port", "0"], cwd=tmp_path)
        try:
            answer = httpx.get(f"{server.url}/items/1?page=2")
            assert answer.status_code == expected, (text, answer.text)
        finally:
            server.stop()


def test_sizes_and_durations_may_be_plain_numbers_in_the_file(tmp_path: Path) -> None:
    """``max_body_size = 100`` means 100 bytes, as ``--max-body-size 100`` does on the command line."""
    from baton.cassettes import CassetteWriter
    from tests.test_cassette_format import sample

    cassette = tmp_path / "items.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(sample(1))
    write(tmp_path / "baton.toml", "[replay]\nmax_body_size = 100\nheader_timeout = 5\n")
    shown = config_show(tmp_path, "replay")
    assert shown["sections"]["replay"]["max_body_size"]["value"] == "100"
    assert shown["sections"]["replay"]["header_timeout"]["value"] == 5
    server = start_baton(["replay", str(cassette), "--listen-port", "0"], cwd=tmp_path)
    try:
        assert httpx.post(f"{server.url}/items/1", content=b"x" * 101).status_code == 413
        assert httpx.post(f"{server.url}/items/1", content=b"x" * 100).status_code != 413
    finally:
        server.stop()
