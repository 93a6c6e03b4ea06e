"""Convert interactions to and from the plain objects of the cassette format (version 2).

Format 2 adds one record kind to format 1, the *part*: one piece of a
streamed body or one WebSocket message, written as it passes through, before
the interaction that closes its stream. Every format-1 object is a valid
format-2 object, so a version-1 file reads unchanged.

This is the only module that knows the field names of the format, and (with
the reader and writer) the only one that touches msgpack. Decoding validates
every field, so that a damaged or hostile cassette fails with a message naming
the object and the field, never with a ``KeyError`` deep inside baton.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import msgpack

from baton.cassettes.compression import BodyCompression, compress_body, decompress_body
from baton.cassettes.errors import CassetteFormatError, UnsupportedVersion
from baton.cassettes.grpc_model import GrpcCall, GrpcMessage, split_frames
from baton.cassettes.model import (
    Chunk,
    Interaction,
    Pairs,
    Request,
    Response,
    StoredBody,
    WebSocketConversation,
    WebSocketMessage,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MIGRATIONS",
    "Part",
    "StreamRef",
    "StreamResolver",
    "check_header",
    "interaction_from_object",
    "interaction_to_object",
    "is_part",
    "make_header",
    "pack",
    "part_from_object",
    "part_to_object",
]

FORMAT_NAME = "baton-cassette"
FORMAT_VERSION = 3

# Older versions are upgraded one step at a time, object by object, when read:
# MIGRATIONS[n] turns a version-n interaction object into a version-(n+1) one.
# 1 -> 2 only added the part record and optional fields, so a version-1
# interaction is already a version-2 one; 2 -> 3 only added the trailing
# index record (cassettes/trailing_index.py).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: lambda obj: obj,
    2: lambda obj: obj,
}


@dataclass(frozen=True, slots=True)
class Part:
    """One part record: a piece of stream ``stream``, number ``seq``, at ``offset_ms``.

    ``from_client`` and ``is_text`` are set for WebSocket messages only.
    """

    stream: str
    seq: int
    offset_ms: float
    data: bytes
    from_client: bool | None = None
    is_text: bool | None = None


@dataclass(frozen=True, slots=True)
class StreamRef:
    """What an interaction says of a stream whose parts were written before it."""

    id: str
    count: int
    size: int
    sha256: str = ""


def pack(obj: Any) -> bytes:
    """Serialize one object of the stream."""
    # A fresh Packer per call keeps this thread-safe; Packer construction is cheap.
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def make_header(meta: Mapping[str, Any] | None = None, baton_version: str = "") -> dict[str, Any]:
    """Return the header object that opens every cassette."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "baton": baton_version,
        "meta": dict(meta or {}),
    }


def check_header(obj: Any, where: str) -> dict[str, Any]:
    """Validate a header object and return it; raise ``CassetteFormatError`` otherwise."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise CassetteFormatError(
            f"{where}: not a baton cassette (the first object is not a baton-cassette header)"
        )
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CassetteFormatError(f"{where}: header field 'version' must be a positive integer")
    if version > FORMAT_VERSION:
        raise UnsupportedVersion(
            f"{where}: cassette format version {version} is newer than this baton reads "
            f"(up to {FORMAT_VERSION}); upgrade baton to read it"
        )
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise CassetteFormatError(f"{where}: header field 'meta' must be a map")
    return obj


# -- encoding -----------------------------------------------------------------


def _wire_text(value: str) -> str | bytes:
    """Text that is valid UTF-8 is stored as a msgpack str; anything else as bin.

    Header values and paths are bytes on the wire and need not be UTF-8;
    storing the odd ones as bin keeps them exact without making the common
    case unreadable.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")
    return value


def _pairs_out(pairs: Pairs) -> list[list[str | bytes]]:
    return [[_wire_text(name), _wire_text(value)] for name, value in pairs]


def _ref_out(ref: StreamRef) -> dict[str, Any]:
    return {"id": ref.id, "count": ref.count, "size": ref.size, "sha256": ref.sha256}


def _request_out(
    request: Request, ref: StreamRef | None = None, compression: BodyCompression | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "method": request.method,
        "scheme": request.scheme,
        "host": request.host,
        "port": request.port,
        "path": _wire_text(request.path),
        "query": _pairs_out(request.query),
        "http_version": request.http_version,
        "headers": _pairs_out(request.headers),
        "body": None if ref is not None else _body_out(request, compression),
    }
    if ref is not None:
        out["stream"] = _ref_out(ref)
    return out


