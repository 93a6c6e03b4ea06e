"""The values a cassette holds: ``Request``, ``Response`` and ``Interaction``.

They are immutable so that an interaction read from a file, redacted, indexed
and served can be shared without copies or surprises. Text fields that travel
as bytes on the wire (header names and values, the path, query pairs, the
reason) are ``str`` decoded as UTF-8 with ``surrogateescape``, the convention
mitmproxy uses: any byte sequence round-trips exactly, and the common ASCII
case reads naturally.

A body is ``bytes`` exactly as on the wire (content-encoding kept), or
``None`` when the proxy streamed it without keeping a copy: "not captured" is
never confused with "empty".

Streams (format 2) add three things, each optional:

* ``chunks``: a body that arrived as a stream (server-sent events, a chunked
  answer), kept with its boundaries and the time each piece came, so replay
  can send it the same way. ``body`` then holds the pieces joined.
* ``stored``: a body too large to hold in memory; it stays in the cassette
  file as pieces, and ``StoredBody.chunks()`` reads them one at a time.
  ``body`` is then ``None``.
* ``Interaction.websocket``: the messages of a WebSocket conversation after
  its 101 handshake, in order, with direction, type and time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, cast
from urllib.parse import urlencode

from baton.cassettes.grpc_model import GrpcCall

__all__ = [
    "BodySource",
    "Chunk",
    "Headers",
    "Interaction",
    "LazyResponse",
    "Pairs",
    "Request",
    "Response",
    "StoredBody",
    "WebSocketConversation",
    "WebSocketMessage",
    "header_values",
]

Pairs = tuple[tuple[str, str], ...]
"""Ordered (name, value) pairs; order and repeats are kept."""

Headers = Pairs

_DEFAULT_PORTS = {"http": 80, "https": 443}


def header_values(headers: Headers, name: str) -> list[str]:
    """Return every value of header ``name`` (case-insensitive), in order."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def _first_header(headers: Headers, name: str) -> str | None:
    values = header_values(headers, name)
    return values[0] if values else None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a streamed body as it arrived, and when (ms after the exchange started)."""

    offset_ms: float
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredBody:
    """A body left in the cassette file as pieces, because it is too large to hold.

    ``spans`` say where each piece's record lies in ``path`` (byte offset,
    length) and when the piece came; nothing of the body itself is in memory.
    """

    path: str
    spans: tuple[tuple[int, int, float], ...]
    size: int
    sha256: str

    def chunks(self) -> Iterator[Chunk]:
        """The pieces, read from the file one at a time (``CassetteError`` if it changed)."""
        from baton.cassettes.reader import read_stored_chunks

        return read_stored_chunks(self)


@dataclass(frozen=True, slots=True)
class WebSocketMessage:
    """One WebSocket message: who sent it, text or binary, its payload and when."""

    from_client: bool
    is_text: bool
    data: bytes
    offset_ms: float


@dataclass(frozen=True, slots=True)
class WebSocketConversation:
    """What followed a WebSocket handshake: every message in order, then how it closed.

    ``close_code`` is None when the connection ended without a close frame
    (a reset, a proxy stopped); ``closed_by_client`` says who sent the close.
    """

    messages: tuple[WebSocketMessage, ...] = ()
    close_code: int | None = None
    close_reason: str = ""
    closed_by_client: bool | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request as the client sent it."""

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: Pairs = ()
    http_version: str = "HTTP/1.1"
    headers: Headers = ()
    body: bytes | None = b""
    chunks: tuple[Chunk, ...] | None = None
    """The body as it arrived in pieces, when it was streamed and kept in memory."""
    stored: StoredBody | None = None
    """Where a body too large to hold lies in the cassette file (``body`` is then None)."""

    @property
    def authority(self) -> str:
        """``host`` or ``host:port`` as it would appear in a URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if _DEFAULT_PORTS.get(self.scheme) == self.port:
            return host
        return f"{host}:{self.port}"

    @property
    def target(self) -> str:
        """The path with its query string, as on an HTTP/1.1 request line."""
        if not self.query:
            return self.path
        return f"{self.path}?{urlencode(list(self.query), doseq=False)}"

    @property
    def url(self) -> str:
        """The absolute URL of the request."""
        return f"{self.scheme}://{self.authority}{self.target}"

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        return _first_header(self.headers, name)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response as the server sent it."""

    status: int
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = ()
    body: bytes | None = b""
    trailers: Headers | None = None
    chunks: tuple[Chunk, ...] | None = None
    """The body as it arrived in pieces, when it was streamed and kept in memory."""
    stored: StoredBody | None = None
    """Where a body too large to hold lies in the cassette file (``body`` is then None)."""

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        return _first_header(self.headers, name)


