"""Record gRPC calls with a gRPC proxy of baton's own: h2c (prior knowledge) and TLS, reverse mode.

mitmproxy (11 and 12) kills HTTP/2 connections that start with the
prior-knowledge preface ("not supported", addons/disable_h2c.py), and that
is how every gRPC client speaks on an insecure channel. So for
``--mode reverse:h2c://HOST:PORT`` (and ``reverse:grpcs://HOST:PORT`` for a
TLS upstream) baton runs a ``grpc.aio`` server with one generic handler that
takes any method, opens the same call on the upstream and passes every
message on the moment it arrives, in both directions — a server stream of
a thousand messages or a bidirectional chat goes through as it flows, never
buffered whole. What passed is kept as one interaction per call (its
metadata as headers, its messages framed as on the wire, its status and
trailing metadata as trailers; cassettes/grpc_model.py) and appended when
the call ends. gRPC over TLS in regular mode goes through mitmproxy like any
HTTP/2 exchange, and reads back as the same kind of call.

grpcio hands over messages uncompressed: a call recorded here stores them
uncompressed (``grpc-encoding`` as negotiated stays in the headers).
Metadata is redacted by the cassette writer's redactor like headers;
``redact_fields`` blank decoded message fields before anything is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from grpc import aio

from baton.cassettes.grpc_model import (
    GrpcCall,
    GrpcMessage,
    encode_binary_header,
    encode_grpc_message,
    frame_messages,
    split_method_path,
)
from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.protobuf_schema import ProtoSchema, decode_call, redact_message
from baton.cassettes.redaction import Redactor
from baton.cassettes.writer import CassetteWriter

__all__ = ["GrpcRecorder", "GrpcUpstream", "metadata_pairs", "parse_grpc_mode"]

logger = logging.getLogger(__name__)

# Metadata grpcio sets itself on a call: not passed on (it would be sent twice).
_NOT_FORWARDED = frozenset({"user-agent", "grpc-accept-encoding", "grpc-encoding", "te"})


@dataclass(frozen=True, slots=True)
class GrpcUpstream:
    """Where recorded calls go: host, port, and TLS with the certificates to trust (PEM)."""

    host: str
    port: int
    tls: bool = False
    trust: bytes | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


def parse_grpc_mode(mode: str) -> GrpcUpstream | None:
    """``reverse:h2c://HOST:PORT`` or ``reverse:grpcs://HOST:PORT`` -> the upstream; None for other modes."""
    name, _, url = mode.partition(":")
    if name != "reverse":
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("h2c", "grpc", "grpcs"):
        return None
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--mode {mode}: write it as reverse:{scheme}://HOST:PORT")
    return GrpcUpstream(host.strip("[]"), int(port), tls=scheme.lower() == "grpcs")


def metadata_pairs(metadata: Any) -> tuple[tuple[str, str], ...]:
    """grpcio metadata as header pairs: ``-bin`` values base64 as HTTP/2 carries them."""
    pairs: list[tuple[str, str]] = []
    for key, value in metadata or ():
        if isinstance(value, bytes):
            pairs.append((key, encode_binary_header(value)))
        else:
            pairs.append((key, str(value)))
    return tuple(pairs)


@dataclass
class _CallRecord:
    path: str
    started: float
    metadata: tuple[tuple[str, str], ...]
    requests: list[GrpcMessage] = field(default_factory=list)
    responses: list[GrpcMessage] = field(default_factory=list)
    initial: tuple[tuple[str, str], ...] = ()

    def offset(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 3)