def _body_out(message: Request | Response, compression: BodyCompression | None) -> Any:
    """The stored form of a body held whole: its bytes, or the compressed map where that pays."""
    if compression is None:
        return message.body
    return compress_body(message.body, message.headers, compression)


def _response_out(
    response: Response, ref: StreamRef | None = None, compression: BodyCompression | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": response.status,
        "reason": _wire_text(response.reason),
        "http_version": response.http_version,
        "headers": _pairs_out(response.headers),
        "body": None if ref is not None else _body_out(response, compression),
        "trailers": None if response.trailers is None else _pairs_out(response.trailers),
    }
    if ref is not None:
        out["stream"] = _ref_out(ref)
    return out


def interaction_to_object(
    interaction: Interaction,
    streams: Mapping[str, StreamRef] | None = None,
    compression: BodyCompression | None = None,
) -> dict[str, Any]:
    """Return the map for ``interaction``.

    ``streams`` names the streams whose parts were written before it, by
    place: ``"request"`` and ``"response"`` (their bodies), ``"websocket"``
    (the messages). A body in memory is written inline, as in format 1, and
    compressed where ``compression`` says it pays (cassettes/compression.py).
    """
    streams = streams or {}
    response = interaction.response
    out: dict[str, Any] = {
        "id": interaction.id,
        "recorded_at": interaction.recorded_at,
        "duration_ms": interaction.duration_ms,
        "request": _request_out(interaction.request, streams.get("request"), compression),
        "response": None
        if response is None
        else _response_out(response, streams.get("response"), compression),
        "error": interaction.error,
        "tags": dict(interaction.tags),
    }
    websocket = interaction.websocket
    if websocket is not None:
        ref = streams.get("websocket")
        out["websocket"] = {
            "stream": None if ref is None else _ref_out(ref),
            "close": [websocket.close_code, websocket.close_reason, websocket.closed_by_client],
        }
    if interaction.grpc is not None:
        out["grpc"] = _grpc_out(interaction.grpc)
    return out


def _grpc_out(call: GrpcCall) -> dict[str, Any]:
    """The ``grpc`` map: the messages' bytes stay in the bodies; times and decoded forms here."""
    return {
        "service": call.service,
        "method": call.method,
        "schema": call.schema,
        "request": [[message.offset_ms, message.decoded] for message in call.requests],
        "response": [[message.offset_ms, message.decoded] for message in call.responses],
    }


def part_to_object(part: Part) -> dict[str, Any]:
    """Return the map of one part record."""
    out: dict[str, Any] = {
        "part": part.stream,
        "seq": part.seq,
        "offset_ms": part.offset_ms,
        "data": part.data,
    }
    if part.from_client is not None:
        out["from_client"] = part.from_client
        out["text"] = bool(part.is_text)
    return out


def is_part(obj: Any) -> bool:
    """True for a part record (an interaction map has no ``part`` key)."""
    return type(obj) is dict and "part" in obj


def part_from_object(obj: Any, where: str) -> Part:
    """Build a ``Part`` from a decoded map, validating every field."""
    fields = _Fields(obj, where, "")
    stream = fields.text("part")
    data = fields.body("data")
    if data is None:
        raise fields._fail("data", "bytes")
    from_client = fields.raw("from_client")
    is_text = fields.raw("text")
    if from_client is not None and not isinstance(from_client, bool):
        raise fields._fail("from_client", "true or false")
    if is_text is not None and not isinstance(is_text, bool):
        raise fields._fail("text", "true or false")
    return Part(
        stream, fields.integer("seq"), fields.number("offset_ms"), data, from_client, is_text
    )


# -- decoding -----------------------------------------------------------------


def _as_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


# 1900-01-01 and 9999-12-31T23:59:59 UTC: the dates a recorded_at may stand for.
_EARLIEST_TIMESTAMP = -2_208_988_800.0
_LATEST_TIMESTAMP = 253_402_300_799.0


