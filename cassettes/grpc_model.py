"""A gRPC call as a cassette holds it: ``GrpcCall`` and ``GrpcMessage``, and the framing between them.

A gRPC call *is* an HTTP/2 exchange: ``POST /package.Service/Method``, the
metadata as headers, every message of a direction framed back to back in the
body (one flag byte, a 4-byte big-endian length, the message), the status in
the trailers (``grpc-status``, ``grpc-message``, ``grpc-status-details-bin``).
So a cassette keeps each call as an ordinary ``Interaction`` whose bodies are
those frames — wire bytes, the truth, which a reader that knows nothing of
gRPC still reads as an HTTP/2 exchange — and ``Interaction.grpc`` adds what
HTTP cannot say: when each message passed, and its decoded form.

``decoded`` is the JSON form of a message (field names from a schema, or
field numbers from the schema-less wire decode, ``schema == "wire"``); it
is for show, match and diff. Replay and drift send the wire bytes.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

__all__ = [
    "GRPC_STATUS_NAMES",
    "GrpcCall",
    "GrpcMessage",
    "GrpcStatus",
    "decode_binary_header",
    "encode_binary_header",
    "encode_grpc_message",
    "frame_messages",
    "grpc_call_of",
    "is_grpc_content_type",
    "metadata_from_headers",
    "split_frames",
    "split_method_path",
    "status_from_headers",
]

GRPC_STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
"""gRPC status codes by number (grpc/doc/statuscodes.md)."""

_PREFIX = struct.Struct(">BI")

# Headers that HTTP/2 and the gRPC protocol own: not the call's metadata.
_PROTOCOL_HEADERS = frozenset(
    {
        "content-type",
        "te",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-timeout",
        "grpc-status",
        "grpc-message",
        "user-agent",
        "content-length",
        "date",
        "server",
        "accept-encoding",
        "host",
    }
)


@dataclass(frozen=True, slots=True)
class GrpcMessage:
    """One message of a call: its bytes as framed, whether compressed, when, and its decoded form."""

    data: bytes
    compressed: bool = False
    offset_ms: float = 0.0
    """When it passed the recorder, ms after the call started."""
    decoded: Any = None
    """The JSON form (dicts, lists, str, numbers, bools), or None when not decoded."""


@dataclass(frozen=True, slots=True)
class GrpcStatus:
    """How a call ended: the code, its message, and the rich error details (serialized)."""

    code: int
    message: str = ""
    details: bytes | None = None

    @property
    def name(self) -> str:
        """``OK``, ``NOT_FOUND``, ... (or the number, for a code gRPC does not define)."""
        if 0 <= self.code < len(GRPC_STATUS_NAMES):
            return GRPC_STATUS_NAMES[self.code]
        return str(self.code)


@dataclass(frozen=True, slots=True)
class GrpcCall:
    """The gRPC side of an interaction: method, both directions' messages, how they were decoded.

    ``schema`` says where ``decoded`` came from: ``proto`` (``--proto``),
    ``descriptor-set``, ``reflection``, ``wire`` (no schema: field numbers and
    guesses), or ``""`` when nothing was decoded.
    """

    service: str
    method: str
    requests: tuple[GrpcMessage, ...] = ()
    responses: tuple[GrpcMessage, ...] = ()
    schema: str = ""

    @property
    def path(self) -> str:
        """``/package.Service/Method``, the HTTP/2 path of the call."""
        return f"/{self.service}/{self.method}"

    @property
    def short_name(self) -> str:
        """``Service/Method`` without the package, as drift locations name it."""
        return f"{self.service.rsplit('.', 1)[-1]}/{self.method}"


def is_grpc_content_type(value: str | None) -> bool:
    """True for ``application/grpc`` and its ``+proto`` / ``+json`` variants."""
    if not value:
        return False
    return value.lower().split(";", 1)[0].strip().startswith("application/grpc")


def split_method_path(path: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``); ValueError for anything else."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{path!r} is not a gRPC method path (/package.Service/Method)")
    return parts[0], parts[1]


def frame_messages(messages: Iterator[GrpcMessage] | tuple[GrpcMessage, ...]) -> bytes:
    """The body that carries ``messages``: each behind its flag byte and length."""
    return b"".join(
        _PREFIX.pack(1 if message.compressed else 0, len(message.data)) + message.data
        for message in messages
    )


def split_frames(body: bytes) -> list[tuple[bool, bytes]]:
    """The (compressed, data) frames of a gRPC body; ValueError naming the byte where it breaks."""
    frames: list[tuple[bool, bytes]] = []
    at = 0
    while at < len(body):
        if len(body) - at < _PREFIX.size:
            raise ValueError(f"a gRPC frame prefix is cut off at byte {at} of {len(body)}")
        flag, length = _PREFIX.unpack_from(body, at)
        start = at + _PREFIX.size
        if start + length > len(body):
            raise ValueError(
                f"a gRPC frame at byte {at} says {length} bytes, {len(body) - start} follow"
            )
        frames.append((bool(flag & 1), body[start : start + length]))
        at = start + length
    return frames


def status_from_headers(
    trailers: tuple[tuple[str, str], ...] | None, headers: tuple[tuple[str, str], ...] = ()
) -> GrpcStatus | None:
    """The call's status from its trailers (or, for a trailers-only answer, its headers)."""
    for source in (trailers or (), headers):
        found = {name.lower(): value for name, value in source}
        if "grpc-status" in found:
            try:
                code = int(found["grpc-status"].strip())
            except ValueError:
                code = 2  # UNKNOWN, as a gRPC client reads a status it cannot parse
            details = found.get("grpc-status-details-bin")
            return GrpcStatus(
                code,
                unquote(found.get("grpc-message", "")),
                None if details is None else decode_binary_header(details),
            )
    return None


