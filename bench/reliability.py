"""Reliability and security checks against the real CLI, one table (issue 18's last section).

    python bench/reliability.py [--crowd 10000]

Rows: the fast replay server's limits as a hostile client meets them
with its default settings (`baton replay` as a user starts it), and a
slowloris crowd. Each row names the test that pins the same answer in the
suite (tests/test_hardening.py, with small limits so it runs in seconds).
Then a crowd of clients through ``baton record`` and ``baton replay`` (0 lost,
0 mismatched) and the recorder SIGKILLed under load, each checked by the same
functions here that tests/test_reliability.py calls in a short form.
Mutated cassettes (``--mutations``, 100k) go through the reader, the replay
index and the HAR export. Planted secrets run the test itself, which is
already the full form. A disk that fills under the recorder and a read-only
output folder are real tmpfs mounts (root only; the rows say when they could
not run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteReader, CassetteWriter
from baton.cassettes.errors import CassetteError
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


@dataclass
class CrowdResult:
    """What a crowd of clients saw: the ids answered 200, and every answer that was not its own."""

    answered: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def crowd(url: str, clients: int, per_client: int) -> CrowdResult:
    """``clients`` threads, each sending ``per_client`` POSTs that carry their own id.

    The id is in the query and the body, and the echo service sends both back,
    so an answer meant for another request (a mix-up in the recorder, or a
    wrong match in replay) shows as a mismatch rather than passing unnoticed.
    """
    result = CrowdResult()
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def one_client(number: int) -> None:
        with httpx.Client(base_url=url, trust_env=False, timeout=120) as client:
            start.wait()
            for n in range(per_client):
                request_id = f"c{number}-r{n}"
                try:
                    response = client.post(
                        f"/echo?id={request_id}", content=f"body of {request_id}"
                    )
                    got = response.json() if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        result.errors.append(f"{request_id}: {exc!r}")
                    continue
                with lock:
                    if got is None:
                        result.errors.append(f"{request_id}: status {response.status_code}")
                        continue
                    result.answered.append(request_id)
                    if (
                        got.get("query", {}).get("id") != request_id
                        or got.get("body") != f"body of {request_id}"
                    ):
                        result.mismatched.append(request_id)

    threads = [threading.Thread(target=one_client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def recorded_ids(cassette: Path) -> Counter[str]:
    """How many times each request id is in ``cassette`` (read as far as it is whole)."""
    with CassetteReader(cassette) as reader:
        return Counter(dict(i.request.query).get("id", "") for i in reader)


def lost_and_doubled(answered: list[str], kept: Counter[str]) -> tuple[list[str], list[str]]:
    """Answered ids missing from the cassette, and ids it holds more than once."""
    return [i for i in answered if kept[i] == 0], [i for i, n in kept.items() if n > 1]


def mutation_base(path: Path) -> None:
    """A cassette with each record kind a reader meets: plain, streamed (part records), WebSocket."""
    from baton.cassettes.model import Chunk, WebSocketConversation, WebSocketMessage

    pieces = (Chunk(0.0, b"data: 1\n\n"), Chunk(0.5, b"data: 2\n\n"))
    with CassetteWriter(path, redactor=None) as writer:
        for number in range(3):
            writer.append(
                Interaction(
                    id=f"plain-{number}",
                    request=Request(
                        "POST", "http", "api.test", 80, f"/items/{number}",
                        headers=(("Content-Type", "application/json"),), body=b'{"a": [1, 2]}',
                    ),
                    response=Response(200, "OK", headers=(("Content-Length", "9"),), body=OK_BODY),
                    recorded_at=1.0,
                )
            )  # fmt: skip
        writer.append(
            Interaction(
                id="sse-1",
                request=Request("GET", "http", "feed.test", 80, "/events"),
                response=Response(
                    200, "OK", headers=(("Content-Type", "text/event-stream"),),
                    body=b"".join(c.data for c in pieces), chunks=pieces,
                ),
                recorded_at=1.0,
            )
        )  # fmt: skip
        writer.append(
            Interaction(
                id="ws-1",
                request=Request("GET", "http", "chat.test", 80, "/ws", headers=(("Upgrade", "websocket"),)),
                response=Response(101, "Switching Protocols", headers=(("Upgrade", "websocket"),)),
                recorded_at=1.0,
                websocket=WebSocketConversation(
                    messages=(WebSocketMessage(True, True, b'{"hi": 1}', 10.0),
                              WebSocketMessage(False, False, bytes(range(64)), 20.0)),
                    close_code=1000, close_reason="", closed_by_client=True,
                ),
            )
        )  # fmt: skip


@dataclass
class MutationResult:
    files: int = 0
    read_whole: int = 0
    cassette_errors: int = 0
    other_exceptions: list[str] = field(default_factory=list)
    slowest_s: float = 0.0


def mutated_cassettes(base: Path, count: int, seed: int = 18) -> MutationResult:
    """``count`` copies of ``base`` with 1-4 bytes changed and maybe cut short, through every reader.

    Every reader: the cassette reader (stored bodies read through), the replay
    index built from what it read, and the HAR export. Anything but a
    ``CassetteError`` is a finding, named in ``other_exceptions``.
    """
    from baton.cassettes import ReadLimits

    rng = random.Random(seed)
    original = base.read_bytes()
    damaged = base.with_name("damaged.cassette")
    limits = ReadLimits(max_object_bytes=1 << 20, max_bin_bytes=1 << 20, max_held_stream_bytes=4096)
    result = MutationResult()
    logging.disable(logging.WARNING)  # a torn file is told once per read; 100k times is noise here
    try:
        _mutate(rng, original, damaged, limits, count, result)
    finally:
        logging.disable(logging.NOTSET)
    return result


def _mutate(
    rng: random.Random,
    original: bytes,
    damaged: Path,
    limits: Any,
    count: int,
    result: MutationResult,
) -> None:
    from baton.cassettes import CassetteError, read_cassette
    from baton.formats.har import export_har
    from baton.replay.index import Index

    for _ in range(count):
        raw = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        cut = len(raw) if rng.random() < 0.7 else rng.randrange(len(raw))
        damaged.write_bytes(bytes(raw[:cut]))
        started = time.perf_counter()
        try:
            items = read_cassette(damaged, limits)
            for item in items:
                for message in (item.request, item.response):
                    if message is not None and message.stored is not None:
                        list(message.stored.chunks())
            Index(items)
            export_har(items)
            result.read_whole += 1
        except CassetteError:
            result.cassette_errors += 1
        except Exception as exc:  # the finding this row looks for
            result.other_exceptions.append(f"{type(exc).__name__}: {exc}")
        result.files += 1
        result.slowest_s = max(result.slowest_s, time.perf_counter() - started)


@dataclass
class KillRound:
    answered: int
    kept: int
    lost: int
    """answered but not kept: must be 0, the recorder writes before it answers"""
    unanswered_kept: int
    """kept but never answered: requests in flight when the kill came"""
    repair_code: int
    readable_after_repair: bool


def kill_under_load(
    start_recorder: Callable[[Path], tuple[str, Callable[[], None]]],
    cassette: Path,
    repair: Callable[[Path], int],
    workers: int = 8,
    before_kill: int = 150,
) -> KillRound:
    """Load a recorder from ``workers`` clients, SIGKILL it after ``before_kill`` answers, repair.

    ``start_recorder(cassette)`` returns the recorder's URL and a function that
    SIGKILLs it; ``repair(cassette)`` runs ``baton repair`` and returns its exit code.
    """
    url, kill = start_recorder(cassette)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            for n in range(1_000_000):
                if stop.is_set():
                    return
                request_id = f"w{worker}-{n}"
                try:
                    response = client.post(f"/echo?id={request_id}", content=b"p" * 3000)
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    with lock:
                        answered.append(request_id)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(answered) < before_kill and time.monotonic() < deadline:
        time.sleep(0.01)
    kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    kept = recorded_ids(cassette)
    code = repair(cassette)
    with CassetteReader(cassette) as reader:
        after = Counter(dict(i.request.query).get("id", "") for i in reader)
        whole = reader.torn_at is None
    return KillRound(
        answered=len(answered),
        kept=sum(kept.values()),
        lost=len(set(answered) - set(kept)),
        unanswered_kept=len(set(kept) - set(answered)),
        repair_code=code,
        readable_after_repair=whole and after == kept,
    )


@contextlib.contextmanager
def small_filesystem(size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh folder for one check, unmounted after.

    A real full disk (ENOSPC from the kernel), not a file-size rlimit. Raises
    ``PermissionError`` where this process may not mount (not root, no
    CAP_SYS_ADMIN): callers skip with that reason.
    """
    folder = Path(tempfile.mkdtemp(prefix="baton-small-fs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        raise PermissionError(
            f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        folder.rmdir()


def make_read_only(folder: Path) -> None:
    """Remount ``small_filesystem``'s tmpfs read-only (root ignores a folder's mode bits)."""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


@dataclass
class DiskFullResult:
    """What ``baton record`` did with a disk that filled up under it."""

    requests: int
    answered_ok: int
    written: int
    failed: int
    log_lines: list[str]
    readable: bool
    """the cassette reads whole (no torn object) and holds ``written`` interactions"""
    exit_code: int


def record_onto_full_disk(
    start_recorder: Callable[[Path], Any], folder: Path, requests: int = 30, size: int = 20_000
) -> DiskFullResult:
    """Record ``requests`` answers of ``size`` bytes into ``folder`` until its disk is full.

    ``start_recorder(cassette)`` starts ``baton record`` in reverse mode to the
    tests' echo service and returns the process (``url``, ``stop()``, ``output``).
    """
    cassette = folder / "full.cassette"
    recorder = start_recorder(cassette)
    statuses = []
    try:
        with httpx.Client(base_url=recorder.url, trust_env=False, timeout=30) as client:
            for n in range(requests):
                statuses.append(client.get(f"/bytes?size={size}&id={n}").status_code)
    finally:
        code = recorder.stop()
    output = recorder.output
    found = re.search(r"recorded (\d+) interactions?.*?(\d+) could not be recorded", output)
    written, failed = (int(found.group(1)), int(found.group(2))) if found else (-1, -1)
    lines = [line for line in output.splitlines() if "could not" in line or "No space" in line]
    try:
        with CassetteReader(cassette) as reader:
            readable = sum(1 for _ in reader) == written and reader.torn_at is None
    except CassetteError:
        readable = False
    return DiskFullResult(
        requests, statuses.count(200), written, failed, lines, readable, exit_code=code
    )


def record_into_read_only(
    run: Callable[[list[str]], tuple[int, str]], folder: Path, upstream_url: str
) -> tuple[int, str, bool]:
    """``baton record`` into a read-only folder holding a cassette: exit code, output, file kept.

    ``run(args)`` runs ``baton`` to completion and returns its exit code and
    output; the folder must come from ``small_filesystem`` (remounted here).
    """
    cassette = folder / "kept.cassette"
    _cassette(cassette)
    before = cassette.read_bytes()
    make_read_only(folder)
    args = ["record", "--mode", f"reverse:{upstream_url}", "--listen-port", "0"]
    code, output = run([*args, "-o", str(cassette)])
    code_new, output_new = run([*args, "-o", str(folder / "new.cassette")])
    kept = cassette.read_bytes() == before and not (folder / "new.cassette").exists()
    return max(code, code_new), output + output_new, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crowd", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--per-client", type=int, default=50)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--mutations", type=int, default=100_000)
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
    print()
    load_rows = _record_and_replay_rows(args.clients, args.per_client, args.kills)
    load_rows.append(_planted_secrets_row())
    load_rows.append(_mutation_row(args.mutations))
    print("baton record (reverse mode to the tests' echo service) and baton replay under load")
    print(table(load_rows, ["row", "expected", "got", "s", "test in tests/test_reliability.py"]))
    print(f"results: {save('reliability', {'rows': results, 'load_rows': load_rows})}")


def _mutation_row(count: int) -> list[str]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base.cassette"
        mutation_base(base)
        result = mutated_cassettes(base, count)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        f"{count:,} mutated cassettes (plain, stream parts, WebSocket) through reader, index, HAR",
        "only CassetteError, no hang",
        f"{result.read_whole:,} read, {result.cassette_errors:,} CassetteError, "
        f"{len(result.other_exceptions)} other; slowest {result.slowest_s * 1000:.1f} ms; "
        f"bench peak RSS {peak_mb:.0f} MB",
        f"{time.perf_counter() - started:.1f}",
        "test_mutated_cassettes_give_interactions_or_a_cassette_error",
    ]


