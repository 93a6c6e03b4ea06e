"""The real parts of the WebSocket tests: the ``websockets`` service and one client script.

``start_websocket_server`` runs tests/websocket_server.py in its own process;
``converse`` is the client script every test runs — against the service,
through the recording proxy, against baton's replay — and returns what the
client saw, in order, so two runs compare with ``==``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.processes import HERE, TLSFiles, Upstream, trusting

Step = tuple[str, Any, int]
"""(kind, payload, how many messages the server answers with): kind "text", "json" or "binary"."""

SCRIPT: tuple[Step, ...] = (
    ("text", "hello", 1),
    ("json", {"op": "push", "count": 3, "every_ms": 40}, 3),
    ("binary", b"\x00\x01\x02\xff", 1),
    ("json", {"b": 2, "a": [1, 2]}, 1),
    ("text", "close", 0),
)
"""The conversation: after the unprompted welcome, an echo, three timed pushes, a binary echo,
a JSON echo, then the server closes with 4000 "bye now"."""

SHORT_SCRIPT: tuple[Step, ...] = (
    ("text", "hello", 1),
    ("json", {"op": "push", "count": 2, "every_ms": 20}, 2),
)
"""A conversation the client ends (with ``client_close``): an echo and two pushes."""


def start_websocket_server(
    tls: TLSFiles | None = None, variant: str = "v1", timeout: float = 30.0
) -> Upstream:
    """Run the ``websockets`` service on an ephemeral 127.0.0.1 port; wait until it talks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    args = [sys.executable, str(HERE / "websocket_server.py"), str(sock.fileno())]
    args += ["--variant", variant]
    if tls:
        args += ["--cert", str(tls.cert), "--key", str(tls.key)]
    proc = subprocess.Popen(args, pass_fds=[sock.fileno()])
    sock.close()
    upstream = Upstream(proc, port, "https" if tls else "http")
    from websockets.sync.client import connect

    scheme = "wss" if tls else "ws"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"websocket server exited with {proc.returncode}")
        try:
            with connect(
                f"{scheme}://127.0.0.1:{port}/ready",
                ssl=trusting(tls.ca) if tls else None,
                proxy=None,
                open_timeout=2,
            ) as ws:
                ws.recv(timeout=2)
            return upstream
        except (OSError, TimeoutError, Exception):
            if time.monotonic() > deadline:
                upstream.stop()
                raise
            time.sleep(0.1)


@dataclass(frozen=True)
class Transcript:
    """What the client received, in order, and how the connection closed."""

    received: tuple[tuple[str, Any], ...]
    close: tuple[int | None, str]

    def texts(self) -> list[Any]:
        return [json.loads(data) if kind == "text" else data for kind, data in self.received]


async def converse_async(
    url: str,
    script: Sequence[Step] = SCRIPT,
    *,
    proxy: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
    client_close: tuple[int, str] | None = None,
    timeout: float = 10.0,
) -> Transcript:
    """Run the client script against ``url``: receive the welcome, then each step and its answers.

    With ``client_close`` the client closes with that code and reason after the script;
    else it reads until the server closes.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    received: list[tuple[str, Any]] = []

    def keep(message: str | bytes) -> None:
        received.append(("binary", message) if isinstance(message, bytes) else ("text", message))

    async with connect(
        url, proxy=proxy, ssl=ssl_context, additional_headers=headers, open_timeout=timeout
    ) as ws:
        try:
            keep(await asyncio.wait_for(ws.recv(), timeout))
            for kind, payload, answers in script:
                if kind == "json":
                    await ws.send(json.dumps(payload))
                else:
                    await ws.send(payload)
                for _ in range(answers):
                    keep(await asyncio.wait_for(ws.recv(), timeout))
            if client_close is not None:
                await ws.close(*client_close)
            # Whatever comes until the server closes (the script's last step closes).
            while True:
                keep(await asyncio.wait_for(ws.recv(), timeout))
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        close = ws.close_code, ws.close_reason or ""
    return Transcript(tuple(received), close)


def converse(url: str, script: Sequence[Step] = SCRIPT, **kwargs: Any) -> Transcript:
    """``converse_async`` from synchronous test code."""
    return asyncio.run(converse_async(url, script, **kwargs))


def ws_url(http_url: str, path: str = "/chat") -> str:
    """``ws://`` (or ``wss://``) for an ``http(s)://`` base URL."""
    return "ws" + http_url.removeprefix("http") + path
