"""Serve recorded gRPC calls to gRPC clients: a ``grpc.aio`` server whose one handler takes any method.

Why grpcio and not baton's HTTP/1.1 fast path or mitmproxy: a gRPC client
speaks HTTP/2 with trailers, on an insecure channel by prior knowledge,
which mitmproxy refuses and the fast path does not speak. grpcio's server is
the reference implementation of all of that (flow control, trailers,
``-bin`` metadata, TLS), written in C; baton's part is only to choose the
answer. Every method is registered as a bytes-in, bytes-out bidirectional
stream — on the wire the four call kinds are the same — so a unary client,
a streaming one and a chat are all served by ``GrpcReplayer.serve``.

Matching: the method path, then the request messages, exactly (same bytes)
or semantically (same decoded fields: field order and default values do not
matter, since both sides are decoded the same way). Messages are read until
the recorded call's first answer was sent (for a client stream, all of them;
for a chat, its first turn), and the call's answers then follow turn by
turn: each waits for the requests that had arrived before it was recorded.
Identical calls are answered in recorded order, the last one repeated. A
miss ends the call with ``UNIMPLEMENTED`` (``miss_code``) and the near miss
in ``grpc-message``.
"""

from __future__ import annotations

import functools
import gzip
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from baton.cassettes.grpc_model import (
    GrpcCall,
    GrpcMessage,
    GrpcStatus,
    decode_binary_header,
    grpc_call_of,
    metadata_from_headers,
    status_from_headers,
)
from baton.cassettes.model import Interaction
from baton.cassettes.protobuf_schema import ProtoSchema, decode_call

__all__ = ["GrpcReplayer", "RecordedCall", "describe_difference", "status_code"]

