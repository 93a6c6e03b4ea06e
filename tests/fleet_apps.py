"""A drifted product service whose answers never vary, for the fleet drift tests.

Reports of separate runs against it are byte-for-byte comparable: no
timestamp, no request id, so a sharded, merged or Dask-fanned report must
equal the single-process one exactly. v2 against v1 (``v1_product``): the
``stock`` field is gone, ``price`` became a string, ``currency`` appeared;
``/legacy`` answers 410; ``/about`` says version 2; ids above 500 are 404.

Run as ``python tests/fleet_apps.py FD``: the parent binds 127.0.0.1 port 0
and hands over the descriptor (as tests/upstream_apps.py does).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent


def v1_product(product_id: int) -> dict[str, Any]:
    """What v1 answered for a product, as the cassettes hold it."""
    return {"id": product_id, "name": f"product {product_id}", "price": 10.0 + product_id,
            "stock": product_id * 3}  # fmt: skip


def v2_product(product_id: int) -> dict[str, Any]:
    return {
        "id": product_id,
        "name": f"product {product_id}",
        "price": f"{10.0 + product_id:.2f}",
        "currency": "EUR",
    }


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    status, content_type = 200, b"application/json"
    if path.startswith("/products/"):
        product_id = int(path.rsplit("/", 1)[1])
        if product_id > 500:
            status, payload = 404, b'{"error": "no such product"}'
        else:
            payload = json.dumps(v2_product(product_id)).encode()
    elif path == "/legacy":
        status, payload = 410, b'{"legacy": true}'
    elif path == "/about":
        content_type, payload = b"text/plain", b"shop version 2\n"
    else:
        status, payload = 404, b'{"error": "not found"}'
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def start(timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the v2 service on an ephemeral port; return the process and its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fleet_apps.py"), str(sock.fileno())], pass_fds=[sock.fileno()]
    )
    sock.close()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"fleet service exited with {proc.returncode}")
        try:
            httpx.get(url + "/about", timeout=5, trust_env=False)
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


def main() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{int(sys.argv[1])}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(serve(app, config, mode="asgi"))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
