"""The recorder under stress and failure: concurrency, SIGKILL, a full disk, dead upstreams."""

from __future__ import annotations

import json
import re
import resource
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx

from baton.cassettes import CassetteReader, read_cassette
from tests.processes import BatonProcess, Upstream, run_baton, start_mitmdump, unused_port


def reverse(
    baton: Callable[..., BatonProcess],
    cassette: Path,
    upstream_url: str,
    *extra: str,
    **kwargs: object,
) -> BatonProcess:
    args = ["-o", str(cassette), "--mode", f"reverse:{upstream_url}", "--listen-port", "0"]
    return baton("record", *args, *extra, **kwargs)


def test_concurrent_connections_give_whole_interactions_in_completion_order(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "concurrent.cassette"
    recorder = reverse(baton, cassette, echo.url)
    clients, per_client = 50, 4
    received: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(clients)

    def one_client(number: int) -> None:
        name = f"client-{number}"
        try:
            with httpx.Client(base_url=recorder.url, trust_env=False, timeout=60) as client:
                start.wait()
                seqs = []
                for _ in range(per_client):
                    # Identical requests: same method, URL and body for every client.
                    response = client.get("/echo?same=1", headers={"X-Client": name})
                    response.raise_for_status()
                    seqs.append(response.json()["seq"])
                received[name] = seqs
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=one_client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    assert recorder.stop() == 0

    interactions = read_cassette(cassette)
    assert len(interactions) == clients * per_client
    assert len({i.id for i in interactions}) == len(interactions)
    recorded: dict[str, list[int]] = defaultdict(list)
    for interaction in interactions:
        assert interaction.request.target == "/echo?same=1"
        body = json.loads(interaction.response.body)  # a whole body, not a mix of two
        recorded[interaction.request.header("x-client")].append(body["seq"])
    # Each client's requests completed one after the other: the file has them
    # in that order, each with the answer that client received.
    assert dict(recorded) == received


def test_sigkill_under_load_loses_no_answered_interaction(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "killed.cassette"
    recorder = reverse(baton, cassette, echo.url)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=recorder.url, trust_env=False, timeout=10) as client:
            for n in range(10_000):
                if stop.is_set():
                    return
                request_id = f"{worker}-{n}"
                try:
                    response = client.post(f"/echo?id={request_id}", content=b"p" * 3000)
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    with lock:
                        answered.append(request_id)

    workers = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while len(answered) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    recorder.kill()
    stop.set()
    for worker in workers:
        worker.join(30)
    assert len(answered) >= 150

    with CassetteReader(cassette) as reader:
        ids = {dict(i.request.query)["id"] for i in reader}
        torn = reader.torn_at
    missing = set(answered) - ids
    assert not missing, f"{len(missing)} answered requests are not in the cassette"

    result = run_baton(["repair", str(cassette)])
    assert result.returncode == 0, result.stderr
    if torn is None:
        assert "nothing to repair" in result.stdout
    else:
        assert f"torn object at byte {torn}" in result.stdout
    with CassetteReader(cassette) as reader:
        assert {dict(i.request.query)["id"] for i in reader} == ids
        assert reader.torn_at is None


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_full_disk_does_not_break_the_traffic(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "full.cassette"
    recorder = reverse(baton, cassette, echo.url, preexec_fn=_limit_file_size)
    statuses = []
    with httpx.Client(base_url=recorder.url, trust_env=False, timeout=30) as client:
        for _ in range(10):
            statuses.append(client.get("/bytes?size=20000").status_code)
    assert statuses == [200] * 10  # fail-open: every client got its answer

    assert recorder.stop() == 1
    assert "could not record" in recorder.output
    match = re.search(
        r"recorded (\d+) interactions?.*?(\d+) could not be recorded", recorder.output
    )
    assert match, recorder.output
    written, failed = int(match.group(1)), int(match.group(2))
    assert written + failed == 10 and failed > 0 and written > 0
    with CassetteReader(cassette) as reader:
        assert len(list(reader)) == written
        assert reader.torn_at is None  # failed writes were cut back off the file


def test_an_unreachable_upstream_is_recorded_with_its_error(
    baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    dead_port = unused_port()
    cassette = tmp_path / "dead.cassette"
    recorder = reverse(baton, cassette, f"http://127.0.0.1:{dead_port}")
    response = httpx.get(recorder.url + "/orders?id=7", trust_env=False, timeout=30)
    assert response.status_code == 502
    assert recorder.stop() == 0

    (interaction,) = read_cassette(cassette)
    assert interaction.response is None
    assert (
        "refused" in interaction.error.lower() or "connect call failed" in interaction.error.lower()
    )
    assert interaction.request.path == "/orders" and interaction.request.port == dead_port
    shown = run_baton(["show", str(cassette)])
    assert "ERROR" in shown.stdout


def test_regular_mode_records_a_refused_connection_too(
    baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    dead_port = unused_port()
    cassette = tmp_path / "dead-regular.cassette"
    recorder = baton("record", "-o", str(cassette), "--listen-port", "0")
    response = httpx.get(
        f"http://127.0.0.1:{dead_port}/ping", proxy=recorder.url, trust_env=False, timeout=30
    )
    assert response.status_code == 502
    assert recorder.stop() == 0
    (interaction,) = read_cassette(cassette)
    assert interaction.response is None and interaction.error


def test_a_body_mitmproxy_streams_itself_is_recorded_as_it_passes(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    # stream_large_bodies used to leave such a body "not captured": baton's own stream
    # callable takes mitmproxy's place and records it piece by piece (docs/streams.md).
    cassette = tmp_path / "streamed.cassette"
    recorder = reverse(baton, cassette, echo.url, "--set", "stream_large_bodies=1k")
    big = httpx.get(recorder.url + "/bytes?size=50000", trust_env=False, timeout=30)
    small = httpx.get(recorder.url + "/bytes?size=10", trust_env=False, timeout=30)
    assert len(big.content) == 50000 and len(small.content) == 10
    assert recorder.stop() == 0

    streamed, kept = read_cassette(cassette)
    assert streamed.response.body == big.content and streamed.response.chunks is not None
    assert kept.response.body == b"0123456789" and kept.response.chunks is None
    shown = run_baton(["show", str(cassette)])
    assert "[streamed: " in shown.stdout
    lines = run_baton(["show", str(cassette), "--format", "json"]).stdout.splitlines()
    first = json.loads(lines[0])
    assert sum(piece["size"] for piece in first["response"]["pieces"]) == 50000


def test_filters_record_only_matching_paths_and_proxy_everything(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "filtered.cassette"
    recorder = reverse(baton, cassette, echo.url, "--only-path", "/echo*")
    with httpx.Client(base_url=recorder.url, trust_env=False, timeout=30) as client:
        assert client.get("/echo?a=1").status_code == 200
        assert client.get("/bytes?size=5").status_code == 200
    assert recorder.stop() == 0
    assert [i.request.path for i in read_cassette(cassette)] == ["/echo"]
    assert "1 filtered out" in recorder.output


def test_the_addon_loads_into_a_plain_mitmdump(
    echo: Upstream, tmp_path: Path, mitm_confdir: Path
) -> None:
    cassette = tmp_path / "mitmdump.cassette"
    addon = run_baton(["addon-path"]).stdout.strip()
    mitmdump = start_mitmdump(
        [
            "-s",
            addon,
            "--mode",
            f"reverse:{echo.url}",
            "--set",
            f"confdir={mitm_confdir}",
            "--set",
            f"baton_cassette={cassette}",
        ]
    )
    try:
        response = httpx.get(
            f"http://127.0.0.1:{mitmdump.port}/echo?via=mitmdump",
            headers={"Authorization": "Bearer mitmdump-secret-1"},
            trust_env=False,
            timeout=30,
        )
        assert response.status_code == 200
    finally:
        mitmdump.stop()
    (interaction,) = read_cassette(cassette)
    assert interaction.request.query == (("via", "mitmdump"),)
    assert b"mitmdump-secret-1" not in cassette.read_bytes()


def test_large_bodies_are_recorded_exactly(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "large.cassette"
    recorder = reverse(baton, cassette, echo.url)
    size = 8_000_000
    payload = bytes(range(256)) * (size // 256)
    response = httpx.post(
        recorder.url + f"/bytes?size={size}", content=payload, trust_env=False, timeout=60
    )
    assert len(response.content) == size
    assert recorder.stop() == 0
    (interaction,) = read_cassette(cassette)
    assert interaction.request.body == payload
    assert interaction.response.body == response.content