logger = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpcio ``StatusCode`` for a status number (UNKNOWN for a number gRPC does not define)."""
    return _CODES.get(number, grpc.StatusCode.UNKNOWN)


@dataclass
class RecordedCall:
    """One recorded call, ready to serve: its messages, metadata, status, and how often it was used."""

    interaction: Interaction
    call: GrpcCall
    status: GrpcStatus
    initial: tuple[tuple[str, str], ...]
    trailing: tuple[tuple[str, str], ...]
    used: int = 0
    needs: list[int] = field(default_factory=list)
    """For each answer, how many request messages had arrived before it was recorded."""


def _needs(call: GrpcCall) -> list[int]:
    needs = []
    for response in call.responses:
        arrived = sum(1 for request in call.requests if request.offset_ms <= response.offset_ms)
        needs.append(max(arrived, 1 if call.requests else 0))
    return needs


def _binary_metadata(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str | bytes], ...]:
    return tuple(
        (name, decode_binary_header(value) if name.lower().endswith("-bin") else value)
        for name, value in pairs
    )


def describe_difference(recorded: Any, got: Any, where: str) -> str | None:
    """The first place two decoded messages differ, as ``where.field: recorded X, got Y``."""
    if isinstance(recorded, dict) and isinstance(got, dict):
        for key in sorted(set(recorded) | set(got), key=str):
            if key not in got:
                return f"{where}.{key}: recorded {recorded[key]!r}, missing"
            if key not in recorded:
                return f"{where}.{key}: not recorded, got {got[key]!r}"
            found = describe_difference(recorded[key], got[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list) and isinstance(got, list):
        for n, (a, b) in enumerate(zip(recorded, got, strict=False)):
            found = describe_difference(a, b, f"{where}[{n}]")
            if found:
                return found
        if len(recorded) != len(got):
            return f"{where}: recorded {len(recorded)} items, got {len(got)}"
        return None
    if recorded != got:
        return f"{where}: recorded {recorded!r}, got {got!r}"
    return None


class GrpcReplayer:
    """The recorded calls by method, and the handler that answers from them."""

    def __init__(
        self,
        interactions: Iterable[Interaction],
        schema: ProtoSchema | None = None,
        miss_code: grpc.StatusCode = grpc.StatusCode.UNIMPLEMENTED,
    ) -> None:
        self.schema = schema
        self.miss_code = miss_code
        self.calls: dict[str, list[RecordedCall]] = {}
        self.hits = 0
        self.misses: list[str] = []
        """One line per unmatched call: the method and the near miss."""
        for interaction in interactions:
            call = grpc_call_of(interaction)
            if call is None or interaction.response is None:
                continue
            call = decode_call(call, schema)
            response = interaction.response
            status = status_from_headers(response.trailers, response.headers) or GrpcStatus(2)
            initial = metadata_from_headers(response.headers)
            trailing = metadata_from_headers(response.trailers or ())
            if not response.trailers and not call.responses:
                # A trailers-only answer (the status in the headers): its metadata is trailing,
                # and grpcio sends trailers-only when no header was sent before the status.
                initial, trailing = (), initial
            recorded = RecordedCall(
                interaction, call, status, initial, trailing, needs=_needs(call)
            )
            self.calls.setdefault(call.path, []).append(recorded)

    def __len__(self) -> int:
        return sum(len(calls) for calls in self.calls.values())

    def unused(self) -> list[RecordedCall]:
        """Recorded calls nobody asked for."""
        return [c for calls in self.calls.values() for c in calls if not c.used]

    def single_request(self, path: str) -> bool:
        """True when every recorded call of ``path`` sent one message (a unary or server-stream)."""
        calls = self.calls.get(path) or []
        return bool(calls) and all(len(c.call.requests) == 1 for c in calls)

    def single_answer(self, path: str) -> bool:
        """True when every recorded call of ``path`` answered with at most one message."""
        return all(len(c.call.responses) <= 1 for c in self.calls.get(path) or [])

    async def serve_unary(self, path: str, request: bytes, context: aio.ServicerContext) -> Any:
        """``serve`` for a unary call: the one answer (or None after a failed status)."""
        answer = None
        async for message in self.serve_one(path, request, context):
            answer = message
        return answer

    async def serve_one(
        self, path: str, request: bytes, context: aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """``serve`` for a call that sends one message: grpcio reads it without a stream."""

        async def single() -> AsyncIterator[bytes]:
            yield request

        async for message in self.serve(path, single(), context):
            yield message

    def _form(self, path: str, data: bytes) -> Any:
        service, _, method = path.strip("/").partition("/")
        probe = GrpcCall(service, method, requests=(GrpcMessage(data),))
        return decode_call(probe, self.schema).requests[0].decoded

    def _same(self, recorded: RecordedCall, n: int, data: bytes, forms: _Forms) -> bool:
        message = recorded.call.requests[n]
        if message.data == data and not message.compressed:
            return True  # the common case: the same bytes, nothing decoded
        form = forms[n]
        return form is not None and form == message.decoded

    async def serve(
        self, path: str, requests: AsyncIterator[bytes], context: aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Answer one call from the recording (the generic handler's body)."""
        candidates = list(self.calls.get(path, ()))
        if not candidates:
            known = ", ".join(sorted(self.calls)) or "none"
            await self._miss(
                context, f"{path}: no recorded call of this method (recorded: {known})"
            )
            return
        received: list[bytes] = []
        forms = _Forms(self, path, received)
        ended = False
        iterator = requests.__aiter__()

        async def read_one() -> bool:
            nonlocal ended
            if ended:
                return False
            try:
                data = await iterator.__anext__()
            except StopAsyncIteration:
                ended = True
                return False
            received.append(data)
            return True

        def first_need(recorded: RecordedCall) -> int:
            return recorded.needs[0] if recorded.needs else len(recorded.call.requests)

        # Read until the best candidate's first answer is due, narrowing as messages come.
        while True:
            matching = [
                c
                for c in candidates
                if len(c.call.requests) >= len(received)
                and all(self._same(c, n, d, forms) for n, d in enumerate(received))
            ]
            if not matching:
                await self._miss(context, self._near_miss(path, candidates, received, forms))
                return
            due = [c for c in matching if first_need(c) <= len(received)]
            if due and (ended or len(due) == len(matching)):
                matching = due
                break
            if not await read_one():
                matching = [c for c in matching if len(c.call.requests) == len(received)] or due
                if not matching:
                    await self._miss(context, self._near_miss(path, candidates, received, forms))
                    return
                break
        chosen = next((c for c in matching if not c.used), matching[-1])
        chosen.used += 1
        self.hits += 1
        if chosen.initial or chosen.call.responses:
            await context.send_initial_metadata(_binary_metadata(chosen.initial))
        for n, message in enumerate(chosen.call.responses):
            while len(received) < chosen.needs[n] and await read_one():
                pass
            yield gzip.decompress(message.data) if message.compressed else message.data
        context.set_trailing_metadata(_binary_metadata(chosen.trailing))
        if chosen.status.code != 0:
            context.set_code(status_code(chosen.status.code))
            context.set_details(chosen.status.message)

    def _near_miss(
        self, path: str, candidates: list[RecordedCall], received: list[bytes], forms: _Forms
    ) -> str:
        best: str | None = None
        for candidate in candidates:
            recorded = candidate.call.requests
            for n, form in enumerate(forms[k] for k in range(len(received))):
                if n >= len(recorded):
                    best = best or f"request[{n}]: the recording has {len(recorded)} messages"
                    break
                found = describe_difference(recorded[n].decoded, form, f"request[{n}]")
                if found:
                    best = best or found
                    break
            else:
                best = best or (
                    f"the call sent {len(received)} messages, "
                    f"the recording {len(candidate.call.requests)}"
                )
        return f"{path}: no recorded call matches; nearest: {best}"

    async def _miss(self, context: aio.ServicerContext, text: str) -> None:
        self.misses.append(text)
        logger.warning("baton: gRPC miss: %s", text)
        await context.abort(self.miss_code, f"baton: {text}")


