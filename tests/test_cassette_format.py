"""The cassette format on its own: round trips, hostile input, torn tails, versions, repair."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton.cassettes import (
    CassetteError,
    CassetteFormatError,
    CassetteLockedError,
    CassetteReader,
    CassetteTornError,
    CassetteWriter,
    Interaction,
    ReadLimits,
    Request,
    Response,
    UnsupportedVersion,
    read_cassette,
    repair,
)
from baton.cassettes.codec import FORMAT_VERSION, interaction_to_object, make_header, pack

# Text as HTTP carries it: any bytes, decoded the way baton decodes them.
wire_text = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))
pairs = st.lists(st.tuples(wire_text, wire_text), max_size=6).map(tuple)
bodies = st.none() | st.binary(max_size=300)
tag_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)

requests_ = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "QUERY"]),
    scheme=st.sampled_from(["http", "https"]),
    host=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    port=st.integers(0, 65535),
    path=wire_text,
    query=pairs,
    http_version=st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]),
    headers=pairs,
    body=bodies,
)
responses = st.builds(
    Response,
    status=st.integers(100, 599),
    reason=wire_text,
    http_version=st.sampled_from(["HTTP/1.1", "HTTP/2.0"]),
    headers=pairs,
    body=bodies,
    trailers=st.none() | pairs,
)


@st.composite
def interactions(draw: st.DrawFn) -> Interaction:
    response = draw(st.none() | responses)
    return Interaction(
        id=draw(st.uuids().map(str)),
        request=draw(requests_),
        response=response,
        recorded_at=draw(st.floats(0, 4e9, allow_nan=False)),
        duration_ms=draw(st.none() | st.floats(0, 1e7, allow_nan=False)),
        error=draw(st.text(min_size=1, max_size=30))
        if response is None
        else draw(st.none() | st.text(max_size=30)),
        tags=draw(st.dictionaries(st.text(max_size=10), tag_values, max_size=4)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(interactions(), min_size=1, max_size=5))
def test_any_interaction_round_trips_through_writer_and_reader(items: list[Interaction]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.cassette"
        with CassetteWriter(path, redactor=None) as writer:
            for item in items:
                writer.append(item)
        assert read_cassette(path) == items


def _read_all(data: bytes) -> list[Interaction]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.cassette"
        path.write_bytes(data)
        try:
            return read_cassette(path, ReadLimits(max_object_bytes=1 << 20, max_bin_bytes=1 << 20))
        except CassetteError:
            return []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_interactions_or_a_cassette_error(data: bytes) -> None:
    _read_all(data)
    _read_all(pack(make_header()) + data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(msgpack_values, max_size=4), interactions())
def test_well_formed_msgpack_of_the_wrong_shape_is_a_cassette_error(
    objects: list[object], good: Interaction
) -> None:
    # Valid msgpack, plausible maps with missing or mistyped fields.
    obj = interaction_to_object(good)
    mangled = [obj | {"request": value} for value in objects] + [
        {k: v for k, v in obj.items() if k != key} for key in ("id", "request")
    ]
    data = pack(make_header()) + b"".join(pack(o) for o in [*objects, *mangled])
    _read_all(data)


def write(path: Path, *objects: object) -> None:
    path.write_bytes(b"".join(pack(o) for o in objects))


def sample(n: int = 1) -> Interaction:
    return Interaction(
        id=f"id-{n}",
        request=Request("GET", "http", "example.test", 80, f"/items/{n}", (("page", "1"),)),
        response=Response(
            200, "OK", headers=(("Content-Type", "application/json"),), body=b'{"n": %d}' % n
        ),
        recorded_at=1700000000.0 + n,
        duration_ms=1.5,
    )


def test_errors_name_the_file_the_interaction_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.cassette"
    bad = interaction_to_object(sample(2))
    bad["request"]["port"] = "eighty"
    write(path, make_header(), interaction_to_object(sample(1)), bad)
    with pytest.raises(CassetteFormatError) as caught:
        read_cassette(path)
    message = str(caught.value)
    assert str(path) in message
    assert "interaction 2" in message
    assert "request.port" in message
    assert "expected an integer, got str" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"\x85\xa6format", "header is incomplete"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a baton cassette"),
        (pack({"format": "something-else", "version": 1}), "not a baton cassette"),
        (pack([1, 2, 3]), "not a baton cassette"),
    ],
)
def test_a_file_that_is_not_a_cassette_is_refused(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "x.cassette"
    path.write_bytes(content)
    with pytest.raises(CassetteFormatError, match=expected):
        read_cassette(path)


def test_a_newer_format_version_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "future.cassette"
    write(path, make_header() | {"version": 4})
    with pytest.raises(UnsupportedVersion, match=r"version 4 is newer.*upgrade baton"):
        read_cassette(path)


def test_limits_refuse_a_hostile_length_prefix(tmp_path: Path) -> None:
    path = tmp_path / "huge.cassette"
    obj = interaction_to_object(sample())
    obj["response"]["body"] = b"x" * 5000
    write(path, make_header(), obj)
    limits = ReadLimits(max_object_bytes=1 << 20, max_bin_bytes=1000)
    with pytest.raises(CassetteFormatError, match="interaction 1 at byte"):
        read_cassette(path, limits)
    assert read_cassette(path)[0].response.body == b"x" * 5000


def test_a_torn_tail_is_skipped_with_a_warning_naming_its_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "torn.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(sample(1))
        writer.append(sample(2))
    whole = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(pack(interaction_to_object(sample(3)))[:-7])
    with caplog.at_level(logging.WARNING), CassetteReader(path) as reader:
        items = list(reader)
    assert [i.id for i in items] == ["id-1", "id-2"]
    assert reader.torn_at == whole
    assert f"torn object at byte {whole}" in caplog.text


def test_repair_cuts_the_torn_tail_and_keeps_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "torn.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(sample(1))
    index_record = path.stat().st_size - int.from_bytes(path.read_bytes()[-8:], "big")
    original = path.read_bytes() + pack(interaction_to_object(sample(2)))[:10]
    path.write_bytes(original)

    report = repair(path)

    assert report.kept == 1
    assert report.dropped_bytes == 10 + index_record  # the torn tail, and the index it made stale
    assert report.backup is not None and report.backup.read_bytes() == original
    with CassetteReader(path) as reader:
        assert [i.id for i in reader] == ["id-1"]
        assert reader.torn_at is None
    assert not repair(path).changed


def test_repair_drops_invalid_objects_and_keeps_the_sound_ones_around_them(tmp_path: Path) -> None:
    path = tmp_path / "mixed.cassette"
    write(
        path,
        make_header(),
        interaction_to_object(sample(1)),
        {"id": 5},
        interaction_to_object(sample(3)),
    )
    report = repair(path)
    assert report.kept == 2
    assert len(report.dropped) == 1 and "invalid object" in report.dropped[0]
    assert [i.id for i in read_cassette(path)] == ["id-1", "id-3"]


def test_a_writer_refuses_a_torn_file_and_a_file_being_written(tmp_path: Path) -> None:
    path = tmp_path / "c.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(sample(1))
        with pytest.raises(CassetteLockedError, match="another baton process"):
            CassetteWriter(path, redactor=None)
    with open(path, "ab") as handle:
        handle.write(b"\x87\xa2id")
    before = path.read_bytes()
    with pytest.raises(CassetteTornError, match="baton repair"):
        CassetteWriter(path, redactor=None)
    assert path.read_bytes() == before


def test_appending_to_an_existing_cassette_keeps_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "c.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(sample(1))
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(sample(2))
    assert [i.id for i in read_cassette(path)] == ["id-1", "id-2"]


def test_a_failed_write_is_cut_back_so_the_file_stays_valid(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the kernel refuse writes past a size: a real "disk full".
    script = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from tests.test_cassette_format import sample
from baton.cassettes import CassetteWriter, CassetteError, Response
from dataclasses import replace
writer = CassetteWriter({str(tmp_path / "full.cassette")!r}, redactor=None)
writer.append(sample(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))
big = replace(sample(2), response=Response(200, body=b"y" * 4000))
try:
    writer.append(big)
except CassetteError as exc:
    print("refused:", exc)
writer.append(sample(3))
writer.close()
"""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout and "cannot append" in result.stdout
    assert [i.id for i in read_cassette(tmp_path / "full.cassette")] == ["id-1", "id-3"]


def test_the_header_is_written_and_synced_when_a_cassette_is_created(tmp_path: Path) -> None:
    path = tmp_path / "new.cassette"
    CassetteWriter(path, redactor=None, meta={"team": "payments"}).close()
    with CassetteReader(path) as reader:
        assert reader.header["format"] == "baton-cassette"
        assert reader.version == FORMAT_VERSION == 3
        assert reader.meta == {"team": "payments"}
        assert list(reader) == []
    header = msgpack.Unpacker(raw=False)
    header.feed(path.read_bytes())  # the header, then the (empty) trailing index record
    assert header.unpack()["version"] == 3
    assert os.access(path, os.R_OK)
