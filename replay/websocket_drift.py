"""Drift of WebSocket conversations: play the client's side against a new build, compare the server's.

``baton diff --target URL`` opens a WebSocket to the target (``ws://`` for
an ``http://`` target, ``wss://`` for ``https://``) with the recorded
handshake's headers, then plays the recorded client messages in order:

* before sending client message *k*, it waits until the target has sent as
  many messages as the server had sent before *k* in the recording (a
  greeting, the answer to the previous message), so the conversation keeps
  its recorded pace whatever the target's speed;
* after the last client message it collects server messages until it has
  as many as were recorded, or the server closes, or ``--timeout`` passes
  with nothing new;
* the close is played as recorded: the client's close (code and reason) if
  the client closed, else it waits for the server's;
* a wait that times out is noted and the script goes on without waiting
  again, so a target that dropped a message costs at most two timeouts.

Server messages are then paired in order — the recording's *i*-th server
message with the target's *i*-th — and compared with the same comparison as
bodies (``replay/comparison.py``: JSON through deepdiff, text by lines,
binary by digest; ``--ignore`` rules and learned noise apply, to the
location inside the message, ``body.count``, and to the whole one,
``message 6 body.count``). Each change is located by the message's position
in the recorded conversation, as ``baton show`` numbers it: ``message 6
body.n``. A recorded message the target never sent is ``breaking``, one more
from the target ``additive``, a text message turned binary ``breaking``, a
different close ``value``. The handshake's own answer is compared like any
response, without ``Sec-WebSocket-Accept`` and ``Sec-WebSocket-Extensions``,
which differ by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from wsproto import WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)
from wsproto.events import Request as WSRequest
from wsproto.extensions import Extension, PerMessageDeflate

from baton.cassettes.model import (
    Interaction,
    Request,
    Response,
    WebSocketConversation,
    WebSocketMessage,
    header_values,
)
from baton.cassettes.redaction import PLACEHOLDER_PATTERN
from baton.replay.comparison import (
    Change,
    DriftClass,
    NoiseRules,
    compare_responses,
    endpoint_of,
)
from baton.replay.resend import Outgoing, Resender, ResendError

__all__ = [
    "FreshConversation",
    "LiveResult",
    "compare_conversations",
    "compare_handshakes",
    "compare_live",
    "converse",
    "locations_that_differ",
    "unsendable",
]

PLACEHOLDER_BYTES = re.compile(PLACEHOLDER_PATTERN.pattern.encode())

_HANDSHAKE_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
        "sec-websocket-protocol",
    }
)
"""Headers the WebSocket handshake makes for each connection: not sent as recorded."""
_NOT_COMPARED = _HANDSHAKE_HEADERS - {"sec-websocket-protocol"}
"""The subprotocol the server chose is compared; the rest differs by design."""


@dataclass
class FreshConversation:
    """What the target answered: the handshake, then the conversation as it went."""

    response: Response
    conversation: WebSocketConversation = field(default_factory=WebSocketConversation)
    notes: list[str] = field(default_factory=list)


class _Reader:
    """The target's side of the connection: messages collected, pings answered, the close kept."""

    def __init__(self, ws: WSConnection, writer: asyncio.StreamWriter, started: float) -> None:
        self.ws = ws
        self.writer = writer
        self.started = started
        self.messages: list[WebSocketMessage] = []
        self.server_messages = 0
        self.close: CloseConnection | None = None
        self.closed_by_client: bool | None = None
        self.changed = asyncio.Event()
        self.finished = False
        self._parts: list[bytes] = []

    def is_open(self) -> bool:
        return self.ws.state is ConnectionState.OPEN and not self.finished

    def add_sent(self, is_text: bool, data: bytes) -> None:
        self.messages.append(WebSocketMessage(True, is_text, data, self._offset()))

    def _offset(self) -> float:
        return round((time.monotonic() - self.started) * 1000.0, 3)

    def feed(self, data: bytes | None) -> None:
        self.ws.receive_data(data)
        self.drain()

    def drain(self) -> None:
        """Handle every event wsproto holds (messages may have come with the 101)."""
        for event in self.ws.events():
            if isinstance(event, Message):
                if isinstance(event, TextMessage):
                    self._parts.append(event.data.encode("utf-8", "surrogatepass"))
                else:
                    self._parts.append(bytes(event.data))
                if event.message_finished:
                    data_ = b"".join(self._parts)
                    self._parts.clear()
                    is_text = isinstance(event, TextMessage)
                    self.messages.append(WebSocketMessage(False, is_text, data_, self._offset()))
                    self.server_messages += 1
            elif isinstance(event, Ping):
                self.writer.write(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.close is None:
                    self.close = event
                    self.closed_by_client = False
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self.writer.write(self.ws.send(event.response()))
        self.changed.set()

    async def run(self, reader: asyncio.StreamReader) -> None:
        self.drain()
        try:
            while True:
                data = await reader.read(1 << 16)
                self.feed(data or None)
                if not data or self.ws.state is ConnectionState.CLOSED:
                    return
        finally:
            self.finished = True
            self.changed.set()

    async def until(self, condition: Any, timeout: float) -> bool:
        """Wait until ``condition()`` holds, the connection ends, or ``timeout`` passes idle."""
        while not condition():
            if self.finished or self.ws.state is ConnectionState.CLOSED:
                return bool(condition())
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout)
            except TimeoutError:
                return False
        return True


