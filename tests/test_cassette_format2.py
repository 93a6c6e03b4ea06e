"""Format 2: streams as part records, format 1 still read, old readers told to upgrade."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton.cassettes import (
    CassetteError,
    CassetteFormatError,
    CassetteReader,
    CassetteWriter,
    Interaction,
    ReadLimits,
    Request,
    Response,
    read_cassette,
    repair,
)
from baton.cassettes.codec import Part, make_header, pack, part_to_object
from baton.cassettes.model import Chunk, StoredBody, WebSocketConversation, WebSocketMessage
from tests.test_cassette_format import interactions

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LANDED_FORMAT_1 = "05c979b"  # the last commit whose reader knew only format 1


def streamed(chunks: list[tuple[float, bytes]], **extra: object) -> Interaction:
    pieces = tuple(Chunk(t, data) for t, data in chunks)
    return Interaction(
        id="sse-1",
        request=Request("GET", "http", "feed.test", 80, "/events"),
        response=Response(
            200,
            "OK",
            headers=(("Content-Type", "text/event-stream"),),
            body=b"".join(data for _, data in chunks),
            chunks=pieces,
        ),
        recorded_at=1764400000.0,
        duration_ms=2000.0,
        **extra,  # type: ignore[arg-type]
    )


def conversation() -> Interaction:
    return Interaction(
        id="ws-1",
        request=Request("GET", "http", "chat.test", 80, "/ws", headers=(("Upgrade", "websocket"),)),
        response=Response(101, "Switching Protocols", headers=(("Upgrade", "websocket"),)),
        recorded_at=1764400000.0,
        duration_ms=5000.0,
        websocket=WebSocketConversation(
            messages=(
                WebSocketMessage(True, True, b'{"hello": "server"}', 10.0),
                WebSocketMessage(False, True, b'{"hello": "client"}', 11.5),
                WebSocketMessage(False, False, bytes(range(256)), 1000.0),
            ),
            close_code=4001,
            close_reason="bye now",
            closed_by_client=False,
        ),
    )


# -- format 1 stays readable -----------------------------------------------------------------


def test_a_format_1_file_written_by_the_landed_writer_reads_field_for_field() -> None:
    with CassetteReader(FIXTURES / "format-v1.cassette") as reader:
        assert reader.version == 1
        json_answer, upload, not_captured, refused = list(reader)
    assert json_answer.request.query == (("lang", "en"), ("lang", "fr"))
    assert json_answer.request.headers[1] == ("X-Odd", "caf\udce9")  # non-UTF-8 byte kept
    assert json_answer.response is not None
    assert [v for k, v in json_answer.response.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert json_answer.response.body == b'{"id": 7, "name": "lamp", "price": 12.5}'
    assert json_answer.tags == {"mode": "reverse"} and json_answer.duration_ms == 3.5
    assert upload.request.body == bytes(range(256))
    assert upload.response is not None and upload.response.trailers == (("grpc-status", "0"),)
    assert upload.response.body is not None and upload.response.body.startswith(b"\x1f\x8b")
    assert not_captured.response is not None and not_captured.response.body is None
    assert not_captured.response.chunks is None and not_captured.response.stored is None
    assert refused.response is None and refused.error == "connection refused"


def test_appending_a_stream_to_a_format_1_file_upgrades_its_header(tmp_path: Path) -> None:
    path = tmp_path / "old.cassette"
    path.write_bytes((FIXTURES / "format-v1.cassette").read_bytes())
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(streamed([(0.0, b"data: 1\n\n")]))
    with CassetteReader(path) as reader:
        assert reader.version == 2
        items = list(reader)
    assert [i.id for i in items] == ["v1-json", "v1-binary", "v1-streamed", "v1-refused", "sse-1"]


def test_appending_plain_interactions_leaves_a_format_1_file_at_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.cassette"
    path.write_bytes((FIXTURES / "format-v1.cassette").read_bytes())
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(
            Interaction(
                "plain", Request("GET", "http", "a.test", 80, "/"), Response(200, body=b"ok"), 1.0
            )
        )
    with open(path, "rb") as handle:
        assert msgpack.Unpacker(handle, raw=False).unpack()["version"] == 1


def test_the_landed_format_1_reader_refuses_a_format_2_file_saying_to_upgrade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(conversation())
    landed = tmp_path / "landed"
    landed.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", LANDED_FORMAT_1, "cassettes"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(landed)], input=archive.stdout, check=True)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from cassettes.reader import read_cassette; read_cassette({str(path)!r})",
        ],
        cwd=landed,
        env={"PYTHONPATH": str(landed)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "UnsupportedVersion" in last
    assert (
        "cassette format version 3 is newer than this baton reads (up to 1); upgrade baton" in last
    )


# -- streams round trip ------------------------------------------------------------------------


def test_a_streamed_body_keeps_its_pieces_and_their_times(tmp_path: Path) -> None:
    path = tmp_path / "sse.cassette"
    pieces = [(0.0, b"id: 1\ndata: one\n\n"), (100.5, b"id: 2\ndata: two\n\n"), (201.0, b"")]
    original = streamed(pieces)
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(original)
    (back,) = read_cassette(path)
    assert back == original
    assert back.response is not None and back.response.chunks is not None
    assert [(c.offset_ms, c.data) for c in back.response.chunks] == pieces


def test_a_websocket_conversation_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "ws.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(conversation())
    (back,) = read_cassette(path)
    assert back == conversation()


def test_a_stream_written_live_is_closed_by_its_interaction(tmp_path: Path) -> None:
    path = tmp_path / "live.cassette"

    async def record() -> None:
        with CassetteWriter(path, redactor=None) as writer:
            body = writer.open_stream()
            messages = writer.open_stream()
            other = writer.append(streamed([(0.0, b"interleaved")]))  # another exchange meanwhile
            await body.write_async(b"first ", 1.0)
            await messages.write_async(b"ping", 2.0, from_client=True, is_text=True)
            await body.write_async(b"second", 3.0)
            await messages.write_async(b"\x00\x01", 4.0, from_client=False, is_text=False)
            interaction = conversation()
            response = Response(101, "Switching Protocols", body=None)
            await writer.append_async(
                Interaction(
                    interaction.id,
                    interaction.request,
                    response,
                    interaction.recorded_at,
                    websocket=WebSocketConversation((), 1000, "", True),
                ),
                streams={"response": body, "websocket": messages},
            )
            assert other.id == "sse-1"

    asyncio.run(record())
    first, live = read_cassette(path)
    assert first.id == "sse-1"
    assert live.response is not None and live.response.body == b"first second"
    assert live.response.chunks == (Chunk(1.0, b"first "), Chunk(3.0, b"second"))
    assert live.websocket == WebSocketConversation(
        (
            WebSocketMessage(True, True, b"ping", 2.0),
            WebSocketMessage(False, False, b"\x00\x01", 4.0),
        ),
        1000,
        "",
        True,
    )


def test_a_body_too_large_to_hold_stays_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.cassette"
    piece = bytes(range(256)) * 256  # 64 KiB
    with CassetteWriter(path, redactor=None) as writer:
        stream = writer.open_stream()
        for n in range(40):  # 2.5 MiB, above the 1 MiB limit set below
            stream.write(piece, float(n))
        writer.append(
            Interaction(
                "big",
                Request("GET", "http", "files.test", 80, "/export"),
                Response(200, "OK", body=None),
                1.0,
            ),
            streams={"response": stream},
        )
    limits = ReadLimits(max_held_stream_bytes=1 << 20)
    with CassetteReader(path, limits) as reader:
        (big,) = list(reader)
    assert big.response is not None and big.response.body is None and big.response.chunks is None
    stored = big.response.stored
    assert isinstance(stored, StoredBody)
    assert stored.size == 40 * len(piece)
    assert stored.sha256 == hashlib.sha256(piece * 40).hexdigest()
    digest, count = hashlib.sha256(), 0
    for chunk in stored.chunks():
        digest.update(chunk.data)
        assert chunk.offset_ms == float(count)
        count += 1
    assert count == 40 and digest.hexdigest() == stored.sha256

    # Copied into another cassette, it is streamed across, never held whole.
    copy = tmp_path / "copy.cassette"
    with CassetteWriter(copy, redactor=None) as writer:
        writer.append(big)
    with CassetteReader(copy, limits) as reader:
        (again,) = list(reader)
    assert again.response is not None and again.response.stored is not None
    assert again.response.stored.sha256 == stored.sha256


def test_a_recorder_killed_mid_stream_leaves_parts_that_are_skipped_then_repaired(
    tmp_path: Path,
) -> None:
    path = tmp_path / "killed.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(streamed([(0.0, b"done")]))
        unfinished = writer.open_stream()
        unfinished.write(b"half of an answer", 5.0)
        unfinished.write(b"and more", 6.0)
    with CassetteReader(path) as reader:
        items = list(reader)
        assert reader.orphan_parts == 2
    assert [i.id for i in items] == ["sse-1"]
    report = repair(path)
    assert report.changed and "2 parts of unfinished streams" in " ".join(report.dropped)
    assert read_cassette(path) == items
    assert b"half of an answer" not in path.read_bytes()


@pytest.mark.parametrize(
    ("parts", "ref", "fragment"),
    [
        ([0, 2], {"count": 2, "size": 2}, "out of order"),
        ([0], {"count": 2, "size": 1}, "names 2 parts"),
        ([0, 1], {"count": 2, "size": 2, "sha256": "00" * 32}, "do not match its sha256"),
    ],
    ids=["order", "count", "digest"],
)
def test_a_stream_that_does_not_add_up_is_an_error_naming_it(
    tmp_path: Path, parts: list[int], ref: dict[str, object], fragment: str
) -> None:
    path = tmp_path / "bad.cassette"
    objects = [make_header()]
    objects += [part_to_object(Part("s1", n, float(n), b"x")) for n in parts]
    response = {"status": 200, "reason": "", "http_version": "HTTP/1.1", "headers": []}
    response |= {"body": None, "trailers": None, "stream": {"id": "s1", "sha256": "", **ref}}
    request = {"method": "GET", "scheme": "http", "host": "a", "port": 80, "path": "/"}
    request |= {"query": [], "http_version": "HTTP/1.1", "headers": [], "body": b""}
    objects.append({"id": "i", "recorded_at": 1.0, "request": request, "response": response})
    path.write_bytes(b"".join(pack(o) for o in objects))
    with pytest.raises(CassetteFormatError, match=fragment):
        read_cassette(path)


def test_a_stored_body_whose_file_changed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "big.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(streamed([(0.0, b"a" * 100), (1.0, b"b" * 100)]))
    with CassetteReader(path, ReadLimits(max_held_stream_bytes=10)) as reader:
        (item,) = list(reader)
    assert item.response is not None and item.response.stored is not None
    path.write_bytes(b"\x00" * path.stat().st_size)
    with pytest.raises(CassetteError, match="changed"):
        list(item.response.stored.chunks())


# -- the reader stays hardened with the new records ----------------------------------------------

chunk_lists = st.lists(
    st.tuples(st.floats(0, 1e6, allow_nan=False), st.binary(max_size=64)), max_size=5
)
messages = st.lists(
    st.builds(
        WebSocketMessage,
        from_client=st.booleans(),
        is_text=st.booleans(),
        data=st.binary(max_size=64),
        offset_ms=st.floats(0, 1e6, allow_nan=False),
    ),
    max_size=5,
)


@st.composite
def stream_interactions(draw: st.DrawFn) -> Interaction:
    base = draw(interactions())
    pieces = draw(chunk_lists)
    if base.response is not None and pieces and draw(st.booleans()):
        chunks = tuple(Chunk(t, d) for t, d in pieces)
        response = base.response.__class__(
            base.response.status,
            base.response.reason,
            base.response.http_version,
            base.response.headers,
            b"".join(c.data for c in chunks),
            base.response.trailers,
            chunks,
        )
        base = base.__class__(**{**_fields(base), "response": response})
    if draw(st.booleans()):
        conversation_ = WebSocketConversation(
            tuple(draw(messages)),
            draw(st.none() | st.integers(1000, 4999)),
            draw(st.text(max_size=20)),
            draw(st.none() | st.booleans()),
        )
        base = base.__class__(**{**_fields(base), "websocket": conversation_})
    return base


def _fields(interaction: Interaction) -> dict[str, object]:
    return {name: getattr(interaction, name) for name in Interaction.__dataclass_fields__}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stream_interactions(), min_size=1, max_size=4))
def test_any_interaction_with_streams_round_trips(items: list[Interaction]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.cassette"
        with CassetteWriter(path, redactor=None) as writer:
            for item in items:
                writer.append(item)
        assert read_cassette(path) == items


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(stream_interactions(), min_size=1, max_size=3), st.data())
def test_any_damage_to_a_stream_cassette_reads_or_is_a_cassette_error(
    items: list[Interaction], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.cassette"
        with CassetteWriter(path, redactor=None) as writer:
            for item in items:
                writer.append(item)
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(raw)))
        path.write_bytes(bytes(raw[:cut]))
        limits = ReadLimits(
            max_object_bytes=1 << 20, max_bin_bytes=1 << 20, max_held_stream_bytes=128
        )
        try:
            for item in read_cassette(path, limits):
                for message in (item.request, item.response):
                    if message is not None and message.stored is not None:
                        list(message.stored.chunks())
        except CassetteError:
            pass