@dataclass(frozen=True, slots=True)
class Interaction:
    """One exchange: a request and the response it got, or the error instead.

    ``response`` is None exactly when the upstream could not answer (refused,
    timed out, reset); ``error`` then says why. The request still counts: a
    replay of it reproduces the failure.
    """

    id: str
    request: Request
    response: Response | None
    recorded_at: float
    duration_ms: float | None = None
    error: str | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)
    websocket: WebSocketConversation | None = None
    """The conversation after a WebSocket handshake (the response is its 101)."""
    grpc: GrpcCall | None = None
    """A gRPC call's messages with their times and decoded forms (cassettes/grpc_model.py)."""

    def with_tags(self, **extra: Any) -> Interaction:
        """Return a copy with ``extra`` merged into the tags."""
        return replace(self, tags={**self.tags, **extra})


_BODY_SLOT = Response.__dict__["body"]


class BodySource(Protocol):
    """Where a ``LazyResponse``'s body is read from (cassettes/reader.py)."""

    def body(self, response: LazyResponse) -> bytes | None:
        """The body of ``response``, read from the file and checked."""
        ...


class LazyResponse(Response):
    """A response whose body stays in the cassette file until first asked for.

    Made by ``cassettes.reader.load_lazily`` for replay: opening a large
    cassette costs its requests and response heads, and memory holds the
    bodies that were served. It is a ``Response`` in every way: reading
    ``body`` reads it from the file once and keeps it, and it compares equal
    to the ``Response`` a full read gives.
    """

    __slots__ = ("_interaction_id", "_length", "_offset", "_source")
    _source: BodySource
    _offset: int
    _length: int
    _interaction_id: str

    @classmethod
    def placed(
        cls, head: Response, source: BodySource, interaction_id: str, offset: int, length: int
    ) -> LazyResponse:
        """``head`` (its body not read) whose body lies in the interaction record at ``offset``."""
        return cls.unread(
            head.status,
            head.reason,
            head.http_version,
            head.headers,
            head.trailers,
            source,
            interaction_id,
            offset,
            length,
        )

    @classmethod
    def unread(
        cls,
        status: int,
        reason: str,
        http_version: str,
        headers: Headers,
        trailers: Headers | None,
        source: BodySource,
        interaction_id: str,
        offset: int,
        length: int,
    ) -> LazyResponse:
        """A response known by its head, its body in the interaction record at ``offset``."""
        made = object.__new__(cls)
        object.__setattr__(made, "status", status)
        object.__setattr__(made, "reason", reason)
        object.__setattr__(made, "http_version", http_version)
        object.__setattr__(made, "headers", headers)
        object.__setattr__(made, "trailers", trailers)
        object.__setattr__(made, "chunks", None)
        object.__setattr__(made, "stored", None)
        object.__setattr__(made, "_source", source)
        object.__setattr__(made, "_interaction_id", interaction_id)
        object.__setattr__(made, "_offset", offset)
        object.__setattr__(made, "_length", length)
        return made

    @property
    def location(self) -> tuple[str, int, int]:
        """(interaction id, byte offset, length) of the record holding the body."""
        return self._interaction_id, self._offset, self._length

    @property
    def loaded(self) -> bool:
        """True once the body has been read from the file (or was given)."""
        try:
            _BODY_SLOT.__get__(self, Response)
        except AttributeError:
            return False
        return True

    @property
    def body(self) -> bytes | None:
        try:
            return cast("bytes | None", _BODY_SLOT.__get__(self, Response))
        except AttributeError:
            body = self._source.body(self)
            _BODY_SLOT.__set__(self, body)
            return body

    @body.setter
    def body(self, value: bytes | None) -> None:
        _BODY_SLOT.__set__(self, value)  # dataclasses.replace() builds copies through it

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(Response))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled or copied, it becomes a plain Response: its source holds a descriptor
        # of this process's open file, which means nothing anywhere else.
        return (Response, tuple(getattr(self, f.name) for f in fields(Response)))

    __hash__ = None  # type: ignore[assignment]
