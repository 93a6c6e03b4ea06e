"""The ``Replayer`` mitmproxy addon: answer from cassettes in any proxy mode.

The ``request`` hook answers before mitmproxy contacts any server: a
response set there means no upstream connection is opened, provided
``connection_strategy`` is ``lazy`` (the default ``eager`` connects as soon
as the client does — which ``baton replay`` sets for this reason). Misses
get the near-miss report; in ``new_episodes`` and ``all`` they go upstream
instead and are appended to the cassette, redacted like any recording.

With ``baton_replay_latency`` set, a hit waits its recorded ``duration_ms``
(times the scale) before it is answered. The hook is ``async`` and sleeps on
the event loop, so only that one exchange waits, never the proxy.

Streams and WebSockets cannot be answered from the ``request`` hook: a
response set there is sent whole, at once. For a hit whose interaction holds
pieces (server-sent events, a chunked answer), a body left in the cassette
file or a WebSocket conversation, the Replayer points the flow instead at
baton's own replay server, started on 127.0.0.1 on first need in this
process and sharing this Index, with ``X-Baton-Interaction`` naming the
chosen interaction (its queue position is used once, here). mitmproxy then
proxies that answer to the client as it comes — over TLS, HTTP/2, any mode —
streaming the body (``responseheaders``) and relaying the WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import ctx, exceptions, http

from baton.cassettes.compression import BodyCompression
from baton.cassettes.errors import CassetteError, RedactionError
from baton.cassettes.model import Interaction, Response
from baton.cassettes.repair import backup_path
from baton.cassettes.writer import CassetteWriter, PartStream
from baton.proxy.flows import interaction_from_flow, request_from_flow
from baton.proxy.redaction_options import declare_redaction_options, redactor_from_options
from baton.proxy.websocket_recording import ConversationRecorder
from baton.replay.faults import (
    FAULT_HEADER,
    Fault,
    FaultKind,
    FaultPlan,
    FaultRuleError,
    custom_fault,
    malformed_json_response,
    with_fault_header,
)
from baton.replay.index import ExhaustedPolicy, Hit, Index, Miss
from baton.replay.options import ReplayOptions
from baton.replay.record_mode import RecordMode
from baton.replay.run_log import write_run_log
from baton.replay.server import FAULT_ROUTE_HEADER, ROUTE_HEADER, RoutedReplayServer
from baton.replay.state import SessionBy, StateCounter
from baton.replay.streaming import is_streamed

__all__ = ["Replayer", "flow_response", "latency_scale"]

logger = logging.getLogger(__name__)


def flow_response(interaction: Interaction, rewritten: Response | None = None) -> http.Response:
    """A mitmproxy response carrying the recorded one byte for byte (or ``rewritten``, the
    Index's answer made for this request: live values, shifted dates, trace context)."""
    recorded = rewritten if rewritten is not None else interaction.response
    if recorded is None:
        return http.Response.make(
            502,
            f"baton: recorded without a response: {interaction.error}\n",
            {"Content-Type": "text/plain; charset=utf-8", "X-Baton-Recorded-Error": "1"},
        )
    # Built empty, then given the raw bytes: make() would re-encode a body
    # whose headers say gzip.
    response = http.Response.make(recorded.status)
    response.http_version = (
        "HTTP/1.1" if recorded.http_version.startswith("HTTP/2") else recorded.http_version
    )
    response.reason = recorded.reason or response.reason
    response.headers = http.Headers(
        [
            (n.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
            for n, v in recorded.headers
        ]
    )
    response.raw_content = recorded.body if recorded.body is not None else b""
    if recorded.trailers:
        response.trailers = http.Headers(
            [
                (n.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
                for n, v in recorded.trailers
            ]
        )
    return response


def needs_routing(interaction: Interaction) -> bool:
    """True when the answer must come from the loopback server: pieces, a stored body, a WebSocket."""
    return interaction.websocket is not None or is_streamed(interaction)


def miss_flow_response(miss: Miss, status: int) -> http.Response:
    return http.Response.make(
        status,
        miss.report() + "\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Baton-Miss": "1"},
    )


def latency_scale(value: str | None) -> float | None:
    """``baton_replay_latency`` as a number; ``OptionsError`` for anything but a number >= 0."""
    if value is None or not value.strip():
        return None
    try:
        scale = float(value)
    except ValueError:
        scale = -1.0
    if not scale >= 0 or scale == float("inf"):
        raise exceptions.OptionsError(
            f"baton_replay_latency: {value!r} is not a number >= 0 "
            "(the scale of the recorded duration, e.g. 1)"
        )
    return scale


_ROUTED_FAULTS = frozenset({FaultKind.SLOW_BODY, FaultKind.TRUNCATE, FaultKind.MALFORMED})


def fault_plan(rules: Sequence[str], seed: str | None) -> FaultPlan | None:
    """``baton_faults`` and ``baton_fault_seed`` as a plan; ``OptionsError`` for a bad rule."""
    if not rules:
        return None
    try:
        return FaultPlan(rules, seed=None if seed in (None, "") else int(seed))
    except (FaultRuleError, ValueError) as exc:
        raise exceptions.OptionsError(str(exc)) from exc


def _faulted(result: Hit, fault: Fault | None, flow: http.HTTPFlow) -> Response | None:
    """The answer a custom or ``malformed=json`` fault makes of the recorded one, else unchanged."""
    if fault is None or fault.kind not in (FaultKind.CUSTOM, FaultKind.MALFORMED):
        return result.response
    recorded = result.response if result.response is not None else result.interaction.response
    if fault.kind is FaultKind.MALFORMED:
        return malformed_json_response(recorded, fault.rule.text)
    function = custom_fault(fault.rule.custom)
    assert function is not None
    answer = function(request_from_flow(flow.request), recorded, fault.rule.argument)
    return with_fault_header(answer, fault.rule.text)


class Replayer:
    """Serve interactions from ``baton_replay`` cassettes; forward and record per the record mode."""

    def __init__(self) -> None:
        self.index: Index | None = None
        self._writer: CassetteWriter | None = None
        self._mode = RecordMode.NONE
        self.latency_scale: float | None = None
        """Scale of the recorded duration to wait before answering; None answers at once."""
        self.forwarded = 0
        self.recorded = 0
        self._routed: RoutedReplayServer | None = None
        """The loopback server that sends streams and WebSockets (started on first need)."""
        self._routed_start: asyncio.Task[RoutedReplayServer] | None = None
        self._conversations = ConversationRecorder()
        """Forwarded WebSocket conversations being recorded (new_episodes, all)."""
        self.run_log: Path | None = None
        self._state = StateCounter()
        """Writes seen per session while recording afresh (record mode all)."""
        """Where ``done`` writes what was served (``--run-log``; replay/run_log.py)."""
        self._cassettes: list[Path] = []
        self.faults: FaultPlan | None = None
        """``baton_faults`` (replay/faults.py): drawn here, in the request hook."""

    def load(self, loader: object) -> None:
        add = loader.add_option  # type: ignore[attr-defined]
        add("baton_replay", Sequence[str], [], "Cassettes to answer from.")
        add(
            "baton_record_mode",
            str,
            RecordMode.NONE.value,
            "none, once, new_episodes or all (VCR.py's meanings).",
            choices=[m.value for m in RecordMode],
        )
        add("baton_match_on", Sequence[str], [], "Matchers making the key (default: all).")
        add("baton_match_headers", Sequence[str], [], "Headers added to the match key.")
        add("baton_ignore_query", Sequence[str], [], "Query names left out of the key.")
        add("baton_ignore_fields", Sequence[str], [], "JSON paths left out of the key.")
        add("baton_match_secrets", bool, False, "Match redacted values by their keyed hash.")
        add(
            "baton_on_exhausted",
            str,
            ExhaustedPolicy.REPEAT_LAST.value,
            "When a request's recorded answers are used up: repeat-last or strict.",
            choices=[p.value for p in ExhaustedPolicy],
        )
        add("baton_miss_status", int, 502, "Status of the answer to an unmatched request.")
        add(
            "baton_replay_address",
            bool,
            True,
            "Match scheme, host and port (off in reverse mode, where they are baton's own).",
        )
        add(
            "baton_replay_latency",
            str | None,
            None,
            "Wait the recorded duration times this scale (e.g. 1, 0.5) before answering a hit; "
            "unset answers at once.",
        )
        add("baton_state", bool, True, "Answer reads from the recording made in the same state.")
        add(
            "baton_session_by",
            str,
            "none",
            "Separate state and queue positions per session: header:NAME, cookie:NAME, client.",
        )
        add("baton_dynamic", Sequence[str], [], "Dynamic value rules: $.id, header:ETag, ...")
        add(
            "baton_detect_dynamic",
            bool,
            True,
            "Find dynamic values in the recording and generated ones (UUIDs, times) by shape.",
        )
        add("baton_shift_time", str | None, None, "Move answers' dates to now (or this ISO time).")
        add("baton_time_fields", Sequence[str], [], "JSON fields holding epoch times to shift.")
        add("baton_run_log", str | None, None, "Write what was served here when done.")
        add("baton_faults", Sequence[str], [], "Fault rules: status=503,rate=0.1, reset, ...")
        add("baton_fault_seed", str | None, None, "Seed of the fault coin (an integer).")
        add(
            "baton_compress",
            str,
            "none",
            "How new_episodes and all store bodies: zstd, zstd:LEVEL (1-19) or none.",
        )
        # What new_episodes and all write is redacted by the same rules as a recording.
        declare_redaction_options(add)

    def configure(self, updated: set[str]) -> None:
        if "baton_run_log" in updated:
            self.run_log = Path(ctx.options.baton_run_log) if ctx.options.baton_run_log else None
        if "baton_replay_latency" in updated:
            self.latency_scale = latency_scale(ctx.options.baton_replay_latency)
            self._stop_routed()  # it paces streams by the old scale
        if updated & {"baton_faults", "baton_fault_seed"}:
            self.faults = fault_plan(ctx.options.baton_faults, ctx.options.baton_fault_seed)
            self._stop_routed()  # it acts on the old rules
        # The index is rebuilt (and its counts start over) only when what it holds changes.
        index_blind = {
            "baton_cassette",
            "baton_replay_latency",
            "baton_run_log",
            "baton_faults",
            "baton_fault_seed",
        }
        if not any(name.startswith("baton_") and name not in index_blind for name in updated):
            return
        paths = [Path(p) for p in ctx.options.baton_replay]
        self._cassettes = paths
        if not paths:
            self.index = None
            return
        self._mode = RecordMode(ctx.options.baton_record_mode)
        try:
            self._state = StateCounter(session_by=SessionBy.parse(ctx.options.baton_session_by))
        except ValueError as exc:
            raise exceptions.OptionsError(str(exc)) from exc
        options = ReplayOptions(
            match_on=ctx.options.baton_match_on or None,
            match_headers=ctx.options.baton_match_headers,
            ignore_query=ctx.options.baton_ignore_query,
            ignore_fields=ctx.options.baton_ignore_fields,
            match_secrets=ctx.options.baton_match_secrets,
            on_exhausted=ctx.options.baton_on_exhausted,
            state=ctx.options.baton_state,
            session_by=ctx.options.baton_session_by,
            dynamic=ctx.options.baton_dynamic,
            detect_dynamic=ctx.options.baton_detect_dynamic,
            shift_time=ctx.options.baton_shift_time,
            time_fields=ctx.options.baton_time_fields,
        )
        try:
            existed = paths[0].exists()
            if self._mode is RecordMode.ONCE and not existed:
                self._mode = RecordMode.ALL
            replaying = [] if self._mode is RecordMode.ALL else paths
            self.index = options.load(replaying, address=ctx.options.baton_replay_address)
            self._stop_routed()  # it serves the old index
            if self._mode is RecordMode.ALL and paths[0].exists():
                backup = backup_path(paths[0])
                paths[0].rename(backup)
                logger.warning("baton: record mode all: the previous cassette is now %s", backup)
            if self._writer is not None:  # reconfigured: the old writer lets go of the file
                self._close_writer()
            if self._mode in (RecordMode.NEW_EPISODES, RecordMode.ALL):
                self._writer = CassetteWriter(
                    paths[0],
                    redactor=redactor_from_options(ctx.options),
                    meta={"recorded_with": "baton replay", "record_mode": self._mode.value},
                    compression=BodyCompression.parse(ctx.options.baton_compress),
                    # A run that forwarded nothing leaves no empty cassette for `once`
                    # to mistake for a recording next time.
                    discard_if_empty=not existed,
                )
        except (CassetteError, RedactionError, ValueError) as exc:
            raise exceptions.OptionsError(str(exc)) from exc

    async def request(self, flow: http.HTTPFlow) -> None:
        index = self.index
        if index is None or flow.response is not None or self._mode is RecordMode.ALL:
            if self._mode is RecordMode.ALL:
                flow.metadata["baton_forward"] = True
                # Recording afresh (the pytest plugin's `once`): writes counted as the
                # Recorder counts them, for stateful replay of what is written.
                peer = flow.client_conn.peername
                flow.metadata["baton_state"] = self._state.stamp(
                    request_from_flow(flow.request), f"{peer[0]}:{peer[1]}" if peer else None
                )
            return
        fault = None if self.faults is None else self.faults.decide(request_from_flow(flow.request))
        if fault is not None and await self._fault_answers(flow, fault):
            return
        forwarding = self._mode is RecordMode.NEW_EPISODES
        peer = flow.client_conn.peername
        result = index.lookup(
            request_from_flow(flow.request),
            forwarding=forwarding,
            client=f"{peer[0]}:{peer[1]}" if peer else None,
        )
        if isinstance(result, Miss):
            if forwarding:
                flow.metadata["baton_forward"] = True
                return
            logger.warning("%s", result.report())
            flow.response = miss_flow_response(result, ctx.options.baton_miss_status)
            return
        if fault is not None and fault.kind in _ROUTED_FAULTS:
            # Bytes a request hook cannot shape: the loopback server sends them.
            assert self.faults is not None
            await self._route(flow, result.number)
            flow.request.headers[FAULT_ROUTE_HEADER] = str(self.faults.rule_number(fault.rule))
            return
        if needs_routing(result.interaction):
            await self._route(flow, result.number)
            return
        flow.response = flow_response(result.interaction, _faulted(result, fault, flow))
        recorded_ms = result.interaction.duration_ms
        wait = (
            recorded_ms / 1000.0 * self.latency_scale if self.latency_scale and recorded_ms else 0.0
        )
        if fault is not None:
            flow.response.headers[FAULT_HEADER] = fault.rule.text
            wait += fault.delay_s  # a delay fault composes with --replay-latency
        if wait:
            await asyncio.sleep(wait)

    async def _fault_answers(self, flow: http.HTTPFlow, fault: Fault) -> bool:
        """Answer ``flow`` with a fault that needs no recording; False for the others."""
        rule = fault.rule
        if fault.kind is FaultKind.STATUS:
            flow.response = http.Response.make(
                rule.status,
                f"baton: injected fault {rule.text}\n",
                {"Content-Type": "text/plain; charset=utf-8", FAULT_HEADER: rule.text},
            )
            return True
        if fault.kind is FaultKind.RESET:
            flow.kill()  # mitmproxy closes the client's connection without an answer
            return True
        if fault.kind is FaultKind.TIMEOUT:
            flow.intercept()  # held until the client gives up or the proxy stops
            return True
        return False

    async def _route(self, flow: http.HTTPFlow, number: int) -> None:
        """Send ``flow`` to the loopback replay server, naming interaction ``number``."""
        server = await self._routed_server()
        request = flow.request
        request.scheme = "http"
        request.host = server.host
        request.port = server.port
        request.headers[ROUTE_HEADER] = str(number)
        flow.metadata["baton_routed"] = number
        if flow.server_conn.via is not None:  # upstream mode: straight to the loopback
            flow.server_conn.via = None

    async def _routed_server(self) -> RoutedReplayServer:
        if self._routed is not None:
            return self._routed
        if self._routed_start is None:
            assert self.index is not None
            server = RoutedReplayServer(
                self.index,
                host="127.0.0.1",
                miss_status=ctx.options.baton_miss_status,
                latency_scale=self.latency_scale,
                faults=self.faults,
            )

            async def start() -> RoutedReplayServer:
                await server.start()
                self._routed = server
                return server

            self._routed_start = asyncio.get_running_loop().create_task(start())
        return await asyncio.shield(self._routed_start)

    def _stop_routed(self) -> None:
        routed, self._routed = self._routed, None
        self._routed_start = None
        if routed is not None:
            routed.close_now()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # A routed answer is a stream: pass it to the client as it comes.
        if flow.metadata.get("baton_routed") is not None and flow.response is not None:
            flow.response.stream = True

    async def response(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get("baton_forward") or self._writer is None:
            return
        if flow.websocket is not None:
            return  # recorded with its messages at websocket_end, as the Recorder does
        self.forwarded += 1
        await self._append(flow, interaction_from_flow(flow))

    async def _append(
        self,
        flow: http.HTTPFlow,
        interaction: Interaction,
        streams: dict[str, PartStream] | None = None,
    ) -> None:
        if self._writer is None:
            return
        # Counted when handed over, as the Recorder does: a WebSocket's close reaches the
        # client before websocket_end runs, and a replayer stopped now still writes what it
        # was handed (CassetteWriter.close) though this coroutine never resumes.
        self.recorded += 1
        try:
            stored = await self._writer.append_async(interaction, streams)
        except Exception as exc:  # fail open, as the recorder does
            self.recorded -= 1
            logger.error("baton: could not record %s: %s", flow.request.pretty_url, exc)
            return
        if self.index is not None:
            self.index.add(stored)

    # A forwarded WebSocket conversation (new_episodes, all): proxy/websocket_recording.py.
    async def websocket_start(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("baton_forward") and self._writer is not None:
            try:
                self._conversations.start(flow, self._writer, redactor_from_options(ctx.options))
            except Exception as exc:  # fail open
                logger.error("baton: could not record %s: %s", flow.request.pretty_url, exc)

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        await self._conversations.message(flow)

    async def websocket_end(self, flow: http.HTTPFlow) -> None:
        closing = self._conversations.finish(flow)
        if closing is not None:
            self.forwarded += 1
            await self._append(flow, *closing)

    def _close_writer(self) -> None:
        assert self._writer is not None
        for interaction, streams in self._conversations.unfinished():
            try:
                self._writer.append(interaction, streams)
                self.recorded += 1
            except Exception as exc:
                logger.error("baton: could not record %s: %s", interaction.request.url, exc)
        self._writer.close()
        self._writer = None

    def done(self) -> None:
        self._stop_routed()
        if self.run_log is not None and self.index is not None:
            try:
                write_run_log(self.run_log, self.index, self._cassettes)
            except OSError as exc:
                logger.error("baton: could not write the run log %s: %s", self.run_log, exc)
        if self._writer is not None:
            self._close_writer()
