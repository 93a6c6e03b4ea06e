"""Bodies stored zstd-compressed in the cassette (``--compress zstd``): smaller files, same bytes.

Recorded through a real ``baton record`` in front of a real httpbin, with a
real httpx client; replayed by a real ``baton replay``; read back by show,
export, diff, merge and repair. Hostile compressed bodies are refused as
one-line errors, never decoded into memory they would not fit.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import zstandard

from baton.cassettes import CassetteReader, CassetteWriter, Interaction, Request, Response
from baton.cassettes.codec import FORMAT_VERSION, make_header, pack
from baton.cassettes.compression import (
    MAX_RATIO,
    BodyCompression,
    compress_body,
    decompress_body,
)
from baton.cassettes.errors import CassetteError, CassetteFormatError
from baton.cassettes.reader import load_lazily, read_cassette
from baton.proxy.pytest_settings import SETTINGS, TestSettings
from tests.processes import Upstream, run_baton, start_baton

PATHS = ["/json", "/html", "/xml", "/gzip", "/image/png", "/bytes/4096?seed=3", "/get"]
POSTED = {"items": [{"id": n, "name": f"widget {n}", "tags": ["a", "b"]} for n in range(40)]}


@dataclass
class Recording:
    """One recording of the exchanges: the cassette and what the client got, by target."""

    cassette: Path
    seen: dict[str, tuple[int, bytes, dict[str, str]]]


def _record(upstream: Upstream, cassette: Path, confdir: Path, *flags: str) -> Recording:
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--mode",
            f"reverse:{upstream.url}",
            "--listen-port",
            "0",
            "--set",
            f"confdir={confdir}",
            *flags,
        ]
    )
    seen: dict[str, tuple[int, bytes, dict[str, str]]] = {}
    try:
        with httpx.Client(trust_env=False, timeout=30) as client:
            for path in PATHS:
                with client.stream("GET", recorder.url + path) as answer:
                    raw = b"".join(answer.iter_raw())
                    seen[path] = (answer.status_code, raw, dict(answer.headers))
            with client.stream("POST", recorder.url + "/post", json=POSTED) as answer:
                seen["/post"] = (answer.status_code, b"".join(answer.iter_raw()), {})
    finally:
        assert recorder.stop() == 0, recorder.output
    return Recording(cassette, seen)


@pytest.fixture(scope="module")
def recordings(
    tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path, httpbin: Upstream
) -> tuple[Recording, Recording]:
    """The same exchanges recorded plain and with ``--compress zstd``."""
    folder = tmp_path_factory.mktemp("compression")
    plain = _record(httpbin, folder / "plain.cassette", mitm_confdir)
    packed = _record(httpbin, folder / "zstd.cassette", mitm_confdir, "--compress", "zstd")
    return plain, packed


def _stored_bodies(cassette: Path) -> dict[str, object]:
    """What the file holds in each response's ``body`` field, by target (the raw msgpack value)."""
    out: dict[str, object] = {}
    with CassetteReader(cassette) as reader:
        for raw in reader.objects():
            request = raw.value["request"]
            target = request["path"] + ("?" + "&".join(f"{k}={v}" for k, v in request["query"]))
            out[target.rstrip("?")] = raw.value["response"]["body"]
            if request["path"] == "/post":
                out["/post request"] = request["body"]
    return out


