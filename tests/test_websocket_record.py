"""Recording WebSocket conversations through baton record: a real ``websockets`` service and client."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.cassettes import read_cassette
from baton.cassettes.model import WebSocketMessage
from tests.processes import BatonProcess, TLSFiles, Upstream, run_baton, trusting
from tests.websocket_parts import converse, start_websocket_server, ws_url

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chat() -> Iterator[Upstream]:
    server = start_websocket_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chat_tls(tls_files: TLSFiles) -> Iterator[Upstream]:
    server = start_websocket_server(tls_files)
    yield server
    server.stop()


def record_reverse(
    baton: Callable[..., BatonProcess], cassette: Path, upstream: Upstream, *extra: str
) -> BatonProcess:
    return baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{upstream.url}", "--listen-port", "0",
        *extra,
    )  # fmt: skip


def shape(messages: tuple[WebSocketMessage, ...]) -> list[tuple[str, str, bytes]]:
    return [
        ("client" if m.from_client else "server", "text" if m.is_text else "binary", m.data)
        for m in messages
    ]


EXPECTED = [
    ("server", "text", b'{"type": "welcome"}'),
    ("client", "text", b"hello"),
    ("server", "text", b'{"type": "echo", "n": 1, "data": "hello"}'),
    ("client", "text", b'{"op": "push", "count": 3, "every_ms": 40}'),
    ("server", "text", b'{"type": "tick", "n": 1}'),
    ("server", "text", b'{"type": "tick", "n": 2}'),
    ("server", "text", b'{"type": "tick", "n": 3}'),
    ("client", "binary", b"\x00\x01\x02\xff"),
    ("server", "binary", b"\xff\x02\x01\x00"),
    ("client", "text", b'{"b": 2, "a": [1, 2]}'),
    ("server", "text", b'{"type": "echo", "n": 4, "data": {"b": 2, "a": [1, 2]}}'),
    ("client", "text", b"close"),
]


def test_reverse_mode_records_every_message_once_with_the_handshake(
    baton: Callable[..., BatonProcess], chat: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "chat.cassette"
    direct = converse(ws_url(chat.url))
    recorder = record_reverse(baton, cassette, chat)
    proxied = converse(ws_url(recorder.url))
    assert recorder.stop() == 0
    assert proxied == direct  # the client saw what it sees without baton
    assert "recorded 1 interaction" in recorder.output

    (interaction,) = read_cassette(cassette)  # once, at its end: not the 101 and then again
    assert interaction.request.method == "GET" and interaction.request.path == "/chat"
    assert interaction.request.header("upgrade") == "websocket"
    assert interaction.response is not None and interaction.response.status == 101
    conversation = interaction.websocket
    assert conversation is not None
    assert shape(conversation.messages) == EXPECTED
    assert (conversation.close_code, conversation.close_reason) == (4000, "bye now")
    assert conversation.closed_by_client is False
    offsets = [m.offset_ms for m in conversation.messages]
    assert offsets == sorted(offsets) and offsets[0] >= 0
    # The ticks were pushed on a 40 ms timer: their offsets say so.
    ticks = offsets[4:7]
    assert ticks[1] - ticks[0] >= 30 and ticks[2] - ticks[1] >= 30

    shown = run_baton(["show", str(cassette)])
    assert shown.returncode == 0
    assert "12 messages" in shown.stdout and 'closed by the server: 4000 "bye now"' in shown.stdout


def test_regular_mode_records_wss_with_mitmproxys_ca(
    baton: Callable[..., BatonProcess],
    chat_tls: Upstream,
    tls_files: TLSFiles,
    mitm_confdir: Path,
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "wss.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--listen-port", "0",
        "--set", f"ssl_verify_upstream_trusted_ca={tls_files.ca}",
    )  # fmt: skip
    seen = converse(
        ws_url(chat_tls.url),
        proxy=recorder.url,
        ssl_context=trusting(mitm_confdir / "mitmproxy-ca-cert.pem"),
    )
    assert recorder.stop() == 0
    assert seen.close == (4000, "bye now") and len(seen.received) == 7

    (interaction,) = read_cassette(cassette)
    assert interaction.request.scheme == "https" and interaction.request.port == chat_tls.port
    assert interaction.websocket is not None
    assert shape(interaction.websocket.messages) == EXPECTED


def test_message_payloads_are_redacted_before_they_reach_the_disk(
    baton: Callable[..., BatonProcess], chat: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "secret.cassette"
    recorder = record_reverse(baton, cassette, chat, "--redact-json-path", "$.card.number")
    script = (
        ("json", {"password": "hunter2-hunter2", "card": {"number": "4111-1111"}}, 1),
        ("text", "my token is tok-3f9a8b7c6d", 1),
        ("text", "the bearer was bearer-5e4d3c2b1a", 1),
        ("text", "close", 0),
    )
    seen = converse(
        ws_url(recorder.url) + "?token=tok-3f9a8b7c6d",
        script,
        headers={"Authorization": "Bearer bearer-5e4d3c2b1a"},
    )
    assert recorder.stop() == 0
    # The traffic itself is untouched: the service echoed the secrets to the client.
    assert "hunter2-hunter2" in seen.received[1][1] and "tok-3f9a8b7c6d" in seen.received[2][1]

    raw = cassette.read_bytes()
    for secret in (b"hunter2-hunter2", b"4111-1111", b"tok-3f9a8b7c6d", b"bearer-5e4d3c2b1a"):
        assert secret not in raw
    (interaction,) = read_cassette(cassette)
    assert interaction.websocket is not None
    messages = [m.data.decode() for m in interaction.websocket.messages]
    assert all("REDACTED-" in m for m in messages[1:7]), messages
    assert "websocket.messages" in interaction.tags["redacted"]
    assert "request.headers.authorization" in interaction.tags["redacted"]
    # One secret, one placeholder: the query's token and its echo in a message agree.
    token = dict(interaction.request.query)["token"]
    assert token.startswith("REDACTED-") and token in messages[4]


def test_a_recorder_stopped_mid_conversation_keeps_every_message_that_passed(
    baton: Callable[..., BatonProcess], chat: Upstream, tmp_path: Path
) -> None:
    from websockets.sync.client import connect

    cassette = tmp_path / "stopped.cassette"
    recorder = record_reverse(baton, cassette, chat)
    with connect(ws_url(recorder.url), proxy=None) as ws:
        ws.recv()
        ws.send("hello")
        ws.recv()
        assert recorder.stop() == 0  # SIGTERM with the conversation still open
    assert "recorded 1 interaction" in recorder.output

    (interaction,) = read_cassette(cassette)
    assert interaction.tags["websocket_unfinished"] is True
    assert interaction.websocket is not None
    assert interaction.websocket.close_code is None
    assert shape(interaction.websocket.messages) == EXPECTED[:3]


def test_a_killed_recorder_leaves_parts_that_readers_skip_and_repair_removes(
    baton: Callable[..., BatonProcess], chat: Upstream, tmp_path: Path
) -> None:
    from websockets.sync.client import connect

    cassette = tmp_path / "killed.cassette"
    recorder = record_reverse(baton, cassette, chat)
    with connect(ws_url(recorder.url), proxy=None) as ws:
        ws.recv()
        ws.send("hello")
        ws.recv()
        recorder.proc.send_signal(signal.SIGKILL)
        recorder.proc.wait(10)
    time.sleep(0.1)
    assert b"hello" in cassette.read_bytes()  # the messages were on disk as they passed
    assert read_cassette(cassette) == []  # no interaction names them: skipped
    repaired = run_baton(["repair", str(cassette)])
    assert repaired.returncode == 0, repaired.stderr
    assert b"hello" not in cassette.read_bytes()
