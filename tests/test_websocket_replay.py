"""Replaying recorded WebSocket conversations: the same client script, the service stopped."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from baton.cassettes import read_cassette
from tests.processes import BatonProcess, run_baton, start_baton
from tests.websocket_parts import (
    SCRIPT,
    SHORT_SCRIPT,
    Transcript,
    converse,
    start_websocket_server,
    ws_url,
)

pytestmark = pytest.mark.slow

SHORT = SHORT_SCRIPT


@dataclass(frozen=True)
class Recording:
    cassette: Path
    live: Transcript
    """What the client saw through the recording proxy, for /chat."""
    live_client_closes: Transcript
    """The same for /bye, where the client closes after SHORT."""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path) -> Iterator[Recording]:
    """Record two conversations through ``baton record`` (reverse mode), then stop the service."""
    cassette = tmp_path_factory.mktemp("ws") / "chat.cassette"
    server = start_websocket_server()
    try:
        recorder = start_baton(
            ["record", "-o", str(cassette), "--mode", f"reverse:{server.url}",
             "--listen-port", "0", "--set", f"confdir={mitm_confdir}"]
        )  # fmt: skip
        try:
            live = converse(ws_url(recorder.url))
            closes = converse(ws_url(recorder.url, "/bye"), SHORT, client_close=(1000, "done"))
        finally:
            assert recorder.stop() == 0
    finally:
        server.stop()
    assert len(read_cassette(cassette)) == 2
    yield Recording(cassette, live, closes)


def replay(baton: Callable[..., BatonProcess], recording: Recording, *extra: str) -> BatonProcess:
    return baton("replay", str(recording.cassette), "--listen-port", "0", *extra)


def test_the_same_client_gets_the_same_messages_in_order(
    baton: Callable[..., BatonProcess], recording: Recording
) -> None:
    server = replay(baton, recording)
    assert "fast path" in server.output
    assert converse(ws_url(server.url)) == recording.live
    assert recording.live.close == (4000, "bye now")
    assert server.stop() == 0
    assert "1 hit, 0 misses" in server.output


def test_json_messages_match_by_meaning_and_replay_latency_keeps_the_order(
    baton: Callable[..., BatonProcess], recording: Recording
) -> None:
    reordered = list(SCRIPT)
    reordered[3] = ("json", {"a": [1, 2], "b": 2}, 1)  # recorded as {"b": 2, "a": [1, 2]}
    server = replay(baton, recording, "--replay-latency", "0.5")
    assert converse(ws_url(server.url), reordered) == recording.live
    assert server.stop() == 0
    assert "0 misses" in server.output


def test_a_changed_client_message_is_a_near_miss_and_closes_with_4404(
    baton: Callable[..., BatonProcess], recording: Recording
) -> None:
    changed = list(SCRIPT)
    changed[1] = ("json", {"op": "push", "count": 4, "every_ms": 40}, 1)
    server = replay(baton, recording, "--fail-on-miss")
    seen = converse(ws_url(server.url), changed)
    # The welcome and the echo of "hello", then the close: nothing recorded after the miss.
    assert seen.received == recording.live.received[:2]
    assert seen.close == (4404, "baton: no recorded message matches (see the replay log)")
    assert server.stop() == 1  # --fail-on-miss
    log = server.output
    assert "no recorded message matches GET /chat message 4 (client, text)" in log
    assert '{"op": "push", "count": 4, "every_ms": 40}' in log  # what came
    assert "count: recorded 3, got 4" in log  # what differed, field by field
    assert "1 hit, 1 miss" in log
    assert "baton: miss: no recorded message matches GET /chat message 4 (client, text)" in log


def test_a_message_after_the_recorded_ones_is_a_miss(
    baton: Callable[..., BatonProcess], recording: Recording
) -> None:
    server = replay(baton, recording)
    extra = (*SHORT, ("text", "one more", 1))
    seen = converse(ws_url(server.url, "/bye"), extra)
    assert seen.close[0] == 4404
    assert server.stop() == 0
    assert "GET /bye message 7 (client, text)" in server.output
    assert "the recording has no client message after message 6" in server.output


def test_a_close_by_the_client_is_answered_as_recorded(
    baton: Callable[..., BatonProcess], recording: Recording
) -> None:
    server = replay(baton, recording)
    seen = converse(ws_url(server.url, "/bye"), SHORT, client_close=(1000, "done"))
    assert seen == recording.live_client_closes
    assert seen.close == (1000, "done")
    assert server.stop() == 0


def _handshake(port: int, path: str, key: str, extensions: str | None) -> list[tuple[str, str]]:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
    status, *rest = head.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    assert status.startswith("HTTP/1.1 101 ")
    return [(n, v) for n, _, v in (line.partition(": ") for line in rest)]


def test_only_the_accept_token_differs_from_the_recorded_handshake(
    baton: Callable[..., BatonProcess], recording: Recording
) -> None:
    recorded = read_cassette(recording.cassette)[0].response
    assert recorded is not None
    server = replay(baton, recording)
    # RFC 6455's own example: this key must be answered with this token.
    offered = "permessage-deflate; client_max_window_bits"
    head = _handshake(server.port, "/chat", "dGhlIHNhbXBsZSBub25jZQ==", offered)
    expected = [
        (n, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" if n.lower() == "sec-websocket-accept" else v)
        for n, v in recorded.headers
    ]
    assert head == expected
    # A client that offers no extension is not answered with one.
    plain = _handshake(server.port, "/chat", "dGhlIHNhbXBsZSBub25jZQ==", None)
    assert plain == [(n, v) for n, v in expected if n.lower() != "sec-websocket-extensions"]
    assert server.stop() == 0


def test_a_handshake_nothing_matches_gets_the_near_miss_answer(
    baton: Callable[..., BatonProcess], recording: Recording
) -> None:
    from websockets.exceptions import InvalidStatus

    server = replay(baton, recording)
    with pytest.raises(InvalidStatus) as refused:
        converse(ws_url(server.url, "/elsewhere"))
    response = refused.value.response
    assert response.status_code == 502 and response.headers["X-Baton-Miss"] == "1"
    assert b"GET /elsewhere" in response.body
    assert server.stop() == 0


def test_a_conversation_exported_to_har_and_imported_back_replays_the_same(
    baton: Callable[..., BatonProcess], recording: Recording, tmp_path: Path
) -> None:
    har = tmp_path / "chat.har"
    assert run_baton(["export", str(recording.cassette), "-o", str(har)]).returncode == 0
    back = tmp_path / "back.cassette"
    assert run_baton(["import", str(har), "-o", str(back)]).returncode == 0
    server = baton("replay", str(back), "--listen-port", "0")
    assert converse(ws_url(server.url)) == recording.live
    assert server.stop() == 0


def test_record_mode_once_records_the_conversation_then_replays_it(
    baton: Callable[..., BatonProcess], mitm_confdir: Path, tmp_path: Path
) -> None:
    cassette = tmp_path / "once.cassette"
    server = start_websocket_server()
    try:
        recording = baton(
            "replay", str(cassette), "--record-mode", "once", "--mode", f"reverse:{server.url}",
            "--listen-port", "0", "--set", f"confdir={mitm_confdir}",
        )  # fmt: skip
        live = converse(ws_url(recording.url))
        assert recording.stop() == 0
    finally:
        server.stop()
    assert "recorded 1 new interaction" in recording.output
    (interaction,) = read_cassette(cassette)
    assert interaction.websocket is not None and len(interaction.websocket.messages) == 12
    replaying = baton("replay", str(cassette), "--record-mode", "once", "--listen-port", "0")
    assert converse(ws_url(replaying.url)) == live
    assert replaying.stop() == 0
