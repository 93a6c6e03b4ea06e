"""Protocol Buffers without a schema: the wire format read as field numbers and guesses.

When no ``.proto``, descriptor set or reflection answer says what a message
means, its bytes still say a lot: every field is a number, a wire type and a
value. ``decode_wire`` turns them into a JSON form keyed by field number
(``{"1": "abc", "2": [1, 2], "3": {"1": 7}}``) so show, match and diff work
on something readable. The guesses are the usual ones (mitmproxy's protobuf
view makes the same): a length-delimited value that parses whole as a
message is shown nested, else as text if it is printable UTF-8, else as
``{"bytes": base64}``. A fixed64/fixed32 is shown as its unsigned integer.
These are guesses — a string may look like a message — so a cassette marks
such forms ``schema: "wire"``; the wire bytes stay the truth.

``redact_wire`` blanks fields by a path of field numbers and re-encodes, for
redaction of a message nobody can decode properly.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["WireError", "decode_wire", "redact_wire"]

_MAX_DEPTH = 32

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = range(6)

REDACTED = b"[REDACTED]"


class WireError(ValueError):
    """The bytes are not a protobuf message (say where they stop making sense)."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise WireError(f"a varint runs past the end at byte {at}")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise WireError(f"a varint longer than 10 bytes at byte {at}")


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int, int, int, Any]]:
    """(number, wire type, start, end, raw value) of every field, in order."""
    out: list[tuple[int, int, int, int, Any]] = []
    at = 0
    while at < len(data):
        start = at
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {start}")
        value: Any
        if wire_type == VARINT:
            value, at = _varint(data, at)
        elif wire_type == FIXED64:
            if at + 8 > len(data):
                raise WireError(f"a fixed64 runs past the end at byte {at}")
            value, at = int.from_bytes(data[at : at + 8], "little"), at + 8
        elif wire_type == FIXED32:
            if at + 4 > len(data):
                raise WireError(f"a fixed32 runs past the end at byte {at}")
            value, at = int.from_bytes(data[at : at + 4], "little"), at + 4
        elif wire_type == LENGTH:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise WireError(f"a length-delimited field runs past the end at byte {at}")
            value, at = data[at : at + length], at + length
        else:
            raise WireError(f"wire type {wire_type} (groups are not read) at byte {start}")
        out.append((number, wire_type, start, at, value))
    return out


def _guess(value: bytes, depth: int) -> Any:
    if value and depth < _MAX_DEPTH:
        try:
            return _decode(value, depth + 1)
        except WireError:
            pass
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return text
    return {"bytes": base64.b64encode(value).decode("ascii")}


def _decode(data: bytes, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, wire_type, _start, _end, value in _fields(data):
        shown = _guess(value, depth) if wire_type == LENGTH else value
        key = str(number)
        if key in out:
            previous = out[key]
            if isinstance(previous, list) and getattr(previous, "_repeated", False):
                previous.append(shown)
            else:
                out[key] = _Repeated([previous, shown])
        else:
            out[key] = shown
    return {
        key: list(value) if isinstance(value, _Repeated) else value for key, value in out.items()
    }


class _Repeated(list[Any]):
    _repeated = True


def decode_wire(data: bytes) -> dict[str, Any]:
    """The JSON form of a message read without a schema (``WireError`` if it is not one)."""
    return _decode(data, 0)


def redact_wire(data: bytes, path: list[int]) -> bytes:
    """``data`` with every field at ``path`` (field numbers, outermost first) blanked.

    A length-delimited value becomes ``[REDACTED]``, a number 0; fields on the
    way down are re-encoded with their new lengths. A path that matches
    nothing returns the bytes unchanged.
    """
    if not path:
        return data
    out = bytearray()
    at = 0
    for number, wire_type, start, end, value in _fields(data):
        out += data[at:start]
        at = end
        if number != path[0]:
            out += data[start:end]
            continue
        key = _encode_varint((number << 3) | wire_type)
        if wire_type == LENGTH:
            inner = REDACTED if len(path) == 1 else _redact_nested(value, path[1:])
            out += key + _encode_varint(len(inner)) + inner
        elif len(path) == 1:
            width = {VARINT: 0, FIXED64: 8, FIXED32: 4}[wire_type]
            out += key + (b"\x00" * width if width else b"\x00")
        else:
            out += data[start:end]
    out += data[at:]
    return bytes(out)


def _redact_nested(value: bytes, path: list[int]) -> bytes:
    try:
        return redact_wire(value, path)
    except WireError:
        return value  # not a message after all: nothing below it to blank