def test_record_compress_zstd_stores_text_compressed_and_leaves_the_rest_alone(
    recordings: tuple[Recording, Recording],
) -> None:
    plain, packed = recordings
    stored = _stored_bodies(packed.cassette)
    for target in ("/json", "/html", "/xml", "/post"):
        assert isinstance(stored[target], dict), target
        assert stored[target]["coding"] == "zstd"  # type: ignore[index]
    assert isinstance(stored["/post request"], dict)  # the posted JSON, too
    # Already gzip-encoded, a PNG, random bytes: stored as they came.
    assert stored["/gzip"] == packed.seen["/gzip"][1]
    assert stored["/image/png"] == packed.seen["/image/png"][1]
    assert stored["/bytes/4096?seed=3"] == packed.seen["/bytes/4096?seed=3"][1]
    # The text is not in the file in clear; the settings are in the header.
    assert b"Sample Slide Show" not in packed.cassette.read_bytes()
    with CassetteReader(packed.cassette) as reader:
        assert reader.meta["body_compression"] == {"coding": "zstd", "level": 3, "min_size": 128}
    assert packed.cassette.stat().st_size < 0.8 * plain.cassette.stat().st_size


def test_a_compressed_cassette_reads_and_replays_the_recorded_bytes_exactly(
    recordings: tuple[Recording, Recording],
) -> None:
    _, packed = recordings
    by_target = {i.request.target: i for i in read_cassette(packed.cassette)}
    for target, (_, raw, _) in packed.seen.items():
        assert by_target[target].response is not None
        assert by_target[target].response.body == raw, target  # type: ignore[union-attr]
    assert json.loads(by_target["/post"].request.body or b"") == POSTED

    replayer = start_baton(["replay", str(packed.cassette), "--listen-port", "0"])
    try:
        with httpx.Client(trust_env=False, timeout=30) as client:
            for target, (status, raw, headers) in packed.seen.items():
                if target == "/post":
                    continue
                with client.stream("GET", replayer.url + target) as answer:
                    assert answer.status_code == status
                    assert b"".join(answer.iter_raw()) == raw, target
                    assert answer.headers.get("content-length") == headers.get("content-length")
                    assert answer.headers.get("content-encoding") == headers.get("content-encoding")
            answer = client.post(replayer.url + "/post", json=POSTED)
            assert answer.content == packed.seen["/post"][1]
    finally:
        replayer.stop()
    assert gzip.decompress(packed.seen["/gzip"][1]).startswith(b"{")


def test_show_export_diff_merge_and_repair_see_the_plain_bytes(
    recordings: tuple[Recording, Recording], tmp_path: Path
) -> None:
    plain, packed = recordings
    shown = run_baton(["show", str(packed.cassette)])
    assert shown.returncode == 0, shown.stderr
    assert "Sample Slide Show" in shown.stdout

    har = tmp_path / "zstd.har"
    exported = run_baton(["export", str(packed.cassette), "-o", str(har)])
    assert exported.returncode == 0, exported.stderr
    entries = {
        e["request"]["url"].split("/", 3)[3]: e
        for e in json.loads(har.read_text())["log"]["entries"]
    }
    assert "Sample Slide Show" in entries["json"]["response"]["content"]["text"]

    # Same traffic, one file compressed and one not: nothing breaking between them.
    drift = run_baton(["diff", str(plain.cassette), str(packed.cassette)])
    assert drift.returncode == 0, drift.stdout + drift.stderr

    merged = tmp_path / "merged.cassette"
    result = run_baton(["merge", str(merged), str(packed.cassette)])
    assert result.returncode == 0, result.stderr
    assert _stored_bodies(merged)["/json"] == _stored_bodies(packed.cassette)["/json"]
    assert [i.response.body for i in read_cassette(merged)] == [  # type: ignore[union-attr]
        i.response.body  # type: ignore[union-attr]
        for i in read_cassette(packed.cassette)
    ]

    torn = tmp_path / "torn.cassette"
    # As a recorder killed mid-write leaves it: the start of one more object.
    torn.write_bytes(packed.cassette.read_bytes() + pack({"id": "torn", "request": {}})[:9])
    repaired = run_baton(["repair", str(torn)])
    assert repaired.returncode == 0, repaired.stderr
    kept = read_cassette(torn)
    assert len(kept) == len(packed.seen)
    for interaction in kept:
        got = interaction.response.body  # type: ignore[union-attr]
        assert got == packed.seen[interaction.request.target][1], interaction.request.target


