"""The pure parts of WebSocket support: turns, the 101, message matching, the comparison."""

from __future__ import annotations

import asyncio
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
from baton.replay.comparison import DriftClass, NoiseRules
from baton.replay.matching import MatchConfig
from baton.replay.websocket_drift import compare_conversations
from baton.replay.websocket_replay import Turn, _Matcher, handshake_head, turns_of


def client(data: bytes, at: float, text: bool = True) -> WebSocketMessage:
    return WebSocketMessage(True, text, data, at)


def server(data: bytes, at: float, text: bool = True) -> WebSocketMessage:
    return WebSocketMessage(False, text, data, at)


CONVERSATION = WebSocketConversation(
    (
        server(b"welcome", 1.0),
        client(b"a", 10.0),
        server(b"A", 11.0),
        server(b"A again", 60.0),
        client(b"b", 70.0),
        client(b"c", 80.0),
        server(b"C", 81.0),
    ),
    4000,
    "bye",
    False,
)


def test_a_conversation_is_cut_into_turns_each_client_message_with_its_replies() -> None:
    turns = turns_of(CONVERSATION)
    assert turns == [
        Turn(None, 0, (CONVERSATION.messages[0],)),
        Turn(CONVERSATION.messages[1], 2, CONVERSATION.messages[2:4]),
        Turn(CONVERSATION.messages[4], 5, ()),
        Turn(CONVERSATION.messages[5], 6, (CONVERSATION.messages[6],)),
    ]
    assert [t.base_ms for t in turns] == [0.0, 10.0, 70.0, 80.0]


def test_the_101_keeps_every_recorded_header_but_the_accept_token() -> None:
    recorded = Response(
        101,
        "Switching Protocols",
        headers=(
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "recorded-for-another-key="),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=12"),
            ("X-Served-By", "chat-3"),
        ),
    )
    offer = Request(
        "GET",
        "http",
        "chat.test",
        80,
        "/chat",
        headers=(
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ),
    )
    head, extensions = handshake_head(recorded, offer)
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n"
        b"X-Served-By: chat-3\r\n\r\n"
    )
    assert [e.name for e in extensions] == ["permessage-deflate"]
    no_offer = Request("GET", "http", "chat.test", 80, "/chat", headers=(offer.headers[0],))
    head, extensions = handshake_head(recorded, no_offer)
    assert b"Sec-WebSocket-Extensions" not in head and extensions == []


def test_client_messages_match_exactly_or_by_json_meaning_and_type() -> None:
    matcher = _Matcher(MatchConfig.build(ignore_fields=["$.request_id"]))
    recorded = client(b'{"op": "push", "count": 3, "request_id": 1}', 0.0)
    assert matcher.matches(recorded, True, recorded.data)
    assert matcher.matches(recorded, True, b'{"count":3,"op":"push","request_id":99}')
    assert not matcher.matches(recorded, True, b'{"count": 4, "op": "push"}')
    assert not matcher.matches(recorded, False, recorded.data)  # binary is not text
    (difference,) = matcher.differences(recorded, b'{"count": 4, "op": "push"}')
    assert difference.got == "count: recorded 3, got 4"


def test_conversations_compare_turn_by_turn() -> None:
    fresh = WebSocketConversation(
        (
            server(b"welcome", 1.0),
            client(b"a", 10.0),
            server(b"A", 11.0),  # "A again" never came
            client(b"b", 70.0),
            server(b"surprise", 71.0),
            client(b"c", 80.0),
            server(b"C", 81.0, text=False),
        ),
        1000,
        "",
        False,
    )
    changes = compare_conversations(CONVERSATION, fresh, "GET /chat", NoiseRules())
    assert [(c.drift, c.kind, c.location) for c in changes] == [
        (DriftClass.BREAKING, "message_missing", "message 4"),
        (DriftClass.ADDITIVE, "message_added", "message 5+1"),
        (DriftClass.BREAKING, "message_type_changed (text -> binary)", "message 7"),
        (DriftClass.VALUE, "close_changed", "close"),
    ]
    assert changes[-1].old == "4000 bye" and changes[-1].new == "1000"


def test_json_messages_compare_field_by_field_and_noise_rules_apply() -> None:
    old = WebSocketConversation((server(b'{"n": 1, "ts": 5}', 1.0),))
    new = WebSocketConversation((server(b'{"n": 2, "ts": 6}', 1.0),))
    changes = compare_conversations(old, new, "GET /ws", NoiseRules(paths=["$.ts"]))
    assert [(c.drift, c.location, c.old, c.new) for c in changes] == [
        (DriftClass.VALUE, "message 1 body.n", 1, 2),
        (DriftClass.NOISE, "message 1 body.ts", 5, 6),
    ]


def test_an_append_accepted_before_close_is_written_though_its_turn_never_came(
    tmp_path: Path,
) -> None:
    """A WebSocket's interaction is appended after the client saw the close; a recorder
    stopped right then closes its writer before the event loop gets to that append."""
    cassette = tmp_path / "late.cassette"
    interaction = Interaction(
        "ws-late", Request("GET", "http", "chat.test", 80, "/chat"), Response(101), 0.0,
        websocket=CONVERSATION,
    )  # fmt: skip

    async def stop_right_after_the_hook_handed_it_over() -> None:
        writer = CassetteWriter(cassette, redactor=None)
        hook = asyncio.create_task(writer.append_async(interaction))
        await asyncio.sleep(0)  # the hook runs up to its await; the writer's turn has not come
        writer.close()  # what the recorder's done hook does
        hook.cancel()

    asyncio.run(stop_right_after_the_hook_handed_it_over())
    (written,) = read_cassette(cassette)
    assert written.websocket == CONVERSATION