def _offers_deflate(recorded: Response | None) -> bool:
    if recorded is None:
        return False
    values = header_values(recorded.headers, "sec-websocket-extensions")
    return any(PerMessageDeflate.name in v for v in values)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


async def converse(
    target: Resender,
    outgoing: Outgoing,
    request: Request,
    recorded_response: Response | None,
    recorded: WebSocketConversation,
) -> FreshConversation:
    """Open a WebSocket to ``target`` and play the recorded client side; ``ResendError`` if none.

    ``outgoing`` is the handshake request as ``baton diff`` would re-send it
    (redacted headers replaced or dropped); the WebSocket headers themselves
    are made afresh. ``target`` lends its address, TLS settings and timeout.
    """
    timeout = target.timeout
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port, ssl=target._ssl, limit=1 << 20),
            timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise ResendError(f"cannot connect: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        return await _converse(
            reader, writer, target, outgoing, request, recorded_response, recorded
        )
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _converse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target: Resender,
    outgoing: Outgoing,
    request: Request,
    recorded_response: Response | None,
    recorded: WebSocketConversation,
) -> FreshConversation:
    timeout = target.timeout
    ws = WSConnection(ConnectionType.CLIENT)
    extensions: list[Extension] = (
        [PerMessageDeflate()] if _offers_deflate(recorded_response) else []
    )
    subprotocols = [
        p.strip()
        for value in header_values(request.headers, "sec-websocket-protocol")
        for p in value.split(",")
        if p.strip()
    ]
    headers = [
        (name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape"))
        for name, value in outgoing.headers
        if name.lower() not in _HANDSHAKE_HEADERS
    ]
    writer.write(
        ws.send(
            WSRequest(
                host=target.host_header,
                target=target.base_path + outgoing.target,
                extensions=extensions,
                extra_headers=headers,
                subprotocols=subprotocols,
            )
        )
    )
    response = await asyncio.wait_for(_handshake(ws, reader), timeout)
    fresh = FreshConversation(response)
    if response.status != 101:
        return fresh
    started = time.monotonic()
    state = _Reader(ws, writer, started)
    reading = asyncio.create_task(state.run(reader))
    try:
        await _play(state, recorded, timeout, fresh.notes)
    finally:
        if not reading.done():
            reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading
    close = state.close
    fresh.conversation = WebSocketConversation(
        tuple(state.messages),
        close.code if close is not None else None,
        (close.reason or "") if close is not None else "",
        state.closed_by_client,
    )
    return fresh


async def _handshake(ws: WSConnection, reader: asyncio.StreamReader) -> Response:
    rejected: Response | None = None
    body: list[bytes] = []
    while True:
        data = await reader.read(1 << 16)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                headers = tuple((_text(n), _text(v)) for n, v in event.extra_headers)
                if event.subprotocol:
                    headers += (("sec-websocket-protocol", event.subprotocol),)
                return Response(101, "Switching Protocols", headers=headers, body=b"")
            if isinstance(event, RejectConnection):
                headers = tuple((_text(n), _text(v)) for n, v in event.headers)
                rejected = Response(event.status_code, headers=headers, body=b"")
                if not event.has_body:
                    return rejected
            elif isinstance(event, RejectData):
                body.append(bytes(event.data))
                if event.body_finished and rejected is not None:
                    return replace(rejected, body=b"".join(body))
        if not data:
            if rejected is not None:
                return replace(rejected, body=b"".join(body))
            raise ResendError("connection closed before the handshake's answer")


async def _play(
    state: _Reader, recorded: WebSocketConversation, timeout: float, notes: list[str]
) -> None:
    before = 0  # server messages recorded before the next client message
    behind = 0  # how many fewer the target sent, as found by a wait that timed out
    for number, message in enumerate(recorded.messages, 1):
        if not message.from_client:
            before += 1
            continue
        wanted = before - behind
        arrived = await state.until(lambda n=wanted: state.server_messages >= n, timeout)
        if not arrived and state.is_open():
            behind = before - state.server_messages
            notes.append(
                f"waited {timeout:g} s for the server's messages before sending message "
                f"{number}; {behind} fewer than recorded"
            )
        if not state.is_open():
            notes.append(f"the server closed before message {number} could be sent")
            return
        if message.is_text:
            event: TextMessage | BytesMessage = TextMessage(
                data=message.data.decode("utf-8", "replace")
            )
        else:
            event = BytesMessage(data=message.data)
        state.writer.write(state.ws.send(event))
        state.add_sent(message.is_text, message.data)
    arrived = await state.until(lambda: state.server_messages >= before - behind, timeout)
    if not arrived and state.is_open():
        notes.append(f"waited {timeout:g} s for the server's last messages")
    if not state.is_open():
        return
    if recorded.closed_by_client:
        code = recorded.close_code if recorded.close_code not in (None, 1005, 1006) else 1000
        closing = CloseConnection(code=code, reason=recorded.close_reason)
        state.close, state.closed_by_client = closing, True
        state.writer.write(state.ws.send(closing))
        await state.until(lambda: not state.is_open() and state.finished, timeout)
        return
    server_closes = recorded.closed_by_client is False and recorded.close_code not in (None, 1006)
    if server_closes and not await state.until(lambda: state.close is not None, timeout):
        notes.append(f"the server did not close within {timeout:g} s, as recorded")
    if state.is_open():
        state.writer.write(state.ws.send(CloseConnection(code=1000)))


# -- the comparison ----------------------------------------------------------------------


def _without_handshake_headers(response: Response) -> Response:
    kept = tuple((n, v) for n, v in response.headers if n.lower() not in _NOT_COMPARED)
    return replace(response, headers=kept)


def compare_handshakes(
    recorded: Response | None, fresh: Response | None, endpoint: str, rules: NoiseRules
) -> list[Change]:
    """The handshakes' answers compared, without the headers the handshake makes afresh."""
    return compare_responses(
        None if recorded is None else _without_handshake_headers(recorded),
        None if fresh is None else _without_handshake_headers(fresh),
        endpoint,
        rules,
    )


def _kind(message: WebSocketMessage) -> str:
    return "text" if message.is_text else "binary"


def _shown(message: WebSocketMessage) -> str:
    if message.is_text:
        return message.data.decode("utf-8", "replace")
    return f"{len(message.data)} bytes"


def _close_text(code: int | None, reason: str) -> str:
    if code is None:
        return "no close"
    return f"{code} {reason}".rstrip()


def _payload_changes(
    old: WebSocketMessage, new: WebSocketMessage, where: str, endpoint: str, rules: NoiseRules
) -> list[Change]:
    """One message's payload compared as a body is; locations inside it prefixed with ``where``."""
    inner = compare_responses(
        Response(101, body=old.data), Response(101, body=new.data), endpoint, rules
    )
    out = []
    for change in inner:
        location = f"{where} {change.location}"
        rule = change.rule or rules.rule_for(endpoint, location)
        drift = DriftClass.NOISE if rule else change.drift
        out.append(Change(drift, change.kind, location, change.old, change.new, rule))
    return out


def _turns(
    conversation: WebSocketConversation,
) -> list[tuple[int, list[tuple[int, WebSocketMessage]]]]:
    """Server messages cut by the client's: (the client message's number, 0 first; its replies)."""
    turns: list[tuple[int, list[tuple[int, WebSocketMessage]]]] = [(0, [])]
    for number, message in enumerate(conversation.messages, 1):
        if message.from_client:
            turns.append((number, []))
        else:
            turns[-1][1].append((number, message))
    return turns


def compare_conversations(
    recorded: WebSocketConversation,
    fresh: WebSocketConversation,
    endpoint: str,
    rules: NoiseRules | None = None,
    *,
    numbering: WebSocketConversation | None = None,
) -> list[Change]:
    """Every difference between the server's messages (and close) in two conversations.

    Server messages are paired turn by turn — the replies to the same client
    message, in order — so one message missing does not shift every later
    one. Locations name a message by its position in ``numbering`` (the
    recording, by default): ``message 6``; a message more than recorded,
    by the one it follows: ``message 7+1``.
    """
    rules = rules or NoiseRules()
    old_turns, new_turns = _turns(recorded), _turns(fresh)
    named = _turns(numbering or recorded)
    raw: list[Change] = []

    def where(turn: int, index: int) -> str:
        if turn < len(named):
            client, replies = named[turn]
            if index < len(replies):
                return f"message {replies[index][0]}"
            last = replies[-1][0] if replies else client
            return f"message {last}+{index - len(replies) + 1}"
        return f"message {len((numbering or recorded).messages)}+{index + 1}"

    for turn in range(max(len(old_turns), len(new_turns))):
        old = [m for _, m in old_turns[turn][1]] if turn < len(old_turns) else []
        new = [m for _, m in new_turns[turn][1]] if turn < len(new_turns) else []
        for index, before in enumerate(old):
            location = where(turn, index)
            if index >= len(new):
                raw.append(
                    Change(DriftClass.BREAKING, "message_missing", location, _shown(before), None)
                )
                continue
            after = new[index]
            if before.is_text != after.is_text:
                raw.append(
                    Change(
                        DriftClass.BREAKING,
                        f"message_type_changed ({_kind(before)} -> {_kind(after)})",
                        location,
                        _shown(before),
                        _shown(after),
                    )
                )
            elif before.data != after.data:
                raw += _payload_changes(before, after, location, endpoint, rules)
        for index in range(len(old), len(new)):
            raw.append(
                Change(
                    DriftClass.ADDITIVE,
                    "message_added",
                    where(turn, index),
                    None,
                    _shown(new[index]),
                )
            )
    if recorded.closed_by_client is False and recorded.close_code is not None:
        before_close = (recorded.close_code, recorded.close_reason)
        after_close = (fresh.close_code, fresh.close_reason)
        if fresh.closed_by_client is not False or before_close != after_close:
            raw.append(
                Change(
                    DriftClass.VALUE,
                    "close_changed",
                    "close",
                    _close_text(*before_close),
                    _close_text(*after_close) if fresh.closed_by_client is False else "no close",
                )
            )
    out = []
    for change in raw:
        if change.drift is DriftClass.NOISE:
            out.append(change)
            continue
        rule = rules.rule_for(endpoint, change.location)
        out.append(replace(change, drift=DriftClass.NOISE, rule=rule) if rule else change)
    return out


def locations_that_differ(
    first: WebSocketConversation, second: WebSocketConversation, numbering: WebSocketConversation
) -> set[str]:
    """Every location where two conversations with one target differ: learned as noise."""
    return {
        c.location
        for c in compare_conversations(first, second, "", NoiseRules(), numbering=numbering)
    }


# -- one recorded conversation against a live target --------------------------------------


@dataclass
class LiveResult:
    """What ``baton diff`` reports for one recorded conversation."""

    outcome: str
    """``compared`` or ``skipped``."""
    changes: list[Change] = field(default_factory=list)
    new_status: int | None = None
    notes: list[str] = field(default_factory=list)


def unsendable(conversation: WebSocketConversation) -> str | None:
    """Why the client's side cannot be played (a message holds a redacted secret), or None."""
    for number, message in enumerate(conversation.messages, 1):
        if message.from_client and PLACEHOLDER_BYTES.search(message.data):
            return f"client message {number} holds a redacted secret; nothing to send in its place"
    return None


async def compare_live(
    interaction: Interaction,
    outgoing: Outgoing,
    to_target: Resender,
    to_reference: Resender,
    rules: NoiseRules,
    learn_noise: bool,
) -> LiveResult:
    """Play the recorded client side against the target and compare what its server said.

    With ``learn_noise`` the conversation is first played twice against the
    reference; every location where those two differ becomes noise.
    """
    recorded = interaction.websocket
    assert recorded is not None
    request = interaction.request
    endpoint = endpoint_of(request.method, request.path)
    reason = unsendable(recorded)
    if reason is not None:
        return LiveResult("skipped", notes=[f"not re-sent: {reason}"])

    async def play(to: Resender) -> FreshConversation:
        return await converse(to, outgoing, request, interaction.response, recorded)

    try:
        if learn_noise:
            first, second = await play(to_reference), await play(to_reference)
            rules.learn(
                endpoint,
                locations_that_differ(first.conversation, second.conversation, recorded),
            )
            fresh = second if to_reference is to_target else await play(to_target)
        else:
            fresh = await play(to_target)
    except TimeoutError:
        return LiveResult(
            "compared", compare_handshakes(interaction.response, None, endpoint, rules)
        )
    except ResendError as exc:
        changes = compare_responses(interaction.response, None, endpoint, rules, error=str(exc))
        return LiveResult("compared", changes)
    changes = compare_handshakes(interaction.response, fresh.response, endpoint, rules)
    if fresh.response.status == 101:
        changes += compare_conversations(recorded, fresh.conversation, endpoint, rules)
    return LiveResult("compared", changes, fresh.response.status, fresh.notes)
