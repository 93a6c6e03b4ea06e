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

Targets are not trusted (docs/security.md): an answer larger than
``max_body_bytes`` on the wire, or decoding to more than ``max_decoded_bytes``
(a decompression bomb, checked piece by piece without keeping the output), is
a ``ResendError`` for that request; so is garbage, and a body that never ends
outlives ``timeout``. Redirects are answers like any other unless
``follow_redirects``, and then only to the same origin: nothing but the
target is ever contacted, whatever a cassette or a target names.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urljoin, urlsplit

import httptools

from baton.cassettes.model import Headers, Response, StoredBody, header_values
from baton.replay.limits import AnswerLimits, decoded_size_over

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


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHECKED_IN_A_THREAD = 64 * 1024
"""Encoded bodies from this size on are checked for a bomb off the event loop."""
_MAX_REDIRECTS = 5


class _TooLarge(Exception):
    """Raised in a parser callback: the answer's body passed the limit."""


class _Reply:
    """httptools callbacks collecting one response."""

    def __init__(self, head_only: bool, digest_only: bool, limit: int) -> None:
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.digest = hashlib.sha256() if digest_only else None
        self.size = 0
        self.done = False
        self.headers_complete = False
        self.keep_alive = False
        """Whether the connection may carry another request, as the answer said."""
        self.parser: httptools.HttpResponseParser | None = None
        self._head_only = head_only
        self._limit = limit
        self._received = 0

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
        self._received += len(body)
        if self._received > self._limit and self.digest is None:
            raise _TooLarge  # a digest keeps nothing: only --timeout bounds it
        if self.digest is not None:
            self.digest.update(body)
            self.size += len(body)
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        # Asked here, while the parser still holds this answer's flags: once feed_data
        # returns, httptools (llhttp) has reset them and says False, and every request
        # opened a connection of its own.
        if self.parser is not None:
            self.keep_alive = self.parser.should_keep_alive()
        self.done = True


