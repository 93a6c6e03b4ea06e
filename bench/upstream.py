"""A minimal upstream for benchmarks: uvicorn + httptools, a fixed JSON answer.

Run as ``python bench/upstream.py FD``; it serves on the listening socket it
is handed, so the parent knows the port before it starts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
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
    if scope["path"] == "/":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
        return
    # Any other path: an answer that names it, so replayers can be checked.
    body = b'{"path": "%s", ' % scope["path"].encode() + BODY[1:]
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from demo.serve import serve_on_fd

    serve_on_fd(app, int(sys.argv[1]))
