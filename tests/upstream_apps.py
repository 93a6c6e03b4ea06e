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


def shop_app(version: int) -> Any:
    """A product service in two versions, for drift tests.

    v2 against v1: ``stock`` removed, ``price`` became a string, ``currency``
    added, ``/legacy`` answers 410 instead of 200, the gzip and brotli
    catalogues changed a value; every answer carries a fresh timestamp and
    request id, in both versions. ``/slow`` takes 3 s in v2.
    """
    import gzip
    import uuid

    import brotli

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await _body(receive)
        path, method = scope["path"], scope["method"]
        status, content_type, headers = 200, b"application/json", []
        stamp = {"generated_at": time.time(), "request_id": str(uuid.uuid4())}
        if path.startswith("/products/"):
            product_id = int(path.rsplit("/", 1)[1])
            item: dict[str, Any] = {"id": product_id, "name": f"product {product_id}"}
            if version == 1:
                item |= {"price": 10.0 + product_id, "stock": product_id * 3}
            else:
                item |= {"price": f"{10.0 + product_id:.2f}", "currency": "EUR"}
            payload = json.dumps(item | stamp).encode()
        elif path == "/legacy":
            status = 200 if version == 1 else 410
            payload = json.dumps({"legacy": True} | stamp).encode()
        elif path in ("/catalog.gz", "/catalog.br"):
            payload = json.dumps({"catalog": {"size": 3 if version == 1 else 4}} | stamp).encode()
            coding = b"gzip" if path.endswith("gz") else b"br"
            payload = gzip.compress(payload) if coding == b"gzip" else brotli.compress(payload)
            headers.append((b"content-encoding", coding))
        elif path == "/about":
            content_type = b"text/plain; charset=utf-8"
            payload = b"shop\nversion %d\nserved at %f\n" % (version, time.time())
        elif path == "/slow":
            await asyncio.sleep(3 if version == 2 else 0)
            payload = json.dumps({"slow": True}).encode()
        elif path == "/orders" and method == "POST":
            status = 201
            payload = json.dumps({"order": 1} | stamp).encode()
        else:
            status, payload = 404, b'{"error": "not found"}'
        headers += [
            (b"content-type", content_type),
            (b"content-length", b"%d" % len(payload)),
            (b"x-request-id", stamp["request_id"].encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "app",
        choices=[
            "httpbin",
            "echo",
            "shop-v1",
            "shop-v2",
            "streams",
            "fidelity-shop",
            "graphql-v1",
            "graphql-v2",
        ],
    )
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
    elif args.app == "streams":
        from tests.stream_apps import app as streams_app

        asyncio.run(serve(streams_app, config, mode="asgi"))
    elif args.app == "fidelity-shop":
        from tests.shop_apps import shop_app as fidelity_shop

        asyncio.run(serve(fidelity_shop(), config, mode="asgi"))
    elif args.app.startswith("graphql-v"):
        from tests.shop_apps import graphql_app

        asyncio.run(serve(graphql_app(int(args.app[-1])), config, mode="asgi"))
    elif args.app.startswith("shop-v"):
        asyncio.run(serve(shop_app(int(args.app[-1])), config, mode="asgi"))
    else:
        asyncio.run(serve(echo_app, config, mode="asgi"))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
