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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

__all__ = ["Headers", "Interaction", "Pairs", "Request", "Response", "header_values"]

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

    def with_tags(self, **extra: Any) -> Interaction:
        """Return a copy with ``extra`` merged into the tags."""
        return replace(self, tags={**self.tags, **extra})
