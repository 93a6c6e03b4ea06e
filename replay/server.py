"""baton's own replay server: reverse mode over plain HTTP/1.1, without a proxy in the way.

mitmproxy's per-request cost caps any addon near a thousand requests per
second here, while a test suite hitting a stand-in service wants tens of
thousands and a start in milliseconds. This server parses with httptools
(uvicorn's parser), looks the request up in the same ``Index`` the mitmproxy
``Replayer`` uses, and writes a response that was serialised once, when the
cassette was loaded. Keep-alive and pipelining are honoured, responses go
out in request order.

What it writes is the recorded response: status, reason, headers in
recorded order, body as recorded. Only framing is adjusted where HTTP/1.1
needs it: a body recorded from a chunked response is sent as one chunk (the
``Transfer-Encoding`` header stays as recorded), and a response recorded
without any length (HTTP/2, or close-delimited) gets a ``Content-Length``.

A response recorded as a stream keeps its pieces: each goes out as one chunk
(``Transfer-Encoding: chunked`` is added where the recording had no length),
and a body too large to hold, or any stream under ``--replay-latency``, is
sent piece by piece by ``replay/streaming.py`` instead of from one block.

Clients are not trusted: ``ServerLimits`` (replay/limits.py) bounds the
request line, the head, the body, the time a head or a body may take, idle
keep-alive connections and how many connections are served at once. Each
check sits where bytes arrive (a length compared in a parser callback, a
deadline moved as a float and looked at by one lazy timer per connection), so
the answering path is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import httptools

from baton.cassettes.model import Interaction, Request, Response, header_values
from baton.replay.answer_cache import AnswerCache, CacheKey
from baton.replay.index import Hit, Index, Miss
from baton.replay.limits import (
    BODY_TOO_LARGE,
    CONTINUE,
    EXPECTATION_FAILED,
    HEADERS_TOO_LARGE,
    URI_TOO_LONG,
    ServerLimits,
)
from baton.replay.streaming import StreamedAnswer, is_streamed, send_stream

if TYPE_CHECKING:  # replay/faults.py loads with the first --fault rule, not every start-up
    from baton.replay.faults import Fault, FaultPlan

__all__ = [
    "FAULT_ROUTE_HEADER",
    "HELD_BODY_LIMIT",
    "ROUTE_HEADER",
    "HeldBody",
    "ReplayServer",
    "RoutedReplayServer",
    "miss_response",
    "serialize_response",
]

logger = logging.getLogger(__name__)

_NO_BODY_STATUSES = frozenset({204, 304}) | frozenset(range(100, 200))


def _reason(status: int, recorded: str) -> str:
    if recorded:
        return recorded
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _wire(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def serialize_response(response: Response, *, head_only: bool = False) -> bytes:
    """The HTTP/1.1 bytes of a recorded response, framed so a keep-alive client can read it."""
    body = response.body or b""
    headers = list(response.headers)
    names = {name.lower() for name, _ in headers}
    chunked = any(
        "chunked" in value.lower() for value in header_values(response.headers, "transfer-encoding")
    )
    streamed = response.chunks is not None or response.stored is not None
    if streamed and response.stored is not None:
        body = b""  # only the head is ever made from a stored body here
    if response.body is None and response.stored is None:
        # Not captured at recording time: say so, and frame an empty body.
        headers = [
            (n, v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")
        ]
        headers += [("Content-Length", "0"), ("X-Baton-Body-Not-Captured", "1")]
        chunked = False
    elif not chunked and "content-length" not in names and response.status not in _NO_BODY_STATUSES:
        if streamed:
            # Recorded without a length (HTTP/2, close-delimited): chunks keep its pieces.
            headers.append(("Transfer-Encoding", "chunked"))
            chunked = True
        else:
            headers.append(("Content-Length", str(len(body))))
    lines = [f"HTTP/1.1 {response.status} {_reason(response.status, response.reason)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    head = _wire("\r\n".join(lines)) + b"\r\n\r\n"
    if head_only or response.status in _NO_BODY_STATUSES:
        return head
    if chunked:
        pieces = [c.data for c in response.chunks] if response.chunks is not None else [body]
        framed = [b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces if piece]
        return head + b"".join(framed) + b"0\r\n\r\n"
    return head + body


def miss_response(miss: Miss, status: int) -> bytes:
    """The answer to a request no recorded interaction matches: the near-miss report."""
    body = (miss.report() + "\n").encode("utf-8")
    return (
        f"HTTP/1.1 {status} {_reason(status, '')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "X-Baton-Miss: 1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def error_response(interaction: Interaction) -> bytes:
    """The answer to a request whose recording got no response: a 502 naming the recorded error."""
    body = f"baton: recorded without a response: {interaction.error}\n".encode()
    return (
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "X-Baton-Recorded-Error: 1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


HELD_BODY_LIMIT = 1 << 20
"""Bytes of a body held whole above which its answer is written as head and body, never
joined into one more copy (a 300 MB body imported from a HAR would be held twice)."""


@dataclass(frozen=True)
class HeldBody:
    """A large answer written as its pieces: the head, the body as the response holds it."""

    pieces: tuple[bytes, ...]


def _held_body(response: Response) -> HeldBody | None:
    """``response`` as pieces when its body is large and held whole (not a stream), else None."""
    body = response.body
    if (
        body is None
        or len(body) <= HELD_BODY_LIMIT
        or response.chunks is not None
        or response.stored is not None
        or response.status in _NO_BODY_STATUSES
    ):
        return None
    head = serialize_response(response, head_only=True)
    chunked = any(
        "chunked" in value.lower() for value in header_values(response.headers, "transfer-encoding")
    )
    if chunked:  # sent as one chunk, as serialize_response frames it
        return HeldBody((head, b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n"))
    return HeldBody((head, body))


_EXPIRED_PER_TURN = 128
"""Expired connections closed per turn of the event loop (see ``ReplayServer.close_expired``)."""


@dataclass(frozen=True)
class _Parsed:
    request: Request
    keep_alive: bool


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the answer is in ``_Connection._refusal``."""


