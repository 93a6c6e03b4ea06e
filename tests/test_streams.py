"""Server-sent events, chunked answers and bodies larger than memory: recorded, replayed, bounded.

Everything is real: a Starlette service under hypercorn (tests/stream_apps.py),
``baton record`` and ``baton replay`` as subprocesses, httpx and raw sockets as
clients. Memory is the kernel's peak resident set of the baton process
(``VmHWM`` in /proc/PID/status). The 1 GB runs are in bench/stream_memory.py;
here the same bounds hold for 200 MB, to keep the suite fast.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from baton.cassettes.reader import read_cassette
from tests.processes import (
    BatonProcess,
    TLSFiles,
    Upstream,
    run_baton,
    start_upstream,
    trusting,
)
from tests.stream_apps import pattern_sha256

pytestmark = pytest.mark.slow

MiB = 1 << 20
LARGE = 200 * MiB
RSS_BOUND = 150 * MiB


@pytest.fixture(scope="module")
def streams() -> Iterator[Upstream]:
    upstream = start_upstream("streams")
    yield upstream
    upstream.stop()


def peak_rss(pid: int) -> int:
    """The process's peak resident set so far, in bytes, as the kernel counts it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


def sse_events(
    url: str,
    on_event: Callable[[dict[str, str]], None] | None = None,
    *,
    client: httpx.Client | None = None,
) -> list[dict[str, str]]:
    """The events of an SSE answer, parsed as they arrive (``on_event`` sees each at once)."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    with (client or httpx.Client(trust_env=False)).stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append(current)
                    if on_event is not None:
                        on_event(current)
                current = {}
                continue
            name, _, value = line.partition(":")
            current[name] = value.removeprefix(" ")
    return events


def download_sha256(url: str, *, client: httpx.Client | None = None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with (client or httpx.Client(trust_env=False)).stream("GET", url, timeout=120) as response:
        assert response.status_code == 200
        for piece in response.iter_raw(MiB):
            digest.update(piece)
            size += len(piece)
    return size, digest.hexdigest()


def raw_chunks(port: int, target: str) -> tuple[bytes, list[bytes]]:
    """GET ``target`` over a raw socket: the head, and the body's chunks as framed on the wire."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    chunks = []
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        chunks.append(body[:size])
        body = body[size + 2 :]
    return head, chunks


def record(baton: Callable[..., BatonProcess], cassette: Path, upstream: Upstream, *extra: str):
    return baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{upstream.url}", "--listen-port", "0",
        *extra,
    )  # fmt: skip


# -- server-sent events -------------------------------------------------------------------


