"""WebSocket messages per second: baton's replay next to the ``websockets`` server itself.

    python bench/ws_throughput.py [--rounds 3] [--connections 8] [--messages 5000] [--window 16]

One run starts an echo server built on the ``websockets`` package (asyncio,
its documented serving API), records one conversation of MESSAGES echoed
text messages through ``baton record`` (reverse mode), and then runs the
same client against each contender in turn, round after round:

* the ``websockets`` echo server itself;
* ``baton replay``, fast path (the recording, served by replay/websocket_replay.py);
* ``baton replay``, mitmproxy path (the Replayer routes the handshake to the
  loopback replay server; mitmproxy relays every message).

The client is one separate process (the ``websockets`` asyncio client):
CONNECTIONS connections at once, each sending the recorded messages in
order, WINDOW at a time before reading their answers, and checking every
answer. Both sides use the ``permessage-deflate`` the client offers by
default, as recorded. The table reports messages echoed per second (client
send to answer read, all connections), the server process's CPU time per
message, and the ratio to the ``websockets`` server; medians of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import (
    VENV_BIN,
    Process,
    cpu_seconds,
    free_port,
    listening_socket,
    save,
    start_command,
    table,
    wait_ready,
)


def payload(number: int) -> str:
    """The client's message ``number``: the same for every connection and every contender."""
    return json.dumps({"n": number, "text": f"message {number}", "tags": ["a", "b"]})


# -- the echo server (run as ``--serve FD``) ------------------------------------------------


async def serve(fd: int) -> None:
    import socket

    from websockets.asyncio.server import serve as ws_serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, sock=socket.socket(fileno=fd), max_queue=None) as server:
        await server.serve_forever()


def start_echo_server() -> Process:
    sock = listening_socket()
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(sock.fileno())],
        pass_fds=[sock.fileno()],
    )
    sock.close()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/", proc)
    return Process("websockets echo server", proc, url)


# -- the client (run as ``--client URL``) ---------------------------------------------------


async def one_connection(url: str, messages: int, window: int) -> int:
    from websockets.asyncio.client import connect

    echoed = 0
    async with connect(url, proxy=None, max_size=None, max_queue=None) as ws:
        for start in range(0, messages, window):
            batch = [payload(n) for n in range(start, min(start + window, messages))]
            for message in batch:
                await ws.send(message)
            for message in batch:
                answer = await ws.recv()
                if answer != message:
                    raise SystemExit(f"wrong answer: {answer!r} for {message!r}")
                echoed += 1
    return echoed


async def client(url: str, connections: int, messages: int, window: int) -> dict[str, float]:
    started, cpu = time.perf_counter(), time.process_time()
    counts = await asyncio.gather(
        *(one_connection(url, messages, window) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    return {
        "messages": float(sum(counts)),
        "seconds": elapsed,
        "client_cpu_s": time.process_time() - cpu,
    }


def run_client(url: str, connections: int, messages: int, window: int) -> dict[str, float]:
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--client",
            url,
            "--connections",
            str(connections),
            "--messages",
            str(messages),
            "--window",
            str(window),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"client failed against {url}: {result.stderr[-2000:]}")
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


# -- the benchmark ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    if args.client is not None:
        measured = asyncio.run(client(args.client, args.connections, args.messages, args.window))
        print(json.dumps(measured))
        return 0

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        confdir = scratch / "mitmproxy"
        cassette = scratch / "echo.cassette"
        echo = start_echo_server()
        try:
            port = free_port()
            recorder = start_command(
                "baton record",
                [
                    str(VENV_BIN / "baton"), "record", "-q", "-o", str(cassette),
                    "--mode", f"reverse:{echo.url}", "--listen-port", str(port),
                    "--set", f"confdir={confdir}",
                ],
                port,
            )  # fmt: skip
            try:
                run_client(ws(recorder.url), 1, args.messages, args.window)
            finally:
                recorder.stop()
            contenders: dict[str, list[str] | None] = {"websockets echo server": None}
            fast_port, mitm_port = free_port(), free_port()
            contenders["baton replay, fast path"] = [
                str(VENV_BIN / "baton"), "replay", "-q", str(cassette),
                "--listen-port", str(fast_port),
            ]  # fmt: skip
            contenders["baton replay, mitmproxy path"] = [
                str(VENV_BIN / "baton"), "replay", "-q", str(cassette),
                "--listen-port", str(mitm_port), "--set", f"confdir={confdir}",
            ]  # fmt: skip
            ports = {
                "baton replay, fast path": fast_port,
                "baton replay, mitmproxy path": mitm_port,
            }
            results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
            for round_number in range(1, args.rounds + 1):
                for name, argv in contenders.items():
                    server = echo if argv is None else start_command(name, argv, ports[name])
                    try:
                        before = cpu_seconds(server.proc.pid)
                        measured = run_client(
                            ws(server.url), args.connections, args.messages, args.window
                        )
                        measured["cpu_s"] = cpu_seconds(server.proc.pid) - before
                    finally:
                        if argv is not None:
                            server.stop()
                    results[name].append(measured)
                    rate = measured["messages"] / measured["seconds"]
                    client_us = measured["client_cpu_s"] / measured["messages"] * 1e6
                    print(
                        f"round {round_number}: {name}: {rate:,.0f} messages/s "
                        f"(client CPU {client_us:.0f} µs/message)",
                        flush=True,
                    )
        finally:
            echo.stop()

    rows = []
    summary: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        rate = statistics.median(r["messages"] / r["seconds"] for r in runs)
        cpu_us = statistics.median(r["cpu_s"] / r["messages"] * 1e6 for r in runs)
        summary[name] = {"messages_per_second": rate, "server_cpu_us_per_message": cpu_us}
    reference = summary["websockets echo server"]["messages_per_second"]
    for name, figures in summary.items():
        figures["vs_websockets"] = figures["messages_per_second"] / reference
        rows.append(
            [
                name,
                f"{figures['messages_per_second']:,.0f}",
                f"{figures['server_cpu_us_per_message']:.1f}",
                f"{figures['vs_websockets']:.2f}",
            ]
        )
    print()
    print(table(rows, ["", "messages/s", "server CPU µs/message", "vs websockets"]))
    settings = {k: getattr(args, k) for k in ("rounds", "connections", "messages", "window")}
    print(f"\nsaved {save('ws_throughput', {'settings': settings, 'results': summary})}")
    return 0


def ws(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + "/echo"


if __name__ == "__main__":
    sys.exit(main())
