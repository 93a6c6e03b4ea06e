"""Limits of the fast replay server as a hostile or broken client sees them (raw sockets, curl).

Each limit's answer is read off the wire: the status line bytes, then the
connection closed. The server is the real ``baton replay`` (a subprocess with
small limits) or, for the connection cap and the slowloris crowd, the same
``ReplayServer`` in a thread of the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from baton.cassettes import CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from baton.replay.index import Index
from baton.replay.limits import ServerLimits, parse_size
from baton.replay.options import ReplayOptions
from baton.replay.server import ReplayServer
from tests.processes import BatonProcess, run_baton, start_baton

CURL = shutil.which("curl")


def _cassette(path: Path) -> Path:
    writer = CassetteWriter(path, redactor=None)
    answers = [("GET", "/items/1", b'{"id": 1}'), ("POST", "/upload", b'{"stored": true}')]
    for number, (method, where, body) in enumerate(answers):
        writer.append(
            Interaction(
                id=str(number),
                request=Request(
                    method, "http", "api.test", 80, where, headers=(("Host", "api.test"),)
                ),
                response=Response(
                    200,
                    "OK",
                    headers=(
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))),
                    ),
                    body=body,
                ),
                recorded_at=1.0,
            )
        )
    writer.close()
    return path


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cassette(tmp_path_factory.mktemp("hardening") / "api.cassette")


@pytest.fixture(scope="module")
def replay(cassette: Path) -> Iterator[BatonProcess]:
    """``baton replay`` with small limits, so each is quick to reach."""
    process = start_baton(
        [
            "replay",
            str(cassette),
            "--listen-port",
            "0",
            "--match-on",
            "method,path",
            "--max-body-size",
            "1k",
            "--header-timeout",
            "1",
            "--keepalive-timeout",
            "1",
            "--body-timeout",
            "1",
        ]
    )
    yield process
    process.stop()


def _exchange(port: int, data: bytes, *, wait: float = 10.0) -> bytes:
    """Send ``data`` and read until the server closes the connection (or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        # Refused before all of it was read: the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def _status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


def test_a_good_request_is_answered(replay: BatonProcess) -> None:
    answer = _exchange(
        replay.port, b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"
    )
    assert _status_line(answer) == b"HTTP/1.1 200 OK"
    assert answer.endswith(b'{"id": 1}')


def test_a_request_line_over_8k_is_414_and_the_connection_closes(replay: BatonProcess) -> None:
    path = b"/items/" + b"a" * 9000
    answer = _exchange(replay.port, b"GET " + path + b" HTTP/1.1\r\nHost: api.test\r\n\r\n")
    assert _status_line(answer) == b"HTTP/1.1 414 URI Too Long"
    assert b"Connection: close" in answer


def test_a_megabyte_header_line_is_431_without_waiting_for_its_end(replay: BatonProcess) -> None:
    # Never ends: the server must refuse it from what it has, not buffer it.
    head = b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\nX-Big: " + b"x" * (1024 * 1024)
    answer = _exchange(replay.port, head)
    assert _status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_more_than_100_headers_is_431(replay: BatonProcess) -> None:
    fields = b"".join(b"X-N%d: 1\r\n" % n for n in range(101))
    answer = _exchange(
        replay.port, b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\n" + fields + b"\r\n"
    )
    assert _status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_headers_over_64k_in_total_are_431(replay: BatonProcess) -> None:
    fields = b"".join(b"X-N%d: %s\r\n" % (n, b"v" * 2000) for n in range(40))
    answer = _exchange(
        replay.port, b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\n" + fields + b"\r\n"
    )
    assert _status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(replay: BatonProcess) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5000\r\n\r\n"
    answer = _exchange(replay.port, head)  # the body is never sent: the answer comes anyway
    assert _status_line(answer) == b"HTTP/1.1 413 Content Too Large"


def test_a_chunked_body_growing_over_the_limit_is_413(replay: BatonProcess) -> None:
    chunk = b"400\r\n" + b"z" * 1024 + b"\r\n"
    head = b"POST /upload HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = _exchange(replay.port, head + chunk * 3 + b"0\r\n\r\n")
    assert _status_line(answer) == b"HTTP/1.1 413 Content Too Large"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: 4\r\nContent-Length: 40\r\n",
    ],
    ids=["cl-and-te", "duplicate-content-length"],
)
def test_request_smuggling_attempts_are_400(replay: BatonProcess, framing: bytes) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: api.test\r\n" + framing + b"\r\n"
    answer = _exchange(
        replay.port, head + b"0\r\n\r\nGET /items/1 HTTP/1.1\r\nHost: api.test\r\n\r\n"
    )
    assert _status_line(answer) == b"HTTP/1.1 400 Bad Request"
    assert answer.count(b"HTTP/1.1") == 1  # the smuggled request is never answered


