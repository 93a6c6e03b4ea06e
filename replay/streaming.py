"""Send a recorded stream back: its pieces with their recorded boundaries, at their times if asked.

A response recorded as a stream (``chunks``: server-sent events, a chunked
answer) or too large to hold (``stored``: the body stays in the cassette file)
is not serialised into one block of bytes like any other answer. Replay sends:

* the head as recorded, framed for HTTP/1.1: ``Transfer-Encoding: chunked``
  where it was recorded, or where the recording had no length at all (an
  HTTP/2 answer, a close-delimited one), so each recorded piece goes out as one
  chunk; a recorded ``Content-Length`` is kept and the pieces go out back to back;
* each piece as soon as the client can take it — or, under
  ``--replay-latency SCALE``, at its recorded offset times the scale, counted
  from the moment the answer starts; the head goes out with the first piece,
  the end at the recorded duration;
* a stored body read from the cassette a batch at a time on a worker thread,
  never whole, and written only as fast as the client reads (the transport's
  flow control), so replaying a 1 GB body holds about a megabyte.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from baton.cassettes.errors import CassetteError
from baton.cassettes.model import Chunk, Interaction, Response

__all__ = ["StreamSink", "StreamedAnswer", "is_streamed", "send_stream"]

logger = logging.getLogger(__name__)

READ_BATCH = 1 << 20
"""Bytes of a stored body read from the cassette per trip to the worker thread."""

_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def is_streamed(interaction: Interaction) -> bool:
    """True when the interaction's answer is sent piece by piece (held chunks or a stored body)."""
    response = interaction.response
    return response is not None and (response.chunks is not None or response.stored is not None)


class StreamSink(Protocol):
    """Where a stream is written: a transport with flow control."""

    def write(self, data: list[bytes]) -> None: ...

    def drain(self) -> Awaitable[None]: ...

    def closing(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class StreamedAnswer:
    """A recorded answer sent piece by piece: its head, how pieces are framed, how it ends."""

    head: bytes
    response: Response
    chunked: bool
    end: bytes
    duration_ms: float | None
    target: str
    """``METHOD URL`` of the recorded request, for log lines."""
    short: bool = False
    """The pieces fall short of the recorded ``Content-Length`` (a recording cut off):
    the connection is closed after them, as the original was, instead of leaving the
    client waiting for the rest."""

    @classmethod
    def of(cls, interaction: Interaction, head: bytes) -> StreamedAnswer:
        """``head`` is ``serialize_response(..., head_only=True)``, which frames streams as chunked."""
        response = interaction.response
        assert response is not None
        chunked = _CHUNKED.search(head) is not None
        length = _LENGTH.search(head)
        size = (
            response.stored.size
            if response.stored is not None
            else sum(len(c.data) for c in response.chunks or ())
        )
        short = not chunked and length is not None and int(length.group(1)) > size
        end = b""
        if chunked:
            trailers = "".join(f"{n}: {v}\r\n" for n, v in response.trailers or ())
            end = b"0\r\n" + trailers.encode("utf-8", "surrogateescape") + b"\r\n"
        request = interaction.request
        return cls(
            head,
            response,
            chunked,
            end,
            interaction.duration_ms,
            f"{request.method} {request.url}",
            short,
        )

    def frame(self, data: bytes) -> list[bytes]:
        if not self.chunked:
            return [data]
        return [b"%x\r\n" % len(data), data, b"\r\n"]

    def pieces(self) -> AsyncIterator[Chunk]:
        """The recorded pieces: from memory, or read from the cassette off the event loop."""
        if self.response.chunks is not None:
            return _held(self.response.chunks)
        assert self.response.stored is not None
        return _read(self.response.stored.chunks())


async def _held(chunks: tuple[Chunk, ...]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk


def _batch(pieces: Iterator[Chunk]) -> list[Chunk]:
    batch: list[Chunk] = []
    size = 0
    for chunk in pieces:
        batch.append(chunk)
        size += len(chunk.data)
        if size >= READ_BATCH:
            break
    return batch


async def _read(pieces: Iterator[Chunk]) -> AsyncIterator[Chunk]:
    loop = asyncio.get_running_loop()
    # One batch is read ahead while the one before it is being sent.
    following = loop.run_in_executor(None, _batch, pieces)
    while True:
        batch = await following
        if not batch:
            return
        following = loop.run_in_executor(None, _batch, pieces)
        for chunk in batch:
            yield chunk


async def send_stream(
    answer: StreamedAnswer,
    sink: StreamSink,
    *,
    latency_scale: float | None,
    clock: Callable[[], float] | None = None,
) -> bool:
    """Write ``answer`` to ``sink``; False if it broke off (the client left, the cassette changed).

    With ``latency_scale`` each piece waits for its recorded offset times the
    scale, counted from the call; without it nothing waits but the client.
    """
    loop = asyncio.get_running_loop()
    now = clock or loop.time
    started = now()
    pending_head: bytes | None = answer.head
    last_offset = 0.0

    async def until(offset_ms: float) -> None:
        if latency_scale:
            delay = started + offset_ms / 1000.0 * latency_scale - now()
            if delay > 0:
                await asyncio.sleep(delay)

    try:
        async for chunk in answer.pieces():
            if not chunk.data:
                continue
            await until(chunk.offset_ms)
            if sink.closing():
                return False
            frame = answer.frame(chunk.data)
            if pending_head is not None:
                frame.insert(0, pending_head)
                pending_head = None
            sink.write(frame)
            last_offset = chunk.offset_ms
            await sink.drain()
    except CassetteError as exc:
        logger.error("baton: cannot replay the body of %s: %s", answer.target, exc)
        return False
    await until(max(last_offset, answer.duration_ms or 0.0))
    if sink.closing():
        return False
    sink.write([pending_head or b"", answer.end])
    return True