class _Fields:
    """Typed access to one map of an object, with errors that name the field."""

    def __init__(self, obj: Any, where: str, path: str) -> None:
        if not isinstance(obj, dict):
            raise CassetteFormatError(f"{where}: field {path or 'object'}: expected a map")
        self._obj = obj
        self._where = where
        self._path = path

    def _fail(self, name: str, expected: str) -> CassetteFormatError:
        got = type(self._obj.get(name)).__name__ if name in self._obj else "nothing"
        return CassetteFormatError(
            f"{self._where}: field {self._path}{name}: expected {expected}, got {got}"
        )

    def has(self, name: str) -> bool:
        return name in self._obj and self._obj[name] is not None

    def raw(self, name: str) -> Any:
        return self._obj.get(name)

    def text(self, name: str) -> str:
        value = self._obj.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        raise self._fail(name, "text")

    def optional_text(self, name: str) -> str | None:
        return self.text(name) if self.has(name) else None

    def integer(self, name: str) -> int:
        value = self._obj.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._fail(name, "an integer")

    def number(self, name: str) -> float:
        value = self._obj.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self._fail(name, "a number")

    def timestamp(self, name: str) -> float:
        """Seconds since 1970 that a ``datetime`` can hold: ``baton show``, the HAR export and
        ``--shift-time`` turn them into dates, and a damaged one must fail here, not there."""
        value = self.number(name)
        if _EARLIEST_TIMESTAMP <= value <= _LATEST_TIMESTAMP:
            return value
        raise self._fail(name, "a time between the years 1900 and 9999")

    def optional_number(self, name: str) -> float | None:
        return self.number(name) if self.has(name) else None

    def body(self, name: str) -> bytes | None:
        value = self._obj.get(name)
        if value is None or isinstance(value, bytes):
            return value
        raise self._fail(name, "bytes or nil")

    def stored_body(self, name: str) -> bytes | None:
        """A request or response body: bytes, nil, or the compressed map, decoded here."""
        value = self._obj.get(name)
        if type(value) is dict:
            return decompress_body(value, f"{self._where}: field {self._path}{name}")
        return self.body(name)

    def pairs(self, name: str) -> Pairs:
        value = self._obj.get(name)
        if not isinstance(value, list):
            raise self._fail(name, "a list of [name, value] pairs")
        out: list[tuple[str, str]] = []
        append = out.append
        for n, pair in enumerate(value):
            # The common case, checked cheaply: a list of two str (this runs
            # for every header of every interaction a reader loads).
            if type(pair) is list and len(pair) == 2:
                first, second = pair
                if type(first) is str and type(second) is str:
                    append((first, second))
                    continue
                if isinstance(first, str | bytes) and isinstance(second, str | bytes):
                    append((_as_text(first), _as_text(second)))
                    continue
            raise CassetteFormatError(
                f"{self._where}: field {self._path}{name}[{n}]: expected a [name, value] pair"
            )
        return tuple(out)

    def optional_pairs(self, name: str) -> Pairs | None:
        return self.pairs(name) if self.has(name) else None

    def child(self, name: str) -> _Fields:
        if name not in self._obj:
            raise self._fail(name, "a map")
        return _Fields(self._obj[name], self._where, f"{self._path}{name}.")


class StreamResolver(Protocol):
    """Turns the stream an interaction names into what the model holds (the reader's job)."""

    def body(self, ref: StreamRef, where: str) -> tuple[Chunk, ...] | StoredBody: ...

    def messages(self, ref: StreamRef, where: str) -> tuple[WebSocketMessage, ...]: ...


def _ref_in(fields: _Fields, name: str) -> StreamRef | None:
    if not fields.has(name):
        return None
    ref = fields.child(name)
    return StreamRef(ref.text("id"), ref.integer("count"), ref.integer("size"), ref.text("sha256"))


def _body_fields(fields: _Fields, streams: StreamResolver | None, where: str) -> dict[str, Any]:
    """``body``, ``chunks`` and ``stored`` of a request or response map."""
    ref = _ref_in(fields, "stream")
    if ref is None:
        return {"body": fields.stored_body("body")}
    if streams is None:  # validating one object alone (repair): the shape is enough
        return {"body": None}
    found = streams.body(ref, where)
    if isinstance(found, StoredBody):
        return {"body": None, "stored": found}
    return {"body": b"".join(chunk.data for chunk in found), "chunks": found}


def _request_in(fields: _Fields, streams: StreamResolver | None = None, where: str = "") -> Request:
    return Request(
        method=fields.text("method"),
        scheme=fields.text("scheme"),
        host=fields.text("host"),
        port=fields.integer("port"),
        path=fields.text("path"),
        query=fields.pairs("query"),
        http_version=fields.text("http_version"),
        headers=fields.pairs("headers"),
        **_body_fields(fields, streams, f"{where} request"),
    )


