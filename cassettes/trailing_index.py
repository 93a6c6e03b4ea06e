"""The trailing index record (format 3): where each interaction lies, and what places it.

A writer appends one index record when it closes a cassette. It lists, per
interaction in file order, its byte offset and length and what the replay
index needs to place it without decoding the rest (id, times, the request,
the tags); interactions carrying streams, WebSocket or gRPC messages, or a
request too large to repeat, are listed with the part records they use and
read whole at open instead. A reader that finds a valid index record at the
very end of the file reads it instead of every interaction, and leaves the
responses in the file until they are asked for.

The record ends in a fixed-width field, ``"start": uint64`` (the byte offset
where the record begins), so a reader finds it from the last 15 bytes of the
file. It is trusted only when everything agrees: the tail names a record that
ends exactly at the end of the file, each block's CRC-32 matches, every
offset lies between the header and the record, in order and without
overlap, and the counts add up. Anything else, including a record in the
middle of a file (something was appended after it), sends the reader back to
scanning, which skips index records; a damaged record never yields an
interaction. An entry only says where to look: what is read there is checked
against it (id and request) before it is used.

This module packs and checks the record; cassettes/reader.py and
cassettes/writer.py decide when to read and write it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from baton.cassettes.codec import pack

__all__ = [
    "INDEX_KEY",
    "INDEX_RECORD_PREFIX",
    "ROW_FIELDS",
    "IndexBuilder",
    "IndexEntry",
    "TrailingIndexError",
    "each_index_entry",
    "entry_for",
    "index_record_start",
    "is_index_record",
    "read_trailing_index",
    "stream_ids",
]

INDEX_KEY = "index"
INDEX_LAYOUT = 1
"""The layout of the record's entries; a reader that knows another layout scans instead."""

_TAIL = b"\xa5start\xcf"  # fixstr "start", then a msgpack uint64
INDEX_RECORD_PREFIX = b"\x84\xa5index"
"""How every index record begins: a map of four entries, ``index`` first."""
TAIL_BYTES = len(_TAIL) + 8

_BLOCK_ENTRIES = 1 << 15
_BLOCK_BYTES = 1 << 20
"""A block is closed at this many entries or packed bytes: it stays far below the
reader's limits on arrays and on what one block may inflate to."""
_MAX_BLOCK_INFLATED = 64 << 20

_HEAD_INLINE_LIMIT = 16 << 10
"""An interaction whose map without the response body packs larger than this is not
repeated in the index: it is read whole at open (large uploads are rare and few)."""


class TrailingIndexError(Exception):
    """The index record is absent, stale or damaged; the message says which. The reader scans."""


def is_index_record(obj: Any) -> bool:
    """True for a trailing index record (a map with an ``index`` key)."""
    return type(obj) is dict and INDEX_KEY in obj


def stream_ids(obj: dict[str, Any]) -> list[str]:
    """The ids of the streams an interaction object names (request, response, WebSocket)."""
    found = []
    for place in ("request", "response", "websocket"):
        holder = obj.get(place)
        stream = holder.get("stream") if type(holder) is dict else None
        if type(stream) is dict and type(stream.get("id")) is str:
            found.append(stream["id"])
    return found


def _read_whole(obj: dict[str, Any]) -> bool:
    """True when an interaction cannot be placed from its request alone."""
    if "websocket" in obj or "grpc" in obj:
        return True
    request, response = obj.get("request"), obj.get("response")
    return (type(request) is dict and "stream" in request) or (
        type(response) is dict and "stream" in response
    )


def entry_for(obj: dict[str, Any], offset: int, length: int, parts: list[list[int]]) -> bytes:
    """The packed index entry of the interaction object ``obj`` written at ``offset``.

    ``parts``: ``[offset, length]`` of the part records of the streams it
    names, in file order. An entry is a list ``[offset, length, head,
    parts]``: ``head`` is the interaction map with the response's body left
    out (nil), or nil when the interaction is read whole at open, and then
    ``parts`` lists the part records it needs (else nil).
    """
    if not _read_whole(obj):
        response = obj.get("response")
        head: Any = _row(obj)
        if head is None:
            head = (
                {**obj, "response": {**response, "body": None}} if type(response) is dict else obj
            )
        packed = pack([offset, length, head, None])
        if len(packed) <= _HEAD_INLINE_LIMIT:
            return packed
    return pack([offset, length, None, parts or None])


