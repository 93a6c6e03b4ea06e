"""The trailing index record (format 3): written at close, used to open, rebuilt when it cannot be.

Real files through the real writer and reader; ``baton replay`` as a real
process where what it serves is the point. Every path must give the very
interactions a full read gives.
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import msgpack
import pytest

from baton.cassettes import CassetteError, CassetteReader, CassetteWriter, read_cassette
from baton.cassettes.codec import interaction_to_object, pack
from baton.cassettes.model import Interaction, LazyResponse, Request, Response
from baton.cassettes.reader import load_lazily
from baton.replay.options import ReplayOptions
from tests.processes import start_baton
from tests.test_cassette_format2 import conversation, streamed

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LANDED_FORMAT_2 = "e59372f"  # the last commit whose reader knew only formats 1 and 2


def exchange(n: int) -> Interaction:
    """A varied plain exchange: JSON, gzip, binary, not captured, an upstream error."""
    kind = n % 5
    request = Request(
        "POST" if kind == 1 else "GET",
        "http",
        "api.test",
        80,
        f"/items/{n}",
        (("page", str(n)),) if kind == 2 else (),
        headers=(("Host", "api.test"), ("Accept", "application/json")),
        body=b'{"n": %d}' % n if kind == 1 else b"",
    )
    if kind == 4:
        return Interaction(f"id-{n}", request, None, 1.7e9 + n, error="connection refused")
    body: bytes | None = b'{"item": %d, "name": "thing"}' % n
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    if kind == 2:
        body, headers = gzip.compress(body, mtime=0), (*headers, ("Content-Encoding", "gzip"))
    elif kind == 3:
        body, headers = (bytes(range(256)) * 3 if n % 2 else None), (("X-Kind", "binary"),)
    return Interaction(
        f"id-{n}", request, Response(200, "OK", headers=headers, body=body), 1.7e9 + n, 2.5
    )


def write(path: Path, items: list[Interaction]) -> Path:
    with CassetteWriter(path, redactor=None) as writer:
        for item in items:
            writer.append(item)
    return path


def index_start(path: Path) -> int:
    """Where the trailing index record starts (its last 8 bytes say so)."""
    return int.from_bytes(path.read_bytes()[-8:], "big")


def mixed() -> list[Interaction]:
    return [*(exchange(n) for n in range(12)), streamed([(0.0, b"data: 1\n\n")]), conversation()]


def test_a_closed_cassette_opens_from_its_index_with_the_same_interactions(tmp_path: Path) -> None:
    path = write(tmp_path / "a.cassette", mixed())
    opened = load_lazily(path)
    assert opened.source == "index" and opened.why_scanned is None
    lazy = [i.response for i in opened.interactions if isinstance(i.response, LazyResponse)]
    assert len(lazy) == 10  # plain answers wait in the file; errors, streams, messages do not
    assert not any(response.loaded for response in lazy)
    assert opened.interactions == read_cassette(path)
    assert all(response.loaded for response in lazy)


def test_bodies_are_read_back_right_after_the_file_is_closed_and_even_replaced(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "a.cassette", [exchange(n) for n in range(10)])
    expected = read_cassette(path)
    opened = load_lazily(path)
    # Re-recorded meanwhile: the open cassette still answers from the bytes it indexed.
    write(tmp_path / "new.cassette", [exchange(n + 100) for n in range(3)])
    os.replace(tmp_path / "new.cassette", path)
    assert [i.response.body if i.response else None for i in opened.interactions] == [
        i.response.body if i.response else None for i in expected
    ]


def test_appending_after_the_index_makes_it_stale_and_the_reader_scans(tmp_path: Path) -> None:
    path = write(tmp_path / "a.cassette", [exchange(n) for n in range(6)])
    stale_at = index_start(path)
    with open(path, "ab") as handle:  # what an older tool appending raw records leaves
        handle.write(pack(interaction_to_object(exchange(6))))
    opened = load_lazily(path)
    assert opened.source == "scan"
    assert opened.why_scanned == (
        f"stale (the index record at byte {stale_at} has objects after it)"
    )
    assert [i.id for i in opened.interactions] == [f"id-{n}" for n in range(7)]
    assert opened.interactions == read_cassette(path)


def test_a_writer_appending_to_an_indexed_cassette_leaves_one_index_covering_all(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "a.cassette", [exchange(n) for n in range(3)])
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(streamed([(0.0, b"data: x\n\n"), (5.0, b"data: y\n\n")]))
        writer.append(exchange(3))
    records = []
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(path.read_bytes())
    records = [obj for obj in unpacker if isinstance(obj, dict) and "index" in obj]
    assert len(records) == 1 and records[0]["count"] == 5
    opened = load_lazily(path)
    assert opened.source == "index"
    assert opened.interactions == read_cassette(path)
    assert [i.id for i in opened.interactions] == ["id-0", "id-1", "id-2", "sse-1", "id-3"]


def test_a_killed_recorder_leaves_a_file_that_reads_by_scanning(tmp_path: Path) -> None:
    path = write(tmp_path / "a.cassette", [exchange(n) for n in range(3)])
    script = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.test_cassette_index import exchange
from baton.cassettes import CassetteWriter
writer = CassetteWriter({str(path)!r}, redactor=None)
writer.append(exchange(3))
writer.append(exchange(4))
os._exit(0)  # killed: close never runs
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    opened = load_lazily(path)
    assert opened.source == "scan" and opened.why_scanned == "absent"
    assert [i.id for i in opened.interactions] == [f"id-{n}" for n in range(5)]
    assert opened.interactions == read_cassette(path)


def test_format_1_and_2_files_read_unchanged_and_stay_at_their_version(tmp_path: Path) -> None:
    path = tmp_path / "old.cassette"
    shutil.copy(FIXTURES / "format-v1.cassette", path)
    opened = load_lazily(path)
    assert opened.source == "scan" and opened.why_scanned == "absent"
    assert opened.interactions == read_cassette(FIXTURES / "format-v1.cassette")
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(streamed([(0.0, b"data: 1\n\n")]))  # parts: format 2, no index record
    with CassetteReader(path) as reader:
        assert reader.version == 2
    assert load_lazily(path).why_scanned == "absent"


def test_damage_to_the_index_record_falls_back_to_scanning_with_the_same_interactions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "a.cassette", mixed())
    clean = path.read_bytes()
    start = index_start(path)
    expected = read_cassette(path)
    damaged = tmp_path / "damaged.cassette"
    rng = random.Random(17)
    sources: dict[str, int] = {}
    caplog.set_level(logging.ERROR)
    for attempt in range(400):
        data = bytearray(clean)
        if attempt % 4 == 0:
            data = data[: rng.randrange(start, len(clean))]  # cut short: a torn last record
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(start, len(data))] = rng.randrange(256)
        damaged.write_bytes(bytes(data))
        try:
            opened = load_lazily(damaged)
        except CassetteError:  # both ends of the record hit: it cannot be told from data
            sources["refused"] = sources.get("refused", 0) + 1
            continue
        sources[opened.source] = sources.get(opened.source, 0) + 1
        assert opened.interactions == expected, (attempt, opened.why_scanned)
    assert "index" not in sources  # never the damaged index
    assert sources["scan"] >= 390, sources


def test_damage_anywhere_is_only_ever_a_cassette_error(tmp_path: Path) -> None:
    path = write(tmp_path / "a.cassette", mixed())
    clean = path.read_bytes()
    damaged = tmp_path / "damaged.cassette"
    rng = random.Random(3)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(300):
        data = bytearray(clean)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        damaged.write_bytes(bytes(data))
        try:
            opened = load_lazily(damaged)
            for interaction in opened.interactions:
                if interaction.response is not None:
                    _ = interaction.response.body
            outcomes["read"] += 1
        except CassetteError:
            outcomes["refused"] += 1
    assert outcomes["read"] and outcomes["refused"]


def test_an_index_pointing_at_another_record_is_refused_when_its_body_is_read(
    tmp_path: Path,
) -> None:
    """A crafted index (valid CRC) can name only what the file could hold anyway, and a
    body is served only from the record the entry names: another one is an error."""
    from baton.cassettes.trailing_index import IndexBuilder, entry_for

    path = write(tmp_path / "a.cassette", [exchange(0), exchange(2)])
    with CassetteReader(path) as reader:
        spans = [(raw.offset, raw.end - raw.offset, raw.value) for raw in reader.objects()]
    (first_at, first_len, first), (second_at, second_len, _) = spans
    builder = IndexBuilder()
    builder.add(entry_for(first, second_at, second_len, []))  # id-0's head, id-2's record
    data = path.read_bytes()[: index_start(path)]
    path.write_bytes(data + builder.record(len(data)))
    opened = load_lazily(path)
    assert opened.source == "index" and [i.id for i in opened.interactions] == ["id-0"]
    response = opened.interactions[0].response
    assert response is not None
    with pytest.raises(CassetteError, match="another object there"):
        _ = response.body
    assert first_at < second_at and first_len > 0


def test_the_landed_format_2_reader_refuses_a_format_3_file_saying_to_upgrade(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "new.cassette", [exchange(0)])
    landed = tmp_path / "landed"
    landed.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", LANDED_FORMAT_2, "baton", "cassettes"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(landed)], input=archive.stdout, check=True)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from baton.cassettes.reader import read_cassette; read_cassette({str(path)!r})",
        ],
        cwd=landed,
        env={"PYTHONPATH": str(landed)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        "cassette format version 3 is newer than this baton reads (up to 2); upgrade baton"
        in result.stderr.strip().splitlines()[-1]
    )


def test_the_replay_index_is_the_same_from_the_index_record_and_from_a_scan(
    tmp_path: Path,
) -> None:
    indexed = write(tmp_path / "indexed.cassette", [exchange(n) for n in range(20)])
    scanned = tmp_path / "scanned.cassette"
    scanned.write_bytes(indexed.read_bytes()[: index_start(indexed)])
    assert load_lazily(scanned).source == "scan"
    options = ReplayOptions()
    first = options.load([indexed], address=False)
    second = options.load([scanned], address=False)
    assert first.interactions == second.interactions == read_cassette(indexed)


def test_baton_replay_serves_the_same_bytes_from_an_indexed_and_a_scanned_cassette(
    tmp_path: Path,
) -> None:
    items = [exchange(n) for n in range(10)]
    indexed = write(tmp_path / "indexed.cassette", items)
    scanned = tmp_path / "scanned.cassette"
    scanned.write_bytes(indexed.read_bytes()[: index_start(indexed)])  # the record cut off
    served: dict[str, list[tuple[int, bytes]]] = {}
    for name, path in (("indexed", indexed), ("scanned", scanned)):
        replayer = start_baton(["replay", str(path), "--listen-port", "0"])
        try:
            with httpx.Client(trust_env=False, timeout=30) as client:
                answers = []
                for item in items:
                    request = item.request
                    with client.stream(
                        request.method,
                        replayer.url + request.target,
                        content=request.body or None,
                        headers=dict(request.headers),
                    ) as answer:
                        answers.append((answer.status_code, b"".join(answer.iter_raw())))
                served[name] = answers
        finally:
            replayer.stop()
    assert served["indexed"] == served["scanned"]
    for item, (status, body) in zip(items, served["indexed"], strict=True):
        if item.response is not None:
            assert (status, body) == (200, item.response.body or b"")
        else:
            assert status == 502


def test_a_lazy_response_pickles_and_copies_as_a_plain_response(tmp_path: Path) -> None:
    import copy
    import pickle

    path = write(tmp_path / "a.cassette", [exchange(0)])
    interaction = load_lazily(path).interactions[0]
    assert isinstance(interaction.response, LazyResponse) and not interaction.response.loaded
    for twin in (pickle.loads(pickle.dumps(interaction)), copy.deepcopy(interaction)):
        assert type(twin.response) is Response
        assert twin == interaction == read_cassette(path)[0]
