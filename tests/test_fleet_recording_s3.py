"""Recording to S3 through the spool, with moto's real S3 server (a subprocess) and s3fs.

The store goes away mid-run and comes back; traffic never notices, shards
wait in the spool and all arrive; replay reads them back from ``s3://``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from baton.cassettes.locations import resolve_cassettes
from baton.cassettes.reader import CassetteReader
from baton.proxy.spool import Spool
from tests.processes import BatonProcess, Upstream, start_baton, unused_port

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "fleet-recordings"


class MotoServer:
    """moto's standalone S3 server on 127.0.0.1, started and stopped by its own PID."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer(unused_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS environment pointing at moto, here and in every baton started."""
    env = {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _s3() -> object:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def _objects() -> list[str]:
    """The shards under the prefix now (none before the first upload)."""
    try:
        return sorted(_s3().ls(f"{BUCKET}/orders-api"))  # type: ignore[attr-defined]
    except FileNotFoundError:
        return []


def _wait_for(condition: object, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _send(recorder: BatonProcess, ids: list[str]) -> None:
    with httpx.Client(timeout=10) as http:
        for request_id in ids:
            answer = http.get(f"{recorder.url}/echo", params={"id": request_id})
            assert answer.status_code == 200


def _spooled(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.cassette"))


def _settled(spool: Path) -> bool:
    """True when the spool holds only the shard being written, and nothing is in it yet."""
    shards = _spooled(spool)
    if len(shards) != 1:
        return False
    with CassetteReader(shards[0], warn_torn=False) as reader:
        return not list(reader)


def test_shards_wait_in_the_spool_while_s3_is_down_and_all_arrive(
    echo: Upstream, moto: MotoServer, s3_env: dict[str, str], tmp_path: Path
) -> None:
    s3 = _s3()
    s3.mkdir(BUCKET)  # type: ignore[attr-defined]
    spool = tmp_path / "spool"
    prefix = f"s3://{BUCKET}/orders-api/"
    recorder = start_baton(
        [
            "record",
            "-o",
            prefix,
            "--mode",
            f"reverse:{echo.url}",
            "--listen-port",
            "0",
            "--rotate-interval",
            "500ms",
            "--spool",
            str(spool),
            "--upload-retry-max",
            "1s",
            "--metrics-port",
            "0",
        ],
        env=s3_env,
    )
    try:
        first = [f"a{n}" for n in range(10)]
        _send(recorder, first)
        _wait_for(
            lambda: _settled(spool) and len(_objects()) >= 1,
            what="every shard of the first requests uploaded",
        )
        kept = tmp_path / "kept"
        kept.mkdir()
        for key in _objects():
            s3.get_file(key, str(kept / key.rsplit("/", 1)[-1]))  # type: ignore[attr-defined]
        moto.stop()
        second = [f"b{n}" for n in range(10)]
        _send(recorder, second)  # traffic flows while S3 is down
        _wait_for(lambda: len(_spooled(spool)) >= 2, what="closed shards waiting in the spool")
        url = _metrics_url(recorder)
        _wait_for(
            lambda: _sample(httpx.get(url).text, "baton_upload_failures_total") >= 1,
            what="a failed upload counted",
        )
        assert _sample(httpx.get(url).text, "baton_spool_shards") >= 1
        moto.start()
        s3 = _s3()
        s3.mkdir(BUCKET)  # type: ignore[attr-defined]
        for shard in kept.iterdir():
            s3.put_file(str(shard), f"{BUCKET}/orders-api/{shard.name}")  # type: ignore[attr-defined]
        _wait_for(lambda: len(_spooled(spool)) <= 1, timeout=40, what="the spool to drain")
        third = [f"c{n}" for n in range(5)]
        _send(recorder, third)
    finally:
        code = recorder.stop(timeout=60)
    assert code == 0, recorder.output
    assert _spooled(spool) == [], recorder.output
    sent = first + second + third
    ids: list[str] = []
    for shard in resolve_cassettes([f"{prefix}*.cassette"], cache_dir=tmp_path / "cache"):
        with CassetteReader(shard) as reader:
            ids += [dict(i.request.query)["id"] for i in reader]
            assert reader.orphan_parts == 0
    assert Counter(ids) == Counter(sent)

    replay = start_baton(["replay", f"{prefix}*.cassette", "--listen-port", "0"], env=s3_env)
    try:
        with httpx.Client(timeout=10) as http:
            answers = [http.get(f"{replay.url}/echo", params={"id": i}) for i in sent]
    finally:
        replay.stop()
    assert [a.json()["query"]["id"] for a in answers] == sent
    assert f"replaying {len(sent)} interactions" in replay.output


def _metrics_url(baton: BatonProcess) -> str:
    for line in baton.lines:
        if "/metrics" in line:
            return "http://" + line.split("http://", 1)[1].split()[0]
    raise AssertionError(baton.output)


def _sample(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in metrics")


def test_a_recorder_uploads_what_an_earlier_one_left_in_the_spool(tmp_path: Path) -> None:
    from baton.cassettes.writer import CassetteWriter
    from tests.test_fleet_recording import interaction

    spool = tmp_path / "spool"
    spool.mkdir()
    with CassetteWriter(spool / "svc.h.1.20260101T000000Z.0000.cassette", redactor=None) as w:
        w.append(interaction("left-behind"))
    store = tmp_path / "store"
    store.mkdir()
    uploader = Spool(spool, f"file://{store}/")
    uploader.start()
    assert uploader.stop(timeout=10) == 0
    assert [p.name for p in store.iterdir()] == ["svc.h.1.20260101T000000Z.0000.cassette"]
    assert _spooled(spool) == []
    assert uploader.stats.uploaded == 1


def test_a_missing_bucket_is_one_line_and_exit_2_before_listening(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.processes import run_baton

    result = run_baton(
        [
            "record",
            "-o",
            "s3://no-such-bucket-here/x/",
            "--listen-port",
            "0",
            "--spool",
            str(tmp_path / "spool"),
        ],
        env={**os.environ, **s3_env},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "baton: error: s3://no-such-bucket-here/x/: the bucket 'no-such-bucket-here' does not "
        "exist or is not visible"
    ]


def test_an_unreachable_store_is_one_line_and_exit_2_before_listening(
    s3_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.processes import run_baton

    closed = f"http://127.0.0.1:{unused_port()}"
    result = run_baton(
        [
            "record",
            "-o",
            f"s3://{BUCKET}/x/",
            "--listen-port",
            "0",
            "--spool",
            str(tmp_path / "spool"),
        ],
        env={**os.environ, **s3_env, "AWS_ENDPOINT_URL": closed},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"baton: error: s3://{BUCKET}/x/: cannot reach the store: ")
