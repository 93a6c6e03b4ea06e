"""A minimal upstream for benchmarks: uvicorn + httptools, a fixed JSON answer.

Run as ``python bench/upstream.py FD``; it serves on the listening socket it
is handed, so the parent knows the port before it starts.
"""

from __future__ import annotations

import json
import sys
from typing import Any

BODY = json.dumps(
    {
        "items": [
            {"id": n, "name": f"item {n}", "price": n * 1.25, "tags": ["a", "b"]} for n in range(12)
        ]
    }
).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def serve_on_fd(asgi_app: Any, fd: int) -> None:
    """Run ``asgi_app`` under uvicorn on an inherited listening socket.

    uvicorn's own ``fd=`` wraps the descriptor as a Unix socket, so asyncio
    never sets TCP_NODELAY on the connections and every response waits out
    the peer's delayed ACK (~40 ms). ``socket.socket(fileno=...)`` reads the
    real family from the descriptor.
    """
    import socket

    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        asgi_app, http="httptools", loop="auto", log_level="warning", access_log=False
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    serve_on_fd(app, int(sys.argv[1]))