def _response_in(
    fields: _Fields, streams: StreamResolver | None = None, where: str = ""
) -> Response:
    return Response(
        status=fields.integer("status"),
        reason=fields.text("reason"),
        http_version=fields.text("http_version"),
        headers=fields.pairs("headers"),
        trailers=fields.optional_pairs("trailers"),
        **_body_fields(fields, streams, f"{where} response"),
    )


def _websocket_in(
    fields: _Fields, streams: StreamResolver | None, where: str
) -> WebSocketConversation:
    close = fields.raw("close")
    if (
        not isinstance(close, list)
        or len(close) != 3
        or not (close[0] is None or (type(close[0]) is int))
        or not isinstance(close[1], str | bytes)
        or not (close[2] is None or isinstance(close[2], bool))
    ):
        raise fields._fail("close", "[code or nil, reason, closed_by_client or nil]")
    ref = _ref_in(fields, "stream")
    messages = streams.messages(ref, where) if ref is not None and streams is not None else ()
    return WebSocketConversation(messages, close[0], _as_text(close[1]), close[2])


_TEXT_FIELDS = ("method", "scheme", "host", "path", "http_version")


_SHARED_TEXT: dict[str, str] = {}
_SHARED_TEXT_LIMIT = 1 << 16
_SHARED_TEXT_LENGTH = 128


def _shared(text: str) -> str:
    """One copy of a short text that recurs (header names, ``application/json``, a host).

    msgpack makes a new str per occurrence: 100k interactions held 100k copies
    of each header name and common value, most of a replay index's memory
    once bodies stay in the file. Long or rare texts (dates, ids) are kept
    as they are once the table is full, so it stays small.
    """
    found = _SHARED_TEXT.get(text)
    if found is not None:
        return found
    if len(text) <= _SHARED_TEXT_LENGTH and len(_SHARED_TEXT) < _SHARED_TEXT_LIMIT:
        _SHARED_TEXT[text] = text
    return text


def _fast_pairs(value: Any) -> Pairs | None:
    if type(value) is not list:
        return None
    out = []
    known = _SHARED_TEXT.get  # the common case without a Python call per text
    for pair in value:
        if type(pair) is not list or len(pair) != 2:
            return None
        first, second = pair
        if type(first) is not str or type(second) is not str:
            return None
        out.append((known(first) or _shared(first), known(second) or _shared(second)))
    return tuple(out)


def _fast_stored_body(value: dict[str, Any]) -> bytes | None:
    """A compressed body decoded for the fast path; None sends it to the full check."""
    try:
        return decompress_body(value, "")
    except CassetteFormatError:
        return None  # the full path decodes it again and names the field


def _fast_interaction(obj: dict[str, Any]) -> Interaction | None:
    """The common, well-formed case without per-field wrappers; None sends it to the full check.

    Every type is still checked: anything unexpected (bytes text, a missing or
    extra-typed field) returns None and the validating path names the problem.
    """
    request = obj.get("request")
    response = obj.get("response")
    if type(request) is not dict or (response is not None and type(response) is not dict):
        return None
    if (
        "websocket" in obj
        or "grpc" in obj
        or "stream" in request
        or (response is not None and "stream" in response)
    ):
        return None  # format 2's streams: the full path resolves them
    texts = [request.get(name) for name in _TEXT_FIELDS]
    if any(type(t) is not str for t in texts):
        return None
    port, req_body = request.get("port"), request.get("body")
    if type(req_body) is dict and (req_body := _fast_stored_body(req_body)) is None:
        return None
    if type(port) is not int or (req_body is not None and type(req_body) is not bytes):
        return None
    query, req_headers = _fast_pairs(request.get("query")), _fast_pairs(request.get("headers"))
    if query is None or req_headers is None:
        return None
    built_response = None
    if response is not None:
        status, reason, version = (
            response.get("status"),
            response.get("reason"),
            response.get("http_version"),
        )
        body, trailers = response.get("body"), response.get("trailers")
        if type(body) is dict and (body := _fast_stored_body(body)) is None:
            return None
        headers = _fast_pairs(response.get("headers"))
        fast_trailers = None if trailers is None else _fast_pairs(trailers)
        if (
            type(status) is not int
            or type(reason) is not str
            or type(version) is not str
            or (body is not None and type(body) is not bytes)
            or headers is None
            or (trailers is not None and fast_trailers is None)
        ):
            return None
        built_response = Response(status, reason, version, headers, body, fast_trailers)
    identity, recorded_at = obj.get("id"), obj.get("recorded_at")
    duration, error, tags = obj.get("duration_ms"), obj.get("error"), obj.get("tags")
    if (
        type(identity) is not str
        or type(recorded_at) not in (float, int)
        or not _EARLIEST_TIMESTAMP <= cast(float, recorded_at) <= _LATEST_TIMESTAMP
        or (duration is not None and type(duration) not in (float, int))
        or (error is not None and type(error) is not str)
        or (tags is not None and type(tags) is not dict)
        or (built_response is None and error is None)
    ):
        return None
    method, scheme, host, path, http_version = (_shared(t) for t in cast(list[str], texts))
    return Interaction(
        id=identity,
        request=Request(
            method, scheme, host, port, path, query, http_version, req_headers, req_body
        ),
        response=built_response,
        recorded_at=float(cast(float, recorded_at)),
        duration_ms=None if duration is None else float(duration),
        error=error,
        tags=tags if tags is not None else {},
    )


