"""One port for two servers: connections that open with the HTTP/2 preface go one way, the rest the other.

A cassette that holds both gRPC calls and HTTP/1.1 exchanges is replayed on
one ``--listen-port``: a gRPC client on an insecure channel opens with the
HTTP/2 connection preface (``PRI * HTTP/2.0``, prior knowledge), an HTTP/1.1
client with a request line, so the first bytes tell them apart. The
``PrefaceSplitter`` reads just enough of them to know, connects to the
grpcio server or to baton's fast HTTP server (both on loopback ports of
their own) and relays the bytes both ways unchanged. Only mixed cassettes
take this hop; a cassette of one kind is served by its server directly.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["HTTP2_PREFACE", "PrefaceSplitter"]

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


class PrefaceSplitter:
    """Listen on ``host:port``; relay HTTP/2-preface connections to ``h2_port``, others to ``http_port``."""

    def __init__(self, host: str, port: int, h2_port: int, http_port: int) -> None:
        self.host, self.port = host, port
        self.h2_port, self.http_port = h2_port, http_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> tuple[str, int]:
        """Bind and listen; the address bound (``OSError`` if the port is taken)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            head = b""
            while len(head) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(head):
                more = await reader.read(len(HTTP2_PREFACE) - len(head))
                if not more:
                    break
                head += more
            port = self.h2_port if head == HTTP2_PREFACE else self.http_port
            try:
                back_reader, back_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            back_writer.write(head)
            await asyncio.gather(_pipe(reader, back_writer), _pipe(back_reader, writer))
            back_writer.close()
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)
