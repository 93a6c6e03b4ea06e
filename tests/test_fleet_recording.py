"""Fleet recording: rotation under load, sampling, metrics, JSON logs, bad inputs (real proxy, real upstream)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.reader import CassetteReader
from baton.proxy.rotation import RotatingWriter, RotationPolicy, ShardNamer, parse_duration
from baton.proxy.sampling import Sampler, SamplingAddon, trace_id
from tests.processes import BatonProcess, Upstream, start_baton


def _read_shards(folder: Path) -> tuple[list[Path], list[str]]:
    """Every shard, each read alone, and the ``id`` query of every interaction in them."""
    shards = sorted(folder.glob("*.cassette"))
    ids: list[str] = []
    for shard in shards:
        with CassetteReader(shard, warn_torn=False) as reader:
            for interaction in reader:
                query = dict(interaction.request.query)
                ids.append(str(query.get("id")))
            assert reader.torn_at is None, shard
            assert reader.orphan_parts == 0, f"{shard}: parts whose interaction is elsewhere"
    return shards, ids


def interaction(request_id: str) -> Interaction:
    """A small recorded GET whose ``id`` query names it."""
    return Interaction(
        request_id,
        Request("GET", "http", "svc", 80, "/echo", query=(("id", request_id),)),
        Response(200, headers=(("content-type", "text/plain"),), body=b"ok"),
        1.0,
    )


def _metrics(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def _metrics_port(baton: BatonProcess) -> int:
    for line in baton.lines:
        if "/metrics" in line:
            return int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    raise AssertionError(f"no metrics line in {baton.output}")


# -- pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600), ("15m", 900), ("90s", 90), ("500ms", 0.5), ("1h30m", 5400), ("2", 2)],
)
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "1 hour", "h", "-5m", "5x"])
def test_durations_that_mean_nothing_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_shard_names_carry_name_host_pid_time_and_sequence() -> None:
    from datetime import UTC, datetime

    namer = ShardNamer(name="orders-api", host="host1", pid=42)
    start = datetime(2026, 11, 29, 10, 15, 0, tzinfo=UTC)
    assert namer.format(start, 7) == "orders-api.host1.42.20261129T101500Z.0007.cassette"
    with pytest.raises(ValueError, match="no \\{seq\\}"):
        ShardNamer("{name}.cassette")
    with pytest.raises(ValueError, match="not a path"):
        ShardNamer("../{seq}/x.cassette")


def test_sampling_is_the_same_on_every_recorder_and_samples_whole_traces() -> None:
    sampler = Sampler(0.25, "header:traceparent")
    keys = [
        sampler.key_of("GET", "a", "/x", "", {"traceparent": f"00-{n:032x}-{hop:016x}-01"})
        for n in range(400)
        for hop in (1, 2)
    ]
    # The span id (hop) changes at every service; only the trace id is hashed.
    assert keys[0::2] == keys[1::2]
    kept = [k for k in keys[0::2] if sampler.kept_by_hash(k)]
    assert 60 < len(kept) < 140  # about a quarter of 400
    again = Sampler(0.25, "header:traceparent")
    assert kept == [k for k in keys[0::2] if again.kept_by_hash(k)]
    assert trace_id({"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}) == (
        "80f198ee56343ba864fe8b2a57d3eff7"
    )


def test_the_per_endpoint_limit_counts_per_shard() -> None:
    addon = SamplingAddon(Sampler(1.0, "method+path", per_endpoint_limit=2))
    decide = [addon.decide("GET", "svc", "/health", "", {}) for _ in range(4)]
    assert [d.value for d in decide] == ["keep", "keep", "over_limit", "over_limit"]
    assert addon.decide("GET", "svc", "/rare", "", {}).value == "keep"
    addon.reset()
    assert addon.decide("GET", "svc", "/health", "", {}).value == "keep"


@pytest.mark.parametrize(
    ("key", "message"), [("header:", "not a key"), ("method+colour", "not a key")]
)
def test_bad_sample_keys_are_refused(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sampler(0.5, key)


def test_a_stream_open_across_a_rotation_stays_with_its_interaction(tmp_path: Path) -> None:
    closed: list[Path] = []
    writer = RotatingWriter(
        tmp_path,
        redactor=None,
        namer=ShardNamer(name="svc", host="h", pid=1),
        policy=RotationPolicy(size=1),
        on_closed=closed.append,
    )
    stream = writer.open_stream()
    stream.write(b"first piece", 0.0)
    writer.append(interaction("before"))  # over the size: the next shard opens
    _wait_rotations(writer, 1)
    assert writer.rotations == 1
    writer.append(interaction("after"))  # goes to the new shard
    stream.write(b"second piece", 1.0)  # still to the shard the stream began in
    assert closed == []  # the first shard waits for its stream
    from dataclasses import replace

    from baton.cassettes.model import Chunk

    streamed = interaction("streamed")
    streamed = replace(
        streamed, response=replace(streamed.response, body=None, chunks=(Chunk(0, b""),))
    )
    writer.append(streamed, {"response": stream})
    writer.close()
    shards, ids = _read_shards(tmp_path)
    assert len(shards) >= 2
    assert sorted(ids) == ["after", "before", "streamed"]
    with CassetteReader(shards[0]) as first:
        found = {dict(i.request.query)["id"]: i for i in first}
    assert found["streamed"].response is not None
    assert b"".join(c.data for c in found["streamed"].response.chunks or ()) == (
        b"first piecesecond piece"
    )
    with CassetteReader(shards[0]) as first:
        assert first.meta["shard"]["seq"] == 0


# -- the real thing ---------------------------------------------------------------------


async def _load(url: str, connections: int, per_connection: int, body: bytes) -> list[str]:
    sent: list[str] = []

    async def client(number: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            for n in range(per_connection):
                request_id = f"c{number}-{n}"
                if n % 7 == 3:  # now and then a body above the stream threshold: parts
                    answer = await http.get(
                        f"{url}/bytes", params={"id": request_id, "size": 70000}
                    )
                else:
                    answer = await http.post(f"{url}/echo", params={"id": request_id}, content=body)
                assert answer.status_code == 200
                sent.append(request_id)

    await asyncio.gather(*(client(c) for c in range(connections)))
    return sent


def test_rotation_under_50_connections_loses_and_repeats_nothing(
    echo: Upstream, tmp_path: Path
) -> None:
    folder = tmp_path / "orders-api"
    recorder = start_baton(
        [
            "record",
            "-o",
            f"{folder}/",
            "--mode",
            f"reverse:{echo.url}",
            "--listen-port",
            "0",
            "--rotate-size",
            "1MB",
            "--stream-threshold",
            "64KB",
        ]
    )
    sent = asyncio.run(_load(recorder.url, 50, 6, b"x" * 12000))
    assert recorder.stop() == 0, recorder.output
    shards, ids = _read_shards(folder)
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicates == []
    assert sorted(ids) == sorted(sent)
    assert len(shards) >= 3, [s.name for s in shards]
    for shard in shards:
        name, _host, pid, started, seq, suffix = shard.name.split(".")
        assert (name, pid, suffix) == ("orders-api", str(recorder.proc.pid), "cassette")
        assert started.endswith("Z") and seq.isdigit()
    assert f"recorded {len(sent)} interactions" in recorder.output


def test_two_recorders_with_the_same_sample_keep_the_same_conversations(
    echo: Upstream, tmp_path: Path
) -> None:
    recorders = {
        name: start_baton(
            [
                "record",
                "-o",
                str(tmp_path / f"{name}.cassette"),
                "--mode",
                f"reverse:{echo.url}",
                "--listen-port",
                "0",
                "--sample",
                "0.3",
                "--sample-key",
                "header:traceparent",
            ]
        )
        for name in ("a", "b")
    }
    with httpx.Client() as http:
        for n in range(60):
            for hop, recorder in enumerate(recorders.values()):
                traceparent = f"00-{n * 7919:032x}-{hop + 1:016x}-01"
                http.get(
                    f"{recorder.url}/echo",
                    params={"id": str(n)},
                    headers={"traceparent": traceparent},
                )
    kept = {}
    for name, recorder in recorders.items():
        assert recorder.stop() == 0, recorder.output
        with CassetteReader(tmp_path / f"{name}.cassette") as reader:
            assert reader.meta["sampling"] == {
                "rate": 0.3,
                "key": "header:traceparent",
                "hash": "sha256",
            }
            kept[name] = [dict(i.request.query)["id"] for i in reader]
    assert kept["a"] == kept["b"]
    assert 5 < len(kept["a"]) < 35  # about 0.3 of 60


def test_metrics_and_json_logs_count_what_the_clients_sent(echo: Upstream, tmp_path: Path) -> None:
    recorder = start_baton(
        [
            "record",
            "-o",
            str(tmp_path / "shards") + "/",
            "--mode",
            f"reverse:{echo.url}",
            "--listen-port",
            "0",
            "--metrics-port",
            "0",
            "--log-format",
            "json",
            "--per-endpoint-limit",
            "5",
        ]
    )
    port = _metrics_port(recorder)
    with httpx.Client() as http:
        for n in range(12):
            http.get(f"{recorder.url}/echo", params={"id": str(n)})
        for n in range(3):
            http.get(
                f"{recorder.url}/bytes",
                params={"id": f"b{n}"},
                headers={"traceparent": f"00-{'ab' * 16}-{n + 1:016x}-01"},
            )
        metrics = _metrics(port)
        health = http.get(f"http://127.0.0.1:{port}/healthz")
    assert metrics["baton_interactions_recorded_total"] == 8  # 5 of /echo (the limit), 3 /bytes
    assert metrics["baton_sampled_out_total{reason=over_limit}"] == 7
    assert metrics["baton_write_failures_total"] == 0
    assert metrics["baton_request_duration_seconds_count{host=127.0.0.1}"] == 15
    assert metrics["baton_proxied_bytes_total{direction=response,host=127.0.0.1}"] > 3000
    assert health.status_code == 200
    assert health.json()["recorded"] == 8
    assert recorder.stop() == 0
    records = [json.loads(line) for line in recorder.lines if line.strip()]
    access = [r for r in records if r["logger"] == "baton.access"]
    assert len(access) == 15
    traced = [r for r in access if r["url"].split("?")[0].endswith("/bytes")]
    assert {r["trace_id"] for r in traced} == {"ab" * 16}
    assert [r["sampled"] for r in access[:7]] == ["keep"] * 5 + ["over_limit"] * 2
    assert any("recorded 8 interactions" in r["message"] for r in records)


@pytest.fixture
def baton_in_process() -> Iterator[Callable[[list[str]], tuple[int, str]]]:
    """Run a command in this process (checks that fail before anything listens); logging restored."""
    from click.testing import CliRunner

    from baton.proxy.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(args: list[str]) -> tuple[int, str]:
        result = CliRunner().invoke(main, args)
        return result.exit_code, result.stderr

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rotate-size", "lots"], "--rotate-size: "),
        (["--rotate-size", "0"], "--rotate-size: must be above zero"),
        (["--rotate-interval", "soon"], "--rotate-interval: 'soon' is not a duration"),
        (["--storage-option", "anon"], "--storage-option 'anon': expected KEY=VALUE"),
        (["--shard-pattern", "{name}.cassette"], "--shard-pattern: "),
        (["--sample-key", "colour", "--sample", "0.5"], "--sample-key 'colour'"),
        (["--sample", "2"], "--sample"),
    ],
)
def test_bad_fleet_settings_are_one_line_and_exit_2(
    tmp_path: Path,
    args: list[str],
    message: str,
    baton_in_process: Callable[[list[str]], tuple[int, str]],
) -> None:
    code, stderr = baton_in_process(
        ["record", "-o", f"{tmp_path}/shards/", "--listen-port", "0", *args]
    )
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0], lines
    assert message in lines[0]
    assert not (tmp_path / "shards").exists() or not list((tmp_path / "shards").iterdir())


def test_an_output_url_without_a_driver_is_one_line(
    baton_in_process: Callable[[list[str]], tuple[int, str]],
) -> None:
    code, stderr = baton_in_process(
        ["record", "-o", "nosuchstore://bucket/prefix/", "--listen-port", "0"]
    )
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("baton: error: nosuchstore://"), lines


def test_replay_serves_a_glob_of_shards_and_counts_hits_and_misses_in_metrics(
    echo: Upstream, tmp_path: Path
) -> None:
    folder = tmp_path / "svc"
    recorder = start_baton(
        [
            "record",
            "-o",
            f"{folder}/",
            "--mode",
            f"reverse:{echo.url}",
            "--listen-port",
            "0",
            "--rotate-size",
            "1KB",
        ]
    )
    with httpx.Client() as http:
        for n in range(6):
            http.get(f"{recorder.url}/echo", params={"id": str(n)})
    assert recorder.stop() == 0
    assert len(list(folder.glob("*.cassette"))) >= 2
    replay = start_baton(
        ["replay", f"{folder}/*.cassette", "--listen-port", "0", "--metrics-port", "0"]
    )
    try:
        port = _metrics_port(replay)
        with httpx.Client() as http:
            answers = [http.get(f"{replay.url}/echo", params={"id": str(n)}) for n in range(6)]
            missed = http.get(f"{replay.url}/echo", params={"id": "never"})
            metrics = _metrics(port)
        assert [a.json()["query"]["id"] for a in answers] == [str(n) for n in range(6)]
        assert missed.status_code == 502
        assert metrics["baton_interactions_served_total"] == 6
        assert metrics["baton_misses_total"] == 1
    finally:
        replay.stop()
    assert os.path.isdir(folder)


def _wait_rotations(writer: RotatingWriter, count: int) -> None:
    import time

    for _ in range(500):
        if writer.rotations >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{writer.rotations} rotations, expected {count}")


def test_an_upload_and_its_streamed_answer_split_by_a_rotation_end_in_one_shard(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from baton.cassettes.model import Chunk

    rotated: list[int] = []
    writer = RotatingWriter(
        tmp_path,
        redactor=None,
        namer=ShardNamer(name="svc", host="h", pid=1),
        policy=RotationPolicy(size=1),
        on_rotate=lambda: rotated.append(1),
    )
    upload = writer.open_stream()  # the request body streams in shard 0
    upload.write(b"up-1", 0.0)
    upload.write(b"up-2", 1.0)
    writer.append(interaction("filler"))  # over the size: shard 1 opens
    _wait_rotations(writer, 1)
    answer = writer.open_stream()  # the response streams in shard 1
    answer.write(b"down", 2.0)
    both = interaction("both")
    both = replace(
        both,
        request=replace(both.request, body=None, chunks=(Chunk(0, b""),)),
        response=replace(both.response, body=None, chunks=(Chunk(0, b""),)),
    )
    writer.append(both, {"request": upload, "response": answer})
    writer.close()
    assert rotated  # the per-endpoint counts start over with each shard
    shards = sorted(tmp_path.glob("*.cassette"))
    with CassetteReader(shards[-1]) as last:
        found = {dict(i.request.query)["id"]: i for i in last}
        assert last.orphan_parts == 0
    closed = found["both"]
    assert b"".join(c.data for c in closed.request.chunks or ()) == b"up-1up-2"
    assert closed.response is not None
    assert b"".join(c.data for c in closed.response.chunks or ()) == b"down"
    ids = []
    for shard in shards:
        with CassetteReader(shard, warn_torn=False) as reader:
            ids += [dict(i.request.query)["id"] for i in reader]
    assert sorted(ids) == ["both", "filler"]
