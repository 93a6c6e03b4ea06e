"""Slowloris against the fast replay server: does a well-behaved client still get served?

    python bench/slowloris.py [--connections 10000] [--seconds 20] [--header-timeout 10]
                              [--max-connections 10000] [--workers 1]

Starts ``baton replay`` (fast path) on a small cassette, then opens
CONNECTIONS connections from this process, each sending half a request head
and then one more header byte per second, reconnecting when the server
closes it (as a real attacker would). Meanwhile a separate process plays the
well-behaved client for SECONDS: 20 requests a second, half on one
keep-alive connection opened before the crowd, half each on a new
connection. The table gives each kind's p50, p99 and max latency and how
many failed; the suite's short form is tests/test_hardening.py
(test_a_slowloris_crowd_does_not_stop_a_good_client, 300 connections).

The crowd and the server share the machine's cores with the client: on a
busy 2-core machine the latencies measure the machine as much as baton.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from bench.load import VENV_BIN, free_port, save, start_command, table

HEAD = b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\nX-Slow: "
REQUEST = b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\n\r\n"


def _cassette(path: Path) -> None:
    body = b'{"id": 1}'
    writer = CassetteWriter(path, redactor=None)
    writer.append(
        Interaction(
            id="1",
            request=Request(
                "GET", "http", "api.test", 80, "/items/1", headers=(("Host", "api.test"),)
            ),
            response=Response(200, "OK", headers=(("Content-Length", str(len(body))),), body=body),
            recorded_at=1.0,
        )
    )
    writer.close()


def _read_answer(conn: socket.socket) -> bool:
    data = b""
    while not data.endswith(b'{"id": 1}'):
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    return data.startswith(b"HTTP/1.1 200")


def _good_client(port: int, seconds: float, results: multiprocessing.Queue[object]) -> None:
    kept = socket.create_connection(("127.0.0.1", port), timeout=30)
    kept.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    kept.sendall(REQUEST)  # in use: from now on the keep-alive timeout applies, not the head's
    assert _read_answer(kept)
    results.put("ready")
    time.sleep(3.0)  # let the crowd gather
    latencies: dict[str, list[float]] = {"keep-alive": [], "new connection": []}
    failures = {"keep-alive": 0, "new connection": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            kept.sendall(REQUEST)
            ok = _read_answer(kept)
        except OSError:
            ok = False
        if ok:
            latencies["keep-alive"].append((time.perf_counter() - started) * 1000)
        else:
            failures["keep-alive"] += 1
            kept = socket.create_connection(("127.0.0.1", port), timeout=30)
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as fresh:
                fresh.sendall(REQUEST)
                ok = _read_answer(fresh)
        except OSError:
            ok = False
        if ok:
            latencies["new connection"].append((time.perf_counter() - started) * 1000)
        else:
            failures["new connection"] += 1
        time.sleep(0.05)
    results.put((latencies, failures))


async def _crowd(port: int, connections: int, stop: asyncio.Event, opened: list[int]) -> None:
    async def one() -> None:
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            opened[0] += 1
            try:
                writer.write(HEAD)
                while not stop.is_set():
                    await asyncio.sleep(1.0)
                    writer.write(b"a")
                    await writer.drain()
                    if writer.is_closing():
                        break
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(connections)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--max-connections", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="baton replay --workers")
    args, _ = parser.parse_known_args()  # make bench passes every benchmark the same flags
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        sys.exit(f"the open-file limit ({hard}) is below --connections; raise ulimit -n")
    with tempfile.TemporaryDirectory() as scratch:
        cassette = Path(scratch) / "items.cassette"
        _cassette(cassette)
        port = free_port()
        server = start_command(
            "baton replay",
            [str(VENV_BIN / "baton"), "replay", "-q", str(cassette), "--listen-port", str(port),
             "--header-timeout", str(args.header_timeout),
             "--max-connections", str(args.max_connections), "--workers", str(args.workers)],
            port,
            probe_path="/items/1",
        )  # fmt: skip
        try:
            results: multiprocessing.Queue[object] = multiprocessing.Queue()
            client = multiprocessing.Process(
                target=_good_client, args=(port, args.seconds, results), daemon=True
            )
            client.start()
            assert results.get(timeout=30) == "ready"

            async def attack() -> tuple[int, object]:
                stop = asyncio.Event()
                opened = [0]
                crowd = asyncio.create_task(_crowd(port, args.connections, stop, opened))
                loop = asyncio.get_running_loop()
                measured = await loop.run_in_executor(None, results.get, True, args.seconds + 60)
                stop.set()
                await crowd
                return opened[0], measured

            opened, measured = asyncio.run(attack())
            latencies, failures = measured  # type: ignore[misc]
            client.join(10)
        finally:
            server.stop()
    rows = []
    for kind, values in latencies.items():
        rows.append(
            [kind, str(len(values)), str(failures[kind]),
             f"{statistics.median(values):.2f}" if values else "-",
             f"{_percentile(values, 0.99):.2f}", f"{max(values, default=float('nan')):.2f}"]
        )  # fmt: skip
    print(
        f"slowloris: {args.connections} trickling connections ({opened} opened in all, "
        f"--header-timeout {args.header_timeout}, --max-connections {args.max_connections}, "
        f"--workers {args.workers}), "
        f"good client for {args.seconds:.0f} s"
    )
    print(table(rows, ["good client", "answered", "failed", "p50 ms", "p99 ms", "max ms"]))
    path = save(
        "slowloris",
        {
            "connections": args.connections,
            "opened": opened,
            "header_timeout": args.header_timeout,
            "max_connections": args.max_connections,
            "latencies_ms": latencies,
            "failures": failures,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
