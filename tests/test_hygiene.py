"""Cassette hygiene: the run log, prune, dedupe, expire, --fail-on-unused, stable re-recording."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from baton.cassettes import read_cassette
from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.writer import CassetteWriter
from tests.processes import Upstream, run_baton, start_baton, start_upstream

NOW = time.time()


def _interaction(
    number: int, path: str, body: bytes, *, age_days: float = 0, stored: bool = False
) -> Interaction:
    request = Request("GET", "http", "api", 80, path)
    response = Response(200, "OK", headers=(("Content-Type", "text/plain"),), body=body)
    return Interaction(f"id-{number}", request, response, NOW - age_days * 86400, 1.0)


def _write(path: Path, interactions: list[Interaction]) -> Path:
    with CassetteWriter(path, redactor=None) as writer:
        for interaction in interactions:
            writer.append(interaction)
    return path


def _paths(path: Path) -> list[tuple[str, bytes | None]]:
    return [(i.request.path, i.response.body if i.response else None) for i in read_cassette(path)]


def test_dedupe_drops_trailing_repeats_keeps_a_poll_and_a_backup(tmp_path: Path) -> None:
    cassette = _write(
        tmp_path / "api.cassette",
        [
            _interaction(0, "/poll", b"pending"),
            _interaction(1, "/poll", b"pending"),
            _interaction(2, "/poll", b"done"),
            _interaction(3, "/health", b"ok"),
            _interaction(4, "/health", b"ok"),
            _interaction(5, "/health", b"ok"),
        ],
    )
    original = cassette.read_bytes()
    result = run_baton(["dedupe", str(cassette)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "  - GET http://api/health -> 200",
        "  - GET http://api/health -> 200",
        f"{cassette}: removed 2 interactions (repeated), kept 4; the original is at {cassette}.bak",
    ]
    assert _paths(cassette) == [
        ("/poll", b"pending"),
        ("/poll", b"pending"),
        ("/poll", b"done"),
        ("/health", b"ok"),
    ]
    assert (tmp_path / "api.cassette.bak").read_bytes() == original
    again = run_baton(["dedupe", str(cassette), "-o", str(tmp_path / "out.cassette")])
    assert (
        again.stdout.strip()
        == f"{tmp_path / 'out.cassette'}: nothing repeated (4 interactions kept)"
    )


def test_expire_removes_old_interactions_into_another_file(tmp_path: Path) -> None:
    cassette = _write(
        tmp_path / "api.cassette",
        [
            _interaction(0, "/old", b"a", age_days=120),
            _interaction(1, "/recent", b"b", age_days=10),
        ],
    )
    out = tmp_path / "fresh.cassette"
    result = run_baton(["expire", str(cassette), "--older-than", "90d", "-o", str(out)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"{out}: removed 1 interaction (expired), kept 1"
    assert _paths(out) == [("/recent", b"b")]
    assert len(_paths(cassette)) == 2  # -o leaves the original alone
    bad = run_baton(["expire", str(cassette), "--older-than", "soon"])
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "baton: error: older-than 'soon': give an age such as 90d, 12h or 2w"
    )


def test_a_stored_body_streams_across_a_rewrite(tmp_path: Path) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    source = tmp_path / "big.cassette"
    with CassetteWriter(source, redactor=None) as writer:
        writer.append(_interaction(0, "/old", b"x", age_days=200))
        writer.append(_interaction(1, "/big", big))
    result = run_baton(["expire", str(source), "--older-than", "1w"])
    assert result.returncode == 0, result.stderr
    kept = read_cassette(source)
    assert [i.request.path for i in kept] == ["/big"]
    assert kept[0].response is not None and kept[0].response.body == big


def test_a_cassette_being_recorded_is_refused(tmp_path: Path) -> None:
    cassette = _write(tmp_path / "busy.cassette", [_interaction(0, "/a", b"a")])
    with CassetteWriter(cassette, redactor=None):
        result = run_baton(["dedupe", str(cassette)])
    assert result.returncode == 2
    assert "a recorder is still writing to it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def shop() -> Iterator[Upstream]:
    upstream = start_upstream("fidelity-shop")
    yield upstream
    upstream.stop()


def _record(shop: Upstream, cassette: Path, confdir: Path, paths: list[str]) -> None:
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--mode",
            f"reverse:{shop.url}",
            "--listen-port",
            "0",
            "--set",
            f"confdir={confdir}",
        ]
    )
    try:
        with httpx.Client(base_url=recorder.url, trust_env=False) as client:
            for path in paths:
                client.get(path)
    finally:
        assert recorder.stop() == 0


def test_run_log_then_prune_removes_what_no_test_asked_for(shop: Upstream, tmp_path: Path) -> None:
    cassette = tmp_path / "shop.cassette"
    _record(shop, cassette, tmp_path / "mitm", ["/products", "/cart", "/orders"])
    run_log = tmp_path / "run.json"
    server = start_baton(
        [
            "replay",
            str(cassette),
            "--listen-port",
            "0",
            "--run-log",
            str(run_log),
            "--fail-on-unused",
        ]
    )
    assert httpx.get(server.url + "/products", trust_env=False).status_code == 200
    assert server.stop() == 1  # --fail-on-unused: two recorded requests were never made
    assert "baton: 2 recorded interactions unused (--fail-on-unused):" in server.output
    assert f"GET {shop.url}/cart -> 401" in server.output
    log = json.loads(run_log.read_text())
    assert log["cassettes"] == [str(cassette)] and log["hits"] == 1
    result = run_baton(["prune", str(cassette), "--unused-since", str(run_log)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"{cassette}: removed 2 interactions (unused), kept 1; the original is at {cassette}.bak"
    )
    assert [i.request.path for i in read_cassette(cassette)] == ["/products"]
    other = _write(tmp_path / "other.cassette", [_interaction(0, "/a", b"a")])
    refused = run_baton(["prune", str(other), "--unused-since", str(run_log)])
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"baton: error: {other}: not among the cassettes")
    assert len(_paths(other)) == 1


def test_recording_the_same_conversation_twice_reads_the_same_through_textconv(
    shop: Upstream, tmp_path: Path
) -> None:
    texts = []
    for run in ("first", "second"):
        cassette = tmp_path / f"{run}.cassette"
        _record(shop, cassette, tmp_path / "mitm", ["/products", "/cart", "/products"])
        result = run_baton(["textconv", str(cassette)])
        assert result.returncode == 0, result.stderr
        texts.append(result.stdout)
    assert texts[0] == texts[1]
    assert "GET " in texts[0] and "date: [varies with each recording]" in texts[0]