class _Connection(asyncio.Protocol):
    """One client connection: parse, look up, answer in order."""

    def __init__(self, server: ReplayServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        """As they arrived: decoded only when a ``Request`` is built (the cache needs none)."""
        self._host: bytes | None = None
        self._body: list[bytes] = []
        self._queue: deque[_Parsed] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._upgrade: Request | None = None
        self._paused = False
        self._resumed: asyncio.Future[None] | None = None
        self._client: str | None = None
        """The client's address, for ``--session-by client``."""
        # Limits (replay/limits.py): what has arrived of the request being read.
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        """When the connection is closed unless something moves it (a head, a body, idling)."""
        self._timer: asyncio.TimerHandle | None = None
        self._idle = False
        self._in_head = True
        self._mid_message = False
        self._progress = False
        self._pending = 0
        """Bytes received in a head since the parser last completed a piece of it."""
        self._head_total = 0
        self._body_size = 0
        self._declared = -1
        self._chunked = False
        self._expect: str | None = None
        self._refusal: bytes | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server._connections.add(self)
        self._arm(self._limits.header_timeout)  # the first request's head, from the connection
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._client = f"{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self._server._room.set()
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._worker is not None:
            self._worker.cancel()

    # deadlines: one lazy timer, moved by assigning a float
    def _arm(self, seconds: float) -> None:
        self._deadline = self._loop.time() + seconds
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        deadline, transport = self._deadline, self._transport
        if deadline is None or transport is None or transport.is_closing():
            return
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._expire)
            return
        if not self._in_head and self._worker is not None and not self._worker.done():
            self._arm(self._limits.header_timeout)  # still answering: look again later
            return
        # A head or a body too slow, or an idle keep-alive connection: close, answer nothing.
        logger.debug("closing %s: %s", self._client, "idle" if self._idle else "too slow")
        self._deadline = None
        self._server.close_expired(transport)

    def _refuse(self, answer: bytes) -> None:
        """Stop reading this request: raised out of a parser callback, answered in data_received."""
        self._refusal = answer
        raise _Refused

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)

    # replay.streaming.StreamSink, for answers sent piece by piece
    def write(self, data: list[bytes]) -> None:
        if self._transport is not None:
            self._transport.writelines(data)

    async def drain(self) -> None:
        if self._paused:
            self._resumed = asyncio.get_running_loop().create_future()
            await self._resumed

    def closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._progress = False
        elif self._deadline is not None:  # reading a body: each read moves its deadline
            self._deadline = self._loop.time() + self._limits.body_timeout
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            request, self._upgrade = self._upgrade, None
            self._deadline = None  # the connection is the WebSocket session's from here
            if request is not None and self._server.upgrade(self, request, data[exc.args[0] :]):
                self._server._room.set()
                return
            self._reply(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n", False)
        except httptools.HttpParserError:
            refusal = self._refusal
            if refusal is not None:  # a limit: the head or body is not read further
                self._reply(refusal, False)
            else:
                self._reply(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", False)
            return
        if self._in_head and not self._progress:
            # httptools holds a header field until it ends: bound what it may hold.
            self._pending += len(data)
            if self._pending > self._limits.head_bytes:
                self._refusal = HEADERS_TOO_LARGE
                self._reply(HEADERS_TOO_LARGE, False)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._host = None
        self._body = []
        self._mid_message = True
        self._in_head = True
        self._head_total = self._body_size = 0
        self._declared = -1
        self._chunked = False
        self._expect = None
        if self._idle:  # a keep-alive connection's next request: its head has its own time
            self._idle = False
            self._arm(self._limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._progress = True
        self._url += url
        if len(self._url) > self._limits.max_request_line:
            self._refuse(URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._progress = True
        self._head_total += len(name) + len(value) + 4
        if (
            self._head_total > self._limits.max_header_bytes
            or len(self._headers) >= self._limits.max_headers
        ):
            self._refuse(HEADERS_TOO_LARGE)
        if len(name) in (6, 14, 17):  # Expect, Content-Length, Transfer-Encoding
            self._framing_header(name.lower(), value)
        elif len(name) == 4 and self._host is None and name.lower() == b"host":
            self._host = value
        self._headers.append((name, value))

    def _framing_header(self, name: bytes, value: bytes) -> None:
        if name == b"expect":
            self._expect = value.decode("latin-1").strip().lower()
        elif name == b"content-length" and value.strip().isdigit():
            self._declared = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            self._chunked = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._pending = 0
        if self._declared > self._limits.max_body_bytes:
            self._refuse(BODY_TOO_LARGE)  # refused before a byte of it is read
        if self._expect is not None:
            if self._expect != "100-continue":
                self._refuse(EXPECTATION_FAILED)
            transport = self._transport
            # Only when nothing is still owed to this client: answers go out in order.
            if (
                transport is not None
                and not self._queue
                and (self._worker is None or self._worker.done())
            ):
                transport.write(CONTINUE)
        if self._declared > 0 or self._chunked:
            self._arm(self._limits.body_timeout)
        else:
            self._deadline = None

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_bytes:
            self._refuse(BODY_TOO_LARGE)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._mid_message = False
        self._in_head = True
        self._deadline = None  # answering: no deadline until the answer is out
        parser, server = self._parser, self._server
        cache = server.answers
        key: CacheKey | None = None
        if (
            cache is not None
            and not self._body
            and not self._chunked
            and not self._queue
            and (self._worker is None or self._worker.done())
            and not parser.should_upgrade()
        ):
            # The common case, a request answered the same way every time: no Request built,
            # no match key computed (replay/answer_cache.py says when that holds).
            key = (parser.get_method(), self._url, self._host)
            known = cache.answer(key)
            if known is not None:
                self._reply(known, parser.should_keep_alive())
                return
        parsed = httptools.parse_url(self._url)
        query = parsed.query.decode("utf-8", "surrogateescape") if parsed.query else ""
        host, port = server.host, server.port
        if self._host is not None:
            value = self._host.decode("utf-8", "surrogateescape")
            host, _, port_text = value.rpartition(":") if ":" in value else (value, "", "")
            port = int(port_text) if port_text.isdigit() else server.port
        headers = tuple(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            for name, value in self._headers
        )
        request = Request(
            method=self._parser.get_method().decode("ascii", "replace"),
            scheme="http",
            host=host,
            port=port,
            path=parsed.path.decode("utf-8", "surrogateescape") if parsed.path else "/",
            query=tuple(parse_qsl(query, keep_blank_values=True)),
            http_version=f"HTTP/{self._parser.get_http_version()}",
            headers=headers,
            body=b"".join(self._body),
        )
        item = _Parsed(request, self._parser.should_keep_alive())
        if self._parser.should_upgrade():
            self._upgrade = request  # answered in data_received, with the bytes that follow it
            return
        if (
            self._server.latency_scale is None
            and self._server.faults is None  # --fault: answered by _drain, which can wait
            and not self._queue
            and (self._worker is None or self._worker.done())
        ):
            self._answer(item, key)
        else:
            self._queue.append(item)
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self, streaming: tuple[StreamedAnswer, bool] | None = None) -> None:
        if streaming is not None:
            await self._stream(*streaming)
        while self._queue:
            item = self._queue[0]
            fault = self._server.fault_for(item.request)
            delay = self._server.delay_for(item.request, self._client)
            if fault is not None:
                delay += fault.delay_s  # a delay fault composes with --replay-latency
            if delay:
                await asyncio.sleep(delay)
            self._queue.popleft()
            if fault is not None and self._transport is not None:
                from baton.replay.fault_wire import inject_fault

                going_on = await inject_fault(
                    fault,
                    self._server,
                    self,
                    self._transport,
                    item.request,
                    self._client,
                    item.keep_alive,
                )
                if not going_on:
                    self._queue.clear()
                    return
                continue
            answer = self._server.respond(item.request, self._client)
            if type(answer) is bytes or type(answer) is HeldBody:
                self._reply(answer, item.keep_alive)
            else:
                assert isinstance(answer, StreamedAnswer)
                await self._stream(answer, item.keep_alive)

    def _answer(self, item: _Parsed, key: CacheKey | None = None) -> None:
        answer = self._server.respond(item.request, self._client, key)
        if type(answer) is bytes or type(answer) is HeldBody:
            self._reply(answer, item.keep_alive)
            return
        # Sent piece by piece: later requests on this connection wait their turn.
        assert isinstance(answer, StreamedAnswer)
        self._worker = asyncio.get_running_loop().create_task(
            self._drain((answer, item.keep_alive))
        )

    async def _stream(self, answer: StreamedAnswer, keep_alive: bool) -> None:
        complete = await send_stream(answer, self, latency_scale=self._server.latency_scale)
        if (not complete or not keep_alive or answer.short) and self._transport is not None:
            self._transport.close()
        elif not self._mid_message and not self._queue:
            self._idle = True
            self._arm(self._limits.keepalive_timeout)

    def _reply(self, data: bytes | HeldBody, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if type(data) is bytes:
            transport.write(data)
        else:
            assert isinstance(data, HeldBody)
            transport.writelines(data.pieces)
        if not keep_alive:
            transport.close()
        elif not self._mid_message and not self._queue:
            self._idle = True
            self._arm(self._limits.keepalive_timeout)


class ReplayServer:
    """Serve an ``Index`` on 127.0.0.1 (by default) until closed."""

    def __init__(
        self,
        index: Index,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        miss_status: int = 502,
        latency_scale: float | None = None,
        faults: FaultPlan | None = None,
        limits: ServerLimits | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.index = index
        self.reuse_port = reuse_port
        """Bind with SO_REUSEPORT: worker processes listen on one port (``--workers``)."""
        self.limits = limits if limits is not None else ServerLimits()
        """What a client may send (replay/limits.py); every connection reads it."""
        self.host = host
        self.port = port
        self.miss_status = miss_status
        self.latency_scale = latency_scale
        self.faults = faults
        """``--fault`` rules (replay/faults.py); None keeps the hot path free of them."""
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()
        self._expired: deque[asyncio.BaseTransport] = deque()
        """Connections whose deadline passed, closed a batch per loop turn (``close_expired``)."""
        self._room = asyncio.Event()
        """Set when a connection ends: the accept loop may take the next one."""
        # Serialised once, when first served: the hot path then only looks up and writes.
        # Not here: a lazily opened cassette (cassettes/reader.py load_lazily) keeps its
        # bodies in the file until asked for, so start-up and memory stay those of the index.
        self._responses: list[bytes | HeldBody | StreamedAnswer | None] = [None] * len(
            index.interactions
        )
        self._heads: dict[int, bytes] = {}
        self.answers: AnswerCache | None = None
        """Answers that cannot change, by raw request (replay/answer_cache.py); None: always
        ask the Index (``--replay-latency`` and ``--fault`` decide per request, a routed
        server is told which interaction)."""
        if latency_scale is None and faults is None and type(self).find is ReplayServer.find:
            self.answers = AnswerCache(index)

    def _serialize(self, interaction: Interaction) -> bytes | HeldBody | StreamedAnswer:
        if interaction.response is None:
            return error_response(interaction)
        response = interaction.response
        held = _held_body(response)
        if held is not None:
            return held
        if is_streamed(interaction) and (
            response.stored is not None
            or self.latency_scale
            or interaction.tags.get("stream_unfinished")
        ):
            # Never read whole (a stored body), sent at its recorded pace, or cut off (the
            # connection closes after it, as the original's did): piece by piece.
            return StreamedAnswer.of(interaction, serialize_response(response, head_only=True))
        return serialize_response(response)

    def find(self, request: Request, client: str | None = None) -> Hit | Miss:
        """The recorded interaction that answers ``request`` (every answer is looked up here)."""
        return self.index.lookup(request, client=client)

    def respond(
        self, request: Request, client: str | None = None, key: CacheKey | None = None
    ) -> bytes | HeldBody | StreamedAnswer:
        """What answers ``request``: a recorded response (bytes, or a stream), or the miss report.

        ``key``: the request as it arrived, to keep the answer under in ``answers`` if it
        can never change.
        """
        result = self.find(request, client)
        if isinstance(result, Miss):
            logger.warning("%s", result.report())
            return miss_response(result, self.miss_status)
        answer = self._answer_for(result, head_only=request.method == "HEAD")
        if key is not None and self.answers is not None and type(answer) is bytes:
            self.answers.offer(key, request, result, answer)
        return answer

    def _bytes_for(self, hit: Hit, *, head_only: bool) -> bytes:
        """The answer as one block of bytes (a stream's pieces joined, a stored body's head only)."""
        answer = self._answer_for(hit, head_only=head_only)
        if isinstance(answer, HeldBody):
            return b"".join(answer.pieces)
        if not isinstance(answer, StreamedAnswer):
            return answer
        held = answer.response.chunks or ()
        return answer.head + b"".join(b"".join(answer.frame(c.data)) for c in held) + answer.end

    def _answer_for(self, hit: Hit, *, head_only: bool) -> bytes | HeldBody | StreamedAnswer:
        if hit.response is not None:  # rewritten for this request: made afresh, never cached
            return serialize_response(hit.response, head_only=head_only)
        number = hit.number
        while number >= len(self._responses):
            self._responses.append(None)
        if head_only and hit.interaction.response is not None:
            head = self._heads.get(number)
            if head is None:
                head = serialize_response(hit.interaction.response, head_only=True)
                self._heads[number] = head
            return head
        data = self._responses[number]
        if data is None:
            data = self._serialize(hit.interaction)
            self._responses[number] = data
        return data

    def upgrade(self, connection: _Connection, request: Request, rest: bytes) -> bool:
        """Take over a connection asking for a WebSocket (replay/websocket_replay.py); False else."""
        from baton.replay.websocket_replay import accept_websocket

        return accept_websocket(self, connection, request, rest)

    def fault_for(self, request: Request) -> Fault | None:
        """The fault this request gets under ``--fault``, or None (drawn once per request)."""
        return None if self.faults is None else self.faults.decide(request)

    def delay_for(self, request: Request, client: str | None = None) -> float:
        """Seconds to wait before answering, under ``--replay-latency``."""
        if self.latency_scale is None:
            return 0.0
        # Peek without consuming: the real lookup happens when answering.
        upcoming = self.index.peek(request, client)
        if upcoming is None or is_streamed(upcoming):
            return 0.0  # a stream keeps its own time, piece by piece
        return (upcoming.duration_ms or 0.0) / 1000.0 * self.latency_scale

    async def start(self) -> tuple[str, int]:
        """Bind and start accepting; return the address actually bound."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        listener = socket.create_server(
            infos[0][4][:2], family=infos[0][0], backlog=1024, reuse_port=self.reuse_port
        )
        listener.setblocking(False)
        self._listener = listener
        self.host, self.port = listener.getsockname()[:2]
        self._accepting = loop.create_task(self._accept(listener))
        return self.host, self.port

    async def _accept(self, listener: socket.socket) -> None:
        """Take connections while fewer than ``max_connections`` are open; the rest wait in
        the listen backlog (the kernel's queue), so the ones being served go on undisturbed."""
        loop = asyncio.get_running_loop()
        cap = self.limits.max_connections
        # Checked on every turn, not only through cancellation: on Python 3.11 wait_for can
        # swallow a cancel that lands as the room event is set (close() closes connections,
        # which sets it), and the loop would go on accepting on a closed listener.
        while self._listener is listener:
            while len(self._connections) >= cap and self._listener is listener:
                self._room.clear()
                # A WebSocket session ends outside connection_lost: look again now and then.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 0.5)
            if self._listener is not listener:
                return
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, a reset before accept
                if self._listener is not listener:
                    return  # closed under us by close()
                logger.warning("accepting a connection failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            try:
                await loop.connect_accepted_socket(lambda: _Connection(self), conn)
            except OSError:
                conn.close()

    def close_expired(self, transport: asyncio.BaseTransport) -> None:
        """Close a connection whose deadline passed, in batches of ``_EXPIRED_PER_TURN``.

        Connections opened together expire together: a slowloris crowd of 10,000 opened
        at once reaches its header timeout in the same instant, and closing them all in
        one turn of the loop held every other connection's answer for ~50 ms. A batch
        per turn lets the loop read and answer the others in between.
        """
        self._expired.append(transport)
        if len(self._expired) == 1:
            asyncio.get_running_loop().call_soon(self._close_some_expired)

    def _close_some_expired(self) -> None:
        expired = self._expired
        for _ in range(min(len(expired), _EXPIRED_PER_TURN)):
            expired.popleft().close()
        if expired:
            asyncio.get_running_loop().call_soon(self._close_some_expired)

    def _stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for connection in list(self._connections):
            if connection._transport is not None:
                connection._transport.close()

    def close_now(self) -> None:
        """Stop accepting and close open connections without waiting (from synchronous code)."""
        self._stop_accepting()

    async def close(self) -> None:
        """Stop accepting, close open connections."""
        accepting = self._accepting
        self._stop_accepting()
        if accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await accepting


ROUTE_HEADER = "X-Baton-Interaction"
"""Names, by its number in the shared ``Index``, the interaction a routed request is answered with."""

FAULT_ROUTE_HEADER = "X-Baton-Fault-Rule"
"""Names, by its position in the shared ``FaultPlan``, the fault the Replayer drew for a request."""


class RoutedReplayServer(ReplayServer):
    """The replay server behind the mitmproxy path, for answers a mitmproxy hook cannot give.

    mitmproxy cannot send pieces at their recorded times, nor a body larger
    than memory, nor a WebSocket conversation, from its ``request`` hook. So
    the ``Replayer`` matches the request itself (the queue position is used
    once, there) and points the flow at this server on 127.0.0.1, naming the
    interaction in ``ROUTE_HEADER``; this server sends exactly that one, as
    the fast path would. A request without the header is a miss.
    """

    def find(self, request: Request, client: str | None = None) -> Hit | Miss:
        named = header_values(request.headers, ROUTE_HEADER)
        if named and named[0].isdigit() and int(named[0]) < len(self.index.interactions):
            number = int(named[0])
            return Hit(self.index.interactions[number], number)
        return Miss(request, [], f"no {ROUTE_HEADER} header names the interaction for")

    def fault_for(self, request: Request) -> Fault | None:
        """The fault the Replayer already drew for this request (never drawn twice)."""
        named = header_values(request.headers, FAULT_ROUTE_HEADER)
        if self.faults is None or not named or not named[0].isdigit():
            return None
        number = int(named[0])
        if number >= len(self.faults.rules):
            return None
        from baton.replay.faults import Fault, FaultKind

        rule = self.faults.rules[number]
        return Fault(rule) if rule.kind is not FaultKind.DELAY else None


def install_fast_loop() -> Any:
    """Use uvloop where it is installed; return the event loop policy in force."""
    try:
        import uvloop
    except ImportError:
        return asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.get_event_loop_policy()
