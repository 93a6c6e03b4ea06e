"""``baton show`` filters, ``--summary`` and colour; ``baton textconv`` as git's diff driver.

Cassettes are recorded for real: ``baton record`` in front of httpbin, with
httpx as the client. Colour is checked under a pseudo-terminal, its absence
in a pipe.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from baton.cassettes import read_cassette
from tests.processes import BATON, BatonProcess, Upstream, run_baton, unused_port

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def recorded(
    httpbin: Upstream, tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path
) -> Path:
    """Six exchanges through a regular proxy: two hosts, 200/404/503, a POST, a binary body, a failure."""
    from tests.processes import start_baton

    cassette = tmp_path_factory.mktemp("show") / "traffic.cassette"
    recorder = start_baton(
        ["record", "-o", str(cassette), "--listen-port", "0", "--set", f"confdir={mitm_confdir}"]
    )
    other = httpbin.url.replace("127.0.0.1", "localhost")
    with httpx.Client(proxy=recorder.url, trust_env=False, timeout=30) as client:
        client.get(httpbin.url + "/get")
        client.get(other + "/status/404")
        client.post(httpbin.url + "/post", json={"a": 1})
        client.get(other + "/status/503")
        client.get(httpbin.url + "/bytes/2048", params={"seed": "1"})
        client.get(f"http://127.0.0.1:{unused_port()}/down")
    assert recorder.stop() == 0
    assert len(read_cassette(cassette)) == 6
    return cassette


def show(*args: str) -> subprocess.CompletedProcess[str]:
    return run_baton(["show", *args])


def numbers(text: str) -> list[int]:
    """The interaction numbers a text or summary view printed, in order."""
    return [int(n) for n in re.findall(r"(?m)^#(\d+)", text)]


def test_filters_by_host_path_and_status_keep_the_cassette_numbers(recorded: Path) -> None:
    assert numbers(show(str(recorded), "--host", "localhost").stdout) == [2, 4]
    assert numbers(show(str(recorded), "--host", "LOCALHOST:*").stdout) == [2, 4]
    assert numbers(show(str(recorded), "--path", "/status/*").stdout) == [2, 4]
    assert numbers(show(str(recorded), "--path", "/get", "--path", "/post").stdout) == [1, 3]
    assert numbers(show(str(recorded), "--status", "4xx", "--status", "5XX").stdout) == [2, 4]
    assert numbers(show(str(recorded), "--status", "200").stdout) == [1, 3, 5]
    assert numbers(show(str(recorded), "--status", "error").stdout) == [6]
    # Different kinds must all match.
    assert numbers(show(str(recorded), "--host", "127.0.0.1", "--status", "2xx").stdout) == [
        1,
        3,
        5,
    ]
    # JSON lines are filtered the same way.
    lines = show(str(recorded), "--format", "json", "--status", "503").stdout.splitlines()
    assert len(lines) == 1 and '"status": 503' in lines[0]


def test_a_filter_matching_nothing_says_so_on_stderr(recorded: Path) -> None:
    result = show(str(recorded), "--host", "*.example")
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr.strip() == (
        f"baton: no interaction of {recorded} matches the filters (6 read)"
    )


@pytest.mark.parametrize("bad", ["99x", "6xx", "20", "ok"])
def test_a_bad_status_filter_is_one_line_and_exit_2(recorded: Path, bad: str) -> None:
    result = show(str(recorded), "--status", bad)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert f"--status '{bad}'" in line and "4xx" in line


def test_summary_is_one_line_per_interaction_then_totals(recorded: Path) -> None:
    interactions = read_cassette(recorded)
    result = show(str(recorded), "--summary")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 6 + 2 and lines[6] == ""
    for number, (line, interaction) in enumerate(zip(lines, interactions, strict=False), 1):
        assert line.startswith(f"#{number} ") and interaction.request.url in line
        assert re.search(
            rf"{interaction.request.method}\s+{re.escape(interaction.request.url)}", line
        )
        duration = interaction.duration_ms
        assert duration is not None and line.endswith(f"  {duration:.0f} ms")
    assert re.search(r"  200\s+0 B -> 2\.0 KiB  ", lines[4])  # /bytes/2048
    assert re.search(r"  200\s+7 B -> \d+ B  ", lines[2])  # the POST sent {"a":1}
    assert re.search(r"  ERROR\s+0 B -> -  ", lines[5])
    received = sum(len(i.response.body or b"") for i in interactions if i.response)
    total_ms = sum(i.duration_ms or 0 for i in interactions)
    assert lines[7] == (
        f"6 interactions: 7 B sent, {received / 1024:.1f} KiB received, {total_ms:.0f} ms in all; "
        "200 x3, 404 x1, 503 x1, error x1"
    )

    filtered = show(str(recorded), "--summary", "--status", "5xx").stdout.splitlines()
    assert numbers("\n".join(filtered)) == [4]
    assert filtered[-1].startswith("1 interaction (of 6 read): 0 B sent, 0 B received, ")
    assert filtered[-1].endswith("; 503 x1")


def test_summary_and_json_do_not_mix(recorded: Path) -> None:
    result = show(str(recorded), "--summary", "--format", "json")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_a_pipe_never_gets_colour(recorded: Path) -> None:
    for args in ([], ["--summary"]):
        result = show(str(recorded), *args)
        assert result.returncode == 0
        assert "\x1b" not in result.stdout


def run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run ``baton ARGS`` with its stdout on a pseudo-terminal; return what it wrote there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*BATON, *args], stdout=follower, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def test_a_terminal_gets_method_and_status_in_colour(recorded: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm-256color"}
    summary = run_in_terminal(["show", str(recorded), "--summary"], env)
    lines = summary.splitlines()
    assert "\x1b[1mGET    \x1b[0m" in lines[0]
    assert "\x1b[32m200  \x1b[0m" in lines[0]  # 2xx green
    assert "\x1b[33m404  \x1b[0m" in lines[1]  # 4xx yellow
    assert "\x1b[31m503  \x1b[0m" in lines[3]  # 5xx red
    assert "\x1b[31mERROR\x1b[0m" in lines[5]
    # Without the escapes, the terminal shows exactly what a pipe gets.
    assert ANSI.sub("", summary) == show(str(recorded), "--summary").stdout

    blocks = run_in_terminal(["show", str(recorded), "--no-headers"], env)
    assert "#1 \x1b[1mGET\x1b[0m http://127.0.0.1:" in blocks
    assert "  -> \x1b[33m404" in blocks
    assert ANSI.sub("", blocks) == show(str(recorded), "--no-headers").stdout


def test_no_color_turns_colour_off_on_a_terminal(recorded: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm-256color"}
    assert "\x1b" not in run_in_terminal(["show", str(recorded), "--summary"], env)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "dumb"}
    assert "\x1b" not in run_in_terminal(["show", str(recorded)], env)


# -- textconv in a real git repository ------------------------------------------------


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def record_into(
    baton: Callable[..., BatonProcess], upstream: Upstream, cassette: Path, value: int
) -> None:
    """Record the same four exchanges again, over the old file; ``value`` is the POSTed body."""
    cassette.unlink(missing_ok=True)
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{upstream.url}", "--listen-port", "0"
    )
    with httpx.Client(base_url=recorder.url, trust_env=False, timeout=30) as client:
        client.get("/get", params={"q": "1"})
        client.post("/post", json={"n": value}, headers={"Authorization": "Bearer tok-123456"})
        client.get("/status/404")
        client.get("/gzip")
    assert recorder.stop() == 0


def test_git_diff_through_textconv_shows_only_content_changes(
    baton: Callable[..., BatonProcess], httpbin: Upstream, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "tests@example.invalid")
    git(repo, "config", "user.name", "baton tests")
    (repo / ".gitattributes").write_text("*.cassette diff=baton\n")
    textconv = " ".join([*(f"'{part}'" for part in BATON), "textconv"])
    git(repo, "config", "diff.baton.textconv", textconv)
    cassette = repo / "api.cassette"

    record_into(baton, httpbin, cassette, 1)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first recording")
    first = read_cassette(cassette)

    time.sleep(1.1)  # so that the servers' Date headers differ between the two recordings
    record_into(baton, httpbin, cassette, 1)
    second = read_cassette(cassette)
    # The files differ: new ids, times, durations and Date headers ...
    assert git(repo, "diff", "--no-textconv", "--stat").strip() != ""
    assert [i.id for i in first] != [i.id for i in second]
    for old, new in zip(first, second, strict=True):
        assert old.response is not None and new.response is not None
        assert old.response.header("date") != new.response.header("date")
    # ... but through textconv nothing changed.
    assert git(repo, "diff") == ""

    git(repo, "commit", "-q", "-am", "re-recorded, same content")
    record_into(baton, httpbin, cassette, 2)
    changed = [
        line
        for line in git(repo, "diff").splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    # The POSTed body, and httpbin's echo of it (data and json), nothing else.
    assert changed == [
        '-    "n": 1',
        '+    "n": 2',
        '-    "data": "{\\"n\\":1}",',
        '+    "data": "{\\"n\\":2}",',
        '-      "n": 1',
        '+      "n": 2',
    ]


def test_textconv_leaves_out_what_changes_with_every_recording(recorded: Path) -> None:
    text = run_baton(["textconv", str(recorded)]).stdout
    assert text.startswith("# baton cassette, format version 3\n")
    for interaction in read_cassette(recorded):
        assert interaction.id not in text
        assert f"#{interaction.request.url}" not in text
        assert f"{interaction.duration_ms:.0f} ms" not in text
        if interaction.response is not None:
            assert f"date: {interaction.response.header('date')}" not in text
    assert text.count("< date: [varies with each recording]") == 5
    assert str(read_cassette(recorded)[0].recorded_at)[:6] not in text
