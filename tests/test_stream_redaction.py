"""Redaction of streamed bodies, piece by piece: what reaches the cassette whatever the cuts."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.redaction import RedactionRules, Redactor, stream_redaction

KEY = bytes(range(32))
TOKEN = "s3cr3t-token-0123456789"


def exchange(content_type: str, *, encoding: str | None = None) -> Interaction:
    headers = [("Content-Type", content_type)]
    if encoding:
        headers.append(("Content-Encoding", encoding))
    return Interaction(
        "x",
        Request(
            "GET", "http", "api.test", 80, "/feed", headers=(("Authorization", f"Bearer {TOKEN}"),)
        ),
        Response(200, headers=tuple(headers), body=None),
        0.0,
    )


def run(redactor: Redactor, interaction: Interaction, pieces: list[bytes]) -> tuple[bytes, object]:
    redaction = stream_redaction(redactor, interaction, "response")
    out = b"".join(redaction.feed(piece) for piece in pieces) + redaction.finish()
    return out, redaction


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({min(p, len(data)) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def placeholder(redactor: Redactor, secret: str) -> bytes:
    return redactor.placeholder(secret).encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 200), max_size=12))
def test_an_echoed_secret_is_scrubbed_wherever_the_pieces_are_cut(points: list[int]) -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    body = f"hello\nyou sent: Bearer {TOKEN}\nand again {TOKEN} bye\n".encode() * 2
    out, redaction = run(redactor, exchange("text/plain"), cut(body, points))
    assert TOKEN.encode() not in out
    assert out == body.replace(TOKEN.encode(), placeholder(redactor, TOKEN))
    assert redaction.changed and redaction.not_scrubbed is None  # type: ignore[attr-defined]


def test_a_body_without_secrets_passes_unchanged_piece_for_piece() -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    quiet = Interaction(
        "x",
        Request("GET", "http", "api.test", 80, "/big"),
        Response(200, headers=(("Content-Type", "application/octet-stream"),), body=None),
        0.0,
    )
    redaction = stream_redaction(redactor, quiet, "response")
    assert [redaction.feed(p) for p in (b"abc", b"def")] == [b"abc", b"def"]
    assert redaction.finish() == b"" and not redaction.changed


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=10))
def test_sse_json_fields_are_redacted_event_by_event(points: list[int]) -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    stream = (
        b'id: 1\nevent: tick\ndata: {"n": 1, "token": "tok-live-0001-abcdef"}\n\n'
        b'id: 2\ndata: {"n": 2, "note": "again tok-live-0001-abcdef"}\n\n'
        b"id: 3\r\ndata: plain text\r\n\r\n"
    )
    out, redaction = run(redactor, exchange("text/event-stream"), cut(stream, points))
    assert b"tok-live-0001-abcdef" not in out
    hidden = placeholder(redactor, "tok-live-0001-abcdef")
    events = out.split(b"\n\n")
    assert json.loads(events[0].split(b"data: ", 1)[1]) == {"n": 1, "token": hidden.decode()}
    assert hidden in events[1]  # an echo in a later event, scrubbed by the secret found earlier
    assert out.endswith(b"id: 3\r\ndata: plain text\r\n\r\n")
    assert redaction.changed and redaction.not_scrubbed is None  # type: ignore[attr-defined]


def test_an_sse_event_is_held_for_the_record_only_until_it_ends() -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    redaction = stream_redaction(redactor, exchange("text/event-stream"), "response")
    assert redaction.feed(b'data: {"a": 1}\n') == b""
    assert redaction.feed(b"\ndata: 2") == b'data: {"a": 1}\n\n'
    assert redaction.finish() == b"data: 2"


def test_a_json_download_naming_a_secret_field_is_tagged_not_scrubbed() -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    out, redaction = run(
        redactor, exchange("application/json"), [b'{"items": [{"pass', b'word": "hunter2"}]}']
    )
    assert out == b'{"items": [{"password": "hunter2"}]}'
    assert "field a rule redacts" in (redaction.not_scrubbed or "")  # type: ignore[attr-defined]


def test_a_json_download_without_secret_fields_is_not_tagged() -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    _, redaction = run(redactor, exchange("application/json"), [b'{"items": [1, 2, 3]}'])
    assert redaction.not_scrubbed is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_compressed_stream_is_tagged_and_written_as_it_came(encoding: str) -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    out, redaction = run(redactor, exchange("text/plain", encoding=encoding), [b"\x1f\x8b..."])
    assert out == b"\x1f\x8b..."
    assert encoding in (redaction.not_scrubbed or "")  # type: ignore[attr-defined]


def test_a_user_pattern_is_applied_across_piece_boundaries() -> None:
    redactor = Redactor(RedactionRules.build(patterns=[r"card=(\d{16})"]), KEY)
    quiet = Interaction(
        "x",
        Request("GET", "http", "api.test", 80, "/export"),
        Response(200, headers=(("Content-Type", "text/csv"),), body=None),
        0.0,
    )
    out, redaction = run(redactor, quiet, [b"a,card=12345678", b"90123456,b\n"])
    assert out == b"a,card=" + placeholder(redactor, "1234567890123456") + b",b\n"
    assert redaction.changed
