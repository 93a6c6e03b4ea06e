"""Unit tests of the pure gRPC parts: framing, the cassette field, the wire decode, the proto diff rules."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("google.protobuf")

from baton.cassettes.codec import interaction_from_object, interaction_to_object
from baton.cassettes.errors import CassetteFormatError
from baton.cassettes.grpc_model import (
    GrpcCall,
    GrpcMessage,
    frame_messages,
    grpc_call_of,
    split_frames,
    status_from_headers,
)
from baton.cassettes.model import Chunk, Interaction, Request, Response
from baton.cassettes.protobuf_schema import compile_protos
from baton.cassettes.protobuf_wire import WireError, decode_wire, redact_wire
from baton.cassettes.reader import read_cassette
from baton.cassettes.writer import CassetteWriter
from baton.replay.comparison import DriftClass
from baton.replay.grpc_replay import describe_difference
from baton.replay.proto_diff import diff_descriptor_sets


def _call_interaction(call: GrpcCall | None, requests: tuple[GrpcMessage, ...]) -> Interaction:
    responses = call.responses if call is not None else ()
    return Interaction(
        id="a",
        request=Request(
            "POST",
            "http",
            "127.0.0.1",
            50051,
            "/shop.OrderService/List",
            http_version="HTTP/2.0",
            headers=(("content-type", "application/grpc"),),
            body=frame_messages(requests),
        ),
        response=Response(
            200,
            http_version="HTTP/2.0",
            headers=(("content-type", "application/grpc"),),
            body=frame_messages(responses),
            trailers=(("grpc-status", "5"), ("grpc-message", "order%2042 not found")),
        ),
        recorded_at=1.0,
        grpc=call,
    )


def test_frames_round_trip_and_a_cut_frame_is_named() -> None:
    messages = (
        GrpcMessage(b"\x08\x01"),
        GrpcMessage(b"", compressed=True),
        GrpcMessage(b"x" * 300),
    )
    body = frame_messages(messages)
    assert split_frames(body) == [(False, b"\x08\x01"), (True, b""), (False, b"x" * 300)]
    with pytest.raises(ValueError, match="says 300 bytes, 299 follow"):
        split_frames(body[:-1])


def test_the_status_comes_from_trailers_percent_decoded() -> None:
    status = status_from_headers((("grpc-status", "5"), ("grpc-message", "order%2042 not found")))
    assert status is not None
    assert (status.code, status.name, status.message) == (5, "NOT_FOUND", "order 42 not found")


def test_the_grpc_field_round_trips_through_a_cassette_and_old_readers_see_http(
    tmp_path: Path,
) -> None:
    requests = (GrpcMessage(b"\x08\x05", offset_ms=1.5, decoded={"count": 5}),)
    call = GrpcCall(
        "shop.OrderService",
        "List",
        requests,
        (GrpcMessage(b"\x0a\x01a", offset_ms=3.0, decoded={"id": "a"}),),
        schema="proto",
    )
    path = tmp_path / "calls.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(_call_interaction(call, requests))
    (read,) = read_cassette(path)
    assert read.grpc == call
    # A format-2 reader that knows nothing of the field: the same exchange, as HTTP/2.
    obj = interaction_to_object(read)
    del obj["grpc"]
    plain = interaction_from_object(msgpack.unpackb(msgpack.packb(obj)), "x")
    assert plain.grpc is None
    derived = grpc_call_of(plain)
    assert derived is not None
    assert [m.data for m in derived.responses] == [b"\x0a\x01a"]


def test_a_grpc_field_that_does_not_match_its_body_is_refused() -> None:
    requests = (GrpcMessage(b"\x08\x05"),)
    call = GrpcCall("shop.OrderService", "List", requests + requests)
    obj = interaction_to_object(_call_interaction(call, requests))
    with pytest.raises(CassetteFormatError, match=r"grpc\.request: 2 messages listed"):
        interaction_from_object(obj, "file: object 1")


def test_messages_of_a_streamed_body_are_dated_by_the_piece_that_completed_them() -> None:
    body = frame_messages((GrpcMessage(b"ab"), GrpcMessage(b"cd")))
    interaction = _call_interaction(None, ())
    response = interaction.response
    assert response is not None
    streamed = Response(
        200,
        http_version="HTTP/2.0",
        headers=response.headers,
        body=body,
        chunks=(Chunk(2.0, body[:7]), Chunk(9.0, body[7:])),
    )
    call = grpc_call_of(Interaction("b", interaction.request, streamed, 1.0))
    assert call is not None
    assert [(m.data, m.offset_ms) for m in call.responses] == [(b"ab", 2.0), (b"cd", 9.0)]


def test_the_wire_decode_guesses_nested_messages_text_and_repeats() -> None:
    nested = b"\x0a\x03abc\x10\x07"
    data = (
        b"\x08\x96\x01"
        + b"\x12"
        + bytes([len(nested)])
        + nested
        + b"\x18\x01\x18\x02"
        + b"\x22\x02\xff\xfe"
    )
    assert decode_wire(data) == {
        "1": 150,
        "2": {"1": "abc", "2": 7},
        "3": [1, 2],
        "4": {"bytes": "//4="},
    }
    with pytest.raises(WireError):
        decode_wire(b"\x0a\x05ab")


def test_wire_redaction_blanks_a_nested_field_and_keeps_the_rest() -> None:
    nested = b"\x0a\x06secret\x10\x07"
    data = b"\x0a\x02id\x12" + bytes([len(nested)]) + nested
    assert decode_wire(redact_wire(data, [2, 1])) == {"1": "id", "2": {"1": "[REDACTED]", "2": 7}}
    assert redact_wire(data, [9]) == data


def test_describe_difference_names_the_first_differing_field() -> None:
    recorded = {"id": "a", "items": [{"sku": "x"}, {"sku": "y"}]}
    got = {"id": "a", "items": [{"sku": "x"}, {"sku": "z"}]}
    assert describe_difference(recorded, got, "request[0]") == (
        "request[0].items[1].sku: recorded 'y', got 'z'"
    )
    assert describe_difference(recorded, recorded, "request[0]") is None


_BASE = """
syntax = "proto2";
package p;
message M {
  optional string name = 1;
  optional int32 count = 2;
  repeated string tags = 3;
  optional string note = 4;
  required int64 id = 5;
  optional string gone = 6;
  reserved 9;
}
message Req { optional string q = 1; }
service S {
  rpc Get(Req) returns (M);
  rpc Watch(Req) returns (stream M);
  rpc Old(Req) returns (M);
}
"""


def _schemas(tmp_path: Path, new: str) -> tuple[bytes, bytes]:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "s.proto").write_text(_BASE)
    (tmp_path / "new" / "s.proto").write_text(new)
    return (
        compile_protos([tmp_path / "old" / "s.proto"]),
        compile_protos([tmp_path / "new" / "s.proto"]),
    )


def test_proto_diff_rules(tmp_path: Path) -> None:
    new = (
        _BASE.replace("optional int32 count = 2;", "optional int64 count = 2;")
        .replace("repeated string tags = 3;", "optional string tags = 3;")
        .replace("optional string note = 4;", "optional double weight = 4;")
        .replace("required int64 id = 5;", "optional int64 id = 5;")
        .replace("optional string gone = 6;", "reserved 6;")
        .replace("reserved 9;", "reserved 9;\n  optional bool fresh = 10;")
        .replace("returns (stream M);", "returns (M);")
        .replace("  rpc Old(Req) returns (M);\n", "  rpc New(Req) returns (M);\n")
    )
    old_set, new_set = _schemas(tmp_path, new)
    found = {(c.kind, c.location): c.drift for c in diff_descriptor_sets(old_set, new_set).changes}
    assert found == {
        ("type_changed_compatible", "p.M.count (field 2)"): DriftClass.VALUE,
        ("cardinality_changed", "p.M.tags (field 3)"): DriftClass.BREAKING,
        ("field_number_reused", "p.M.note (field 4)"): DriftClass.BREAKING,
        ("required_changed", "p.M.id (field 5)"): DriftClass.BREAKING,
        ("field_removed_reserved", "p.M.gone (field 6)"): DriftClass.VALUE,
        ("field_added", "p.M.fresh (field 10)"): DriftClass.ADDITIVE,
        ("server_streaming_changed", "p.S/Watch"): DriftClass.BREAKING,
        ("method_removed", "p.S/Old"): DriftClass.BREAKING,
        ("method_added", "p.S/New"): DriftClass.ADDITIVE,
    }


def test_proto_diff_of_a_schema_with_itself_is_empty(tmp_path: Path) -> None:
    old_set, new_set = _schemas(tmp_path, _BASE)
    result = diff_descriptor_sets(old_set, new_set)
    assert result.changes == []
    assert result.render() == "no changes between the two schemas\n"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_the_wire_decode_reads_any_bytes_or_says_where_it_stops(data: bytes) -> None:
    try:
        form = decode_wire(data)
    except WireError as exc:
        assert "byte" in str(exc) or "field number 0" in str(exc)
    else:
        assert isinstance(form, dict)
        assert redact_wire(data, [1]) is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_split_frames_takes_any_bytes_or_raises_value_error(data: bytes) -> None:
    try:
        frames = split_frames(data)
    except ValueError:
        return
    assert frame_messages(tuple(GrpcMessage(d, c) for c, d in frames)) == data
