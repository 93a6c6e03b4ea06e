"""Record streamed bodies as they pass: server-sent events, chunked answers, bodies larger than memory.

mitmproxy buffers a body whole before the ``response`` hook unless the flow's
``stream`` attribute is set. For the bodies chosen here it is set, in the
``requestheaders``/``responseheaders`` hooks, to a callable that hands every
piece on to the client unchanged and at once — an event reaches the client
when the upstream sends it — and queues a copy to be written to the cassette
as a part with its offset (ms since the request started). Nothing holds the
whole body: pieces wait only until the writer thread has them on disk. (A
body with a ``Content-Length`` is gathered into parts of about 1 MiB: replay
sends it back to back, so mitmproxy's read sizes mean nothing there, and
fewer, larger parts cost the proxy's event loop nothing measurable.)

Which bodies stream:

* ``text/event-stream`` answers, always;
* answers without a length (chunked, HTTP/2 without ``content-length``,
  close-delimited), since nobody knows how long they will run;
* bodies whose ``content-length`` is above the threshold (16 MiB by default,
  ``--stream-threshold`` / ``baton_stream_threshold``), uploads included;
* anything mitmproxy already decided to stream (``stream_large_bodies``):
  baton's callable takes its place, so those are recorded instead of
  "not captured".

Why a thread of its own: mitmproxy calls the callable synchronously on its
event loop, which must not wait for a disk. The copy goes to a single writer
thread (parts stay in order), after the redaction of the recorded copy
(``cassettes.redaction.stream_redaction``). If the disk falls behind by more
than ``BACKLOG_LIMIT`` bytes, the callable waits for it — the proxy slows to
the disk's pace rather than hold an unbounded backlog in memory. When the
exchange ends, the ``response`` (or ``error``) hook waits for the last part
and appends the interaction naming the streams.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from mitmproxy import http

from baton.cassettes.model import Headers, Interaction, Request, Response
from baton.cassettes.redaction import Redactor, StreamRedaction, stream_redaction
from baton.cassettes.writer import CassetteWriter, PartStream
from baton.proxy.flows import (
    header_value,
    interaction_from_flow,
    request_from_flow,
    response_from_flow,
)

__all__ = [
    "BACKLOG_LIMIT",
    "DEFAULT_STREAM_THRESHOLD",
    "StreamRecorder",
    "parse_size",
    "request_should_stream",
    "response_should_stream",
]

logger = logging.getLogger(__name__)

DEFAULT_STREAM_THRESHOLD = 16 << 20
"""Bodies with a length above this are streamed to the cassette (16 MiB)."""

BACKLOG_LIMIT = 8 << 20
"""Bytes of pieces that may wait for the writer thread before the proxy waits for it."""

GATHER = 1 << 20
"""A body with a Content-Length is written in parts of about this size."""

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_NO_BODY = frozenset({204, 304}) | frozenset(range(100, 200))


def parse_size(text: str) -> int:
    """``16MB``, ``16MiB``, ``16m``, ``512k``, ``1g`` or plain bytes; binary units, as mitmproxy's.

    Raises ``ValueError`` naming the value for anything else.
    """
    match = _SIZE.match(text or "")
    if match is None or (match.group(3) and not match.group(2) and match.group(3).lower() != "b"):
        raise ValueError(f"{text!r} is not a size; write it like 16MB, 512KB or 1GB")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _content_length(headers: http.Headers) -> int | None:
    value = header_value(headers, b"content-length")
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def response_should_stream(flow: http.HTTPFlow, threshold: int) -> bool:
    """True when the answer's body should pass through unbuffered (see the module docstring)."""
    response = flow.response
    if response is None or response.status_code in _NO_BODY or flow.request.method == "HEAD":
        return False
    if response.stream:
        return True  # mitmproxy's stream_large_bodies chose it already
    content_type = header_value(response.headers, b"content-type") or ""
    if content_type.lower().startswith("text/event-stream"):
        return True
    length = _content_length(response.headers)
    if length is None:
        return True  # chunked, HTTP/2 without a length, or read until the connection closes
    return length > threshold


