"""``baton diff`` against a hostile target: bombs, garbage, endless bodies, redirects, SSRF.

The target is a real server on 127.0.0.1 (asyncio, raw bytes, so it can
answer what no framework would); a second server stands for an internal host
and counts every connection it gets: it must get none.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.cassettes import CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from baton.replay.limits import decoded_size_over
from tests.processes import BATON

# About 4 GB of zeros in gzip members of 1 MiB each: 4 MB on the wire.
_MEMBER = gzip.compress(b"\0" * (1 << 20), 9)
BOMB = _MEMBER * 4000
OK = b'{"ok": true}'


class _Server:
    """A raw HTTP/1.1 server in a thread: ``answer(path)`` gives the bytes to send, or None to
    send an endless body."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def answer(self, path: str) -> bytes | None:
        body = OK
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                path = head.split(b" ", 2)[1].decode()
                answer = self.answer(path)
                if answer is None:  # a body that never ends
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    while True:
                        writer.write(b"1000\r\n" + b"e" * 4096 + b"\r\n")
                        await writer.drain()
                        await asyncio.sleep(0.01)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class _Hostile(_Server):
    def __init__(self, internal_port: int) -> None:
        self.internal_port = internal_port
        super().__init__()

    def answer(self, path: str) -> bytes | None:
        if path == "/bomb":
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n" % len(BOMB)
            ) + BOMB
        if path == "/garbage":
            return b"\x16\x03\x01 this is not HTTP at all\r\n\r\n"
        if path == "/endless":
            return None
        if path == "/redirect":
            location = f"http://127.0.0.1:{self.internal_port}/admin"
            return (
                f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
            )
        if path == "/moved":
            return b"HTTP/1.1 301 Moved\r\nLocation: /items/1\r\nContent-Length: 0\r\n\r\n"
        return super().answer(path)


@pytest.fixture(scope="module")
def internal() -> Iterator[_Server]:
    server = _Server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile(internal: _Server) -> Iterator[_Hostile]:
    server = _Hostile(internal.port)
    yield server
    server.stop()


def _interaction(number: int, path: str, host: str = "api.test", port: int = 80) -> Interaction:
    return Interaction(
        id=str(number),
        request=Request("GET", "http", host, port, path, headers=(("Host", f"{host}:{port}"),)),
        response=Response(200, "OK", headers=(("Content-Length", str(len(OK))),), body=OK),
        recorded_at=float(number),
    )


