"""Replay a recorded WebSocket conversation to a live client, on baton's own replay server.

A client whose handshake matches a recorded WebSocket interaction gets the
recorded ``101`` — byte for byte but for ``Sec-WebSocket-Accept``, which is
computed for the client's own key (RFC 6455 makes the client check it), and
``Sec-WebSocket-Extensions``, left out when the client did not offer the
recorded extension — and then the recorded conversation, as a script:

* the recording is cut into *turns*: the server messages before the first
  client message (the opening), then each client message with the server
  messages recorded after it, up to the next client message;
* the opening is sent at once; each client message is matched to the next
  recorded client message — same type, and the same payload exactly or by
  meaning (JSON parsed, key order and whitespace free, ``--ignore-field``
  and secrets handled as for request bodies: ``replay/matching.py``) — and
  the server messages of its turn are sent;
* with ``--replay-latency SCALE`` each server message waits its recorded
  distance from what prompted it (the client message of its turn, or the
  ``101`` for the opening), times SCALE; without it, everything goes out at
  once, in recorded order;
* a client message that matches nothing (or comes after the recording's
  last one) is a miss: the near-miss report is logged and counted in the
  index (``baton replay``'s summary), and the connection is closed with
  code ``4404`` (private range: "no recorded message matches") and a
  reason saying so;
* the close is replayed as recorded: closed by the server, it sends the
  recorded code and reason after its last message (1006, a connection the
  server dropped without a close frame, is replayed as that: the TCP
  connection is closed); closed by the client, the server waits for the
  client's close and answers it.

WebSocket framing is wsproto's (the sans-I/O library mitmproxy itself is
built on; ``permessage-deflate`` included), on the asyncio transport the
HTTP server already holds: no second server, no thread, no mitmproxy.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token, split_comma_header

from baton.cassettes.model import (
    Interaction,
    Request,
    Response,
    WebSocketConversation,
    WebSocketMessage,
    header_values,
)
from baton.replay.index import Index, Miss
from baton.replay.matching import MATCHERS, MatchConfig, Mismatch, explain, match_key

if TYPE_CHECKING:
    from baton.replay.server import ReplayServer, _Connection

__all__ = [
    "CLOSE_NO_MATCH",
    "MessageMiss",
    "Turn",
    "WebSocketReplay",
    "accept_websocket",
    "handshake_head",
    "is_websocket_upgrade",
    "turns_of",
]

logger = logging.getLogger(__name__)

CLOSE_NO_MATCH = 4404
"""The close code of a connection whose client sent a message no recording matches."""
CLOSE_NO_MATCH_REASON = "baton: no recorded message matches (see the replay log)"
_ABNORMAL = 1006
_CLOSE_WAIT_S = 5.0
"""How long a close sent by baton waits for the client's answer before the TCP connection goes."""


def is_websocket_upgrade(request: Request) -> bool:
    """True for a WebSocket opening handshake (``Upgrade: websocket``)."""
    return any("websocket" in v.lower() for v in header_values(request.headers, "upgrade"))


def _wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _offered(request: Request, name: str) -> bool:
    offers = ",".join(header_values(request.headers, "sec-websocket-extensions"))
    return any(o.split(";", 1)[0].strip().lower() == name for o in offers.split(",") if o.strip())