def test_a_head_not_finished_within_the_header_timeout_is_closed(replay: BatonProcess) -> None:
    # --header-timeout 1: nothing is answered and the server closes; the 10 s wait is a bound.
    answer = _exchange(replay.port, b"GET /items/1 HTTP/1.1\r\nHost: api.te")
    assert answer == b""


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(replay: BatonProcess) -> None:
    answer = _exchange(replay.port, b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\n\r\n")
    # Answered, kept open, then closed by the server once idle (--keepalive-timeout 1).
    assert _status_line(answer) == b"HTTP/1.1 200 OK"
    assert answer.endswith(b'{"id": 1}')


def test_a_body_that_stops_arriving_is_closed(replay: BatonProcess) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 100\r\n\r\n"
    assert _exchange(replay.port, head + b"x" * 10) == b""


def test_an_unknown_expectation_is_417(replay: BatonProcess) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: api.test\r\nContent-Length: 2\r\nExpect: magic\r\n\r\n"
    assert _status_line(_exchange(replay.port, head)) == b"HTTP/1.1 417 Expectation Failed"


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_gets_100_continue_then_the_answer(replay: BatonProcess, tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * 512)
    done = subprocess.run(
        [CURL, "-sS", "-v", "--data-binary", f"@{upload}", "-H", "Expect: 100-continue",
         "--expect100-timeout", "30", f"http://127.0.0.1:{replay.port}/upload"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # With a 30 s expect timeout, curl only sends the body early if the 100 came.
    assert "< HTTP/1.1 100 Continue" in done.stderr
    assert done.stdout == '{"stored": true}'


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_expecting_to_send_too_much_gets_413_and_sends_nothing(
    replay: BatonProcess, tmp_path: Path
) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * 4096)
    done = subprocess.run(
        [CURL, "-sS", "-v", "--data-binary", f"@{upload}", "-H", "Expect: 100-continue",
         "--expect100-timeout", "30", f"http://127.0.0.1:{replay.port}/upload"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "< HTTP/1.1 413 Content Too Large" in done.stderr
    assert "100 Continue" not in done.stderr


def test_bad_limit_values_are_one_line_and_exit_2(cassette: Path) -> None:
    for option, value in [
        ("--max-body-size", "lots"),
        ("--header-timeout", "0"),
        ("--max-headers", "0"),
    ]:
        done = run_baton(["replay", str(cassette), option, value], timeout=30)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and option in done.stderr


def test_sizes_are_read_in_powers_of_1024() -> None:
    assert [parse_size(t) for t in ("512", "64k", "8KB", "100m", "1MiB", "2g")] == [
        512, 64 * 1024, 8 * 1024, 100 * 1024**2, 1024**2, 2 * 1024**3
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a size"):
        parse_size("-1k")


class _ServerThread:
    """A ``ReplayServer`` on its own event loop in a thread of the test."""

    def __init__(self, cassette: Path, limits: ServerLimits) -> None:
        index = ReplayOptions(match_on=["method", "path"]).load([cassette], address=False)
        assert isinstance(index, Index)
        self.server = ReplayServer(index, limits=limits)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_beyond_max_connections_new_ones_wait_and_the_others_are_served(cassette: Path) -> None:
    serving = _ServerThread(cassette, ServerLimits(max_connections=2))
    request = b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\n\r\n"
    try:
        first = socket.create_connection(("127.0.0.1", serving.port), timeout=10)
        second = socket.create_connection(("127.0.0.1", serving.port), timeout=10)
        first.sendall(request)
        assert _status_line(first.recv(65536)) == b"HTTP/1.1 200 OK"
        # The third connects (the kernel's backlog) but is not served while two are open...
        third = socket.create_connection(("127.0.0.1", serving.port), timeout=10)
        third.sendall(request)
        third.settimeout(1.0)
        with pytest.raises(TimeoutError):
            third.recv(65536)
        # ...while the two open ones still are.
        second.sendall(request)
        assert _status_line(second.recv(65536)) == b"HTTP/1.1 200 OK"
        first.close()  # room for one more: the waiting connection is taken and answered
        third.settimeout(10)
        assert _status_line(third.recv(65536)) == b"HTTP/1.1 200 OK"
        for conn in (second, third):
            conn.close()
    finally:
        serving.stop()


def test_a_slowloris_crowd_does_not_stop_a_good_client(cassette: Path) -> None:
    serving = _ServerThread(cassette, ServerLimits(header_timeout=2.0))
    crowd: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        # One header byte per connection every 0.2 s: heads that never end.
        while not stop.wait(0.2):
            for conn in crowd:
                with contextlib.suppress(OSError):
                    conn.send(b"a")

    trickler = threading.Thread(target=trickle, daemon=True)
    try:
        for _ in range(300):
            conn = socket.create_connection(("127.0.0.1", serving.port), timeout=10)
            conn.sendall(b"GET /items/1 HTTP/1.1\r\nHost: api.test\r\nX-Slow: ")
            crowd.append(conn)
        trickler.start()
        answers = []
        with httpx.Client(base_url=f"http://127.0.0.1:{serving.port}", timeout=10) as client:
            deadline = time.monotonic() + 3.0  # past the crowd's header timeout: they are closed
            while time.monotonic() < deadline:
                answers.append(client.get("/items/1"))
        assert answers and all(a.status_code == 200 and a.json() == {"id": 1} for a in answers)
        # The crowd was cut off at the header timeout, never answered.
        crowd[0].settimeout(10)
        assert crowd[0].recv(65536) == b""
    finally:
        stop.set()
        for conn in crowd:
            conn.close()
        serving.stop()


@pytest.fixture(scope="module")
def metrics_port() -> Iterator[int]:
    from baton.proxy.metrics import Metrics

    server = Metrics("replay").serve("127.0.0.1", 0)
    yield server.port
    server.close()


def test_the_metrics_port_answers_a_scrape(metrics_port: int) -> None:
    answer = _exchange(metrics_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status_line(answer) == b"HTTP/1.0 200 OK"


def test_the_metrics_port_refuses_a_long_request_line(metrics_port: int) -> None:
    answer = _exchange(metrics_port, b"GET /" + b"m" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status_line(answer) == b"HTTP/1.0 414 Request-URI Too Long"


def test_the_metrics_port_refuses_more_than_100_headers(metrics_port: int) -> None:
    fields = b"".join(b"X-N%d: 1\r\n" % n for n in range(101))
    answer = _exchange(metrics_port, b"GET /metrics HTTP/1.1\r\n" + fields + b"\r\n")
    assert _status_line(answer) == b"HTTP/1.0 431 Too many headers"


def test_the_metrics_port_cuts_off_a_trickling_client(metrics_port: int) -> None:
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=20) as conn:
        conn.sendall(b"GET /metrics HTTP/1.1\r\n")
        closed = False
        # One byte a second resets a per-read timeout; the 5 s cut-off still ends it.
        for _ in range(15):
            try:
                conn.sendall(b"X")
                conn.settimeout(1.0)
                closed = conn.recv(65536) == b""  # closed without an answer
                break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed


def test_a_websocket_message_over_the_body_limit_is_closed_with_1009(tmp_path: Path) -> None:
    import websockets.sync.client

    from baton.cassettes.model import WebSocketConversation, WebSocketMessage

    cassette = tmp_path / "chat.cassette"
    writer = CassetteWriter(cassette, redactor=None)
    handshake = (
        ("Host", "api.test"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    )
    writer.append(
        Interaction(
            id="ws",
            request=Request("GET", "http", "api.test", 80, "/chat", headers=handshake),
            response=Response(
                101,
                "Switching Protocols",
                headers=(
                    ("Connection", "Upgrade"),
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                ),
                body=b"",
            ),
            recorded_at=1.0,
            websocket=WebSocketConversation(
                messages=(
                    WebSocketMessage(True, True, b"hello", 0.0),
                    WebSocketMessage(False, True, b"hi", 1.0),
                ),
                close_code=1000,
                closed_by_client=True,
            ),
        )
    )
    writer.close()
    serving = _ServerThread(cassette, ServerLimits(max_body_bytes=1024))
    try:
        url = f"ws://127.0.0.1:{serving.port}/chat"
        with websockets.sync.client.connect(url, open_timeout=10) as chat:
            chat.send("hello")
            assert chat.recv(timeout=10) == "hi"  # within the limit: the conversation plays
        with websockets.sync.client.connect(url, open_timeout=10, max_size=None) as chat:
            chat.send("x" * 5000)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                chat.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        serving.stop()


def test_the_mitmproxy_path_refuses_a_body_over_max_body_size(cassette: Path) -> None:
    # --set takes the mitmproxy path; its body_size_limit is --max-body-size when only replaying.
    process = start_baton(
        ["replay", str(cassette), "--listen-port", "0", "--match-on", "method,path",
         "--max-body-size", "1k", "--set", "connection_strategy=lazy"]
    )  # fmt: skip
    try:
        assert "mitmproxy path" in process.output
        with httpx.Client(base_url=f"http://127.0.0.1:{process.port}", timeout=10) as client:
            assert client.post("/upload", content=b"u" * 512).status_code == 200
            assert client.post("/upload", content=b"u" * 4096).status_code == 413
    finally:
        process.stop()


def test_the_mitmproxy_path_serves_a_recorded_answer_beyond_the_fast_path_s_default_limit(
    tmp_path: Path,
) -> None:
    """mitmproxy's body_size_limit holds both directions: the 100m default must not cut answers.

    A streamed answer (recorded in parts) is what the mitmproxy path hands to baton's
    loopback server, so mitmproxy reads it as a response and applies its limit.
    """
    piece = bytes(range(256)) * 4096  # 1 MiB
    cassette = tmp_path / "large.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        stream = writer.open_stream()
        for n in range(101):  # 101 MiB, over the fast path's 100m default
            stream.write(piece, float(n))
        size = str(101 * len(piece))
        writer.append(
            Interaction(
                "large",
                Request("GET", "http", "api.test", 80, "/large", headers=(("Host", "api.test"),)),
                Response(200, "OK", headers=(("Content-Length", size),), body=None),
                recorded_at=1.0,
            ),
            streams={"response": stream},
        )
    process = start_baton(
        ["replay", str(cassette), "--listen-port", "0", "--match-on", "method,path",
         "--set", "connection_strategy=lazy"]
    )  # fmt: skip
    try:
        assert "mitmproxy path" in process.output
        digest, received = hashlib.sha256(), 0
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{process.port}", timeout=60) as client,
            client.stream("GET", "/large") as answer,
        ):
            assert answer.status_code == 200
            for chunk in answer.iter_bytes():
                digest.update(chunk)
                received += len(chunk)
        assert received == 101 * len(piece)
        assert digest.hexdigest() == hashlib.sha256(piece * 101).hexdigest()
    finally:
        process.stop()
