"""WebSocket conversations in and out of other formats, and redacted on the way in."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from baton.cassettes import read_cassette
from baton.cassettes.model import (
    Interaction,
    Request,
    Response,
    WebSocketConversation,
    WebSocketMessage,
)
from baton.cassettes.writer import CassetteWriter
from baton.formats.har import export_har, import_har
from tests.processes import run_baton

CONVERSATION = WebSocketConversation(
    (
        WebSocketMessage(False, True, b'{"type": "welcome"}', 2.5),
        WebSocketMessage(True, True, "grüße".encode(), 10.25),
        WebSocketMessage(True, False, bytes(range(256)), 40.0),
        WebSocketMessage(False, False, b"\xff\x00", 41.5),
    ),
    4000,
    "bye now",
    False,
)


def handshake(conversation: WebSocketConversation = CONVERSATION, query: str = "") -> Interaction:
    request = Request(
        "GET",
        "http",
        "chat.test",
        80,
        "/chat",
        query=((tuple(query.split("=", 1)),) if query else ()),  # type: ignore[arg-type]
        headers=(("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")),
    )
    response = Response(101, "Switching Protocols", headers=(("Upgrade", "websocket"),), body=b"")
    return Interaction("ws-1", request, response, 1_700_000_000.25, 3.0, websocket=conversation)


def test_har_export_writes_chromes_websocket_messages() -> None:
    (entry,) = export_har([handshake()])["log"]["entries"]
    assert entry["_webSocketMessages"] == [
        {"type": "receive", "time": 1_700_000_000.2525, "opcode": 1, "data": '{"type": "welcome"}'},
        {"type": "send", "time": 1_700_000_000.26025, "opcode": 1, "data": "grüße"},
        {
            "type": "send",
            "time": 1_700_000_000.29,
            "opcode": 2,
            "data": base64.b64encode(bytes(range(256))).decode(),
        },
        {"type": "receive", "time": 1_700_000_000.2915, "opcode": 2, "data": "/wA="},
    ]
    assert entry["_batonWebSocketClose"] == {
        "code": 4000,
        "reason": "bye now",
        "closedByClient": False,
    }


def test_har_import_reads_the_messages_back_into_the_model() -> None:
    document = json.dumps(export_har([handshake()])).encode()
    (back,) = import_har(document).interactions
    assert back.websocket is not None
    assert [(m.from_client, m.is_text, m.data) for m in back.websocket.messages] == [
        (m.from_client, m.is_text, m.data) for m in CONVERSATION.messages
    ]
    for got, sent in zip(back.websocket.messages, CONVERSATION.messages, strict=True):
        assert abs(got.offset_ms - sent.offset_ms) < 0.01
    assert (back.websocket.close_code, back.websocket.close_reason) == (4000, "bye now")
    assert back.websocket.closed_by_client is False


def test_a_chrome_har_without_close_information_imports_an_open_ended_conversation() -> None:
    entry = export_har([handshake()])["log"]["entries"][0]
    del entry["_batonWebSocketClose"]
    entry["_webSocketMessages"].append({"type": "ping", "time": 1, "opcode": 9, "data": ""})
    document = json.dumps({"log": {"version": "1.2", "entries": [entry]}}).encode()
    (back,) = import_har(document).interactions
    assert back.websocket is not None and len(back.websocket.messages) == 4  # the ping left out
    assert back.websocket.close_code is None and back.websocket.closed_by_client is None


def test_import_redacts_the_messages_of_a_har(tmp_path: Path) -> None:
    conversation = WebSocketConversation(
        (
            WebSocketMessage(True, True, b'{"password": "hunter2-hunter2", "n": 1}', 1.0),
            WebSocketMessage(False, True, b"welcome, your token is tok-9a8b7c6d5e", 2.0),
        ),
        1000,
        "",
        True,
    )
    source = tmp_path / "chat.har"
    source.write_text(
        json.dumps(export_har([handshake(conversation, "access_token=tok-9a8b7c6d5e")]))
    )
    out = tmp_path / "chat.cassette"
    result = run_baton(["import", str(source), "-o", str(out)])
    assert result.returncode == 0, result.stderr
    raw = out.read_bytes()
    assert b"hunter2-hunter2" not in raw and b"tok-9a8b7c6d5e" not in raw
    (imported,) = read_cassette(out)
    assert imported.websocket is not None
    first, second = (m.data.decode() for m in imported.websocket.messages)
    token = dict(imported.request.query)["access_token"]
    assert json.loads(first)["password"].startswith("REDACTED-")
    assert second == f"welcome, your token is {token}"
    assert "websocket.messages" in imported.tags["redacted"]


def test_show_lists_the_messages_and_export_import_round_trips(tmp_path: Path) -> None:
    cassette = tmp_path / "chat.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(handshake())
    shown = run_baton(["show", str(cassette)]).stdout
    assert (
        '  websocket: 4 messages (2 from the client, 2 from the server), closed by the server: 4000 "bye now"'
        in shown
    )
    assert '  ← #1 text        19 B  +2.5 ms  {"type": "welcome"}' in shown
    assert "  → #2 text         7 B  +10.2 ms  grüße" in shown
    assert "  → #3 binary     256 B  +40.0 ms  [00 01 02" in shown
    stable = run_baton(["textconv", str(cassette)]).stdout
    assert '  ← #1 text        19 B  {"type": "welcome"}' in stable and "+2.5 ms" not in stable

    har = tmp_path / "chat.har"
    assert run_baton(["export", str(cassette), "-o", str(har)]).returncode == 0
    back = tmp_path / "back.cassette"
    imported = run_baton(["import", str(har), "-o", str(back), "--no-default-redaction"])
    assert imported.returncode == 0, imported.stderr
    (again,) = read_cassette(back)
    assert again.websocket is not None
    assert [m.data for m in again.websocket.messages] == [m.data for m in CONVERSATION.messages]
