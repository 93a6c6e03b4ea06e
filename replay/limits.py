"""Limits every baton server enforces on its clients, and the answers it gives at each one.

Clients of the replay server are not trusted (docs/security.md): a broken or
hostile client must not hold memory, sockets or the event loop beyond these
bounds. The defaults follow nginx where nginx has one (8 KB line, 10 s header
read, 75 s keep-alive) and are looser where a replay server of test traffic
needs it (a 100 MiB body, which nginx caps at 1 MiB). docs/security.md holds
the table next to nginx's and uvicorn's.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from baton.cassettes.content_coding import brotli_pieces, zstd_pieces

__all__ = [
    "BODY_TOO_LARGE",
    "CONTINUE",
    "EXPECTATION_FAILED",
    "HEADERS_TOO_LARGE",
    "SMALL_SERVER_LIMITS",
    "URI_TOO_LONG",
    "AnswerLimits",
    "ServerLimits",
    "decoded_size_over",
    "parse_size",
]


def _refusal(status: int, reason: str) -> bytes:
    """A complete answer that ends the connection (the rest of the request is never read)."""
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


URI_TOO_LONG = _refusal(414, "URI Too Long")
HEADERS_TOO_LARGE = _refusal(431, "Request Header Fields Too Large")
BODY_TOO_LARGE = _refusal(413, "Content Too Large")
EXPECTATION_FAILED = _refusal(417, "Expectation Failed")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one server accepts from a client; each field is a ``baton replay`` option."""

    max_request_line: int = 8 * 1024
    """Bytes of the request target (nginx: large_client_header_buffers 8k) -> 414."""
    max_header_bytes: int = 64 * 1024
    """Bytes of all header fields together (nginx: 4 x 8k buffers, 32 KB) -> 431."""
    max_headers: int = 100
    """Header fields in one request (h11 and Go: none; Node and Apache: 100) -> 431."""
    max_body_bytes: int = 100 * 1024 * 1024
    """Bytes of one request body, held in memory to match it (nginx: 1m) -> 413."""
    header_timeout: float = 10.0
    """Seconds from a request's first byte (or the connection) to its last header (nginx: 60 s)."""
    keepalive_timeout: float = 75.0
    """Seconds an idle keep-alive connection is kept (nginx: 75 s; uvicorn: 5 s)."""
    body_timeout: float = 60.0
    """Seconds between two reads of a request body (nginx: client_body_timeout 60 s)."""
    max_connections: int = 10_000
    """Connections served at once; beyond it new ones wait in the listen backlog."""

    def __post_init__(self) -> None:
        for name in ("max_request_line", "max_header_bytes", "max_headers", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        if self.max_body_bytes < 0:
            raise ValueError("max-body-size must not be negative")
        for name in ("header_timeout", "keepalive_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be more than 0 seconds")

    @property
    def head_bytes(self) -> int:
        """Bytes of a request head (line and headers) the server buffers before refusing it."""
        return self.max_request_line + self.max_header_bytes


SMALL_SERVER_LIMITS = ServerLimits(
    max_request_line=2 * 1024,
    max_header_bytes=16 * 1024,
    max_headers=50,
    max_body_bytes=0,
    header_timeout=5.0,
    keepalive_timeout=5.0,
    body_timeout=5.0,
    max_connections=64,
)
"""For the metrics and health endpoints: GETs from a scraper, nothing more."""


def parse_size(text: str) -> int:
    """Bytes from ``512``, ``64k``, ``8KB``, ``100m``, ``1MiB`` or ``2g`` (powers of 1024)."""
    cleaned = text.strip().lower().removesuffix("b").removesuffix("i")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    factor = units.get(cleaned[-1:], 1)
    number = cleaned[:-1] if cleaned[-1:] in units else cleaned
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (write 512, 64k, 100m or 1g)") from None
    if value < 0 or value != value:
        raise ValueError(f"{text!r} is not a size (write 512, 64k, 100m or 1g)")
    return int(value * factor)


# -- answers from targets (baton diff): sizes, redirects, decompression bombs ---------------


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    """What ``baton diff`` accepts from a target (it pickles: ``--dask`` ships it to workers)."""

    max_body_bytes: int = 100 * 1024 * 1024
    """Bytes of one answer body on the wire (``--max-answer-size``); more is an error."""
    max_decoded_bytes: int = 256 * 1024 * 1024
    """Bytes an answer body may decode to (``--max-decoded-size``); a bomb is an error."""
    follow_redirects: bool = False
    """Follow redirects (``--follow-redirects``), and then only on the target's origin."""


_PIECE = 64 * 1024


def _decoded_pieces(coding: str, data: bytes) -> Iterator[bytes]:
    """The decoded bytes of one content coding, a bounded piece at a time (never all at once)."""
    if coding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if coding != "deflate" else zlib.MAX_WBITS
        if coding == "deflate" and data[:1] and (data[0] & 0x0F) != 8:
            wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it
        # Input is fed a slice at a time and output taken a piece at a time: neither the
        # remaining input nor the output is ever copied whole (a bomb may be many members).
        decompressor = zlib.decompressobj(wbits=wbits)
        position, pending = 0, b""
        while True:
            if not pending:
                if position >= len(data):
                    return
                pending = data[position : position + _PIECE]
                position += _PIECE
            piece = decompressor.decompress(pending, _PIECE)
            pending = decompressor.unconsumed_tail
            if piece:
                yield piece
            if decompressor.eof:  # one gzip member ended; another may follow
                pending = decompressor.unused_data  # (the tail holds the same bytes then)
                if not pending and position >= len(data):
                    return
                decompressor = zlib.decompressobj(wbits=wbits)
    elif coding == "br":
        yield from brotli_pieces(data, _PIECE)
    elif coding == "zstd":
        yield from zstd_pieces(data, _PIECE)


def decoded_size_over(body: bytes, content_encoding: str | None, limit: int) -> bool:
    """True when undoing ``content_encoding`` would give more than ``limit`` bytes.

    Decodes piece by piece and keeps nothing (memory stays near 64 KB whatever
    the ratio), so a bomb is refused before anything decodes it whole. A body
    that does not decode, or names a coding baton does not know, is not over:
    the comparison reports it as recorded.
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    data = body
    try:
        for depth, coding in enumerate(reversed(codings)):
            size = 0
            kept = bytearray()
            last = depth == len(codings) - 1
            for piece in _decoded_pieces(coding, data):
                size += len(piece)
                if size > limit:
                    return True
                if not last:
                    kept += piece  # an inner coding needs its input; bounded by the limit
            if coding not in ("gzip", "x-gzip", "deflate", "br", "zstd"):
                return False
            data = bytes(kept)
    except Exception:  # zlib.error, brotli.error, zstandard.ZstdError: not decodable, not a bomb
        return False
    return False
