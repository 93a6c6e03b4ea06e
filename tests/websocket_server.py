"""A real WebSocket service for the tests, built on the ``websockets`` package, run as its own process.

Run as ``python tests/websocket_server.py FD [--cert C --key K] [--variant changed]``:
the parent binds a listening socket on 127.0.0.1 port 0 and hands over its
descriptor, as for ``upstream_apps.py``. One conversation, on any path:

* on connect, an unprompted ``{"type": "welcome"}``;
* a text message is echoed as JSON ``{"type": "echo", "n": N, "data": ...}``
  (``data`` parsed when the message was JSON), N counting client messages;
* ``{"op": "push", "count": K, "every_ms": M}`` makes the server push K
  ``{"type": "tick", "n": i}`` messages on a timer, M ms apart;
* a binary message comes back reversed, as binary;
* ``close`` makes the server close with code 4000 and reason ``bye now``.

For the drift tests, ``--variant changed`` is the same service with one
difference: the second tick of a push says ``"n": 20``; ``--variant fewer``
never sends the last tick of a push; ``--variant stamped`` adds the time to
its welcome, a field that differs on every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import time
from typing import Any


def handler(variant: str) -> Any:
    async def chat(ws: Any) -> None:
        welcome: dict[str, Any] = {"type": "welcome"}
        if variant == "stamped":
            welcome["at"] = time.time()
        await ws.send(json.dumps(welcome))
        count = 0
        async for message in ws:
            count += 1
            if isinstance(message, bytes):
                await ws.send(message[::-1])
                continue
            if message == "close":
                await ws.close(4000, "bye now")
                return
            try:
                document = json.loads(message)
            except ValueError:
                document = None
            if isinstance(document, dict) and document.get("op") == "push":
                ticks = int(document.get("count", 3)) - (variant == "fewer")
                for n in range(1, ticks + 1):
                    await asyncio.sleep(int(document.get("every_ms", 50)) / 1000)
                    shown = 20 if variant == "changed" and n == 2 else n
                    await ws.send(json.dumps({"type": "tick", "n": shown}))
                continue
            data = document if document is not None else message
            await ws.send(json.dumps({"type": "echo", "n": count, "data": data}))

    return chat


async def serve(fd: int, context: ssl.SSLContext | None, variant: str) -> None:
    from websockets.asyncio.server import serve as ws_serve

    sock = socket.socket(fileno=fd)
    async with ws_serve(handler(variant), sock=sock, ssl=context) as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("fd", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--variant", default="v1", choices=["v1", "changed", "fewer", "stamped"])
    args = parser.parse_args()
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    asyncio.run(serve(args.fd, context, args.variant))


if __name__ == "__main__":
    main()