def _planted_secrets_row() -> list[str]:
    """The planted-secrets test is already the full form (every place, every artifact): run it."""
    started = time.perf_counter()
    test = "tests/test_reliability.py::test_a_planted_secret_survives_in_no_artifact"
    outcome = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", test],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    summary = outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else outcome.stderr
    return [
        "secrets planted in 12 places (headers, cookies, query, JSON, form, multipart, gzip, userinfo, WebSocket)",
        "0 survive in cassette, HAR, diff reports, logs",
        f"places clean: {summary}",
        f"{time.perf_counter() - started:.1f}",
        "test_a_planted_secret_survives_in_no_artifact[*]",
    ]


def _record_and_replay_rows(clients: int, per_client: int, kills: int) -> list[list[str]]:
    """The crowd through record then replay, and the recorder SIGKILLed ``kills`` times."""
    from tests.processes import run_baton, start_baton, start_upstream

    rows: list[list[str]] = []
    echo = start_upstream("echo")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            confdir = ["--set", f"confdir={scratch}/mitmproxy"]
            record = ["record", "--mode", f"reverse:{echo.url}", "--listen-port", "0", *confdir]
            cassette = Path(scratch) / "crowd.cassette"
            started = time.perf_counter()
            recorder = start_baton([*record, "-o", str(cassette)])
            recorded = crowd(recorder.url, clients, per_client)
            recorder.stop()
            lost, doubled = lost_and_doubled(recorded.answered, recorded_ids(cassette))
            rows.append([
                f"{clients} clients x {per_client} requests through baton record",
                "0 lost, 0 mismatched",
                f"{len(recorded.answered)} answered, {len(lost)} lost, {len(doubled)} twice, "
                f"{len(recorded.mismatched)} mismatched, {len(recorded.errors)} errors",
                f"{time.perf_counter() - started:.1f}",
                "test_a_crowd_through_record_and_replay_loses_and_mixes_up_nothing",
            ])  # fmt: skip
            started = time.perf_counter()
            replayer = start_baton(["replay", "-q", str(cassette), "--listen-port", "0"])
            replayed = crowd(replayer.url, clients, per_client)
            replayer.stop()
            rows.append([
                "the same through baton replay",
                "0 lost, 0 mismatched",
                f"{len(replayed.answered)} answered, {len(replayed.mismatched)} mismatched, "
                f"{len(replayed.errors)} errors",
                f"{time.perf_counter() - started:.1f}",
                "test_a_crowd_through_record_and_replay_loses_and_mixes_up_nothing",
            ])  # fmt: skip

            def start_recorder(path: Path) -> tuple[str, Callable[[], None]]:
                process = start_baton([*record, "-o", str(path)])
                return process.url, process.kill

            def repair(path: Path) -> int:
                return run_baton(["repair", str(path)]).returncode

            started = time.perf_counter()
            rounds = [
                kill_under_load(start_recorder, Path(scratch) / f"killed-{n}.cassette", repair)
                for n in range(kills)
            ]
            rows.append([
                f"SIGKILL of baton record under load, {kills} times",
                "0 answered lost, all readable after repair",
                f"{sum(r.answered for r in rounds)} answered, {sum(r.kept for r in rounds)} kept, "
                f"{sum(r.lost for r in rounds)} lost, {sum(r.unanswered_kept for r in rounds)} kept "
                f"unanswered (in flight), {sum(r.readable_after_repair and r.repair_code == 0 for r in rounds)}"
                f"/{kills} readable after repair",
                f"{time.perf_counter() - started:.1f}",
                "test_sigkill_of_the_recorder_under_load_twice_keeps_every_answer_and_repairs",
            ])  # fmt: skip
        rows += _disk_rows(echo.url)
    finally:
        echo.stop()
    return rows