class _Forms:
    """The decoded forms of the messages received so far, each decoded only when first asked for."""

    def __init__(self, replayer: GrpcReplayer, path: str, received: list[bytes]) -> None:
        self._replayer, self._path, self._received = replayer, path, received
        self._done: dict[int, Any] = {}

    def __getitem__(self, n: int) -> Any:
        if n not in self._done:
            self._done[n] = self._replayer._form(self._path, self._received[n])
        return self._done[n]


class AnyMethodHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every method as a bytes-in, bytes-out bidirectional stream, answered by ``GrpcReplayer``."""

    def __init__(self, replayer: GrpcReplayer) -> None:
        self._replayer = replayer

    def service(self, handler_call_details: Any) -> Any:
        path: str = handler_call_details.method
        # grpc.aio tells streaming handlers by their kind (an async generator function,
        # which it sees through a partial): the generator itself, no wrapper per message.
        if self._replayer.single_request(path) and self._replayer.single_answer(path):
            return grpc.unary_unary_rpc_method_handler(
                functools.partial(self._replayer.serve_unary, path)
            )
        if self._replayer.single_request(path):
            # One request message: grpcio's unary-stream path costs less per call than a
            # bidirectional stream, and on the wire it is the same call.
            return grpc.unary_stream_rpc_method_handler(
                functools.partial(self._replayer.serve_one, path)
            )
        stream = functools.partial(self._replayer.serve, path)
        return grpc.stream_stream_rpc_method_handler(stream)


async def start_replay_server(
    replayer: GrpcReplayer,
    host: str,
    port: int,
    server_credentials: Any = None,
) -> tuple[aio.Server, int]:
    """A started ``grpc.aio`` server answering from ``replayer``, and its port (h2c, or TLS)."""
    server = aio.server()
    server.add_generic_rpc_handlers([AnyMethodHandler(replayer)])
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server_credentials is not None:
        bound = server.add_secure_port(address, server_credentials)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    return server, bound
