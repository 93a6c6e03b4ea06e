"""Real upstream services for the tests, each run as its own process under hypercorn.

Run as ``python tests/upstream_apps.py APP FD [--cert C --key K]``: the parent
binds a listening socket on 127.0.0.1 port 0 and hands over its descriptor,
so the port is known before the server starts and no two tests race for one.
hypercorn speaks HTTP/1.1, and HTTP/2 when TLS is on (ALPN).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qsl

_sequence = itertools.count(1)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A small ASGI service whose answers tests can check field by field.

    /echo   JSON with a server-side sequence number, the method, query and body
    /slow   the same after ``ms`` milliseconds
    /bytes  ``size`` bytes of a repeating pattern, for large bodies
    /stamp  a changing timestamp and id, for drift noise
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
    body = await _body(receive)
    path = scope["path"]
    status = 200
    content_type = b"application/json"
    if path == "/slow":
        await asyncio.sleep(int(query.get("ms", "100")) / 1000)
    if path == "/bytes":
        size = int(query.get("size", "1024"))
        payload = (b"0123456789abcdef" * (size // 16 + 1))[:size]
        content_type = b"application/octet-stream"
    else:
        payload = json.dumps(
            {
                "seq": next(_sequence),
                "method": scope["method"],
                "path": path,
                "query": query,
                "body": body.decode("utf-8", "replace"),
                "time": time.time(),
                "http_version": scope.get("http_version"),
            }
        ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(payload))],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["httpbin", "echo"])
    parser.add_argument("fd", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{args.fd}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 30
    if args.cert:
        config.certfile = args.cert
        config.keyfile = args.key
    if args.app == "httpbin":
        from httpbin import app as httpbin_app

        asyncio.run(serve(httpbin_app, config, mode="wsgi"))
    else:
        asyncio.run(serve(echo_app, config, mode="asgi"))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
