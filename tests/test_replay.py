"""Replay cassettes recorded by baton itself, with the recorded services stopped."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from baton.cassettes import read_cassette
from tests.processes import (
    BatonProcess,
    TLSFiles,
    Upstream,
    run_baton,
    start_mitmdump,
    start_upstream,
    trusting,
)

PATHS = [
    "/get?b=2&a=1",
    "/gzip",
    "/brotli",
    "/image/png",
    "/bytes/3000?seed=3",
    "/redirect/1",
    "/status/404",
    "/status/500",
    "/response-headers?X-Multi=1&X-Multi=2",
]


def fetch_raw(
    client: httpx.Client, method: str, url: str, **kwargs: object
) -> tuple[int, list[tuple[str, str]], bytes]:
    with client.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        body = b"".join(response.iter_raw())
        return response.status_code, response.headers.multi_items(), body


def record(
    baton: Callable[..., BatonProcess],
    cassette: Path,
    upstream: Upstream,
    send: Callable[[str], None],
) -> None:
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{upstream.url}", "--listen-port", "0"
    )
    send(recorder.url)
    assert recorder.stop() == 0


@pytest.fixture
def own_httpbin() -> Iterator[Upstream]:
    upstream = start_upstream("httpbin")
    yield upstream
    upstream.stop()


def recorded_bytes(response: object) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status, [(n.lower(), v) for n, v in response.headers], response.body  # type: ignore[attr-defined]


def test_fast_path_replays_httpbin_byte_for_byte_with_httpbin_stopped(
    baton: Callable[..., BatonProcess], own_httpbin: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "httpbin.cassette"

    def send(url: str) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            for path in PATHS:
                fetch_raw(client, "GET", url + path)
            fetch_raw(client, "POST", url + "/post", json={"b": [1, 2], "a": "x"})

    record(baton, cassette, own_httpbin, send)
    own_httpbin.stop()
    interactions = read_cassette(cassette)

    replayer = baton("replay", str(cassette), "--listen-port", "0")
    assert "fast path" in replayer.output
    with httpx.Client(trust_env=False, timeout=30) as client:
        served = [fetch_raw(client, "GET", replayer.url + path) for path in PATHS]
        served.append(
            fetch_raw(client, "POST", replayer.url + "/post", json={"a": "x", "b": [1, 2]})
        )
    assert replayer.stop() == 0
    for (status, headers, body), interaction in zip(served, interactions, strict=True):
        expected_status, expected_headers, expected_body = recorded_bytes(interaction.response)
        assert status == expected_status
        assert body == expected_body, interaction.request.path
        assert [(n.lower(), v) for n, v in headers] == expected_headers
    assert "10 hits, 0 misses, 0 of 10 recorded interactions unused" in replayer.output


def test_both_paths_answer_byte_identically(
    baton: Callable[..., BatonProcess], own_httpbin: Upstream, tmp_path: Path, mitm_confdir: Path
) -> None:
    cassette = tmp_path / "both.cassette"

    def send(url: str) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            for path in PATHS:
                fetch_raw(client, "GET", url + path)

    record(baton, cassette, own_httpbin, send)
    own_httpbin.stop()
    fast = baton("replay", str(cassette), "--listen-port", "0")
    # --set forces the mitmproxy path, in reverse mode towards the (stopped) recorded host.
    via_mitmproxy = baton(
        "replay", str(cassette), "--listen-port", "0", "--set", f"confdir={mitm_confdir}"
    )
    assert "mitmproxy path" in via_mitmproxy.output
    with httpx.Client(trust_env=False, timeout=30) as client:
        for path in PATHS:
            a = fetch_raw(client, "GET", fast.url + path)
            b = fetch_raw(client, "GET", via_mitmproxy.url + path)
            assert a[0] == b[0] and a[2] == b[2], path
            assert [(n.lower(), v) for n, v in a[1]] == [(n.lower(), v) for n, v in b[1]], path
    assert fast.stop() == 0 and via_mitmproxy.stop() == 0


def test_regular_mode_replays_https_with_the_client_unchanged(
    baton: Callable[..., BatonProcess], tls_files: TLSFiles, mitm_confdir: Path, tmp_path: Path
) -> None:
    upstream = start_upstream("httpbin", tls_files)
    cassette = tmp_path / "https.cassette"
    ca = trusting(mitm_confdir / "mitmproxy-ca-cert.pem")
    try:
        recorder = baton(
            "record",
            "-o",
            str(cassette),
            "--listen-port",
            "0",
            "--set",
            f"ssl_verify_upstream_trusted_ca={tls_files.ca}",
        )
        with httpx.Client(proxy=recorder.url, verify=ca, trust_env=False, timeout=30) as client:
            recorded = [fetch_raw(client, "GET", upstream.url + p) for p in PATHS[:4]]
        assert recorder.stop() == 0
    finally:
        upstream.stop()

    replayer = baton(
        "replay",
        str(cassette),
        "--mode",
        "regular",
        "--listen-port",
        "0",
        "--set",
        f"confdir={mitm_confdir}",
    )
    with httpx.Client(proxy=replayer.url, verify=ca, trust_env=False, timeout=30) as client:
        replayed = [fetch_raw(client, "GET", upstream.url + p) for p in PATHS[:4]]
    assert replayer.stop() == 0
    for (status, _, body), (r_status, _, r_body) in zip(replayed, recorded, strict=True):
        assert (status, body) == (r_status, r_body)


def test_reordered_json_and_query_match_and_a_changed_value_names_the_field(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "json.cassette"

    def send(url: str) -> None:
        httpx.post(
            url + "/echo?x=1&y=2",
            json={"order": {"id": 7, "items": [1, 2]}, "note": "hi"},
            trust_env=False,
            timeout=30,
        )

    record(baton, cassette, echo, send)
    replayer = baton("replay", str(cassette), "--listen-port", "0")
    same = httpx.post(
        replayer.url + "/echo?y=2&x=1",
        content=b'{"note":"hi",  "order":{"items":[1,2],"id":7}}',
        headers={"Content-Type": "application/json"},
        trust_env=False,
        timeout=30,
    )
    assert same.status_code == 200 and same.json()["path"] == "/echo"
    changed = httpx.post(
        replayer.url + "/echo?y=2&x=1",
        json={"order": {"id": 8, "items": [1, 2]}, "note": "hi"},
        trust_env=False,
        timeout=30,
    )
    assert changed.status_code == 502
    assert changed.headers["x-baton-miss"] == "1"
    assert "order.id: recorded 7, got 8" in changed.text
    assert replayer.stop() == 0
    assert "1 hit, 1 miss" in replayer.output
    assert "miss: no recorded interaction matches POST /echo" in replayer.output


def test_identical_requests_in_order_then_repeat_last_or_strict(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "repeat.cassette"

    def send(url: str) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            for _ in range(3):
                client.get(url + "/echo?same=1")

    record(baton, cassette, echo, send)
    recorded = [json.loads(i.response.body)["seq"] for i in read_cassette(cassette)]

    lenient = baton("replay", str(cassette), "--listen-port", "0")
    strict = baton("replay", str(cassette), "--listen-port", "0", "--on-exhausted", "strict")
    with httpx.Client(trust_env=False, timeout=30) as client:
        got = [client.get(lenient.url + "/echo?same=1").json()["seq"] for _ in range(5)]
        strict_answers = [client.get(strict.url + "/echo?same=1") for _ in range(4)]
    assert got == recorded + [recorded[-1]] * 2
    assert [r.json()["seq"] for r in strict_answers[:3]] == recorded
    assert strict_answers[3].status_code == 502
    assert "all 3 recorded answers were used" in strict_answers[3].text
    assert lenient.stop() == 0 and strict.stop() == 0


def test_concurrent_identical_requests_each_get_a_distinct_answer(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "fifty.cassette"

    def send(url: str) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            for _ in range(50):
                client.get(url + "/echo?same=1")

    record(baton, cassette, echo, send)
    recorded = sorted(json.loads(i.response.body)["seq"] for i in read_cassette(cassette))
    replayer = baton("replay", str(cassette), "--listen-port", "0", "--on-exhausted", "strict")
    answers: list[int] = []
    barrier = threading.Barrier(50)

    def one() -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            barrier.wait()
            answers.append(client.get(replayer.url + "/echo?same=1").json()["seq"])

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == recorded
    assert replayer.stop() == 0


class _CountingHandler(socketserver.BaseRequestHandler):
    connections = 0

    def handle(self) -> None:
        type(self).connections += 1
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def counting_server() -> Iterator[tuple[int, type[_CountingHandler]]]:
    handler = type("Counting", (_CountingHandler,), {"connections": 0})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def test_record_mode_none_opens_no_upstream_connection(
    baton: Callable[..., BatonProcess],
    counting_server: tuple[int, type[_CountingHandler]],
    tmp_path: Path,
    mitm_confdir: Path,
) -> None:
    port, handler = counting_server
    cassette = tmp_path / "none.cassette"
    recorder = baton("record", "-o", str(cassette), "--listen-port", "0")
    assert (
        httpx.get(f"http://127.0.0.1:{port}/ping", proxy=recorder.url, trust_env=False).text == "ok"
    )
    assert recorder.stop() == 0
    assert handler.connections == 1

    regular = baton(
        "replay",
        str(cassette),
        "--mode",
        "regular",
        "--listen-port",
        "0",
        "--set",
        f"confdir={mitm_confdir}",
    )
    fast = baton("replay", str(cassette), "--listen-port", "0")
    hit = httpx.get(f"http://127.0.0.1:{port}/ping", proxy=regular.url, trust_env=False, timeout=30)
    miss = httpx.get(
        f"http://127.0.0.1:{port}/other", proxy=regular.url, trust_env=False, timeout=30
    )
    fast_hit = httpx.get(fast.url + "/ping", trust_env=False, timeout=30)
    assert (hit.status_code, hit.text) == (200, "ok")
    assert miss.status_code == 502 and miss.headers["x-baton-miss"] == "1"
    assert fast_hit.text == "ok"
    assert regular.stop() == 0 and fast.stop() == 0
    assert handler.connections == 1  # the listening upstream saw nothing more


def test_new_episodes_forwards_a_miss_appends_it_and_the_next_run_replays_it(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "episodes.cassette"

    def send(url: str) -> None:
        httpx.get(url + "/echo?n=1", trust_env=False, timeout=30)

    record(baton, cassette, echo, send)
    first = baton(
        "replay",
        str(cassette),
        "--record-mode",
        "new_episodes",
        "--mode",
        f"reverse:{echo.url}",
        "--listen-port",
        "0",
    )
    old = httpx.get(first.url + "/echo?n=1", trust_env=False, timeout=30).json()["seq"]
    new = httpx.get(first.url + "/echo?n=2", trust_env=False, timeout=30).json()["seq"]
    assert first.stop() == 0
    assert "recorded 1 new interaction into" in first.output
    assert [dict(i.request.query)["n"] for i in read_cassette(cassette)] == ["1", "2"]

    second = baton("replay", str(cassette), "--listen-port", "0")
    assert httpx.get(second.url + "/echo?n=1", trust_env=False, timeout=30).json()["seq"] == old
    assert httpx.get(second.url + "/echo?n=2", trust_env=False, timeout=30).json()["seq"] == new
    assert second.stop() == 0


def test_replay_errors_are_one_line(tmp_path: Path) -> None:
    missing = run_baton(["replay", str(tmp_path / "nope.cassette"), "--listen-port", "0"])
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad = tmp_path / "bad.cassette"
    bad.write_bytes(b"not a cassette")
    corrupt = run_baton(["replay", str(bad), "--listen-port", "0"])
    assert corrupt.returncode == 2 and "not a baton cassette" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    from baton.cassettes import CassetteWriter

    cassette = tmp_path / "empty.cassette"
    CassetteWriter(cassette, redactor=None).close()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        result = run_baton(["replay", str(cassette), "--listen-port", str(busy.getsockname()[1])])
    finally:
        busy.close()
    assert result.returncode == 2 and "--listen-port" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_replay_latency_waits_the_recorded_duration(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "slow.cassette"

    def send(url: str) -> None:
        httpx.get(url + "/slow?ms=400", trust_env=False, timeout=30)

    record(baton, cassette, echo, send)
    (interaction,) = read_cassette(cassette)
    assert interaction.duration_ms >= 400
    plain = baton("replay", str(cassette), "--listen-port", "0")
    slowed = baton("replay", str(cassette), "--listen-port", "0", "--replay-latency", "1.0")
    with httpx.Client(trust_env=False, timeout=30) as client:
        fast_answer = client.get(plain.url + "/slow?ms=400")
        slow_answer = client.get(slowed.url + "/slow?ms=400")
    assert fast_answer.content == slow_answer.content
    # Not a timing assertion on baton's speed: the recorded 400 ms must be waited out.
    assert slow_answer.elapsed.total_seconds() >= 0.4
    assert plain.stop() == 0 and slowed.stop() == 0


def test_the_replayer_loads_into_a_plain_mitmdump(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, mitm_confdir: Path
) -> None:
    cassette = tmp_path / "for-mitmdump.cassette"

    def send(url: str) -> None:
        httpx.get(url + "/echo?via=mitmdump", trust_env=False, timeout=30)

    record(baton, cassette, echo, send)
    recorded = read_cassette(cassette)[0].response.body
    addon = run_baton(["addon-path"]).stdout.strip()
    mitmdump = start_mitmdump(
        [
            "-s",
            addon,
            "--set",
            f"confdir={mitm_confdir}",
            "--set",
            f"baton_replay={cassette}",
            "--set",
            "connection_strategy=lazy",
        ]
    )
    try:
        answer = httpx.get(
            f"{echo.url}/echo?via=mitmdump",
            proxy=f"http://127.0.0.1:{mitmdump.port}",
            trust_env=False,
            timeout=30,
        )
    finally:
        mitmdump.stop()
    assert answer.content == recorded


def test_once_records_when_the_cassette_is_missing_then_only_replays(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, mitm_confdir: Path
) -> None:
    cassette = tmp_path / "once.cassette"
    first = baton(
        "replay",
        str(cassette),
        "--record-mode",
        "once",
        "--mode",
        f"reverse:{echo.url}",
        "--listen-port",
        "0",
        "--set",
        f"confdir={mitm_confdir}",
    )
    recorded = httpx.get(first.url + "/echo?k=1", trust_env=False, timeout=30).json()["seq"]
    assert first.stop() == 0
    assert len(read_cassette(cassette)) == 1

    second = baton("replay", str(cassette), "--record-mode", "once", "--listen-port", "0")
    assert "fast path" in second.output  # the cassette exists: replay only
    assert (
        httpx.get(second.url + "/echo?k=1", trust_env=False, timeout=30).json()["seq"] == recorded
    )
    assert httpx.get(second.url + "/echo?k=2", trust_env=False, timeout=30).status_code == 502
    assert second.stop() == 0
    assert len(read_cassette(cassette)) == 1


def test_several_cassettes_are_served_together(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.cassette", tmp_path / "b.cassette"
    record(baton, first, echo, lambda url: httpx.get(url + "/echo?from=a", trust_env=False))
    record(baton, second, echo, lambda url: httpx.get(url + "/echo?from=b", trust_env=False))
    replayer = baton("replay", str(first), str(second), "--listen-port", "0")
    assert "replaying 2 interactions" in replayer.output
    for name in ("a", "b"):
        answer = httpx.get(f"{replayer.url}/echo?from={name}", trust_env=False, timeout=30)
        assert answer.json()["query"] == {"from": name}
    assert replayer.stop() == 0
    assert "2 hits, 0 misses, 0 of 2 recorded interactions unused" in replayer.output