def _disk_rows(upstream_url: str) -> list[list[str]]:
    """A disk that fills under the recorder, and a read-only output folder (real tmpfs mounts)."""
    from tests.processes import run_baton, start_baton

    test_file = (
        "test_a_disk_that_fills_under_the_recorder_harms_no_answer_and_leaves_a_readable_cassette"
    )
    started = time.perf_counter()
    try:
        with small_filesystem("256k") as folder:
            full = record_onto_full_disk(
                lambda cassette: start_baton(
                    ["record", "-o", str(cassette), "--mode", f"reverse:{upstream_url}",
                     "--listen-port", "0"]
                ),
                folder,
            )  # fmt: skip
        with small_filesystem("256k") as folder:

            def run(args: list[str]) -> tuple[int, str]:
                done = run_baton(args)
                return done.returncode, done.stdout + done.stderr

            code, output, kept = record_into_read_only(run, folder, upstream_url)
    except PermissionError as exc:
        return [["disk full / read-only output", "-", f"not run: {exc}", "0", test_file]]
    enospc = sum("No space left on device" in line for line in full.log_lines)
    rows = [
        [
            f"disk fills under baton record (256 KB tmpfs, {full.requests} x 20 KB answers)",
            "every answer served, a log line per loss, the file reads whole, exit 1",
            f"{full.answered_ok}/{full.requests} answered, {full.written} kept, {full.failed} lost "
            f"({enospc} 'No space left on device' lines), readable: {full.readable}, "
            f"exit {full.exit_code}",
            f"{time.perf_counter() - started:.1f}",
            test_file,
        ]
    ]
    first = output.strip().splitlines()[0] if output.strip() else ""
    rows.append(
        [
            "read-only output folder (a cassette there, and a new one)",
            "one line each, exit 2, the cassette untouched",
            f"exit {code}, {len(output.strip().splitlines())} lines ('{first[:70]}...'), "
            f"untouched: {kept}",
            "-",
            "test_a_read_only_output_folder_is_one_line_exit_2_and_the_cassette_there_is_untouched",
        ]
    )
    return rows


if __name__ == "__main__":
    main()