def interaction_from_object(
    obj: Any,
    where: str,
    version: int = FORMAT_VERSION,
    streams: StreamResolver | None = None,
) -> Interaction:
    """Build an ``Interaction`` from a decoded map, validating every field.

    ``where`` prefixes every error ("file.cassette: object 7"); ``version`` is
    the header's, and older objects are migrated first. ``streams`` resolves
    the streams the interaction names (without it, they are checked for shape
    only and left empty).
    """
    if not isinstance(obj, dict):
        raise CassetteFormatError(f"{where}: expected an interaction map")
    for step in range(version, FORMAT_VERSION):
        obj = MIGRATIONS[step](obj)
    fast = _fast_interaction(obj)
    if fast is not None:
        return fast
    fields = _Fields(obj, where, "")
    tags = fields.raw("tags")
    if tags is None:
        tags = {}
    if not isinstance(tags, dict):
        raise CassetteFormatError(f"{where}: field tags: expected a map")
    response = (
        _response_in(fields.child("response"), streams, where) if fields.has("response") else None
    )
    error = fields.optional_text("error")
    if response is None and error is None:
        raise CassetteFormatError(f"{where}: field response: nil without an error")
    websocket = (
        _websocket_in(fields.child("websocket"), streams, where)
        if fields.has("websocket")
        else None
    )
    request = _request_in(fields.child("request"), streams, where)
    grpc = _grpc_in(fields.child("grpc"), request, response, where) if fields.has("grpc") else None
    return Interaction(
        id=fields.text("id"),
        recorded_at=fields.timestamp("recorded_at"),
        duration_ms=fields.optional_number("duration_ms"),
        request=request,
        response=response,
        error=error,
        tags=tags,
        websocket=websocket,
        grpc=grpc,
    )


def _grpc_in(fields: _Fields, request: Request, response: Response | None, where: str) -> GrpcCall:
    """A ``GrpcCall`` from the ``grpc`` map and the frames of the bodies it describes."""

    def messages(name: str, body: bytes | None) -> tuple[GrpcMessage, ...]:
        entries = fields.raw(name)
        if not isinstance(entries, list) or not all(
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], int | float)
            and not isinstance(entry[0], bool)
            for entry in entries
        ):
            raise fields._fail(name, "a list of [offset_ms, decoded] pairs")
        try:
            frames = split_frames(body or b"")
        except ValueError as exc:
            raise CassetteFormatError(
                f"{where}: field grpc.{name}: the {name} body: {exc}"
            ) from exc
        if len(frames) != len(entries):
            raise CassetteFormatError(
                f"{where}: field grpc.{name}: {len(entries)} messages listed, "
                f"the {name} body holds {len(frames)}"
            )
        return tuple(
            GrpcMessage(data, compressed, float(entry[0]), entry[1])
            for (compressed, data), entry in zip(frames, entries, strict=True)
        )

    return GrpcCall(
        service=fields.text("service"),
        method=fields.text("method"),
        requests=messages("request", request.body),
        responses=messages("response", None if response is None else response.body),
        schema=fields.text("schema"),
    )