def test_sse_events_reach_the_client_through_the_recorder_as_the_server_sends_them(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "sse.cassette"
    recorder = record(baton, cassette, streams)
    stream_id = uuid.uuid4().hex

    def acknowledge(event: dict[str, str]) -> None:
        # Tell the server directly (not through the proxy) which event the client holds.
        number = json.loads(event["data"])["n"]
        httpx.get(f"{streams.url}/ack?stream={stream_id}&n={number}", trust_env=False)

    events = sse_events(
        f"{recorder.url}/events?count=20&gap_ms=100&stream={stream_id}", acknowledge
    )
    assert recorder.stop() == 0

    assert [e["id"] for e in events] == [str(n) for n in range(1, 21)]
    last = json.loads(events[-1]["data"])
    # Causal, not timed: when the server sent event 20 the client already held event 1.
    assert 1 in last["client_had"]
    (interaction,) = read_cassette(cassette)
    response = interaction.response
    assert response is not None and response.chunks is not None
    recorded = b"".join(chunk.data for chunk in response.chunks)
    assert recorded.count(b"\n\n") == 20
    assert [c.offset_ms for c in response.chunks] == sorted(c.offset_ms for c in response.chunks)


def test_replay_sends_the_recorded_events_and_with_latency_their_spacing(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "sse.cassette"
    recorder = record(baton, cassette, streams)
    url = "/events?count=20&gap_ms=100"
    recorded_events = sse_events(recorder.url + url)
    assert recorder.stop() == 0
    (interaction,) = read_cassette(cassette)
    assert interaction.response is not None and interaction.response.chunks is not None
    offsets = [c.offset_ms for c in interaction.response.chunks]
    assert len(offsets) == 20

    fast = baton("replay", str(cassette), "--listen-port", "0")
    assert sse_events(fast.url + url) == recorded_events
    assert fast.stop() == 0

    paced = baton("replay", str(cassette), "--listen-port", "0", "--replay-latency", "1")
    arrivals: list[float] = []
    replayed = sse_events(paced.url + url, lambda event: arrivals.append(time.monotonic()))
    assert paced.stop() == 0
    assert replayed == recorded_events
    # The recorded spacing, kept: the median gap of the replay within 20% of the recording's
    # (the median, so that one late wake-up on a busy machine does not decide it).
    recorded_gap = statistics.median(b - a for a, b in itertools.pairwise(offsets))
    replayed_gap = statistics.median((b - a) * 1000 for a, b in itertools.pairwise(arrivals))
    assert abs(replayed_gap - recorded_gap) <= 0.2 * recorded_gap, (replayed_gap, recorded_gap)


def test_a_chunked_answer_is_replayed_with_its_recorded_boundaries(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "chunks.cassette"
    recorder = record(baton, cassette, streams)
    sse_events(recorder.url + "/events?count=5&gap_ms=20")
    assert recorder.stop() == 0
    (interaction,) = read_cassette(cassette)
    assert interaction.response is not None and interaction.response.chunks is not None
    recorded = [chunk.data for chunk in interaction.response.chunks]

    for latency in ([], ["--replay-latency", "0.5"]):
        replay = baton("replay", str(cassette), "--listen-port", "0", *latency)
        head, chunks = raw_chunks(replay.port, "/events?count=5&gap_ms=20")
        assert replay.stop() == 0
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding: chunked" in head.lower()
        assert chunks == recorded


# -- bodies larger than memory ------------------------------------------------------------


def test_a_large_download_and_upload_pass_the_recorder_and_replay_within_memory(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "large.cassette"
    recorder = record(baton, cassette, streams)
    size, digest = download_sha256(f"{recorder.url}/download?size={LARGE}")
    assert (size, digest) == (LARGE, pattern_sha256(LARGE))

    def upload() -> Iterator[bytes]:
        for _ in range(LARGE // MiB):
            yield b"u" * MiB

    answer = httpx.post(f"{recorder.url}/upload", content=upload(), timeout=120, trust_env=False)
    expected = hashlib.sha256(b"u" * MiB * (LARGE // MiB)).hexdigest()
    assert answer.json() == {"size": LARGE, "sha256": expected}
    recorder_peak = peak_rss(recorder.proc.pid)
    assert recorder.stop() == 0
    assert recorder_peak < RSS_BOUND, f"recorder peak RSS {recorder_peak / MiB:.0f} MiB"

    downloaded, uploaded = read_cassette(cassette)
    assert downloaded.response is not None and downloaded.response.stored is not None
    assert downloaded.response.stored.size == LARGE
    assert downloaded.response.stored.sha256 == pattern_sha256(LARGE)
    assert uploaded.request.stored is not None and uploaded.request.stored.sha256 == expected

    replay = baton("replay", str(cassette), "--listen-port", "0")
    assert download_sha256(f"{replay.url}/download?size={LARGE}") == (LARGE, digest)
    replay_peak = peak_rss(replay.proc.pid)
    assert replay.stop() == 0
    assert replay_peak < RSS_BOUND, f"replay peak RSS {replay_peak / MiB:.0f} MiB"


def test_bodies_above_the_stream_threshold_are_streamed_and_below_it_held(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "threshold.cassette"
    recorder = record(baton, cassette, streams, "--stream-threshold", "1MB")
    for size in (512 * 1024, 3 * MiB):
        assert download_sha256(f"{recorder.url}/download?size={size}") == (
            size,
            pattern_sha256(size),
        )
    assert recorder.stop() == 0
    small, large = read_cassette(cassette)
    assert small.response is not None and small.response.chunks is None
    assert small.response.body is not None and len(small.response.body) == 512 * 1024
    assert large.response is not None and large.response.chunks is not None
    assert len(large.response.chunks) > 1


def test_a_body_mitmproxy_streams_on_its_own_is_recorded_not_lost(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "mitm-streamed.cassette"
    recorder = record(baton, cassette, streams, "--set", "stream_large_bodies=100k")
    size = 2 * MiB
    assert download_sha256(f"{recorder.url}/download?size={size}") == (size, pattern_sha256(size))
    assert recorder.stop() == 0
    (interaction,) = read_cassette(cassette)
    assert interaction.response is not None and interaction.response.body is not None
    assert hashlib.sha256(interaction.response.body).hexdigest() == pattern_sha256(size)

    replay = baton("replay", str(cassette), "--listen-port", "0")
    assert download_sha256(f"{replay.url}/download?size={size}") == (size, pattern_sha256(size))
    assert replay.stop() == 0


def test_a_bad_stream_threshold_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_baton(["record", "-o", str(tmp_path / "x.cassette"), "--stream-threshold", "lots"])
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "baton: error: --stream-threshold: 'lots' is not a size; write it like 16MB, 512KB or 1GB"
    )
    assert not (tmp_path / "x.cassette").exists()


# -- redaction of streams -----------------------------------------------------------------


def test_a_secret_echoed_in_a_streamed_answer_never_reaches_the_cassette(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "echo.cassette"
    recorder = record(baton, cassette, streams)
    token = "sk-live-5ecret-t0ken-0123456789"
    answer = httpx.get(
        f"{recorder.url}/echo-auth",
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    assert answer.text == f"hello\nyou sent: Bearer {token}\nbye\n"  # the client sees it all
    assert recorder.stop() == 0
    assert token.encode() not in cassette.read_bytes()
    (interaction,) = read_cassette(cassette)
    assert interaction.response is not None and interaction.response.chunks is not None
    assert b"you sent: Bearer REDACTED-" in (interaction.response.body or b"")
    assert "response.body" in interaction.tags["redacted"]


def test_sse_secret_fields_are_redacted_and_an_unscrubbable_json_stream_is_tagged_for_lint(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "fields.cassette"
    recorder = record(baton, cassette, streams)
    events = sse_events(recorder.url + "/events?count=3&gap_ms=10&secret=1")
    assert json.loads(events[0]["data"])["token"] == "tok-live-0001-abcdef"
    export = httpx.get(f"{recorder.url}/export", trust_env=False)
    assert export.json()["users"][0]["password"] == "hunter2-never-seen"
    assert recorder.stop() == 0

    raw = cassette.read_bytes()
    assert b"tok-live-0001-abcdef" not in raw
    sse, exported = read_cassette(cassette)
    assert "body_not_scrubbed" not in sse.tags
    assert exported.tags["body_not_scrubbed"] == [
        "response.body: application/json: it names a field a rule redacts, "
        "which needs the whole body parsed"
    ]
    lint = run_baton(["lint", str(cassette)])
    assert lint.returncode == 1
    assert (
        f"{cassette}: interaction 2: response.body: body not scrubbed: application/json: "
        "it names a field a rule redacts, which needs the whole body parsed"
    ) in lint.stdout
    assert "1 streamed body written unscrubbed" in lint.stderr


def test_a_stream_still_passing_when_the_recorder_stops_is_kept_with_what_passed(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "unfinished.cassette"
    recorder = record(baton, cassette, streams)
    seen: list[str] = []
    with httpx.stream(
        "GET", f"{recorder.url}/events?count=100&gap_ms=50", timeout=30, trust_env=False
    ) as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                seen.append(line)
            if len(seen) == 3:
                break
        assert recorder.stop() == 0  # SIGTERM while the stream still passes
    (interaction,) = read_cassette(cassette)
    assert interaction.tags["stream_unfinished"] is True
    assert interaction.response is not None and interaction.response.chunks is not None
    recorded = b"".join(chunk.data for chunk in interaction.response.chunks)
    assert recorded.startswith(b"id: 1\nevent: tick\n")
    assert recorded.count(b"\n\n") >= 3


# -- the mitmproxy path --------------------------------------------------------------------


def test_sse_and_a_stored_body_over_https_through_the_mitmproxy_path(
    baton: Callable[..., BatonProcess], tls_files: TLSFiles, mitm_confdir: Path, tmp_path: Path
) -> None:
    upstream = start_upstream("streams", tls_files)
    cassette = tmp_path / "https-streams.cassette"
    size = 20 * MiB  # above the 16 MiB a reader holds: a stored body
    url = upstream.url + "/events?count=10&gap_ms=50"
    try:
        recorder = baton(
            "record", "-o", str(cassette), "--listen-port", "0",
            "--set", f"ssl_verify_upstream_trusted_ca={tls_files.ca}",
        )  # fmt: skip
        ca = trusting(mitm_confdir / "mitmproxy-ca-cert.pem")  # made by the first mitmproxy
        with httpx.Client(proxy=recorder.url, verify=ca, http2=True, trust_env=False) as client:
            recorded_events = sse_events(url, client=client)
            recorded_size = download_sha256(f"{upstream.url}/download?size={size}", client=client)
        assert recorder.stop() == 0
    finally:
        upstream.stop()
    assert recorded_size == (size, pattern_sha256(size))
    events, stored = read_cassette(cassette)
    assert events.response is not None and events.response.chunks is not None
    assert stored.response is not None and stored.response.stored is not None

    replayer = baton(
        "replay", str(cassette), "--mode", "regular", "--listen-port", "0",
        "--replay-latency", "1", "--set", f"confdir={mitm_confdir}",
    )  # fmt: skip
    arrivals: list[float] = []
    with httpx.Client(proxy=replayer.url, verify=ca, http2=True, trust_env=False) as client:
        replayed = sse_events(url, lambda _: arrivals.append(time.monotonic()), client=client)
        replayed_size = download_sha256(f"{upstream.url}/download?size={size}", client=client)
    assert replayer.stop() == 0
    assert "2 hits, 0 misses" in replayer.output
    assert replayed == recorded_events
    assert replayed_size == (size, pattern_sha256(size))
    # Paced through mitmproxy too: the events did not arrive in one block.
    offsets = [chunk.offset_ms for chunk in events.response.chunks]
    recorded_gap = statistics.median(b - a for a, b in itertools.pairwise(offsets))
    replayed_gap = statistics.median((b - a) * 1000 for a, b in itertools.pairwise(arrivals))
    assert abs(replayed_gap - recorded_gap) <= 0.2 * recorded_gap, (replayed_gap, recorded_gap)


def test_a_download_cut_off_by_the_recorders_stop_replays_cut_off_not_hanging(
    streams: Upstream, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    cassette = tmp_path / "cut.cassette"
    recorder = record(baton, cassette, streams)
    size = 100 * MiB
    received = 0
    with (
        httpx.Client(trust_env=False, timeout=30) as client,
        client.stream("GET", f"{recorder.url}/download?size={size}") as answer,
    ):
        for piece in answer.iter_raw(MiB):
            received += len(piece)
            if received >= 4 * MiB:
                assert recorder.stop() == 0  # SIGTERM mid-body
                break
    (interaction,) = read_cassette(cassette)
    assert interaction.tags["stream_unfinished"] is True
    response = interaction.response
    assert response is not None and response.chunks is not None
    kept = sum(len(chunk.data) for chunk in response.chunks)
    assert 0 < kept < size

    replay = baton("replay", str(cassette), "--listen-port", "0")
    with pytest.raises(httpx.RemoteProtocolError):  # the connection closes, as it did
        download_sha256(f"{replay.url}/download?size={size}")
    assert replay.stop() == 0