def request_should_stream(flow: http.HTTPFlow, threshold: int) -> bool:
    """True when the upload should pass through unbuffered: above the threshold, or of unknown length."""
    request = flow.request
    if request.stream:
        return True
    length = _content_length(request.headers)
    if length is not None:
        return length > threshold
    # An HTTP/2 upload without a length is buffered as before: its headers do not tell
    # whether a body follows at all, and most clients send a length with a large one.
    return "chunked" in (header_value(request.headers, b"transfer-encoding") or "").lower()


class PartPump:
    """Writes stream pieces on one thread of its own, in order, with a bounded backlog.

    The event loop only appends to a queue (and wakes the thread if it
    sleeps); the thread takes everything queued at each turn. One hand-over
    per piece through an executor cost a fifth of the proxy's throughput.
    """

    def __init__(self, limit: int = BACKLOG_LIMIT) -> None:
        self.limit = limit
        self._queue: deque[tuple[Callable[[], None], int]] = deque()
        self._lock = threading.Condition()
        self._waiting = 0
        self._idle = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="baton-stream", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], None], size: int) -> None:
        """Queue ``work``; if more than ``limit`` bytes wait, wait here until half are written."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the stream writer is closed")
            self._queue.append((work, size))
            self._waiting += size
            if self._idle:
                self._lock.notify_all()
            if self._waiting > self.limit:
                # The disk is behind: slow the proxy down rather than hold more in memory.
                self._lock.wait_for(lambda: self._waiting <= self.limit // 2 or self._closed)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle = True
                    self._lock.wait()
                self._idle = False
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            for work, _ in batch:
                try:
                    work()
                except BaseException:  # each piece's work records its own failure
                    logger.exception("baton: stream writer")
            with self._lock:
                self._waiting -= sum(size for _, size in batch)
                self._lock.notify_all()

    async def reached(self) -> None:
        """Wait (on the event loop) until everything queued so far is written."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not done.done():
                done.set_result(None)

        def mark() -> None:
            loop.call_soon_threadsafe(settle)

        self.submit(mark, 0)
        await done

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join()


class BodyRecording:
    """One body being recorded: mitmproxy's ``stream`` callable, and the parts it writes.

    Called on the event loop with each piece (and ``b""`` at the end); returns
    the piece unchanged for the client and queues the redacted copy.
    """

    def __init__(
        self,
        place: str,
        stream: PartStream,
        redaction: StreamRedaction,
        started: float,
        *,
        gather: int = 0,
    ) -> None:
        self.place = place
        self.stream = stream
        self.redaction = redaction
        self._started = started
        self._gather = gather
        self._gathered: list[bytes] = []
        self._gathered_size = 0
        self._pump: PartPump | None = None
        self._offset = 0.0
        self.passed = 0
        """Bytes that passed through to the other side."""
        self.complete = False
        """The sender ended the body (mitmproxy called with ``b""``)."""
        self.ended = False
        self.error: BaseException | None = None

    def attach(self, pump: PartPump) -> BodyRecording:
        self._pump = pump
        return self

    def detach(self) -> None:
        """Record nothing more (the recorder stopped); pieces still pass to the client."""
        self._pump = None

    def __call__(self, data: bytes) -> bytes:
        if self.error is not None or self._pump is None:
            return data
        if not data:
            self.complete = True
            self.end()
            return data
        self.passed += len(data)
        if self._gather:
            self._gathered.append(data)
            self._gathered_size += len(data)
            if self._gathered_size >= self._gather:
                self._queue(b"".join(self._gathered))
        else:
            self._queue(data)
        return data

    def _queue(self, data: bytes) -> None:
        self._gathered.clear()
        self._gathered_size = 0
        offset = round((time.time() - self._started) * 1000.0, 3)
        try:
            assert self._pump is not None
            self._pump.submit(lambda: self._write(data, offset), len(data))
        except RuntimeError as exc:  # the recorder stopped meanwhile: the traffic goes on
            self.error = exc

    def end(self) -> None:
        """Queue the end of the recorded copy (what redaction held back), once."""
        if self.ended or self._pump is None:
            return
        self.ended = True
        if self._gathered:
            self._queue(b"".join(self._gathered))
        try:
            self._pump.submit(self._finish, 0)
        except RuntimeError as exc:
            self.error = exc

    # On the pump's thread:

    def _write(self, data: bytes, offset: float) -> None:
        if self.error is not None:
            return
        self._offset = offset
        try:
            recorded = self.redaction.feed(data)
            if recorded:
                self.stream.write(recorded, offset)
        except BaseException as exc:
            self.error = exc

    def _finish(self) -> None:
        if self.error is not None:
            return
        try:
            tail = self.redaction.finish()
            if tail:
                self.stream.write(tail, self._offset)
        except BaseException as exc:
            self.error = exc