def test_replay_new_episodes_with_compress_appends_compressed_answers(
    recordings: tuple[Recording, Recording], httpbin: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "episodes.cassette"
    cassette.write_bytes(recordings[0].cassette.read_bytes())  # recorded plain
    replayer = start_baton(
        [
            "replay",
            str(cassette),
            "--record-mode",
            "new_episodes",
            "--compress",
            "zstd",
            "--mode",
            f"reverse:{httpbin.url}",
            "--listen-port",
            "0",
        ]
    )
    try:
        with httpx.Client(trust_env=False, timeout=30) as client:
            new = client.get(replayer.url + "/anything/new-episode?size=large" + "&x=1" * 40)
            old = client.get(replayer.url + "/json")
    finally:
        assert replayer.stop() == 0, replayer.output
    assert new.status_code == 200 and old.content == recordings[0].seen["/json"][1]
    with CassetteReader(cassette) as reader:
        stored = [raw.value["response"]["body"] for raw in reader.objects()]
    assert [type(body) for body in stored[:-1]] == [bytes] * len(recordings[0].seen)
    assert isinstance(stored[-1], dict)  # the new episode, compressed
    assert read_cassette(cassette)[-1].response.body == new.content  # type: ignore[union-attr]


def test_the_pytest_plugin_takes_compress_from_the_configuration() -> None:
    check = SETTINGS["compress"].check
    assert check("zstd") == "zstd:3" and check("none") == "none"
    with pytest.raises(ValueError, match="unknown compression"):
        check("lz4")
    values = {name: setting.default for name, setting in SETTINGS.items()} | {"compress": "zstd:5"}
    options = TestSettings(values).replay_options.addon_options([], address=False)
    assert options["baton_compress"] == "zstd:5"


def test_a_bad_compress_value_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for value, fragment in (("lz4", "unknown compression 'lz4'"), ("zstd:30", "from 1 to 19")):
        result = run_baton(["record", "-o", str(tmp_path / "x.cassette"), "--compress", value])
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("baton: error: --compress: "), result.stderr
        assert fragment in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.cassette").exists()


# -- units: what is compressed, and what a reader refuses ---------------------------------

JSON_BODY = json.dumps(POSTED).encode()
ZSTD = BodyCompression()


def _interaction(body: bytes, *headers: tuple[str, str]) -> Interaction:
    return Interaction(
        "1",
        Request("POST", "http", "api", 80, "/items", headers=headers, body=body),
        Response(200, "OK", headers=headers, body=body),
        1.7e9,
        1.0,
    )


def test_compression_settings_parse_and_name_what_is_accepted() -> None:
    assert BodyCompression.parse("zstd") == BodyCompression("zstd", 3)
    assert BodyCompression.parse("ZSTD:19") == BodyCompression("zstd", 19)
    assert BodyCompression.parse("none") is None
    for bad in ("gzip", "zstd:0", "zstd:x", "none:3"):
        with pytest.raises(ValueError):
            BodyCompression.parse(bad)
    assert BodyCompression.from_description(ZSTD.describe()) == ZSTD
    assert BodyCompression.from_description({"coding": "lz4", "level": 3}) is None


def test_only_bodies_where_it_pays_are_compressed() -> None:
    json_type = ("Content-Type", "application/json")
    assert isinstance(compress_body(JSON_BODY, (json_type,), ZSTD), dict)
    assert compress_body(JSON_BODY[:100], (json_type,), ZSTD) == JSON_BODY[:100]  # too small
    encoded = gzip.compress(JSON_BODY)
    assert compress_body(JSON_BODY, (("Content-Encoding", "br"),), ZSTD) == JSON_BODY
    assert compress_body(encoded, (("Content-Encoding", "gzip"),), ZSTD) == encoded
    assert compress_body(JSON_BODY, (("Content-Type", "image/png"),), ZSTD) == JSON_BODY
    assert isinstance(compress_body(JSON_BODY, (("Content-Type", "image/svg+xml"),), ZSTD), dict)
    noise = os.urandom(4096)
    assert compress_body(noise, (), ZSTD) == noise  # tried, did not pay
    assert compress_body(None, (), ZSTD) is None


def test_compressed_and_plain_interactions_share_a_file_and_read_back_exactly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mixed.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(_interaction(JSON_BODY))
    with CassetteWriter(path, redactor=None, compression=ZSTD) as writer:
        writer.append(_interaction(JSON_BODY, ("Content-Type", "application/json")))
        writer.append(_interaction(b""))
    read = read_cassette(path)
    assert [i.request.body for i in read] == [JSON_BODY, JSON_BODY, b""]
    assert [i.response.body for i in read] == [JSON_BODY, JSON_BODY, b""]  # type: ignore[union-attr]
    with CassetteReader(path) as reader:
        stored = [raw.value["response"]["body"] for raw in reader.objects()]
    assert [type(body) for body in stored] == [bytes, dict, bytes]


def _hostile(tmp_path: Path, body: object) -> Path:
    """A cassette whose one response body is the given stored value."""
    path = tmp_path / "hostile.cassette"
    obj = {
        "id": "1",
        "recorded_at": 1.7e9,
        "duration_ms": 1.0,
        "request": {
            "method": "GET",
            "scheme": "http",
            "host": "api",
            "port": 80,
            "path": "/",
            "query": [],
            "http_version": "HTTP/1.1",
            "headers": [],
            "body": b"",
        },
        "response": {
            "status": 200,
            "reason": "OK",
            "http_version": "HTTP/1.1",
            "headers": [],
            "body": body,
            "trailers": None,
        },
        "error": None,
        "tags": {},
    }
    path.write_bytes(pack(make_header()) + pack(obj))
    return path


def test_hostile_compressed_bodies_are_one_line_errors_not_allocations(tmp_path: Path) -> None:
    zeros = 64 << 20
    bomb = zstandard.ZstdCompressor(level=3).compress(bytes(zeros))  # a few KB for 64 MiB
    assert zeros > MAX_RATIO * len(bomb)
    small = zstandard.ZstdCompressor().compress(JSON_BODY)
    cases: list[tuple[object, str]] = [
        ({"coding": "zstd", "size": zeros, "data": bomb}, "more than baton accepts"),
        ({"coding": "zstd", "size": 1 << 40, "data": small}, "more than baton accepts"),
        ({"coding": "zstd", "size": len(JSON_BODY) - 1, "data": small}, "the zstd frame holds"),
        ({"coding": "zstd", "size": len(JSON_BODY), "data": small[:-9]}, "does not decode"),
        ({"coding": "lz4", "size": 10, "data": b"x"}, "upgrade baton"),
        ({"coding": "zstd", "size": "10", "data": small}, "needs 'size'"),
    ]
    for body, fragment in cases:
        path = _hostile(tmp_path, body)
        with pytest.raises(CassetteFormatError, match=r"field response\.body: ") as caught:
            read_cassette(path)
        assert fragment in str(caught.value)
        shown = run_baton(["show", str(path)]) if fragment == "more than baton accepts" else None
        if shown is not None:
            assert shown.returncode == 2
            assert len(shown.stderr.strip().splitlines()) == 1, shown.stderr
            assert "Traceback" not in shown.stderr
    assert decompress_body({"coding": "zstd", "size": len(JSON_BODY), "data": small}, "x") == (
        JSON_BODY
    )


def test_the_writer_never_writes_what_a_reader_would_refuse() -> None:
    huge = bytes(8 << 20)  # compresses far beyond MAX_RATIO: kept plain rather than unreadable
    assert compress_body(huge, (), ZSTD) is huge


def test_appending_compressed_bodies_to_an_older_file_raises_its_header_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.cassette"
    path.write_bytes(pack({**make_header(), "version": 1}))
    with CassetteWriter(path, redactor=None, compression=ZSTD) as writer:
        writer.append(_interaction(JSON_BODY, ("Content-Type", "application/json")))
    with CassetteReader(path) as reader:
        assert reader.version == FORMAT_VERSION
        assert [i.response.body for i in reader] == [JSON_BODY]  # type: ignore[union-attr]


def test_lint_finds_a_secret_inside_a_compressed_body(tmp_path: Path) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQtMTIz"
    leaky = json.dumps({**POSTED, "session": token}).encode()
    path = tmp_path / "leaky.cassette"
    with CassetteWriter(path, redactor=None, compression=ZSTD) as writer:
        writer.append(_interaction(leaky, ("Content-Type", "application/json")))
    assert token.encode() not in path.read_bytes()
    result = run_baton(["lint", str(path)])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "JWT" in result.stdout


def test_merge_compresses_a_cassette_in_place_and_back_and_import_compresses(
    recordings: tuple[Recording, Recording], tmp_path: Path
) -> None:
    plain = recordings[0]
    cassette = tmp_path / "api.cassette"
    cassette.write_bytes(plain.cassette.read_bytes())
    bodies = [i.response.body for i in read_cassette(cassette)]  # type: ignore[union-attr]

    squeezed = run_baton(["merge", str(cassette), str(cassette), "--compress", "zstd"])
    assert squeezed.returncode == 0, squeezed.stderr
    assert isinstance(_stored_bodies(cassette)["/json"], dict)
    assert cassette.stat().st_size < 0.8 * plain.cassette.stat().st_size
    assert [i.response.body for i in read_cassette(cassette)] == bodies  # type: ignore[union-attr]

    unsqueezed = run_baton(["merge", str(cassette), str(cassette), "--compress", "none"])
    assert unsqueezed.returncode == 0, unsqueezed.stderr
    assert isinstance(_stored_bodies(cassette)["/json"], bytes)
    with CassetteReader(cassette) as reader:
        assert "body_compression" not in reader.meta
    assert [i.response.body for i in read_cassette(cassette)] == bodies  # type: ignore[union-attr]

    bad = run_baton(["merge", str(cassette), str(cassette), "--compress", "gzip"])
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "--compress: unknown compression 'gzip'" in bad.stderr

    timeline = Path(__file__).parent / "corpus/vcrpy/tweepy-test_asyncclient_get_home_timeline.yaml"
    imported = tmp_path / "imported.cassette"
    result = run_baton(["import", str(timeline), "-o", str(imported), "--compress", "zstd"])
    assert result.returncode == 0, result.stderr
    with CassetteReader(imported) as reader:
        assert [type(raw.value["response"]["body"]) for raw in reader.objects()] == [dict]
    assert b'"data"' in (read_cassette(imported)[0].response.body or b"")  # type: ignore[union-attr]


def test_mutated_compressed_cassettes_fail_only_as_cassette_errors(tmp_path: Path) -> None:
    """Random bytes changed or cut off: the reader and replay's lazy open say CassetteError."""
    source = tmp_path / "source.cassette"
    with CassetteWriter(source, redactor=None, compression=ZSTD) as writer:
        for number in range(3):
            writer.append(_interaction(JSON_BODY.replace(b"widget", b"item%d" % number)))
    original = source.read_bytes()
    rng = random.Random(17)
    mutated = tmp_path / "mutated.cassette"
    logging.disable(logging.WARNING)  # the torn-object warnings of cut-off files
    try:
        for _ in range(400):
            data = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            mutated.write_bytes(bytes(data))
            for read in (read_cassette, lambda p: load_lazily(p).interactions):
                try:
                    for interaction in read(mutated):
                        _ = interaction.response and interaction.response.body
                except CassetteError:
                    pass
    finally:
        logging.disable(logging.NOTSET)
