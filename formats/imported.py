"""What every importer of foreign recordings shares: results, and bodies that agree with headers.

Tools that record HTTP often store a body *decoded* while keeping the
``Content-Encoding`` header that described the bytes on the wire (browsers
in HAR, VCR.py's httpx and aiohttp stubs). A cassette must not contradict
itself: such a body is kept as stored and the stale ``Content-Encoding`` and
``Content-Length`` headers are dropped — baton never invents compressed
bytes that were not on the wire. A body that really is encoded keeps both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import Headers, Interaction, Request, header_values

__all__ = [
    "FlowFileError",
    "ImportResult",
    "Skipped",
    "consistent_body",
    "normalise_http_version",
    "request_from_url",
]


class FlowFileError(ValueError):
    """A mitmproxy flow file mitmproxy itself cannot read; the message says what to do."""


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def request_from_url(
    method: str,
    url: str,
    headers: Headers,
    body: bytes | None,
    http_version: str = "HTTP/1.1",
) -> Request:
    """A ``Request`` from an absolute URL, as foreign formats store it; ``ValueError`` if not absolute."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise ValueError(f"URL {url!r} is not absolute")
    return Request(
        method=method.upper(),
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port or _DEFAULT_PORTS.get(parts.scheme, 80),
        path=parts.path or "/",
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        http_version=http_version,
        headers=headers,
        body=body,
    )


@dataclass(frozen=True)
class Skipped:
    """An entry that could not be imported, and why."""

    index: int
    reason: str


@dataclass
class ImportResult:
    """Interactions read from a foreign file, what was skipped, and notes on what changed."""

    interactions: list[Interaction] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def normalise_http_version(text: str | None) -> str:
    """``HTTP/2.0`` for "h2", "HTTP/2" and "http/2.0"; ``HTTP/1.1`` when empty."""
    value = (text or "").strip().upper()
    if not value:
        return "HTTP/1.1"
    if value in ("H2", "HTTP/2", "HTTP/2.0"):
        return "HTTP/2.0"
    if value in ("H3", "HTTP/3", "HTTP/3.0"):
        return "HTTP/3"
    return value if value.startswith("HTTP/") else f"HTTP/{value}"


def consistent_body(headers: Headers, body: bytes | None, where: str, notes: list[str]) -> Headers:
    """Drop a ``Content-Encoding`` the body does not carry (it was stored decoded)."""
    encodings = header_values(headers, "content-encoding")
    if not body or not encodings:
        return headers
    try:
        decode_body(body, encodings[0])
        return headers  # the body really is encoded: keep both as they are
    except ContentCodingError:
        notes.append(f"{where}: body stored decoded; dropped Content-Encoding: {encodings[0]}")
        return tuple(
            (n, v) for n, v in headers if n.lower() not in ("content-encoding", "content-length")
        )