@dataclass
class FlowStreams:
    """The bodies of one flow being recorded, by place ("request", "response")."""

    flow: http.HTTPFlow
    bodies: dict[str, BodyRecording] = field(default_factory=dict)
    appended = False
    """The interaction closing the streams is written (or failed: ``error``)."""
    error: BaseException | None = None


def _with_length(headers: Headers, length: int) -> Headers:
    return tuple(
        (name, str(length)) if name.lower() == "content-length" else (name, value)
        for name, value in headers
    )


class StreamRecorder:
    """The Recorder's streamed bodies: which to stream, the pump that writes them, closing them."""

    def __init__(self) -> None:
        self.threshold = DEFAULT_STREAM_THRESHOLD
        self._pump: PartPump | None = None
        self._flows: dict[str, FlowStreams] = {}

    def _the_pump(self) -> PartPump:
        if self._pump is None:
            self._pump = PartPump()
        return self._pump

    def _start(
        self,
        flow: http.HTTPFlow,
        place: str,
        writer: CassetteWriter,
        redactor: Redactor | None,
        interaction: Interaction,
    ) -> BodyRecording:
        redaction = (
            stream_redaction(redactor, interaction, place)
            if redactor is not None
            else StreamRedaction()
        )
        message = flow.request if place == "request" else flow.response
        assert message is not None
        # A body with a length is sent back to back on replay: where mitmproxy's reads cut
        # it means nothing, so its pieces are gathered into parts of about GATHER bytes
        # (a sixteenth of the hand-overs and records). Events and chunks keep their cuts.
        sized = _content_length(message.headers) is not None
        recording = BodyRecording(
            place,
            writer.open_stream(),
            redaction,
            flow.request.timestamp_start,
            gather=GATHER if sized else 0,
        ).attach(self._the_pump())
        self._flows.setdefault(flow.id, FlowStreams(flow)).bodies[place] = recording
        return recording

    def request_headers(
        self, flow: http.HTTPFlow, writer: CassetteWriter | None, redactor: Redactor | None
    ) -> None:
        """Stream the upload of ``flow`` if it is large or of unknown length."""
        if writer is None or callable(flow.request.stream):
            return
        if not request_should_stream(flow, self.threshold):
            return
        request = replace(request_from_flow(flow.request), body=None)
        interaction = Interaction(flow.id, request, None, flow.request.timestamp_start)
        flow.request.stream = self._start(flow, "request", writer, redactor, interaction)

    def response_headers(
        self, flow: http.HTTPFlow, writer: CassetteWriter | None, redactor: Redactor | None
    ) -> None:
        """Stream the answer of ``flow`` if it is events, of unknown length, or large."""
        response = flow.response
        if writer is None or response is None or callable(response.stream):
            return
        if not response_should_stream(flow, self.threshold):
            return
        request = request_from_flow(flow.request)
        interaction = Interaction(
            flow.id,
            request,
            replace(response_from_flow(response), body=None),
            flow.request.timestamp_start,
        )
        response.stream = self._start(flow, "response", writer, redactor, interaction)

    def pass_through(self, flow: http.HTTPFlow, *, request: bool) -> None:
        """Stream a flow that is not recorded (filtered out) when it would be recorded streamed."""
        if request and request_should_stream(flow, self.threshold):
            flow.request.stream = True
        elif (
            not request
            and flow.response is not None
            and response_should_stream(flow, self.threshold)
        ):
            flow.response.stream = True

    def recording(self, flow: http.HTTPFlow) -> bool:
        """True when some body of ``flow`` is being recorded as a stream."""
        return flow.id in self._flows

    async def finish(
        self, flow: http.HTTPFlow, redactor: Redactor | None, writer: CassetteWriter
    ) -> None:
        """Append the interaction that closes the flow's streams, once their parts are written.

        The append runs on the pump's thread, after the parts: if the hook
        waiting here is cancelled (the recorder stopping just as a client got
        its last byte), it still happens, and ``close`` knows it did.
        """
        streams = self._flows[flow.id]
        interaction = interaction_from_flow(flow)
        pump = self._the_pump()
        for body in streams.bodies.values():
            body.end()
        pump.submit(lambda: self._append(streams, interaction, redactor, writer), 0)
        await pump.reached()
        self._flows.pop(flow.id, None)
        if streams.error is not None:
            raise streams.error

    def _append(
        self,
        streams: FlowStreams,
        interaction: Interaction,
        redactor: Redactor | None,
        writer: CassetteWriter,
    ) -> None:
        if streams.appended:
            return
        streams.appended = True
        try:
            for body in streams.bodies.values():
                if body.error is not None:
                    raise body.error
            closed, parts = self._closing(interaction, streams, redactor)
            if not all(body.complete for body in streams.bodies.values()):
                closed = closed.with_tags(stream_unfinished=True)
            writer.append(closed, parts)
        except BaseException as exc:
            streams.error = exc

    def close(self, redactor: Redactor | None, writer: CassetteWriter | None) -> tuple[int, int]:
        """Stop: close every flow still streaming with what passed; return (recorded, failed).

        Their parts are on disk already; each interaction is tagged
        ``stream_unfinished`` when its sender had not ended the body.
        """
        pump, self._pump = self._pump, None
        if pump is None:
            return 0, 0
        for streams in self._flows.values():
            for body in streams.bodies.values():
                body.end()
        pump.close()  # writes everything queued, appends included
        recorded = failed = 0
        for streams in self._flows.values():
            for body in streams.bodies.values():
                body.detach()
            if streams.appended or writer is None:
                continue
            self._append(streams, interaction_from_flow(streams.flow), redactor, writer)
            if streams.error is None:
                recorded += 1
            else:
                failed += 1
                logger.error(
                    "baton: could not record %s: %s", streams.flow.request.pretty_url, streams.error
                )
        self._flows.clear()
        return recorded, failed

    def _closing(
        self, interaction: Interaction, streams: FlowStreams, redactor: Redactor | None
    ) -> tuple[Interaction, dict[str, PartStream]]:
        request: Request = interaction.request
        response: Response | None = interaction.response
        redacted: list[str] = []
        not_scrubbed: list[str] = []
        for place, body in streams.bodies.items():
            message: Any = request if place == "request" else response
            if message is None:
                continue
            headers = message.headers
            if body.stream.size != body.passed and message.header("content-length") is not None:
                # Scrubbing changed the body's length: keep the recorded header true to it.
                headers = _with_length(headers, body.stream.size)
            message = replace(message, headers=headers, body=None, chunks=None, stored=None)
            if place == "request":
                request = message
            else:
                response = message
            if body.redaction.changed:
                redacted.append(body.redaction.where)
            if body.redaction.not_scrubbed:
                not_scrubbed.append(f"{body.redaction.where}: {body.redaction.not_scrubbed}")
        interaction = replace(interaction, request=request, response=response)
        if redactor is not None:
            interaction = redactor.redact(interaction)
        tags: dict[str, Any] = {}
        if redacted:
            tags["redacted"] = [*interaction.tags.get("redacted", ()), *redacted]
        if not_scrubbed:
            tags["body_not_scrubbed"] = not_scrubbed
        if tags:
            interaction = interaction.with_tags(**tags)
        return interaction, {place: body.stream for place, body in streams.bodies.items()}