def handshake_head(recorded: Response, request: Request) -> tuple[bytes, list[Extension]]:
    """The ``101`` for ``request`` and the extensions it agrees to.

    The recorded head, in order, with ``Sec-WebSocket-Accept`` computed for
    the client's own key, and ``Sec-WebSocket-Extensions`` left out when the
    client did not offer ``permessage-deflate`` (the one extension wsproto,
    and so mitmproxy, speaks).
    """
    key = request.header("sec-websocket-key") or ""
    accept = generate_accept_token(key.strip().encode("ascii", "replace")).decode("ascii")
    deflate = _offered(request, PerMessageDeflate.name)
    headers: list[tuple[str, str]] = []
    extensions: list[Extension] = []
    for name, value in recorded.headers:
        lowered = name.lower()
        if lowered == "sec-websocket-accept":
            value = accept
        elif lowered == "sec-websocket-extensions":
            if not deflate:
                continue
            for offer in split_comma_header(value.encode("ascii", "replace")):
                if offer.split(";", 1)[0].strip() == PerMessageDeflate.name:
                    extension = PerMessageDeflate()
                    extension.finalize(offer)
                    extensions.append(extension)
        headers.append((name, value))
    reason = recorded.reason or HTTPStatus.SWITCHING_PROTOCOLS.phrase
    lines = [f"HTTP/1.1 {recorded.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return _wire("\r\n".join(lines)) + b"\r\n\r\n", extensions


# -- the script ------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """A client message (None for the opening) and the server messages recorded after it."""

    expected: WebSocketMessage | None
    number: int
    """The expected message's position in the conversation, 1-based (0 for the opening)."""
    replies: tuple[WebSocketMessage, ...] = ()

    @property
    def base_ms(self) -> float:
        """The recorded time the replies' delays count from."""
        return self.expected.offset_ms if self.expected is not None else 0.0


def turns_of(conversation: WebSocketConversation) -> list[Turn]:
    """The conversation cut into turns: the opening first, then one per client message."""
    turns = [Turn(None, 0)]
    replies: list[WebSocketMessage] = []
    for number, message in enumerate(conversation.messages, 1):
        if message.from_client:
            turns[-1] = Turn(turns[-1].expected, turns[-1].number, tuple(replies))
            turns.append(Turn(message, number))
            replies = []
        else:
            replies.append(message)
    turns[-1] = Turn(turns[-1].expected, turns[-1].number, tuple(replies))
    return turns


def _looks_like_json(data: bytes) -> bool:
    return data.lstrip()[:1] in (b"{", b"[")


def _kind(is_text: bool) -> str:
    return "text" if is_text else "binary"


def _shown(data: bytes, is_text: bool, limit: int = 160) -> str:
    if is_text:
        text = data.decode("utf-8", "replace")
        return text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{len(data)} bytes: {data[:32].hex()}{'…' if len(data) > 32 else ''}"


@dataclass(frozen=True)
class MessageMiss(Miss):
    """A client message on a replayed WebSocket that the recording does not hold at that point."""

    message: int = 0
    """The recorded position it was compared with (1-based), or one past the last message."""
    is_text: bool = True
    got: bytes = b""
    expected: WebSocketMessage | None = None
    differences: tuple[Mismatch, ...] = field(default_factory=tuple)
    recorded_messages: int = 0

    def headline(self) -> str:
        return (
            f"baton: {self.reason} {self.request.method} {self.request.target} "
            f"message {self.message} (client, {_kind(self.is_text)})"
        )

    def report(self) -> str:
        lines = [self.headline()]
        lines.append(f"  got: {_shown(self.got, self.is_text)}")
        expected = self.expected
        if expected is None:
            lines.append(
                f"  the recording has no client message after message {self.message - 1} "
                f"(it holds {self.recorded_messages})"
            )
        else:
            lines.append(
                f"  recorded message {self.message} (client, {_kind(expected.is_text)}): "
                f"{_shown(expected.data, expected.is_text)}"
            )
            if expected.is_text != self.is_text:
                lines.append(
                    f"     type: recorded {_kind(expected.is_text)} | got {_kind(self.is_text)}"
                )
            for mismatch in self.differences:
                lines.append(f"     {mismatch.matcher}: {mismatch.got}")
        lines.append(f'  the connection was closed with {CLOSE_NO_MATCH} "{CLOSE_NO_MATCH_REASON}"')
        return "\n".join(lines)


class _Matcher:
    """Client messages against recorded ones: exact bytes first, then the body normalisation."""

    def __init__(self, config: MatchConfig) -> None:
        self.config = MatchConfig(
            ("body",), (), config.ignore_query, config.ignore_fields, config.secrets
        )
        self._body = MATCHERS["body"]

    def _as_request(self, data: bytes) -> Request:
        return Request("WS", "ws", "", 0, "", body=data)

    def matches(self, expected: WebSocketMessage, is_text: bool, data: bytes) -> bool:
        if expected.is_text != is_text:
            return False
        if expected.data == data:
            return True
        recorded = self._body(self._as_request(expected.data), self.config)
        return bool(recorded == self._body(self._as_request(data), self.config))

    def differences(self, expected: WebSocketMessage, data: bytes) -> tuple[Mismatch, ...]:
        candidate = self._as_request(expected.data)
        found = explain(
            self._as_request(data),
            [(candidate, match_key(candidate, self.config))],
            self.config,
            limit=1,
        )
        return tuple(found[0][1]) if found else ()


# -- the session ------------------------------------------------------------------------


class WebSocketReplay(asyncio.Protocol):
    """One replayed conversation on one client connection (the transport's protocol after the 101)."""

    def __init__(
        self,
        interaction: Interaction,
        request: Request,
        index: Index,
        transport: asyncio.Transport,
        *,
        latency_scale: float | None = None,
        on_lost: Callable[[], None] | None = None,
        max_message: int | None = None,
    ) -> None:
        assert interaction.websocket is not None and interaction.response is not None
        self._conversation = interaction.websocket
        self._request = request
        self._index = index
        self._transport = transport
        self._scale = latency_scale
        self._on_lost = on_lost
        head, extensions = handshake_head(interaction.response, request)
        self._head = head
        self._ws = Connection(ConnectionType.SERVER, extensions)
        self._turns = turns_of(self._conversation)
        self._next = 1
        """The index in ``_turns`` of the client message expected next."""
        self._matcher = _Matcher(index.config)
        self._parts: list[bytes] = []
        self._held = 0
        self._max_message = max_message
        """Bytes of one client message held to match it (the server's --max-body-size); 1009."""
        self._started = False
        self._early: list[bytes] = []
        self._done = False
        """A miss or a close: client messages are no longer matched."""
        self._outbox: deque[tuple[float, WebSocketMessage | None]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._batch: list[bytes] | None = None
        """Bytes for the client while one read is handled: written together, one send."""

    # -- the start -----------------------------------------------------------

    def begin(self, rest: bytes = b"") -> None:
        """Send the 101 and the opening; ``rest`` is what the client sent after its handshake."""
        if self._transport.is_closing():
            return
        self._batch = [self._head]
        self._started = True
        self._play(self._turns[0])
        self._flush()
        data = rest + b"".join(self._early)
        self._early.clear()
        if data:
            self.data_received(data)

    # -- asyncio.Protocol --------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._started:
            self._early.append(data)
            return
        # The answers to every message in this read go out in one write: a client
        # sending many messages at once costs one system call, not one per answer.
        self._batch = []
        try:
            self._handle(data)
        finally:
            self._flush()

    def _handle(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events():
            if isinstance(event, Message):
                if isinstance(event, TextMessage):
                    self._parts.append(event.data.encode("utf-8", "surrogatepass"))
                else:
                    self._parts.append(bytes(event.data))
                self._held += len(self._parts[-1])
                if self._max_message is not None and self._held > self._max_message:
                    self._parts.clear()
                    self._done = True
                    self._outbox.clear()
                    if self._sender is not None:
                        self._sender.cancel()
                    self._close(1009, "message too big")
                    return
                if event.message_finished:
                    payload = b"".join(self._parts)
                    self._parts.clear()
                    self._held = 0
                    self._client_message(isinstance(event, TextMessage), payload)
            elif isinstance(event, Ping):
                self._write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._client_closed(event)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        if self._sender is not None:
            self._sender.cancel()
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._on_lost is not None:
            self._on_lost()

    # -- client messages ---------------------------------------------------------

    def _client_message(self, is_text: bool, data: bytes) -> None:
        if self._done:
            return
        turn = self._turns[self._next] if self._next < len(self._turns) else None
        expected = turn.expected if turn is not None else None
        if turn is None or expected is None or not self._matcher.matches(expected, is_text, data):
            self._miss(turn, is_text, data)
            return
        self._next += 1
        self._play(turn)

    def _miss(self, turn: Turn | None, is_text: bool, data: bytes) -> None:
        expected = turn.expected if turn is not None else None
        messages = len(self._conversation.messages)
        number = turn.number if turn is not None else messages + 1
        differences: tuple[Mismatch, ...] = ()
        if expected is not None and _looks_like_json(expected.data) and _looks_like_json(data):
            differences = self._matcher.differences(expected, data)
        miss = MessageMiss(
            self._request,
            [],
            "no recorded message matches",
            message=number,
            is_text=is_text,
            got=data,
            expected=expected,
            differences=differences,
            recorded_messages=messages,
        )
        logger.warning("%s", miss.report())
        self._index.misses.append(miss)
        self._done = True
        self._outbox.clear()
        if self._sender is not None:
            self._sender.cancel()
        self._close(CLOSE_NO_MATCH, CLOSE_NO_MATCH_REASON)

    def _client_closed(self, event: CloseConnection) -> None:
        self._done = True
        self._outbox.clear()
        if self._sender is not None:
            self._sender.cancel()
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            self._write(self._ws.send(event.response()))
        self._hang_up()

    # -- server messages ---------------------------------------------------------

    def _play(self, turn: Turn) -> None:
        """Send ``turn``'s replies (and the recorded close after the last turn)."""
        last = self._next >= len(self._turns)
        closing = last and self._conversation.closed_by_client is False
        if self._scale is None and not self._outbox:
            for message in turn.replies:
                self._send(message)
            if closing:
                self._server_close()
            return
        now = asyncio.get_running_loop().time()
        scale = self._scale or 0.0
        due = now
        for message in turn.replies:
            due = now + max(0.0, message.offset_ms - turn.base_ms) / 1000.0 * scale
            self._outbox.append((due, message))
        if closing:
            self._outbox.append((due, None))
        if self._outbox and (self._sender is None or self._sender.done()):
            self._sender = asyncio.get_running_loop().create_task(self._send_in_time())

    async def _send_in_time(self) -> None:
        loop = asyncio.get_running_loop()
        while self._outbox:
            due, message = self._outbox[0]
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._outbox.popleft()
            if message is None:
                self._server_close()
            else:
                self._send(message)

    def _send(self, message: WebSocketMessage) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            return
        event: TextMessage | BytesMessage  # wsproto 1.3 types BytesMessage as bytes | bytearray
        if message.is_text:
            event = TextMessage(data=message.data.decode("utf-8", "replace"))
        else:
            event = BytesMessage(data=message.data)
        self._write(self._ws.send(event))

    def _server_close(self) -> None:
        code = self._conversation.close_code
        if code is None:
            return  # recorded without a close: the client decides
        self._done = True
        if code == _ABNORMAL:
            self._hang_up()  # the server dropped the connection without a close frame
            return
        self._close(code, self._conversation.close_reason)

    def _close(self, code: int, reason: str) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            return
        self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(_CLOSE_WAIT_S, self._transport.close)

    def _write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
        elif data and not self._transport.is_closing():
            self._transport.write(data)

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch and not self._transport.is_closing():
            self._transport.write(b"".join(batch))

    def _hang_up(self) -> None:
        self._flush()
        self._transport.close()


def accept_websocket(
    server: ReplayServer, connection: _Connection, request: Request, rest: bytes
) -> bool:
    """Answer a handshake on the fast server; False when it is not a WebSocket one.

    A recorded WebSocket interaction takes the connection over (the
    transport's protocol becomes its ``WebSocketReplay``); a miss gets the
    near-miss answer, and a recorded interaction without a conversation (a
    refused handshake) its recorded answer; both then close the connection.
    """
    transport = connection._transport
    if transport is None or not is_websocket_upgrade(request):
        return False
    result = server.find(request)  # the routed server: the interaction it was told
    if isinstance(result, Miss):
        from baton.replay.server import miss_response

        logger.warning("%s", result.report())
        connection._reply(miss_response(result, server.miss_status), False)
        return True
    interaction = result.interaction
    if interaction.websocket is None or interaction.response is None:
        connection._reply(server._bytes_for(result, head_only=False), False)
        return True
    session = WebSocketReplay(
        interaction,
        request,
        server.index,
        transport,
        latency_scale=server.latency_scale,
        on_lost=lambda: server._connections.discard(connection),
        max_message=server.limits.max_body_bytes,
    )
    transport.set_protocol(session)
    delay = (interaction.duration_ms or 0.0) / 1000.0 * (server.latency_scale or 0.0)
    if delay > 0:
        asyncio.get_running_loop().call_later(delay, session.begin, rest)
    else:
        session.begin(rest)
    return True
