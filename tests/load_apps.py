"""The service ``baton load`` is tested against: Starlette on uvicorn, with a stall now and then.

Run as ``python tests/load_apps.py FD``: the parent binds 127.0.0.1 port 0
and hands over the descriptor (as tests/upstream_apps.py does). Every 100th
request to ``/items`` blocks the whole event loop for 50 ms — a GC pause, a
lock, a full queue — so every request in flight or arriving meanwhile waits.
``/fast/...`` never stalls and ``/slow/...`` answers 20 ms later (the build
and the slower build of the gate test), and ``/reset`` starts the count again so a test knows which
requests stall.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

STALL_EVERY = 100
STALL_S = 0.05
_count = 0


async def items(request: Request) -> JSONResponse:
    global _count
    _count += 1
    if _count % STALL_EVERY == 0:
        time.sleep(STALL_S)  # blocks the loop: everything waits, as in a real stall
    return JSONResponse({"items": [1, 2, 3], "n": _count})


async def fast_items(request: Request) -> JSONResponse:
    return JSONResponse({"items": [1, 2, 3]})


async def slow_items(request: Request) -> JSONResponse:
    await asyncio.sleep(0.02)
    return JSONResponse({"items": [1, 2, 3]})


async def reset(request: Request) -> PlainTextResponse:
    global _count
    _count = 0
    return PlainTextResponse("0")


async def count(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(_count))


app = Starlette(
    routes=[
        Route("/items", items),
        Route("/fast/items", fast_items),
        Route("/slow/items", slow_items),
        Route("/reset", reset, methods=["GET", "POST"]),
        Route("/count", count),
        Route("/", count),
    ]
)

if __name__ == "__main__":
    sock = socket.socket(fileno=int(sys.argv[1]))
    config = uvicorn.Config(app, log_level="warning", access_log=False, loop="asyncio")
    uvicorn.Server(config).run(sockets=[sock])
