"""baton merge: rotated shards into one cassette, streaming, deduplicated, windowed, filtered."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from baton.cassettes import CassetteReader, CassetteWriter, Interaction, Request, Response
from baton.cassettes.merge import interaction_digest
from tests.processes import BATON, run_baton

# 2026-11-29T10:00:00Z
T0 = 1795946400.0


def exchange(
    ident: str,
    at: float,
    path: str = "/orders",
    host: str = "orders.internal",
    body: bytes = b'{"ok": true}',
    date: str = "Sun, 29 Nov 2026 10:00:00 GMT",
) -> Interaction:
    return Interaction(
        ident,
        Request("GET", "http", host, 80, path, headers=(("x-trace", ident),)),
        Response(
            200, "OK", headers=(("content-type", "application/json"), ("date", date)), body=body
        ),
        at,
    )


def write(path: Path, interactions: list[Interaction]) -> Path:
    with CassetteWriter(path, redactor=None) as writer:
        for interaction in interactions:
            writer.append(interaction)
    return path


def ids(path: Path) -> list[str]:
    with CassetteReader(path) as reader:
        return [i.id for i in reader]


def peak_rss_mib(*args: str) -> float:
    """Run ``baton ARGS`` and return the peak resident memory of that process alone."""
    proc = subprocess.Popen([*BATON, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stderr
    return usage.ru_maxrss / 1024


def merge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_baton(["merge", *map(str, args)])


def test_shards_of_two_recorders_interleave_by_recorded_time(tmp_path: Path) -> None:
    a = write(tmp_path / "a.cassette", [exchange("a1", T0 + 1), exchange("a2", T0 + 3)])
    b = write(tmp_path / "b.cassette", [exchange("b1", T0 + 2), exchange("b2", T0 + 4)])
    # Inputs as paths, globs, directories or URLs, as every reading command takes them.
    result = merge(tmp_path / "out.cassette", f"file://{a}", tmp_path / "[b].cassette")
    assert result.returncode == 0, result.stderr
    assert ids(tmp_path / "out.cassette") == ["a1", "b1", "a2", "b2"]
    assert (
        "merged 2 cassettes" in result.stderr
        and "4 interactions written of 4 read" in result.stderr
    )
    with CassetteReader(tmp_path / "out.cassette") as reader:
        assert reader.header["meta"]["merged"]["inputs"] == [str(a), str(b)]


def test_dedupe_keeps_the_first_of_identical_exchanges_whatever_their_ids_times_and_dates(
    tmp_path: Path,
) -> None:
    a = write(
        tmp_path / "a.cassette",
        [exchange("a1", T0 + 1), exchange("a2", T0 + 2, path="/orders/7")],
    )
    b = write(
        tmp_path / "b.cassette",
        [
            exchange("b1", T0 + 3, date="Sun, 29 Nov 2026 11:00:00 GMT"),  # same but for Date
            exchange("b2", T0 + 4, body=b'{"ok": false}'),  # another answer: kept
        ],
    )
    result = merge(tmp_path / "out.cassette", a, b, "--dedupe")
    assert result.returncode == 0, result.stderr
    assert ids(tmp_path / "out.cassette") == ["a1", "a2", "b2"]
    assert "(1 duplicate)" in result.stderr
    assert interaction_digest(exchange("x", 1.0)) == interaction_digest(exchange("y", 9.0))
    assert interaction_digest(exchange("x", 1.0)) != interaction_digest(
        exchange("x", 1.0, host="payments.internal")
    )


def test_window_and_host_and_path_filters(tmp_path: Path) -> None:
    source = write(
        tmp_path / "week.cassette",
        [
            exchange("early", T0 - 3600),
            exchange("in", T0 + 60),
            exchange("other-host", T0 + 61, host="payments.internal"),
            exchange("other-path", T0 + 62, path="/health"),
            exchange("late", T0 + 7200),
        ],
    )
    result = merge(
        tmp_path / "out.cassette",
        source,
        "--since",
        "2026-11-29T10:00:00Z",
        "--until",
        "2026-11-29T11:00:00",
        "--host",
        "ORDERS.*",
        "--path",
        "/orders*",
    )
    assert result.returncode == 0, result.stderr
    assert ids(tmp_path / "out.cassette") == ["in"]
    assert "2 outside the window" in result.stderr
    assert "2 filtered out by --host/--path" in result.stderr


def test_the_output_may_be_among_the_inputs(tmp_path: Path) -> None:
    everything = write(tmp_path / "all.cassette", [exchange("old", T0)])
    new = write(tmp_path / "new.cassette", [exchange("new", T0 + 1, path="/new")])
    result = merge(everything, everything, new)
    assert result.returncode == 0, result.stderr
    assert ids(everything) == ["old", "new"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_a_corrupt_input_is_exit_2_in_one_line_and_the_output_is_untouched(
    tmp_path: Path,
) -> None:
    out = write(tmp_path / "out.cassette", [exchange("keep-me", T0)])
    before = out.read_bytes()
    good = write(tmp_path / "good.cassette", [exchange("g", T0)])
    bad = write(tmp_path / "bad.cassette", [exchange("b1", T0), exchange("b2", T0 + 1)])
    data = bytearray(bad.read_bytes())
    end = int.from_bytes(data[-8:], "big")  # where the trailing index record starts
    data[end - 40 : end - 30] = b"\xc1" * 10  # 0xc1 is never valid msgpack
    bad.write_bytes(bytes(data))
    result = merge(out, good, bad)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("baton: error: ") and "bad.cassette" in lines[0]
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for args, wanted in (
        ([out, tmp_path / "missing.cassette"], "missing.cassette: no such file"),
        ([out, good, good], "named twice"),
        ([out, good, "--since", "yesterday"], "--since 'yesterday'"),
        ([out, good, "--since", "2026-11-30", "--until", "2026-11-29"], "swap them"),
    ):
        result = merge(*args)
        assert result.returncode == 2, result.stderr
        assert wanted in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == before


def test_a_large_stored_body_streams_across_in_bounded_memory(tmp_path: Path) -> None:
    size = 96 << 20
    piece = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    source = tmp_path / "big.cassette"
    with CassetteWriter(source, redactor=None) as writer:
        stream = writer.open_stream()
        for n in range(size // len(piece)):
            stream.write(piece, float(n))
        writer.append(
            Interaction(
                "big",
                Request("GET", "http", "files.internal", 80, "/export"),
                Response(200, "OK", body=None),
                T0,
            ),
            streams={"response": stream},
        )
    small = write(tmp_path / "small.cassette", [exchange("small", T0 + 1)])
    out = tmp_path / "out.cassette"
    baseline = peak_rss_mib("merge", str(tmp_path / "baseline.cassette"), str(small))
    peak = peak_rss_mib("merge", str(out), str(source), str(small))
    # Holding the 96 MiB body would add 96 MiB to what merging a tiny cassette takes.
    assert peak - baseline < 40, f"peak RSS {peak:.0f} MiB, {baseline:.0f} MiB without the body"
    with CassetteReader(out) as reader:
        merged = list(reader)
    assert [i.id for i in merged] == ["big", "small"]
    stored = merged[0].response.stored if merged[0].response else None
    assert stored is not None and stored.size == size
    expected = hashlib.sha256()
    for _ in range(size // len(piece)):
        expected.update(piece)
    assert stored.sha256 == expected.hexdigest()


def test_merging_nothing_but_empty_cassettes_writes_an_empty_cassette(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.cassette", [])
    result = merge(tmp_path / "out.cassette", empty)
    assert result.returncode == 0, result.stderr
    assert ids(tmp_path / "out.cassette") == []
    assert "0 interactions written of 0 read" in result.stderr