_ROW_KEYS = frozenset(("id", "recorded_at", "duration_ms", "request", "response", "error", "tags"))
_REQUEST_KEYS = ("method", "scheme", "host", "port", "path", "query", "http_version", "headers")
_RESPONSE_KEYS = ("status", "reason", "http_version", "headers", "trailers")
ROW_FIELDS = 18
"""A head row: ``id, recorded_at, duration_ms, tags``, the request's ``method, scheme,
host, port, path, query, http_version, headers, body``, the response's ``status,
reason, http_version, headers, trailers``."""


def _row(obj: dict[str, Any]) -> list[Any] | None:
    """The head of a plain answered interaction as a row (no keys to decode at open);
    None when any field is not of its common type (the map form then says it all)."""
    request, response = obj.get("request"), obj.get("response")
    if (
        type(request) is not dict
        or type(response) is not dict
        or obj.get("error") is not None
        or not _ROW_KEYS.issuperset(obj)
        or type(obj.get("id")) is not str
        or type(obj.get("recorded_at")) is not float
        or type(request.get("body")) is not bytes
        or type(request.get("port")) is not int
        or type(response.get("status")) is not int
    ):
        return None
    texts = [request.get(name) for name in ("method", "scheme", "host", "path", "http_version")]
    texts += [response.get("reason"), response.get("http_version")]
    if any(type(text) is not str for text in texts):
        return None
    return [
        obj["id"],
        obj["recorded_at"],
        obj.get("duration_ms"),
        obj.get("tags") or {},
        *(request.get(name) for name in _REQUEST_KEYS),
        request["body"],
        *(response.get(name) for name in _RESPONSE_KEYS),
    ]


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


class IndexBuilder:
    """Collects packed entries as interactions are written, compressed a block at a time.

    A recorder holds its index while it runs: entries are kept packed and
    compressed (tens of bytes per interaction), not as objects.
    """

    def __init__(self) -> None:
        self.count = 0
        self._blocks: list[list[Any]] = []
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def add(self, entry: bytes) -> None:
        """Add one packed entry (``entry_for``), in file order."""
        self._pending.append(entry)
        self._pending_bytes += len(entry)
        self.count += 1
        if len(self._pending) >= _BLOCK_ENTRIES or self._pending_bytes >= _BLOCK_BYTES:
            self._close_block()

    def _close_block(self) -> None:
        if not self._pending:
            return
        data = zlib.compress(_array_header(len(self._pending)) + b"".join(self._pending), 1)
        self._blocks.append([zlib.crc32(data), data])
        self._pending, self._pending_bytes = [], 0

    def record(self, start: int) -> bytes:
        """The packed index record, to be written at byte ``start`` as the file's last object."""
        self._close_block()
        body = pack(INDEX_KEY) + pack(INDEX_LAYOUT)
        body += pack("count") + pack(self.count)
        body += pack("blocks") + pack(self._blocks)
        return b"\x84" + body + _TAIL + start.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One interaction as the index record lists it (checked for shape, not yet decoded)."""

    offset: int
    length: int
    head: dict[str, Any] | list[Any] | None
    """The interaction map without its response body, or its row (``ROW_FIELDS``);
    None: read it whole at open."""
    parts: list[list[int]]
    """[offset, length] of the part records a whole read needs, in file order."""


def _unpack(data: bytes, max_bin: int, max_str: int) -> Any:
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        max_bin_len=max_bin,
        max_str_len=max_str,
        max_array_len=1 << 20,
        max_map_len=1 << 16,
        max_ext_len=0,
    )


def read_trailing_index(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> list[IndexEntry]:
    """The entries of the index record that ends the file, every check passed.

    ``pread(length, offset)`` reads the file. Raises ``TrailingIndexError``
    saying why the record cannot be used (absent, damaged); never anything else.
    """
    return list(each_index_entry(pread, file_size, header_end, max_object_bytes, max_str_bytes))


def each_index_entry(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> Iterator[IndexEntry]:
    """``read_trailing_index`` a block at a time: the caller must drop what it built
    from the entries if ``TrailingIndexError`` comes before the end."""
    try:
        yield from _entries(pread, file_size, header_end, max_object_bytes, max_str_bytes)
    except TrailingIndexError:
        raise
    except Exception as exc:  # a hostile record must only ever mean "scan instead"
        raise TrailingIndexError(f"damaged ({type(exc).__name__})") from exc


def index_record_start(pread: Any, file_size: int) -> int | None:
    """Where the file's last 15 bytes say an index record starts (not checked further); None."""
    if file_size < TAIL_BYTES:
        return None
    tail = pread(TAIL_BYTES, file_size - TAIL_BYTES)
    if len(tail) != TAIL_BYTES or tail[: len(_TAIL)] != _TAIL:
        return None
    return int.from_bytes(tail[len(_TAIL) :], "big")


