"""Drift over shards: --shard i/n, baton report merge, and --dask on a real dask.distributed cluster.

Against a live drifted service (tests/fleet_apps.py, answers that never vary,
so reports of separate runs compare exactly): the report merged from shards,
and the one fanned out over a Dask scheduler with two worker processes
started here, must equal the report of one unsharded run, byte for byte.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from baton.cassettes import CassetteWriter, Interaction, Request, Response
from baton.replay.sharding import Shard, ShardError
from tests import fleet_apps
from tests.processes import run_baton, unused_port

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "drift-report.schema.json").read_text())
JSON_TYPE = (("content-type", "application/json"),)


def recorded(
    ident: str, method: str, path: str, status: int, body: bytes, at: float
) -> Interaction:
    content_type = JSON_TYPE if body.startswith(b"{") else (("content-type", "text/plain"),)
    return Interaction(
        ident,
        Request(method, "http", "shop.internal", 80, path, body=b"{}" if method == "POST" else b""),
        Response(status, "OK", headers=content_type, body=body),
        at,
    )


def v1_interactions() -> list[Interaction]:
    """What the recorder saw of v1: 120 products (12 asked twice), legacy, about, an order, a 404."""
    items = []
    for n in [*range(1, 121), *range(1, 13)]:
        body = json.dumps(fleet_apps.v1_product(n)).encode()
        items.append(recorded(f"p{n}-{len(items)}", "GET", f"/products/{n}", 200, body, len(items)))
    items.append(recorded("legacy", "GET", "/legacy", 200, b'{"legacy": true}', 200.0))
    items.append(recorded("about", "GET", "/about", 200, b"shop version 1\n", 201.0))
    items.append(recorded("order", "POST", "/orders", 201, b'{"order": 1}', 202.0))
    items.append(recorded("gone", "GET", "/products/900", 200, b'{"id": 900}', 203.0))
    return items


def write(path: Path, interactions: list[Interaction]) -> Path:
    with CassetteWriter(path, redactor=None) as writer:
        for interaction in interactions:
            writer.append(interaction)
    return path


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    proc, url = fleet_apps.start()
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("fleet") / "v1.cassette", v1_interactions())


@pytest.fixture(scope="module")
def single(
    service: str, cassette: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The unsharded run: its JSON report, its text report and exit code."""
    out = tmp_path_factory.mktemp("single") / "single.json"
    result = run_baton(
        ["diff", str(cassette), "--target", service, "--format", "json", "-o", str(out)]
    )
    assert result.returncode == 1, result.stderr
    text = run_baton(["diff", str(cassette), "--target", service])
    return {"json": json.loads(out.read_text()), "text": text.stdout, "code": text.returncode}