def _diff(cassette: Path, target: int, tmp_path: Path, *extra: str) -> tuple[int, dict, int]:
    """Run ``baton diff`` in a fresh parent; the exit code, the JSON report, its peak RSS in KB."""
    report = tmp_path / "report.json"
    measure = (
        "import resource, subprocess, sys;"
        "code = subprocess.run(sys.argv[1:]).returncode;"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, *BATON, "diff", str(cassette),
         "--target", f"http://127.0.0.1:{target}", "--format", "json", "-o", str(report),
         "--timeout", "2", *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.exists(), done.stderr
    return done.returncode, json.loads(report.read_text()), int(done.stdout.split()[-1])


def _by_path(report: dict) -> dict[str, dict]:
    return {i["target"].split("?")[0]: i for i in report["interactions"]}


def test_hostile_answers_are_recorded_errors_and_the_run_goes_on(
    hostile: _Hostile, internal: _Server, tmp_path: Path
) -> None:
    cassette = tmp_path / "hostile.cassette"
    writer = CassetteWriter(cassette, redactor=None)
    for number, path in enumerate(["/bomb", "/garbage", "/endless", "/redirect", "/items/1"]):
        writer.append(_interaction(number, path))
    writer.close()
    code, report, peak_kb = _diff(cassette, hostile.port, tmp_path, "--follow-redirects")
    found = _by_path(report)
    assert set(found) == {"/bomb", "/garbage", "/endless", "/redirect", "/items/1"}
    said = {path: json.dumps(item["changes"]) for path, item in found.items()}
    assert "decodes to more than 268435456 bytes" in said["/bomb"]
    assert "malformed answer" in said["/garbage"]
    assert "timed out" in said["/endless"]
    assert "not the target; not followed" in said["/redirect"]
    # The run went on: the last request was compared as usual, and unchanged.
    assert found["/items/1"]["status"]["new"] == 200 and found["/items/1"]["changes"] == []
    assert code == 1  # the errors are breaking
    # The bomb (4 GB of zeros) was never held: the whole run stayed small.
    assert peak_kb < 600 * 1024, f"peak RSS {peak_kb // 1024} MB"
    assert internal.connections == 0


def test_a_cassette_naming_internal_hosts_reaches_only_the_target(
    hostile: _Hostile, internal: _Server, tmp_path: Path
) -> None:
    inside = f"127.0.0.1:{internal.port}"
    cassette = tmp_path / "crafted.cassette"
    writer = CassetteWriter(cassette, redactor=None)
    crafted = [
        _interaction(0, "/admin", host="127.0.0.1", port=internal.port),  # recorded there
        _interaction(1, f"http://{inside}/admin"),  # an absolute URL as the path
        _interaction(2, f"//{inside}/admin"),  # a scheme-relative one
        Interaction(
            id="3",
            request=Request(
                "GET", "http", "api.test", 80, "/items/1",
                headers=(("Host", inside), ("X-Forwarded-Host", inside)),
            ),
            response=Response(200, "OK", body=OK),
            recorded_at=3.0,
        ),
    ]  # fmt: skip
    for interaction in crafted:
        writer.append(interaction)
    writer.close()
    before = len(hostile.requests)
    _code, report, _ = _diff(cassette, hostile.port, tmp_path)
    assert len(report["interactions"]) == 4
    # Every request went to the target, with the target's Host, and nothing to the inside.
    sent = hostile.requests[before:]
    assert len(sent) == 4
    assert all(f"Host: 127.0.0.1:{hostile.port}\r\n".encode() in head for head in sent)
    assert internal.connections == 0 and internal.requests == []


def test_redirects_on_the_target_are_followed_only_when_asked(
    hostile: _Hostile, tmp_path: Path
) -> None:
    cassette = tmp_path / "moved.cassette"
    writer = CassetteWriter(cassette, redactor=None)
    writer.append(_interaction(0, "/moved"))
    writer.close()
    _, report, _ = _diff(cassette, hostile.port, tmp_path)
    assert report["interactions"][0]["status"]["new"] == 301  # the redirect is the answer
    _, report, _ = _diff(cassette, hostile.port, tmp_path, "--follow-redirects")
    assert report["interactions"][0]["status"]["new"] == 200
    assert report["interactions"][0]["changes"] == []


def test_an_answer_over_max_answer_size_is_an_error(hostile: _Hostile, tmp_path: Path) -> None:
    cassette = tmp_path / "big.cassette"
    writer = CassetteWriter(cassette, redactor=None)
    writer.append(_interaction(0, "/bomb"))
    writer.append(_interaction(1, "/items/1"))
    writer.close()
    _, report, _ = _diff(cassette, hostile.port, tmp_path, "--max-answer-size", "1m")
    found = _by_path(report)
    assert "answer body larger than 1048576 bytes" in json.dumps(found["/bomb"]["changes"])
    assert found["/items/1"]["changes"] == []


def test_bad_answer_limits_are_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [*BATON, "diff", "x.cassette", "--target", "http://127.0.0.1:1", "--max-decoded-size", "big"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--max-decoded-size" in done.stderr


def test_the_bomb_check_keeps_nothing_and_sees_through_every_coding() -> None:
    import brotli
    import zstandard

    zeros = b"\0" * (8 << 20)
    for body, coding in [
        (gzip.compress(zeros), "gzip"),
        (brotli.compress(zeros, quality=5), "br"),
        (zstandard.ZstdCompressor().compress(zeros), "zstd"),
        (brotli.compress(gzip.compress(zeros), quality=5), "gzip, br"),
    ]:
        assert decoded_size_over(body, coding, 4 << 20), coding
        assert not decoded_size_over(body, coding, 8 << 20), coding
    assert not decoded_size_over(b"not gzip", "gzip", 1)  # undecodable: compared as recorded