def _entries(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> Iterator[IndexEntry]:
    if file_size < header_end + TAIL_BYTES:
        raise TrailingIndexError("absent")
    tail = pread(TAIL_BYTES, file_size - TAIL_BYTES)
    if len(tail) != TAIL_BYTES or tail[: len(_TAIL)] != _TAIL:
        raise TrailingIndexError("absent")
    start = int.from_bytes(tail[len(_TAIL) :], "big")
    if not header_end <= start <= file_size - TAIL_BYTES or file_size - start > max_object_bytes:
        raise TrailingIndexError(f"damaged (its start, byte {start}, is outside the file)")
    record = _unpack(pread(file_size - start, start), max_object_bytes, max_str_bytes)
    if not is_index_record(record):
        raise TrailingIndexError("damaged (not an index record)")
    if record.get(INDEX_KEY) != INDEX_LAYOUT:
        raise TrailingIndexError(f"of another layout ({record.get(INDEX_KEY)!r})")
    count, blocks = record.get("count"), record.get("blocks")
    if record.get("start") != start or type(count) is not int or type(blocks) is not list:
        raise TrailingIndexError("damaged (its fields)")
    seen = 0
    last_end = header_end
    for block in blocks:
        if type(block) is not list or len(block) != 2 or type(block[1]) is not bytes:
            raise TrailingIndexError("damaged (a block)")
        if zlib.crc32(block[1]) != block[0]:
            raise TrailingIndexError("damaged (a block's CRC-32 differs)")
        inflater = zlib.decompressobj()
        data = inflater.decompress(block[1], _MAX_BLOCK_INFLATED)
        if inflater.unconsumed_tail or not inflater.eof:
            raise TrailingIndexError("damaged (a block inflates too far or is cut short)")
        entries = _unpack(data, max_object_bytes, max_str_bytes)
        if type(entries) is not list:
            raise TrailingIndexError("damaged (a block is not a list)")
        for raw in entries:
            entry = _entry(raw, last_end, start, header_end)
            last_end = entry.offset + entry.length
            seen += 1
            yield entry
    if seen != count:
        raise TrailingIndexError(f"damaged (it counts {count} interactions and lists {seen})")


def _entry(raw: Any, last_end: int, start: int, header_end: int) -> IndexEntry:
    """One entry, its offsets checked against the file: after the previous, before the record."""
    if type(raw) is not list or len(raw) != 4:
        raise TrailingIndexError("damaged (an entry)")
    offset, length, head, parts = raw
    if (
        type(offset) is not int
        or type(length) is not int
        or length <= 0
        or offset < last_end
        or offset + length > start
        or (
            head is not None
            and not (type(head) is dict and type(head.get("id")) is str)
            and not (type(head) is list and len(head) == ROW_FIELDS)
        )
    ):
        raise TrailingIndexError(f"damaged (the entry at byte {offset!r})")
    spans: list[list[int]] = []
    if parts is not None:
        if type(parts) is not list or head is not None:
            raise TrailingIndexError(f"damaged (the parts of the entry at byte {offset})")
        for span in parts:
            if (
                type(span) is not list
                or len(span) != 2
                or type(span[0]) is not int
                or type(span[1]) is not int
                or span[1] <= 0
                or span[0] < header_end
                or span[0] + span[1] > offset
            ):
                raise TrailingIndexError(f"damaged (a part of the entry at byte {offset})")
            spans.append(span)
    return IndexEntry(offset, length, head, spans)