def _dask(*args: str) -> subprocess.Popen[bytes]:
    """A dask scheduler or worker process (the ``dask scheduler``/``dask worker`` commands)."""
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real dask scheduler and two worker processes (one thread each) on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("dask")
    address_file = folder / "scheduler.json"
    scheduler_args = ["--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    started = [
        _dask(
            "distributed.cli.dask_scheduler", *scheduler_args, "--scheduler-file", str(address_file)
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists() or not address_file.read_text().strip():
            assert started[0].poll() is None, "the dask scheduler exited"
            assert time.monotonic() < deadline, "the dask scheduler did not start"
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        # --no-nanny: each worker is one process, stopped by its own PID.
        worker_args = ["--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"]
        for _ in range(2):
            started.append(
                _dask(
                    "distributed.cli.dask_worker",
                    address,
                    *worker_args,
                    "--local-directory",
                    str(folder),
                )
            )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(started):
            _stop(proc)


@pytest.fixture(scope="module")
def shard_reports(
    service: str, cassette: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """The JSON reports of --shard 1/3, 2/3 and 3/3."""
    folder = tmp_path_factory.mktemp("shards")
    shards = []
    for index in (1, 2, 3):
        out = folder / f"{index}.json"
        result = run_baton(
            [
                "diff",
                str(cassette),
                "--target",
                service,
                "--shard",
                f"{index}/3",
                "--format",
                "json",
                "-o",
                str(out),
            ]
        )
        assert result.returncode in (0, 1), result.stderr
        shards.append(out)
    return shards


def test_three_shards_merged_equal_the_unsharded_report(
    service: str,
    cassette: Path,
    single: dict[str, Any],
    shard_reports: list[Path],
    tmp_path: Path,
) -> None:
    for index, path in enumerate(shard_reports, 1):
        report = json.loads(path.read_text())
        jsonschema.validate(report, SCHEMA)
        assert report["shard"]["index"] == index and report["shard"]["count"] == 3
        assert report["summary"]["interactions"] > 0
    # Every recorded interaction is compared (or skipped) in exactly one shard.
    numbers = [
        i["number"] for s in shard_reports for i in json.loads(s.read_text())["interactions"]
    ]
    assert sorted(numbers) == list(range(1, len(v1_interactions()) + 1))

    merged = tmp_path / "merged.json"
    shards = [str(p) for p in shard_reports]
    result = run_baton(["report", "merge", *shards, "--format", "json", "-o", str(merged)])
    assert result.returncode == 1 == single["json"]["exit_code"]
    assert json.loads(merged.read_text()) == single["json"]
    assert "DRIFT:" in result.stderr
    text = run_baton(["report", "merge", *reversed(shards)])
    assert (text.returncode, text.stdout) == (single["code"], single["text"])

    # The gate can be chosen at merge time, as for an unsharded run.
    gated = run_baton(["report", "merge", *shards, "--fail-on", "value", "--format", "json"])
    unsharded = run_baton(
        ["diff", str(cassette), "--target", service, "--fail-on", "value", "--format", "json"]
    )
    assert gated.returncode == unsharded.returncode
    assert json.loads(gated.stdout) == json.loads(unsharded.stdout)


def test_rotated_shards_named_by_a_glob_diff_as_one_cassette(
    service: str, single: dict[str, Any], tmp_path: Path
) -> None:
    items = v1_interactions()
    # Two recorders' shards, overlapping in time: read back in recorded order.
    write(tmp_path / "shop.host1.0001.cassette", items[0::2])
    write(tmp_path / "shop.host2.0001.cassette", items[1::2])
    glob = f"{tmp_path}/shop.*.cassette"
    result = run_baton(["diff", glob, "--target", service, "--format", "json"])
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {**single["json"], "source": glob}


def test_shards_that_do_not_add_up_are_refused_in_one_line(
    service: str,
    cassette: Path,
    single: dict[str, Any],
    shard_reports: list[Path],
    tmp_path: Path,
) -> None:
    one, two, three = (str(p) for p in shard_reports)
    foreign = json.loads(shard_reports[2].read_text())
    foreign["shard"]["cassettes"][0]["header_sha256"] = "0" * 64  # another recording's shard
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    (tmp_path / "whole.json").write_text(json.dumps(single["json"]))
    for args, wanted in (
        ([one, two], "shard 3/3 missing"),
        ([one, two, two, three], "shard 2/3 given twice"),
        ([one, two, str(tmp_path / "foreign.json")], "the cassettes differs"),
        ([one, str(tmp_path / "whole.json")], "not the report of a shard"),
        ([str(cassette)], "not a JSON report"),
    ):
        result = run_baton(["report", "merge", *args])
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("baton: error: ") and wanted in lines[0]
    result = run_baton(["diff", str(cassette), "--target", service, "--shard", "4/3"])
    assert result.returncode == 2 and "--shard '4/3'" in result.stderr, result.stderr


def test_two_recordings_sharded_pair_as_the_unsharded_run(tmp_path: Path) -> None:
    old = v1_interactions()
    new = [
        *old[:40],
        *old[50:],  # ten only in the old recording
        *(recorded(f"n{n}", "GET", f"/extra/{n}", 200, b"{}", 300.0 + n) for n in range(7)),
    ]
    write(tmp_path / "old.cassette", old)
    write(tmp_path / "new.cassette", new)
    # The recording by URL, the new one by a glob: resolved as every reading command does.
    old_path, new_path = f"file://{tmp_path}/old.cassette", f"{tmp_path}/n[e]w.cassette"
    single = run_baton(["diff", str(old_path), str(new_path), "--format", "json"])
    shards = []
    for index in (1, 2):
        out = tmp_path / f"{index}.json"
        run_baton(
            [
                "diff",
                str(old_path),
                str(new_path),
                "--shard",
                f"{index}/2",
                "--format",
                "json",
                "-o",
                str(out),
            ]
        )
        shards.append(str(out))
    merged = run_baton(["report", "merge", *shards, "--format", "json"])
    assert merged.returncode == single.returncode
    expected = json.loads(single.stdout)
    assert expected["summary"]["only_in_new"] == 7 and expected["summary"]["only_in_old"] == 10
    assert json.loads(merged.stdout) == expected
    assert expected["source"] == old_path
    # The same on a LocalCluster the command starts itself.
    local = run_baton(["diff", old_path, new_path, "--dask", "local", "--format", "json"])
    assert local.returncode == single.returncode, local.stderr
    assert "2 shards on Dask (local)" in local.stderr
    assert json.loads(local.stdout) == expected


def test_dask_fanout_over_two_workers_equals_the_single_process_report(
    scheduler: str, service: str, cassette: Path, single: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "dask.json"
    result = run_baton(
        [
            "diff",
            str(cassette),
            "--target",
            service,
            "--dask",
            scheduler,
            "--format",
            "json",
            "-o",
            str(out),
        ]
    )
    assert result.returncode == 1, result.stderr
    assert "2 shards on Dask" in result.stderr
    assert json.loads(out.read_text()) == single["json"]
    # A worker's own failure comes back as it would locally: one line, exit 2.
    down = f"http://127.0.0.1:{unused_port()}"
    result = run_baton(["diff", str(cassette), "--target", down, "--dask", scheduler])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], lines


def test_an_unreachable_scheduler_is_one_line_and_exit_2(cassette: Path, service: str) -> None:
    address = f"tcp://127.0.0.1:{unused_port()}"
    result = run_baton(
        ["diff", str(cassette), "--target", service, "--dask", address, "--timeout", "1"]
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("baton: error: --dask tcp://127.0.0.1:"), lines
    assert "unreachable" in lines[0] or "no Dask scheduler" in lines[0]


def test_a_shard_is_chosen_by_request_key_not_position() -> None:
    items = v1_interactions()
    for count in (1, 3, 7):
        shards = [Shard(i, count) for i in range(1, count + 1)]
        held = [[s.holds(i) for s in shards].count(True) for i in items]
        assert held == [1] * len(items)  # each interaction in exactly one shard
        forward = {i.id: next(s.index for s in shards if s.holds(i)) for i in items}
        backward = {i.id: next(s.index for s in shards if s.holds(i)) for i in reversed(items)}
        assert forward == backward
    # Repeats of a request share a shard; with learned noise, a whole endpoint does.
    shard = Shard(1, 5)
    assert shard.number_of(items[0]) == shard.number_of(items[120])  # /products/1 twice
    by_endpoint = Shard(1, 5, by_endpoint=True)
    assert len({by_endpoint.number_of(i) for i in items[:120]}) == 1
    for bad in ("0/2", "3/2", "x/2", "2", "1/0"):
        with pytest.raises(ShardError):
            Shard.parse(bad)


def test_a_report_larger_than_a_pipe_reaches_a_reader_that_is_slow_to_read_it(
    service: str, cassette: Path, single: dict[str, Any]
) -> None:
    """`baton diff --target ... --format json | slow-consumer`: the report (here over the
    64 KiB a pipe holds) arrives whole; it used to stop at 64 KiB, with no error, when the
    reader had not started reading before baton wrote it."""
    from tests.processes import BATON

    proc = subprocess.Popen(
        [*BATON, "diff", str(cassette), "--target", service, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not _holds_a_full_pipe(proc) and proc.poll() is None:  # let the pipe fill up
            assert time.monotonic() < deadline, "baton diff wrote nothing"
            time.sleep(0.05)
        time.sleep(0.5)
        out, err = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == 1, err
    assert len(out) > 1 << 16
    assert json.loads(out) == single["json"]


def _holds_a_full_pipe(proc: subprocess.Popen[bytes]) -> bool:
    """True once the pipe from ``proc``'s standard output holds 64 KiB unread."""
    import fcntl
    import termios

    assert proc.stdout is not None
    waiting = fcntl.ioctl(proc.stdout.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(waiting, "little") >= 1 << 16