def metadata_from_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The call's own metadata among ``headers``: pseudo-headers and protocol headers left out."""
    return tuple(
        (name, value)
        for name, value in headers
        if not name.startswith(":") and name.lower() not in _PROTOCOL_HEADERS
    )


def encode_binary_header(value: bytes) -> str:
    """A ``-bin`` metadata value as HTTP/2 carries it: base64 without padding."""
    return base64.b64encode(value).decode("ascii").rstrip("=")


def decode_binary_header(value: str) -> bytes:
    """The bytes of a ``-bin`` metadata value (padded or not)."""
    text = value.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4))


def encode_grpc_message(text: str) -> str:
    """``grpc-message`` as the wire carries it: percent-encoded UTF-8."""
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def grpc_call_of(interaction: Any) -> GrpcCall | None:
    """The gRPC call an interaction holds, or None when it is not one.

    ``Interaction.grpc`` when the recorder set it; otherwise derived from an
    HTTP/2 exchange with an ``application/grpc`` body (recorded through
    mitmproxy, or read from an older file): the messages from the frames,
    each dated by the piece of a streamed body that completed it.
    """
    if interaction.grpc is not None:
        return interaction.grpc  # type: ignore[no-any-return]
    request = interaction.request
    if request.method != "POST" or not is_grpc_content_type(request.header("content-type")):
        return None
    try:
        service, method = split_method_path(request.path)
    except ValueError:
        return None
    response = interaction.response
    try:
        requests = _dated_messages(request.body, request.chunks)
        responses = _dated_messages(response.body, response.chunks) if response is not None else ()
    except ValueError:
        return None
    return GrpcCall(service, method, requests, responses)


def _dated_messages(body: bytes | None, chunks: Any) -> tuple[GrpcMessage, ...]:
    frames = split_frames(body or b"")
    ends: list[tuple[int, float]] = []
    if chunks:
        total = 0
        for chunk in chunks:
            total += len(chunk.data)
            ends.append((total, chunk.offset_ms))
    messages: list[GrpcMessage] = []
    at = 0
    for compressed, data in frames:
        at += _PREFIX.size + len(data)
        offset = next((when for end, when in ends if end >= at), 0.0)
        messages.append(GrpcMessage(data, compressed, offset))
    return tuple(messages)
