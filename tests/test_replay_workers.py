"""``baton replay --workers N`` and the fast path's answer cache, as clients see them."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx

from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.writer import CassetteWriter
from baton.replay.index import Index
from baton.replay.matching import MatchConfig
from baton.replay.server import ReplayServer
from tests.processes import run_baton, start_baton

ANY_ADDRESS = MatchConfig.build(address=False)
"""As the fast path matches: any host and port (the server is the address)."""


def _interaction(path: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> Interaction:
    request = Request("GET", "http", "shop.test", 80, path, headers=(("Host", "shop.test"),))
    response = Response(
        200,
        "OK",
        headers=(("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *headers),
        body=body,
    )
    return Interaction(f"id-{path}-{body!r}", request, response, 1_700_000_000.0, 1.0)


def _cassette(path: Path, interactions: list[Interaction]) -> Path:
    with CassetteWriter(path, redactor=None) as writer:
        for interaction in interactions:
            writer.append(interaction)
    return path


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _listens_on(pid: int, port: int) -> bool:
    """True when process ``pid`` holds a socket listening on ``port`` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "0A" and fields[9] in inodes:
                return True
    return False


def _status_and_body(response: httpx.Response) -> tuple[int, bytes]:
    return response.status_code, response.content


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_workers_answer_every_request_right_from_one_port_and_all_are_counted(
    tmp_path: Path,
) -> None:
    paths = [f"/items/{n}" for n in range(1, 21)]
    cassette = _cassette(tmp_path / "items.cassette", [_interaction(p, p.encode()) for p in paths])
    baton = start_baton(["replay", str(cassette), "--listen-port", "0", "--workers", "2"])
    try:
        assert "2 workers" in baton.output
        workers = _children(baton.proc.pid)
        assert len(workers) == 2
        assert all(_listens_on(worker, baton.port) for worker in workers)

        def client(number: int) -> list[tuple[str, int, bytes]]:
            # Connection: close, so every request is a connection the kernel hands to a worker.
            closing = {"Connection": "close"}
            with httpx.Client(trust_env=False, timeout=10, headers=closing) as http:
                return [(p, *_status_and_body(http.get(baton.url + p))) for p in paths]

        with ThreadPoolExecutor(8) as pool:
            answers = [a for batch in pool.map(client, range(8)) for a in batch]
        assert len(answers) == 160
        assert all(status == 200 and body == path.encode() for path, status, body in answers)
        missed = httpx.get(baton.url + "/nowhere", trust_env=False, timeout=10)
        assert missed.status_code == 502
        assert baton.stop() == 0
    finally:
        baton.stop()
    assert all(_gone(worker) for worker in workers)
    assert "baton: 160 hits, 1 miss, 0 of 20 recorded interactions unused" in baton.output
    assert "baton: miss: no recorded interaction matches GET /nowhere" in baton.output


def test_workers_refuse_what_needs_one_process_in_one_line(tmp_path: Path) -> None:
    fixed = _cassette(tmp_path / "fixed.cassette", [_interaction("/a", b"a")])
    counted = _cassette(
        tmp_path / "counted.cassette",
        [_interaction("/counter", b"1"), _interaction("/counter", b"2")],
    )
    cases = {
        "GET /counter was recorded 2 times and is answered in recorded order": [
            "replay",
            str(counted),
            "--workers",
            "2",
        ],
        "--workers 2 needs the fast path": [
            "replay",
            str(fixed),
            "--workers",
            "2",
            "--mode",
            "regular",
        ],
        "--fault draws over the whole stream": [
            "replay",
            str(fixed),
            "--workers",
            "2",
            "--fault",
            "status=503,path=/a",
        ],
    }
    for expected, args in cases.items():
        result = run_baton([*args, "--listen-port", "0"], timeout=60)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("baton: error: "), result.stderr
        assert expected in lines[0]


def _serve_and_get(
    index: Index, requests: list[tuple[str, dict[str, str]]], between: object = None
) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        server = ReplayServer(index)
        host, port = await server.start()
        answers = []
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                for number, (path, headers) in enumerate(requests):
                    if callable(between):
                        between(number)
                    answers.append(await client.get(f"http://{host}:{port}{path}", headers=headers))
        finally:
            await server.close()
        return answers

    return asyncio.run(run())


def test_a_kept_answer_still_counts_and_gives_way_when_the_index_grows() -> None:
    index = Index([_interaction("/a", b"first")], ANY_ADDRESS)
    late = _interaction("/a", b"second")

    def grow(number: int) -> None:
        if number == 3:  # new_episodes: a second recorded answer for /a, served from now on
            index.add(late)

    answers = _serve_and_get(index, [("/a", {})] * 5, between=grow)
    assert [a.content for a in answers] == [b"first"] * 3 + [b"second"] * 2
    assert index.hits == 5
    assert index.served == [3, 2]


def test_recorded_trace_headers_are_echoed_on_every_request_not_kept() -> None:
    recorded = _interaction("/t", b"traced", (("traceparent", "00-recorded-01"),))
    index = Index([recorded], ANY_ADDRESS)
    sent = [f"00-{n:032x}-{n:016x}-01" for n in range(1, 4)]
    # The first request sends none: its answer carries the recorded one, and is not kept.
    requests = [("/t", {}), *[("/t", {"traceparent": value}) for value in sent]]
    answers = _serve_and_get(index, requests)
    assert [a.headers["traceparent"] for a in answers] == ["00-recorded-01", *sent]
    assert index.hits == 4


def test_a_write_is_never_answered_from_the_kept_answers() -> None:
    # Stateful replay counts writes per session: each write must reach the Index.
    def in_state(interaction: Interaction, writes: int, write: bool) -> Interaction:
        tags = {"state": {"writes": writes, "write": write}}
        return Interaction(
            interaction.id, interaction.request, interaction.response, 1.0, 1.0, tags=tags
        )

    add = _interaction("/add", b"added")
    add = Interaction(add.id, replace(add.request, method="POST"), add.response, 1.0, 1.0)
    recorded = [in_state(_interaction("/cart", str(n).encode()), n, False) for n in range(3)]
    index = Index([*recorded, in_state(add, 0, True)], ANY_ADDRESS)

    async def run() -> list[bytes]:
        server = ReplayServer(index)
        host, port = await server.start()
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                seen = []
                for method, path in [("POST", "/add"), ("GET", "/cart")] * 2:
                    answer = await client.request(method, f"http://{host}:{port}{path}")
                    seen.append(answer.content)
                return seen
        finally:
            await server.close()

    assert asyncio.run(run()) == [b"added", b"1", b"added", b"2"]


def test_strict_answers_are_never_kept() -> None:
    index = Index([_interaction("/once", b"once")], ANY_ADDRESS, "strict")
    answers = _serve_and_get(index, [("/once", {})] * 3)
    assert [a.status_code for a in answers] == [200, 502, 502]
    assert index.hits == 1 and len(index.misses) == 2
