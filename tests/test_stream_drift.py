"""Streams in baton diff and baton show: events compared one by one, stored bodies by digest."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from baton.cassettes.model import Chunk, Interaction, Request, Response
from baton.cassettes.sse import parse_events
from baton.cassettes.writer import CassetteWriter
from baton.replay.comparison import DriftClass, NoiseRules, compare_responses
from tests.processes import BatonProcess, Upstream, run_baton, start_upstream
from tests.stream_apps import pattern_sha256

pytestmark = pytest.mark.slow

MiB = 1 << 20


@pytest.fixture(scope="module")
def streams() -> Iterator[Upstream]:
    upstream = start_upstream("streams")
    yield upstream
    upstream.stop()


@pytest.fixture
def drifted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """The same service as a new build whose events and downloads drifted."""
    monkeypatch.setenv("BATON_TEST_STREAMS_VARIANT", "2")
    upstream = start_upstream("streams")
    yield upstream
    upstream.stop()


def record(
    baton: Callable[..., BatonProcess], cassette: Path, upstream: Upstream, *paths: str
) -> None:
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{upstream.url}", "--listen-port", "0"
    )
    for path in paths:
        with httpx.stream("GET", recorder.url + path, trust_env=False, timeout=60) as answer:
            for _ in answer.iter_raw(MiB):
                pass
    assert recorder.stop() == 0


def changes_of(report: dict[str, object]) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for outcome in report["interactions"]:  # type: ignore[attr-defined]
        for change in outcome["changes"]:
            found[change["location"]] = change
    return found


def test_diff_compares_server_sent_events_event_by_event(
    streams: Upstream, drifted: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "events.cassette"
    record(baton, cassette, streams, "/events?count=6&gap_ms=10")

    result = run_baton(
        [
            "diff",
            str(cassette),
            "--target",
            drifted.url,
            "--ignore",
            "body.sent_at",
            "--format",
            "json",
        ]
    )
    assert result.returncode == 1, result.stderr
    changes = changes_of(json.loads(result.stdout))
    assert changes["event 3 body.n"]["class"] == "breaking"
    assert changes["event 3 body.n"]["kind"] == "type_changed (number -> string)"
    assert changes["event 5 event"] == {
        "class": "breaking",
        "kind": "event_type_changed",
        "location": "event 5 event",
        "old": "tick",
        "new": "tock",
    }
    assert changes["event 7"]["class"] == "additive"
    assert changes["event 7"]["kind"] == "event_added"
    # The send time differs in every event, and is noise by the rule, event by event.
    assert {changes[f"event {n} body.sent_at"]["class"] for n in range(1, 7)} == {"noise"}
    assert not any(location.startswith("body") for location in changes)

    text = run_baton(["diff", str(cassette), "--target", drifted.url, "--ignore", "body.sent_at"])
    assert "event 3 body.n" in text.stdout and "event 5 event" in text.stdout

    same = run_baton(["diff", str(cassette), "--target", streams.url, "--ignore", "body.sent_at"])
    assert same.returncode == 0, same.stdout


def test_a_stored_body_is_compared_by_digest(
    streams: Upstream, drifted: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "stored.cassette"
    size = 20 * MiB  # above the 16 MiB a reader holds: stored, never loaded
    record(baton, cassette, streams, f"/download?size={size}")

    same = run_baton(["diff", str(cassette), "--target", streams.url, "--format", "json"])
    assert same.returncode == 0
    assert changes_of(json.loads(same.stdout)) == {}

    moved = run_baton(["diff", str(cassette), "--target", drifted.url, "--format", "json"])
    assert moved.returncode == 0  # a value change does not fail the default gate
    change = changes_of(json.loads(moved.stdout))["body"]
    assert change["kind"] == "binary_changed"
    assert change["old"] == f"{size} bytes, sha256 {pattern_sha256(size)[:12]}"
    assert change["new"].startswith(f"{size} bytes, sha256 ")
    assert change["new"] != change["old"]

    other = tmp_path / "other.cassette"
    record(baton, other, drifted, f"/download?size={size}")
    offline = run_baton(["diff", str(cassette), str(other), "--format", "json"])
    assert changes_of(json.loads(offline.stdout))["body"]["new"] == change["new"]


def test_show_lists_events_and_pieces_and_textconv_leaves_out_their_times(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "show.cassette"
    record(
        baton, cassette, streams, "/events?count=3&gap_ms=10", "/download?size=2000000&chunked=1"
    )
    shown = run_baton(["show", str(cassette), "--no-headers"])
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert any(
        line.startswith("  [text/event-stream: 3 events in 3 pieces from ") for line in lines
    )
    assert any(line.startswith("  event 1 (id 1, tick, at ") for line in lines)
    assert any(line.startswith("  event 3 (id 3, tick, at ") for line in lines)
    assert any(line.startswith("  [streamed: ") and " pieces from " in line for line in lines)

    stable = run_baton(["textconv", str(cassette)]).stdout
    assert "  [text/event-stream: 3 events]" in stable
    assert "  event 2 (id 2, tick): {" in stable
    assert " ms" not in stable.replace("gap_ms", "") and "piece" not in stable


# -- the comparison alone ------------------------------------------------------------------


def sse(body: bytes) -> Response:
    return Response(200, headers=(("Content-Type", "text/event-stream"),), body=body)


def test_events_pair_by_index_and_a_plain_text_event_compares_by_lines() -> None:
    old = sse(b'data: hello\n\nevent: done\ndata: {"ok": true}\n\n')
    new = sse(b'data: hullo\n\nevent: done\ndata: {"ok": true, "extra": 1}\n\n')
    changes = {c.location: c for c in compare_responses(old, new, "GET /feed")}
    assert changes["event 1 body:line 1"].drift is DriftClass.VALUE
    assert changes["event 2 body.extra"].drift is DriftClass.ADDITIVE
    missing = compare_responses(old, sse(b"data: hello\n\n"), "GET /feed")
    assert [(c.location, c.drift, c.kind) for c in missing] == [
        ("event 2", DriftClass.BREAKING, "event_missing")
    ]
    quiet = compare_responses(old, new, "GET /feed", NoiseRules(regexes=[r"^event \d+ body"]))
    assert {c.drift for c in quiet} == {DriftClass.NOISE}


def test_the_parser_reads_what_a_browser_reads_and_keeps_an_unfinished_event() -> None:
    pieces = [
        (5.0, b"id: 7\r\nevent: a\r\ndata: x\r\ndata:"),
        (9.0, b" y\r\n\r\n: ping\n\nretry: 10\rdata: z"),
    ]
    events = parse_events(pieces)
    assert [(e.id, e.type, e.data, e.retry, e.offset_ms, e.complete) for e in events] == [
        ("7", "a", "x\ny", None, 9.0, True),
        (None, "message", "z", 10, 9.0, False),
    ]


def test_a_cassette_with_held_pieces_round_trips_through_show_json(tmp_path: Path) -> None:
    cassette = tmp_path / "pieces.cassette"
    interaction = Interaction(
        "i1",
        Request("GET", "http", "feed.test", 80, "/events"),
        Response(
            200,
            headers=(("Content-Type", "text/event-stream"),),
            body=b"data: 1\n\ndata: 2\n\n",
            chunks=(Chunk(3.0, b"data: 1\n\n"), Chunk(103.0, b"data: 2\n\n")),
        ),
        0.0,
    )
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(interaction)
    shown = run_baton(["show", str(cassette), "--format", "json"])
    response = json.loads(shown.stdout)["response"]
    assert response["pieces"] == [{"offset_ms": 3.0, "size": 9}, {"offset_ms": 103.0, "size": 9}]
    assert response["body"] == "data: 1\n\ndata: 2\n\n"
