"""Faults on the wire: what the fast replay server does to a connection when a rule hits.

replay/faults.py decides which request gets which fault; this module acts
on that decision with the bytes and the socket, for ``ReplayServer`` (the
fast path) and ``RoutedReplayServer`` (the loopback server the mitmproxy
path sends slow, cut-off and malformed answers through). A reset is a real
TCP RST (``SO_LINGER`` 0, then abort), a timeout stops reading and never
answers, a truncated body closes the connection after the part promised by
the recorded ``Content-Length`` was only partly sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
from typing import TYPE_CHECKING

from baton.replay.faults import (
    FAULT_HEADER,
    Fault,
    FaultKind,
    custom_fault,
    malformed_json_response,
    status_response,
    with_fault_header,
)
from baton.replay.index import Miss
from baton.replay.streaming import StreamedAnswer, send_stream

if TYPE_CHECKING:
    from baton.cassettes.model import Request
    from baton.replay.server import ReplayServer
    from baton.replay.streaming import StreamSink

__all__ = ["inject_fault", "reset_connection"]

_SLOW_BODY_TICK = 0.05
"""Seconds between the pieces of a slow body: small enough to look smooth to a client."""


def reset_connection(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset, not a FIN: the client sees ECONNRESET."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


def _marked(data: bytes, rule: str) -> bytes:
    status_line, _, rest = data.partition(b"\r\n")
    header = f"{FAULT_HEADER}: {rule}\r\n".encode("utf-8", "surrogateescape")
    return status_line + b"\r\n" + header + rest


async def inject_fault(
    fault: Fault,
    server: ReplayServer,
    sink: StreamSink,
    transport: asyncio.Transport,
    request: Request,
    client: str | None,
    keep_alive: bool,
) -> bool:
    """Answer ``request`` as ``fault`` says; True when the connection goes on serving requests.

    A delay fault has already waited (the caller adds it to the recorded
    latency); here it answers as recorded, marked with the fault header.
    """
    from baton.replay.server import miss_response, serialize_response

    rule = fault.rule
    kind = fault.kind
    if kind is FaultKind.RESET:
        reset_connection(transport)
        return False
    if kind is FaultKind.TIMEOUT:
        transport.pause_reading()  # the connection stays open, silent, until either side closes
        return False
    if kind is FaultKind.MALFORMED and rule.malformed == "http":
        transport.write(f"HTTP/1.1 ??? not http\r\n{FAULT_HEADER}: {rule.text}\r\n\r\n".encode())
        transport.write(b"\x00\x01baton malformed answer\r\n")
        transport.close()
        return False
    if kind is FaultKind.STATUS:
        transport.write(serialize_response(status_response(rule.status, rule.text)))
        return _after(transport, keep_alive)
    head_only = request.method == "HEAD"
    result = server.find(request, client)
    if kind in (FaultKind.MALFORMED, FaultKind.CUSTOM):
        recorded = None
        if not isinstance(result, Miss):
            recorded = (
                result.response if result.response is not None else result.interaction.response
            )
        if kind is FaultKind.MALFORMED:
            answer = malformed_json_response(recorded, rule.text)
        else:
            function = custom_fault(rule.custom)
            assert function is not None, rule.custom
            answer = with_fault_header(function(request, recorded, rule.argument), rule.text)
        transport.write(serialize_response(answer, head_only=head_only))
        return _after(transport, keep_alive)
    if isinstance(result, Miss):
        data = miss_response(result, server.miss_status)
    else:
        planned = server._answer_for(result, head_only=head_only)
        if isinstance(planned, StreamedAnswer) and planned.response.stored is not None:
            # A body too large to hold is never read whole: cut after the head, or sent
            # piece by piece at its own pace (delay and slow-body alike).
            marked = dataclasses.replace(planned, head=_marked(planned.head, rule.text))
            if kind is FaultKind.TRUNCATE:
                transport.write(marked.head)
                transport.close()
                return False
            complete = await send_stream(marked, sink, latency_scale=server.latency_scale)
            if not complete or marked.short:
                transport.close()
                return False
            return _after(transport, keep_alive)
        data = server._bytes_for(result, head_only=head_only)
    data = _marked(data, rule.text)
    if kind is FaultKind.DELAY:
        transport.write(data)
        return _after(transport, keep_alive)
    end_of_head = data.find(b"\r\n\r\n") + 4
    head, body = data[:end_of_head], data[end_of_head:]
    if kind is FaultKind.TRUNCATE:
        transport.write(head + body[: int(len(body) * rule.fraction)])
        transport.close()
        return False
    # slow-body: the head at once, then the body in pieces at the rule's rate.
    transport.write(head)
    piece = max(1, int(rule.bytes_per_second * _SLOW_BODY_TICK))
    for start in range(0, len(body), piece):
        await asyncio.sleep(_SLOW_BODY_TICK)
        if sink.closing():
            return False
        sink.write([body[start : start + piece]])
        await sink.drain()
    return _after(transport, keep_alive)


def _after(transport: asyncio.Transport, keep_alive: bool) -> bool:
    if not keep_alive:
        transport.close()
        return False
    return not transport.is_closing()
