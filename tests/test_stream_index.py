"""Loading a cassette with a body too large to hold never reads that body.

The replay load path — the reader, ``ReplayOptions.load``, the ``Index`` and
its match keys, ``ReplayServer``'s serialise-once — must hold where a stored
body lies, not its bytes. Reading it is made to fail here, so any of them
touching it fails the test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import baton.cassettes.reader
from baton.cassettes.model import Chunk, Interaction, Request, Response
from baton.cassettes.writer import CassetteWriter
from baton.replay.index import Hit
from baton.replay.options import ReplayOptions
from baton.replay.server import ROUTE_HEADER, ReplayServer, RoutedReplayServer
from baton.replay.streaming import StreamedAnswer

MiB = 1 << 20
BIG = bytes(range(256)) * (20 * MiB // 256)  # above the 16 MiB a reader holds


def big_exchange() -> Interaction:
    pieces = tuple(Chunk(float(n), BIG[n * MiB : (n + 1) * MiB]) for n in range(20))
    return Interaction(
        "upload-1",
        Request(
            "PUT",
            "http",
            "files.test",
            80,
            "/blob",
            headers=(("Content-Type", "application/octet-stream"),),
            body=BIG,
            chunks=pieces,
        ),
        Response(
            200,
            "OK",
            headers=(
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(BIG))),
            ),
            body=BIG,
            chunks=pieces,
        ),
        0.0,
        duration_ms=25.0,
    )


def test_the_load_path_holds_offsets_not_the_stored_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cassette = tmp_path / "big.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(big_exchange())

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored body was read while loading")

    monkeypatch.setattr(baton.cassettes.reader, "read_stored_chunks", no_reading)
    index = ReplayOptions().load([cassette], address=False)
    (loaded,) = index.interactions
    assert loaded.request.stored is not None and loaded.request.body is None
    assert loaded.request.stored.sha256 == hashlib.sha256(BIG).hexdigest()
    server = ReplayServer(index)  # every answer serialised (or prepared) once, here

    # A live request with the same 20 MB body matches the stored one by its digest.
    live = Request(
        "PUT", "http", "127.0.0.1", 9000, "/blob",
        headers=(("Content-Type", "application/octet-stream"),), body=BIG,
    )  # fmt: skip
    answer = server.respond(live)
    assert isinstance(answer, StreamedAnswer)
    assert answer.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(BIG)}".encode() in answer.head
    assert index.hits == 1
    other = Request("PUT", "http", "127.0.0.1", 9000, "/blob", body=BIG[:-1] + b"x")
    assert not isinstance(server.respond(other), StreamedAnswer)
    assert len(index.misses) == 1


def test_the_routed_server_answers_the_interaction_its_header_names(tmp_path: Path) -> None:
    cassette = tmp_path / "two.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        for n in (1, 2):
            writer.append(
                Interaction(
                    f"i{n}",
                    Request("GET", "http", "api.test", 80, "/same"),
                    Response(200, "OK", body=f"answer {n}".encode()),
                    0.0,
                )
            )
    index = ReplayOptions().load([cassette], address=True)
    routed = RoutedReplayServer(index)
    asked = Request("GET", "http", "127.0.0.1", 1, "/same", headers=((ROUTE_HEADER, "1"),))
    found = routed.find(asked)
    assert isinstance(found, Hit) and found.interaction.id == "i2"
    assert routed.respond(asked).endswith(b"answer 2")  # type: ignore[union-attr]
    assert index.hits == 0  # the Replayer counted it when it chose it
    unnamed = routed.respond(Request("GET", "http", "127.0.0.1", 1, "/same"))
    assert isinstance(unnamed, bytes) and b"X-Baton-Miss: 1" in unnamed


@pytest.mark.parametrize(
    ("text", "size"),
    [("16MB", 16 * MiB), ("16MiB", 16 * MiB), ("16m", 16 * MiB), (" 512 kb ", 512 * 1024),
     ("1GB", 1 << 30), ("4096", 4096), ("0", 0)],
)  # fmt: skip
def test_stream_thresholds_read_as_mitmproxy_reads_sizes(text: str, size: int) -> None:
    from baton.proxy.stream_recording import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "16 TB", "-1MB", "1.5GB", "16iB"])
def test_a_size_that_is_not_one_is_refused_naming_it(text: str) -> None:
    from baton.proxy.stream_recording import parse_size

    with pytest.raises(ValueError, match="is not a size; write it like 16MB"):
        parse_size(text)
