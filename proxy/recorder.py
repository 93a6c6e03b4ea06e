"""The ``Recorder`` mitmproxy addon: every completed exchange, appended to a cassette.

The hooks are ``async`` and await the cassette writer, so the response is
released to the client only after its interaction is with the OS: a client
that got an answer can count on it being recorded, even if the recorder dies
the next instant. A small interaction reaching an idle writer is written
right on the event loop (a page-cache write costs less than the hop to a
thread and back); anything else, or every write for a while after one that
was slow, runs on the writer's thread, so a slow disk stalls the event loop
that serves every other connection at most once (``CassetteWriter.append_async``).

Recording fails open: if an interaction cannot be written (disk full, a
write error), the traffic goes on, the failure is logged and counted.
mitmproxy's own ``-w`` stops instead; for a recorder that sits between
services in staging, not breaking them matters more than the recording.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import ctx, exceptions, http

from baton.cassettes.compression import BodyCompression
from baton.cassettes.errors import CassetteError, RedactionError
from baton.cassettes.model import Interaction, Request
from baton.cassettes.redaction import Redactor
from baton.cassettes.writer import CassetteWriter, FsyncPolicy, PartStream
from baton.proxy.flows import interaction_from_flow, request_from_flow
from baton.proxy.redaction_options import (
    REDACTION_OPTIONS,
    declare_redaction_options,
    redactor_from_options,
)
from baton.proxy.stream_recording import StreamRecorder, parse_size
from baton.proxy.websocket_recording import ConversationRecorder
from baton.replay.state import SessionBy, StateCounter, StateRules

__all__ = ["Recorder"]

logger = logging.getLogger(__name__)

_OPTIONS = REDACTION_OPTIONS | {"baton_cassette", "baton_fsync", "baton_compress"}
_STATE_OPTIONS = {"baton_session_by", "baton_state_reads", "baton_state_writes"}


class Recorder:
    """Record every HTTP exchange that passes the filters into ``baton_cassette``."""

    def __init__(self, open_writer: Callable[..., Any] | None = None) -> None:
        self._open_writer = open_writer or CassetteWriter
        """Opens the cassette: CassetteWriter, or record's RotatingWriter (proxy/rotation.py)."""
        self._writer: CassetteWriter | None = None
        self._redactor: Redactor | None = None
        self._conversations = ConversationRecorder()
        """WebSocket conversations being recorded (proxy/websocket_recording.py)."""
        self._streams = StreamRecorder()
        """Bodies recorded as they pass: events, chunked, large (proxy/stream_recording.py)."""
        self.recorded = 0
        """Interactions written."""
        self.failed = 0
        """Interactions that could not be written (the traffic went on)."""
        self.skipped = 0
        """Exchanges left out by the host and path filters."""
        self.discarded = False
        """True when the cassette was created for this run and removed again, nothing recorded."""
        self._state = StateCounter()
        """Writes seen per session, for each interaction's ``state`` tag (replay/state.py)."""
        self._only_hosts: tuple[str, ...] = ()
        self._only_paths: tuple[str, ...] = ()
        """The filters, kept here: reading ``ctx.options`` costs microseconds on every hook."""

    def load(self, loader: object) -> None:
        add = loader.add_option  # type: ignore[attr-defined]
        add("baton_cassette", str | None, None, "Append recorded interactions to this cassette.")
        declare_redaction_options(add)
        add(
            "baton_fsync",
            str,
            FsyncPolicy.CLOSE.value,
            "When to fsync the cassette: every (interaction), close, never.",
            choices=[p.value for p in FsyncPolicy],
        )
        add(
            "baton_compress",
            str,
            "none",
            "Store text-like bodies compressed in the cassette: zstd, zstd:LEVEL (1-19) or none.",
        )
        add("baton_only_hosts", Sequence[str], [], "Record only hosts matching these globs.")
        add("baton_only_paths", Sequence[str], [], "Record only paths matching these globs.")
        add(
            "baton_stream_threshold",
            str,
            "16MiB",
            "Bodies longer than this are streamed to the cassette in pieces, never held whole; "
            "server-sent events and bodies without a length always are.",
        )
        add(
            "baton_session_by",
            str,
            "none",
            "Count writes per session for stateful replay: header:NAME, cookie:NAME, client, none.",
        )
        add("baton_state_reads", Sequence[str], [], "Routes 'METHOD /glob' that change nothing.")
        add("baton_state_writes", Sequence[str], [], "Routes 'METHOD /glob' that change state.")

    def configure(self, updated: set[str]) -> None:
        if "baton_only_hosts" in updated:
            self._only_hosts = tuple(h.lower() for h in ctx.options.baton_only_hosts)
        if "baton_only_paths" in updated:
            self._only_paths = tuple(ctx.options.baton_only_paths)
        if updated.intersection(_STATE_OPTIONS):
            try:
                self._state = StateCounter(
                    StateRules.build(ctx.options.baton_state_reads, ctx.options.baton_state_writes),
                    SessionBy.parse(ctx.options.baton_session_by),
                )
            except ValueError as exc:
                raise exceptions.OptionsError(str(exc)) from exc
        if "baton_stream_threshold" in updated:
            try:
                self._streams.threshold = parse_size(ctx.options.baton_stream_threshold)
            except ValueError as exc:
                raise exceptions.OptionsError(f"baton_stream_threshold: {exc}") from exc
        if not updated.intersection(_OPTIONS):
            return
        self._close()
        path = ctx.options.baton_cassette
        if not path:
            return
        try:
            redactor = redactor_from_options(ctx.options)
            self._redactor = redactor
            compression = BodyCompression.parse(ctx.options.baton_compress)
            self._writer = self._open_writer(
                path,
                redactor=redactor,
                fsync=ctx.options.baton_fsync,
                meta={"recorded_with": "baton record", "mode": list(ctx.options.mode)},
                # A recorder stopped before any traffic leaves no header-only file behind.
                discard_if_empty=True,
                compression=compression,
            )
        except (CassetteError, RedactionError, ValueError) as exc:
            raise exceptions.OptionsError(str(exc)) from exc
        logger.info("baton: recording into %s", path)

    def _selected(self, flow: http.HTTPFlow) -> bool:
        if flow.metadata.get("baton_sample", "keep") != "keep":
            return False  # left out by --sample / --per-endpoint-limit (proxy/sampling.py)
        hosts = self._only_hosts
        if hosts:
            host = flow.request.pretty_host.lower()
            if not any(fnmatch.fnmatchcase(host, h) for h in hosts):
                return False
        paths = self._only_paths
        if not paths:
            return True
        path = flow.request.path.split("?", 1)[0]
        return any(fnmatch.fnmatchcase(path, p) for p in paths)

    def request(self, flow: http.HTTPFlow) -> None:
        # Counted as requests arrive: an interaction's writes are the ones before it began.
        if self._writer is not None and self._selected(flow):
            self._stamp_state(flow)

    def _stamp_state(self, flow: http.HTTPFlow) -> None:
        """Stamp the ``state`` tag from what the state rules read, not a whole conversion.

        ``StateCounter.stamp`` reads the method, the path and the body
        (``StateRules.is_write``), the headers only for a session named by a
        header or cookie, and the client only for ``--session-by client``.
        Converting the whole request here too (Host parsing, the query, every
        header) doubled the conversion cost of every recorded exchange.
        """
        request = flow.request
        session_kind = self._state.session_by.kind
        client = None
        if session_kind == "client":
            peer = flow.client_conn.peername
            client = f"{peer[0]}:{peer[1]}" if peer else None
        if session_kind in ("header", "cookie"):
            seen = request_from_flow(request)
        else:
            seen = Request(
                method=request.method,
                scheme="",
                host="",
                port=0,
                path=request.path.split("?", 1)[0],
                body=request.raw_content,
            )
        flow.metadata["baton_state"] = self._state.stamp(seen, client)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._stream_if_needed(flow, request=True)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._stream_if_needed(flow, request=False)

    def _stream_if_needed(self, flow: http.HTTPFlow, *, request: bool) -> None:
        """Let a streamed body pass unbuffered, recording it piece by piece if it is selected."""
        if self._writer is None:
            return
        if not self._selected(flow):
            self._streams.pass_through(flow, request=request)
            return
        try:
            if request:
                self._streams.request_headers(flow, self._writer, self._redactor)
            else:
                self._streams.response_headers(flow, self._writer, self._redactor)
        except Exception as exc:  # fail open: the body is buffered and recorded as before
            logger.error("baton: cannot stream %s: %s", flow.request.pretty_url, exc)

    async def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None:
            return  # a WebSocket handshake: recorded once, with its messages, at websocket_end
        await self._record(flow)

    async def websocket_start(self, flow: http.HTTPFlow) -> None:
        if self._writer is None:
            return
        if not self._selected(flow):
            self.skipped += 1
            return
        try:
            self._conversations.start(flow, self._writer, self._redactor)
        except Exception as exc:  # fail open
            self.failed += 1
            logger.error("baton: could not record %s: %s", flow.request.pretty_url, exc)

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        await self._conversations.message(flow)

    async def websocket_end(self, flow: http.HTTPFlow) -> None:
        closing = self._conversations.finish(flow)
        if closing is not None:
            await self._append(flow, *closing)

    async def _append(
        self, flow: http.HTTPFlow, interaction: Interaction, streams: dict[str, PartStream]
    ) -> None:
        """Append a WebSocket conversation's interaction naming its parts; fail open."""
        writer = self._writer
        if writer is None:
            return
        # Counted when handed over: the close already reached the client, and a recorder
        # stopped now still writes it (CassetteWriter.close) though this hook never resumes.
        self.recorded += 1
        try:
            await writer.append_async(interaction, streams)
        except Exception as exc:
            self.recorded -= 1
            self.failed += 1
            logger.error("baton: could not record %s: %s", flow.request.pretty_url, exc)

    async def error(self, flow: http.HTTPFlow) -> None:
        # Exchanges that never got a response, and streams that broke off (their
        # parts are on disk: close them); an error after a buffered response (a
        # client gone mid-body) was recorded by `response`.
        if flow.response is None or self._streams.recording(flow):
            await self._record(flow)

    async def _record(self, flow: http.HTTPFlow) -> None:
        writer = self._writer
        if writer is None:
            return
        if not self._selected(flow):
            self.skipped += 1
            return
        try:
            if self._streams.recording(flow):
                await self._streams.finish(flow, self._redactor, writer)
            else:
                await writer.append_async(interaction_from_flow(flow))
        except Exception as exc:  # fail open: the proxied traffic must go on
            self.failed += 1
            logger.error(
                "baton: could not record %s %s (%d failed so far): %s",
                flow.request.method,
                flow.request.pretty_url,
                self.failed,
                exc,
            )
        else:
            self.recorded += 1

    def _close(self) -> None:
        if self._writer is not None:
            # Conversations still open when the recorder stops or changes cassette: keep
            # what passed (their messages are on disk already), marked unfinished.
            for interaction, streams in self._conversations.unfinished():
                try:
                    self._writer.append(interaction, streams)
                    self.recorded += 1
                except Exception as exc:
                    self.failed += 1
                    logger.error("baton: could not record %s: %s", interaction.request.url, exc)
            # Streams still passing likewise: their parts are on disk, close them with what passed.
            recorded, failed = self._streams.close(self._redactor, self._writer)
            self.recorded += recorded
            self.failed += failed
            self._writer.close()
            self.discarded = self._writer.discarded
            self._writer = None

    def done(self) -> None:
        self._close()
