"""Re-send recorded requests to one origin over a pool of keep-alive HTTP/1.1 connections.

``baton diff`` sends thousands of requests to a single build. httpx's pool
scans every connection for every request, so with a few dozen connections
in flight the client, not the service, set the pace (410 interactions/s at
32 connections against a local service that answers 35k/s). Here an idle
connection is a pop from a list and the response is parsed by httptools,
uvicorn's parser: the cost per request no longer grows with the pool.

Bodies are returned as on the wire: content-encoding kept, chunked transfer
encoding removed — the same form a cassette stores. Asked for a digest only
(the recorded body was too large to hold), the body is hashed as it arrives
and not kept: the ``Response`` then has a ``StoredBody`` naming only its size
and SHA-256, no file and no pieces.

HTTPS targets are verified like any client would (``tls_context``): the
system store, which honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``; a CA
bundle of the user's own (``--ca-cert``) instead; or, when asked for
(``--insecure``), no check at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from baton.cassettes.model import Headers, Response, StoredBody

__all__ = ["Outgoing", "ResendError", "Resender", "TLSConfigError", "tls_context"]


class ResendError(Exception):
    """The request got no complete answer (refused, reset, timed out, malformed)."""


class TLSConfigError(ValueError):
    """The CA bundle to trust cannot be used (missing, unreadable, not PEM)."""


def tls_context(
    ca_cert: str | os.PathLike[str] | None = None, *, insecure: bool = False
) -> ssl.SSLContext:
    """A client context for HTTPS targets: verifying unless ``insecure``.

    Without ``ca_cert`` the system store is trusted (OpenSSL reads
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` for it); with it, that PEM bundle
    alone, as ``curl --cacert`` does. Raises ``TLSConfigError`` for a bundle
    that cannot be loaded.
    """
    if ca_cert is not None and not os.path.isfile(ca_cert):
        raise TLSConfigError(f"--ca-cert {os.fspath(ca_cert)}: no such file")
    try:
        context = ssl.create_default_context(cafile=os.fspath(ca_cert) if ca_cert else None)
    except (ssl.SSLError, OSError, UnicodeDecodeError) as exc:
        raise TLSConfigError(
            f"--ca-cert {os.fspath(ca_cert or '')}: not a PEM CA bundle "
            f"({getattr(exc, 'reason', None) or type(exc).__name__})"
        ) from exc
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # The re-sender speaks HTTP/1.1 only; say so, or an HTTP/2 server may pick h2.
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True)
class Outgoing:
    """A request ready to send: method, path with query, headers (without Host), body."""

    method: str
    target: str
    headers: Headers
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)


class _Reply:
    """httptools callbacks collecting one response."""

    def __init__(self, head_only: bool, digest_only: bool = False) -> None:
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.digest = hashlib.sha256() if digest_only else None
        self.size = 0
        self.done = False
        self.headers_complete = False
        self._head_only = head_only

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        if self._head_only:
            self.done = True

    def on_body(self, body: bytes) -> None:
        if self.digest is not None:
            self.digest.update(body)
            self.size += len(body)
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class Resender:
    """Send requests to ``origin`` with at most ``connections`` open at once.

    ``tls`` checks an HTTPS origin's certificate; by default the system store's.
    """

    def __init__(
        self,
        origin: str,
        *,
        connections: int = 32,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{origin!r} is not an http(s) URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = tls if tls is not None else tls_context()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._ssl, limit=1 << 20
        )
        return _Connection(reader, writer)

    def _encode(self, request: Outgoing) -> bytes:
        lines = [
            f"{request.method} {self.base_path}{request.target} HTTP/1.1",
            f"Host: {self.host_header}",
        ]
        lines += [f"{name}: {value}" for name, value in request.headers]
        if request.body or request.method.upper() in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(request.body)}")
        head = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n"
        return head + request.body

    async def _exchange(
        self, connection: _Connection, data: bytes, head_only: bool, digest_only: bool = False
    ) -> tuple[Response, bool]:
        connection.writer.write(data)
        await connection.writer.drain()
        reply = _Reply(head_only, digest_only)
        parser = httptools.HttpResponseParser(reply)
        while not reply.done:
            chunk = await connection.reader.read(1 << 16)
            if not chunk:
                # A body without a length (HTTP/1.0 style) ends where the connection does.
                framed = any(
                    name.lower() in ("content-length", "transfer-encoding")
                    for name, _ in reply.headers
                )
                if reply.headers_complete and not framed:
                    break
                raise ResendError("connection closed before a complete answer")
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserUpgrade:
                break
            except httptools.HttpParserError as exc:
                raise ResendError(f"malformed answer: {exc}") from exc
        response = Response(
            status=parser.get_status_code(),
            reason=reply.reason.decode("latin-1"),
            http_version=f"HTTP/{parser.get_http_version()}",
            headers=tuple(reply.headers),
            body=None if reply.digest is not None else b"".join(reply.chunks),
            stored=None
            if reply.digest is None
            else StoredBody("", (), reply.size, reply.digest.hexdigest()),
        )
        return response, parser.should_keep_alive() and not head_only

    async def send(self, request: Outgoing, *, digest_only: bool = False) -> Response:
        """Send ``request`` and return the answer; ``ResendError`` or ``TimeoutError`` if none.

        ``digest_only``: keep only the body's size and SHA-256 (``Response.stored``).
        """
        data = self._encode(request)
        head_only = request.method.upper() == "HEAD"
        async with self._slots:
            for attempt in (1, 2):
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else None
                try:
                    if connection is None:
                        connection = await asyncio.wait_for(self._connect(), self.timeout)
                    response, keep = await asyncio.wait_for(
                        self._exchange(connection, data, head_only, digest_only), self.timeout
                    )
                except (OSError, ResendError, asyncio.IncompleteReadError) as exc:
                    if connection is not None:
                        connection.close()
                    # A kept-alive connection the server had already closed: once more, fresh.
                    if reused and attempt == 1:
                        continue
                    if isinstance(exc, ResendError):
                        raise
                    raise ResendError(f"{type(exc).__name__}: {exc}") from exc
                except BaseException:
                    if connection is not None:
                        connection.close()
                    raise
                if keep:
                    self._idle.append(connection)
                else:
                    connection.close()
                return response
        raise ResendError("no answer")  # not reached: the loop returns or raises

    async def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()
