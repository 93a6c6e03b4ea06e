"""A real streaming service for the stream tests: Starlette under hypercorn (tests/upstream_apps.py).

/events    server-sent events: ``count`` events ``gap_ms`` apart, each carrying the
           server's send time (``sent_at``) and, with ``stream=ID``, the event numbers
           the client had acknowledged (``/ack``) when it was sent (``client_had``), so a
           test can tell causally what the client had seen before the server sent an
           event; ``secret=1`` adds a token field
/ack       ``stream=ID&n=N``: the client saying it has event N of stream ID

With ``BATON_TEST_STREAMS_VARIANT=2`` in its environment the service is a "new
build" whose events drifted: event 3's ``n`` is a string, event 5 is a ``tock``,
and one event more comes at the end; a download's first byte differs.
/download  ``size`` bytes of a fixed pattern (``pattern_sha256`` computes its digest),
           with a Content-Length, or chunked with ``chunked=1``; made as it is sent
/upload    reads the request body as it comes and answers its size and SHA-256
/export    a chunked JSON answer holding a ``password`` field, cut mid-name
/echo-auth a chunked text answer that quotes the request's Authorization header,
           split across pieces, for the scrubbing of echoed secrets
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

PIECE = 1 << 20
_BLOCK = hashlib.sha256(b"baton").digest() * (PIECE // 32)
_acknowledged: dict[str, list[int]] = {}
VARIANT = os.environ.get("BATON_TEST_STREAMS_VARIANT", "1")


def pattern(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of the download pattern, a MiB at a time."""

    async def pieces() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            piece = _BLOCK[: min(PIECE, left)]
            if VARIANT == "2" and left == size:
                piece = b"\x00" + piece[1:]
            left -= len(piece)
            yield piece

    return pieces()


def pattern_sha256(size: int) -> str:
    """The SHA-256 of what ``/download?size=SIZE`` sends."""
    digest = hashlib.sha256()
    left = size
    while left > 0:
        piece = _BLOCK[: min(PIECE, left)]
        left -= len(piece)
        digest.update(piece)
    return digest.hexdigest()


async def events(request: Request) -> StreamingResponse:
    count = int(request.query_params.get("count", "20"))
    gap = int(request.query_params.get("gap_ms", "100")) / 1000
    secret = request.query_params.get("secret") == "1"
    stream_id = request.query_params.get("stream")

    async def stream() -> AsyncIterator[bytes]:
        for number in range(1, count + 1 + (VARIANT == "2")):
            if number > 1:
                await asyncio.sleep(gap)
            data: dict[str, object] = {"n": number, "sent_at": time.time()}
            name = "tick"
            if VARIANT == "2" and number == 3:
                data["n"] = "3"
            if VARIANT == "2" and number == 5:
                name = "tock"
            if stream_id:
                data["client_had"] = list(_acknowledged.get(stream_id, []))
            if secret:
                data["token"] = f"tok-live-{number:04d}-abcdef"
            yield f"id: {number}\nevent: {name}\ndata: {json.dumps(data)}\n\n".encode()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


async def ack(request: Request) -> JSONResponse:
    stream_id = request.query_params["stream"]
    _acknowledged.setdefault(stream_id, []).append(int(request.query_params["n"]))
    return JSONResponse({"ok": True})


async def download(request: Request) -> StreamingResponse:
    size = int(request.query_params.get("size", str(PIECE)))
    headers = {} if request.query_params.get("chunked") == "1" else {"content-length": str(size)}
    return StreamingResponse(pattern(size), media_type="application/octet-stream", headers=headers)


async def upload(request: Request) -> JSONResponse:
    digest = hashlib.sha256()
    size = 0
    async for piece in request.stream():
        digest.update(piece)
        size += len(piece)
    return JSONResponse({"size": size, "sha256": digest.hexdigest()})


async def export(request: Request) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        yield b'{"users": [{"name": "ann", "pass'
        await asyncio.sleep(0.05)
        yield b'word": "hunter2-never-seen"}]}'

    return StreamingResponse(stream(), media_type="application/json")


async def echo_auth(request: Request) -> StreamingResponse:
    quoted = f"you sent: {request.headers.get('authorization', '')}\n".encode()
    half = len(quoted) // 2

    async def stream() -> AsyncIterator[bytes]:
        yield b"hello\n" + quoted[:half]
        await asyncio.sleep(0.05)
        yield quoted[half:] + b"bye\n"

    return StreamingResponse(stream(), media_type="text/plain")


app = Starlette(
    routes=[
        Route("/", lambda request: JSONResponse({"ok": True})),
        Route("/events", events),
        Route("/ack", ack),
        Route("/download", download),
        Route("/upload", upload, methods=["POST", "PUT"]),
        Route("/echo-auth", echo_auth),
        Route("/export", export),
    ]
)
