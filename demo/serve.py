"""Serve an ASGI app under uvicorn on an inherited listening socket.

    python -m demo.serve MODULE:APP FD

The parent binds 127.0.0.1 port 0 and passes the descriptor, so it knows the
port before the server starts and no two processes race for one. uvicorn's
own ``--fd`` wraps the descriptor as a Unix socket, so asyncio never sets
TCP_NODELAY on the connections and every response waits out the peer's
delayed ACK (~40 ms); ``socket.socket(fileno=...)`` reads the real family.
"""

from __future__ import annotations

import importlib
import socket
import sys
from typing import Any


def serve_on_fd(asgi_app: Any, fd: int) -> None:
    """Run ``asgi_app`` on the listening socket ``fd`` until SIGTERM or SIGINT."""
    import uvicorn

    config = uvicorn.Config(asgi_app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


def main() -> None:
    target, fd = sys.argv[1], int(sys.argv[2])
    module_name, _, attribute = target.partition(":")
    serve_on_fd(getattr(importlib.import_module(module_name), attribute), fd)


if __name__ == "__main__":
    main()