def _expire(answered: asyncio.Future[None]) -> None:
    """The answer did not come in time (``--timeout``)."""
    if not answered.done():
        answered.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One kept-alive connection: the bytes that arrive go straight to the answer's parser.

    A protocol, not a stream pair: a StreamReader wakes its reader once per piece
    and a StreamWriter is drained per request, which was a fifth of the client's
    CPU time per re-sent request.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reply: _Reply | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._answered: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the interface but not the class: no isinstance here.
        self.transport = cast(asyncio.Transport, transport)

    def exchange(self, data: bytes, reply: _Reply) -> asyncio.Future[None]:
        """Send ``data``; the future is done when ``reply`` holds the whole answer."""
        assert self.transport is not None
        self._reply = reply
        self._parser = reply.parser = httptools.HttpResponseParser(reply)
        self._answered = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._answered

    def data_received(self, data: bytes) -> None:
        answered, parser, reply = self._answered, self._parser, self._reply
        if answered is None or answered.done() or parser is None or reply is None:
            self.close()  # bytes no request asked for: this connection is not reused
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            answered.set_result(None)
            return
        except httptools.HttpParserError as exc:
            answered.set_exception(exc)
            return
        if reply.done:
            answered.set_result(None)

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        answered, reply = self._answered, self._reply
        if answered is None or answered.done() or reply is None:
            return
        if exc is not None:
            answered.set_exception(exc)
            return
        # A body without a length (HTTP/1.0 style) ends where the connection does.
        framed = any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in reply.headers
        )
        if reply.headers_complete and not framed:
            answered.set_result(None)
        else:
            answered.set_exception(ResendError("connection closed before a complete answer"))

    def usable(self) -> bool:
        """Open, as far as this side knows: another request may be sent on it."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Resender:
    """Send requests to ``origin`` with at most ``connections`` open at once.

    ``tls`` checks an HTTPS origin's certificate; by default the system store's.
    ``answers`` bounds what is read back (sizes, decoding, redirects).
    """

    def __init__(
        self,
        origin: str,
        *,
        connections: int = 32,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        answers: AnswerLimits | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{origin!r} is not an http(s) URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rpartition("@")[2]
        self.base_path = parts.path.rstrip("/")
        self.timeout = timeout
        answers = answers if answers is not None else AnswerLimits()
        self.max_body_bytes = answers.max_body_bytes
        self.max_decoded_bytes = answers.max_decoded_bytes
        self.follow_redirects = answers.follow_redirects
        self._origin = (parts.scheme, self.host, self.port)
        self._base_url = f"{parts.scheme}://{parts.netloc}"
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = tls if tls is not None else tls_context()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(connections)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection, self.host, self.port, ssl=self._ssl
        )
        return connection

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
        """One request and its answer on ``connection``; ``TimeoutError`` after ``timeout``.

        The timeout is a timer on the answer's future: ``asyncio.timeout`` (a context
        object, rescheduled and checked on the way out) cost more per request.
        """
        reply = _Reply(head_only, digest_only, self.max_body_bytes)
        answered = connection.exchange(data, reply)
        timer = asyncio.get_running_loop().call_later(self.timeout, _expire, answered)
        try:
            await answered
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _TooLarge):
                raise ResendError(
                    f"answer body larger than {self.max_body_bytes} bytes; not read further"
                ) from None
            raise ResendError(f"malformed answer: {exc}") from exc
        finally:
            timer.cancel()
        parser = reply.parser
        assert parser is not None
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
        return response, reply.keep_alive and not head_only

    async def send(self, request: Outgoing, *, digest_only: bool = False) -> Response:
        """Send ``request`` and return the answer; ``ResendError`` or ``TimeoutError`` if none.

        ``digest_only``: keep only the body's size and SHA-256 (``Response.stored``).
        With ``follow_redirects``, a redirect to the same origin is followed (at
        most five); one anywhere else is a ``ResendError``, never a request.
        """
        response = await self._send_once(request, digest_only)
        hops = 0
        while self.follow_redirects and response.status in REDIRECT_STATUSES:
            location = header_values(response.headers, "location")
            if not location:
                break
            hops += 1
            if hops > _MAX_REDIRECTS:
                raise ResendError(f"more than {_MAX_REDIRECTS} redirects")
            request = self._redirected(request, response.status, location[0])
            response = await self._send_once(request, digest_only)
        return response

    def _redirected(self, request: Outgoing, status: int, location: str) -> Outgoing:
        """The request a redirect asks for, if it stays on the target; else ``ResendError``."""
        url = urlsplit(urljoin(self._base_url + self.base_path + request.target, location))
        port = url.port or (443 if url.scheme == "https" else 80)
        if (url.scheme, url.hostname, port) != self._origin:
            raise ResendError(
                f"redirected to {url.scheme}://{url.netloc}, not the target; not followed "
                "(baton sends requests to the target only)"
            )
        target = url.path or "/"
        if self.base_path:
            if not target.startswith(self.base_path + "/") and target != self.base_path:
                raise ResendError(f"redirected to {url.path}, outside the target's path")
            target = target[len(self.base_path) :] or "/"
        if url.query:
            target += "?" + url.query
        if status == 303 or (status in (301, 302) and request.method.upper() == "POST"):
            return Outgoing("GET", target, request.headers)  # as browsers and curl -L do
        return Outgoing(request.method, target, request.headers, request.body)

    async def _send_once(self, request: Outgoing, digest_only: bool) -> Response:
        data = self._encode(request)
        head_only = request.method.upper() == "HEAD"
        async with self._slots:
            for attempt in (1, 2):
                connection = None
                while self._idle and connection is None:
                    connection = self._idle.pop()
                    if not connection.usable():  # the server closed it while it was idle
                        connection = None
                reused = connection is not None
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps its
                    # coroutine in a task of its own, one more task per request.
                    if connection is None:
                        async with asyncio.timeout(self.timeout):
                            connection = await self._connect()
                    response, keep = await self._exchange(connection, data, head_only, digest_only)
                except TimeoutError:
                    # (an OSError too, but never retried: an endless body would take twice)
                    if connection is not None:
                        connection.close()
                    raise
                except (OSError, ResendError) as exc:
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
                if (
                    response.body
                    and header_values(response.headers, "content-encoding")
                    and await self._decodes_too_large(response)
                ):
                    raise ResendError(
                        f"answer body decodes to more than {self.max_decoded_bytes} bytes "
                        "(a decompression bomb?); not decoded"
                    )
                return response
        raise ResendError("no answer")  # not reached: the loop returns or raises

    async def _decodes_too_large(self, response: Response) -> bool:
        """True when the answer's body decodes to more than ``max_decoded_bytes``.

        A large encoded body is checked in a thread: decoding a bomb up to the
        limit takes seconds of CPU (zlib lets go of the GIL), and on the event
        loop it held every other request in flight past its timeout.
        """
        body = response.body or b""
        coding = ", ".join(header_values(response.headers, "content-encoding")) or None
        if coding is None or len(body) < _CHECKED_IN_A_THREAD:
            return decoded_size_over(body, coding, self.max_decoded_bytes)
        return await asyncio.to_thread(decoded_size_over, body, coding, self.max_decoded_bytes)

    async def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()