class GrpcRecorder:
    """A gRPC reverse proxy that appends every call through it to a cassette."""

    def __init__(
        self,
        upstream: GrpcUpstream,
        writer: CassetteWriter,
        schema: ProtoSchema | None = None,
        redact_fields: Sequence[str] = (),
        on_recorded: Callable[[], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.upstream = upstream
        self._writer = writer
        """Opened without a redactor: this recorder redacts message by message (``_redact``)."""
        self._redactor = redactor
        self._schema = schema
        self._redact_fields = tuple(redact_fields)
        self._on_recorded = on_recorded
        self._channel: aio.Channel | None = None
        self.server: aio.Server | None = None
        self.recorded = 0
        self.failed = 0

    async def start(
        self, host: str, port: int, server_credentials: grpc.ServerCredentials | None = None
    ) -> int:
        """Listen on ``host:port`` (h2c, or TLS with ``server_credentials``); the bound port."""
        if self.upstream.tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.upstream.trust)
            self._channel = aio.secure_channel(self.upstream.target, credentials)
        else:
            self._channel = aio.insecure_channel(self.upstream.target)
        self.server = aio.server()
        self.server.add_generic_rpc_handlers([_AnyMethod(self._handle)])
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if server_credentials is not None:
            bound = self.server.add_secure_port(address, server_credentials)
        else:
            bound = self.server.add_insecure_port(address)
        await self.server.start()
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1)
        if self._channel is not None:
            await self._channel.close()

    async def _handle(
        self, path: str, requests: AsyncIterator[bytes], context: aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        assert self._channel is not None
        record = _CallRecord(
            path,
            time.monotonic(),
            metadata_pairs(context.invocation_metadata()),
        )
        started_at = time.time()
        forward = [
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if key not in _NOT_FORWARDED and not key.startswith(":")
        ]
        method = self._channel.stream_stream(path)  # bytes in, bytes out

        async def pass_requests() -> AsyncIterator[bytes]:
            async for message in requests:
                record.requests.append(GrpcMessage(message, False, record.offset()))
                yield message

        call = method(pass_requests(), metadata=forward)
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
        details = ""
        trailing: Any = ()
        try:
            record.initial = metadata_pairs(await call.initial_metadata())
            await context.send_initial_metadata(await call.initial_metadata() or ())
            async for message in call:
                record.responses.append(GrpcMessage(message, False, record.offset()))
                yield message
            code = await call.code()
            details = await call.details() or ""
            trailing = await call.trailing_metadata()
        except aio.AioRpcError as exc:
            code, details, trailing = exc.code(), exc.details() or "", exc.trailing_metadata()
        except asyncio.CancelledError:
            code, details = grpc.StatusCode.CANCELLED, "the client went away"
            call.cancel()
            await self._record(record, started_at, code, details, trailing)
            raise
        await self._record(record, started_at, code, details, trailing)
        context.set_trailing_metadata(tuple(trailing or ()))
        if code is not grpc.StatusCode.OK:
            context.set_code(code)
            context.set_details(details)

    async def _record(
        self,
        record: _CallRecord,
        started_at: float,
        code: grpc.StatusCode,
        details: str,
        trailing: Any,
    ) -> None:
        try:
            interaction = self._redact(
                self._interaction(record, started_at, code, details, trailing)
            )
            await self._writer.append_async(interaction)
        except Exception as exc:  # fail open: the call went through whatever happens here
            self.failed += 1
            logger.error("baton: could not record gRPC call %s: %s", record.path, exc)
            return
        self.recorded += 1
        if self._on_recorded is not None:
            self._on_recorded()

    def _interaction(
        self,
        record: _CallRecord,
        started_at: float,
        code: grpc.StatusCode,
        details: str,
        trailing: Any,
    ) -> Interaction:
        service, method = split_method_path(record.path)
        call = GrpcCall(service, method, tuple(record.requests), tuple(record.responses))
        if self._redact_fields:
            call = self._redacted(call)
        call = decode_call(call, self._schema)
        trailers = (
            ("grpc-status", str(code.value[0])),
            *((("grpc-message", encode_grpc_message(details)),) if details else ()),
            *metadata_pairs(trailing),
        )
        scheme = "https" if self.upstream.tls else "http"
        request = Request(
            method="POST",
            scheme=scheme,
            host=self.upstream.host,
            port=self.upstream.port,
            path=record.path,
            http_version="HTTP/2.0",
            headers=(("content-type", "application/grpc"), ("te", "trailers"), *record.metadata),
            body=frame_messages(call.requests),
        )
        response = Response(
            status=200,
            http_version="HTTP/2.0",
            headers=(("content-type", "application/grpc"), *record.initial),
            body=frame_messages(call.responses),
            trailers=trailers,
        )
        return Interaction(
            id=uuid.uuid4().hex,
            request=request,
            response=response,
            recorded_at=started_at,
            duration_ms=record.offset(),
            tags={"mode": "reverse", "grpc_recorder": "baton"},
            grpc=call,
        )

    def _redact(self, interaction: Interaction) -> Interaction:
        """Secrets out of metadata, trailers and every message, then the bodies framed anew.

        The writer's redactor would scrub the framed body whole, and a secret
        replaced by a placeholder of another length would break the framing;
        so each message goes through the redactor as a body of its own.
        """
        redactor, call, response = self._redactor, interaction.grpc, interaction.response
        if redactor is None or call is None or response is None:
            return interaction
        bare = replace(
            interaction,
            request=replace(interaction.request, body=b""),
            response=replace(response, body=b""),
            grpc=None,
        )
        redacted = redactor.redact(bare)
        tags = dict(redacted.tags)

        def scrub(message: GrpcMessage, place: str) -> GrpcMessage:
            if place == "request":
                probe = replace(bare, request=replace(bare.request, body=message.data))
                found = redactor.redact(probe)
                data = found.request.body
            else:
                probe = replace(bare, response=replace(response, body=message.data))
                found = redactor.redact(probe)
                data = found.response.body if found.response is not None else None
            if data is None or data == message.data:
                return message
            tags.update(found.tags)
            return replace(message, data=data)

        requests = tuple(scrub(m, "request") for m in call.requests)
        responses = tuple(scrub(m, "response") for m in call.responses)
        if (requests, responses) != (call.requests, call.responses):
            call = decode_call(replace(call, requests=requests, responses=responses), self._schema)
        assert redacted.response is not None
        return replace(
            redacted,
            request=replace(redacted.request, body=frame_messages(call.requests)),
            response=replace(redacted.response, body=frame_messages(call.responses)),
            tags=tags,
            grpc=call,
        )

    def _redacted(self, call: GrpcCall) -> GrpcCall:
        types = self._schema.method(call.path) if self._schema is not None else None

        def blank(
            messages: tuple[GrpcMessage, ...], type_name: str | None
        ) -> tuple[GrpcMessage, ...]:
            return tuple(
                replace(
                    m,
                    data=redact_message(m.data, type_name, self._schema, self._redact_fields),
                )
                for m in messages
            )

        return replace(
            call,
            requests=blank(call.requests, types.input_type if types else None),
            responses=blank(call.responses, types.output_type if types else None),
        )


class _AnyMethod(grpc.GenericRpcHandler):
    """Every method, as a bytes-in, bytes-out bidirectional stream (the wire is the same for all kinds)."""

    def __init__(
        self,
        handle: Callable[[str, AsyncIterator[bytes], aio.ServicerContext], AsyncIterator[bytes]],
    ) -> None:
        self._handle = handle

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        path = handler_call_details.method  # type: ignore[attr-defined]
        handle = self._handle

        # grpc.aio tells streaming handlers by their kind: an async generator function.
        async def stream(
            requests: AsyncIterator[bytes], context: aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async for message in handle(path, requests, context):
                yield message

        return grpc.stream_stream_rpc_method_handler(stream)
