"""Reliability and security checks against the real CLI, one table (issue 18's last section, begun).

    python bench/reliability.py [--crowd 10000]

Rows so far: the fast replay server's limits as a hostile client meets them
with its default settings (`baton replay` as a user starts it), and a
slowloris crowd. Each row names the test that pins the same answer in the
suite (tests/test_hardening.py, with small limits so it runs in seconds).
Still to come (see issue 18): SIGKILL of the recorder under load, disk full
and read-only output, 200 clients x 50 requests through record and replay,
mutated cassettes through every reader, planted secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from bench.load import VENV_BIN, free_port, save, start_command, table

OK_BODY = b'{"id": 1}'


def _cassette(path: Path) -> None:
    writer = CassetteWriter(path, redactor=None)
    for number, (method, where) in enumerate([("GET", "/items/1"), ("POST", "/upload")]):
        writer.append(
            Interaction(
                id=str(number),
                request=Request(
                    method, "http", "api.test", 80, where, headers=(("Host", "api.test"),)
                ),
                response=Response(
                    200, "OK", headers=(("Content-Length", str(len(OK_BODY))),), body=OK_BODY
                ),
                recorded_at=1.0,
            )
        )
    writer.close()


def _exchange(port: int, data: bytes, wait: float = 30.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        with contextlib.suppress(OSError):
            conn.sendall(data)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                received += chunk
        return received


def _first_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1") or "(closed, no answer)"


def _slowloris(port: int, crowd: int) -> str:
    """``crowd`` connections trickling a header byte a second; is a good client served?"""

    async def run() -> str:
        writers = []
        for _ in range(crowd):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\nX-Slow: ")
                writers.append(writer)
        served = 0
        latencies = []
        for _ in range(50):
            for writer in writers:
                if not writer.is_closing():
                    writer.write(b"a")
            started = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            latencies.append((time.perf_counter() - started) * 1000)
            served += answer.startswith(b"HTTP/1.1 200")
            writer.close()
            await asyncio.sleep(0.1)
        for writer in writers:
            writer.close()
        latencies.sort()
        return f"{served}/50 answered 200, p50 {latencies[25]:.1f} ms, max {latencies[-1]:.1f} ms"

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crowd", type=int, default=10_000)
    args, _ = parser.parse_known_args()  # make bench passes every benchmark the same flags
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    crowd = min(args.crowd, hard - 200)
    head = b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\n"
    rows: list[tuple[str, str, Callable[[int], str], str]] = [
        ("request line of 1 MB", "414", lambda p: _first_line(_exchange(p, b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\n\r\n")), "test_a_request_line_over_8k_is_414_and_the_connection_closes"),
        ("a header line of 1 MB, never ended", "431", lambda p: _first_line(_exchange(p, head + b"X-Big: " + b"x" * (1 << 20))), "test_a_megabyte_header_line_is_431_without_waiting_for_its_end"),
        ("101 headers", "431", lambda p: _first_line(_exchange(p, head + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n")), "test_more_than_100_headers_is_431"),
        ("declared body of 1 GB", "413", lambda p: _first_line(_exchange(p, b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 1073741824\r\n\r\n")), "test_a_declared_body_over_the_limit_is_413_before_it_is_read"),
        ("Content-Length with Transfer-Encoding", "400", lambda p: _first_line(_exchange(p, b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")), "test_request_smuggling_attempts_are_400[cl-and-te]"),
        ("two Content-Lengths", "400", lambda p: _first_line(_exchange(p, b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n")), "test_request_smuggling_attempts_are_400[duplicate-content-length]"),
        ("Expect: 100-continue", "100 Continue", lambda p: _first_line(_exchange(p, b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", wait=2)), "test_curl_gets_100_continue_then_the_answer"),
        ("half a head, then nothing", "closed after 10 s", lambda p: _first_line(_exchange(p, head)), "test_a_head_not_finished_within_the_header_timeout_is_closed"),
        (f"slowloris, {crowd} connections", "good client served", lambda p: _slowloris(p, crowd), "test_a_slowloris_crowd_does_not_stop_a_good_client"),
    ]  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        cassette = Path(scratch) / "api.cassette"
        _cassette(cassette)
        port = free_port()
        server = start_command(
            "baton replay",
            [str(VENV_BIN / "baton"), "replay", "-q", str(cassette), "--listen-port", str(port),
             "--match-on", "method,path"],
            port,
            probe_path="/items/1",
        )  # fmt: skip
        try:
            for name, expected, probe, test in rows:
                started = time.perf_counter()
                got = probe(port)
                results.append([name, expected, got, f"{time.perf_counter() - started:.1f}", test])
        finally:
            server.stop()
    print("baton replay (fast path, default limits) against a hostile client")
    print(table(results, ["row", "expected", "got", "s", "test in tests/test_hardening.py"]))
    print(f"results: {save('reliability', {'rows': results})}")


if __name__ == "__main__":
    main()
