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

Layout 2 (this writer's) keeps the entries as columns, a block at a time, so
that opening is a bulk operation: offsets and lengths as packed integers,
each request's method, scheme, host and port (one table per block) and path,
a few facts the writer worked out (``PLAIN``: no query, no body, no header
a dynamic value could sit in; ``OFFERS``: the answer has an ETag, Location
or Set-Cookie header), the ``state`` tag, and the heads (rows) themselves,
compressed in pages of ``PAGE_ENTRIES`` and decoded only when an
interaction is asked for. Layout 1 (a list of entries) is still read.

This module packs and checks the record; cassettes/reader.py and
cassettes/writer.py decide when to read and write it.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from operator import add, le
from typing import Any

import msgpack

from baton.cassettes.codec import pack

__all__ = [
    "FACTS_VERSION",
    "INDEX_KEY",
    "INDEX_RECORD_PREFIX",
    "OFFERING_HEADERS",
    "OFFERS",
    "OF_LAYOUT_1",
    "PAGE_ENTRIES",
    "PLAIN",
    "ROW_FIELDS",
    "TRACE_HEADERS",
    "VALUE_FREE_HEADERS",
    "ColumnBlock",
    "IndexBuilder",
    "IndexEntry",
    "TrailingIndexError",
    "each_index_entry",
    "entry_for",
    "index_layout",
    "index_record_start",
    "is_index_record",
    "read_column_blocks",
    "read_trailing_index",
    "state_code",
    "stream_ids",
    "value_free_header",
]

INDEX_KEY = "index"
INDEX_LAYOUT = 2
"""The layout of the record's entries written now (columns); a reader reads layouts 1 and
2 and scans for any other."""
ENTRY_LIST_LAYOUT = 1
"""Layout 1: a list of ``[offset, length, head, parts]`` entries per block."""
OF_LAYOUT_1 = "of layout 1"
"""What ``read_column_blocks`` says of a layout-1 record (read it with ``each_index_entry``)."""

FACTS_VERSION = 1
"""What ``PLAIN`` and ``OFFERS`` mean (the header names below); a record whose facts have
another version is read with every fact off (each interaction then decoded at open)."""
PLAIN = 1
"""A fact: a row-form head whose request has no query, an empty body and only headers in
``VALUE_FREE_HEADERS`` (or ``sec-*``): its match key and dynamic-value checks need only
its method, scheme, host, port and path."""
OFFERS = 2
"""A fact: its answer has an ETag, Location or Set-Cookie header (a value a client may
send back)."""
PAGE_ENTRIES = 256
"""Heads are compressed this many to a page: asking for one decodes one page."""

TRACE_HEADERS = frozenset(
    {
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
    }
)
"""Trace context: never part of a match key (replay/dynamic_values.py re-exports it)."""

VALUE_FREE_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "accept-encoding",
        "accept-language",
        "connection",
        "user-agent",
        "transfer-encoding",
        "date",
    }
)
"""Request headers about the connection or the framing, never an id sent back
(replay/dynamic_values.py reads no value from them, nor from trace context or ``sec-*``)."""

OFFERING_HEADERS = frozenset({"etag", "location", "set-cookie"})
_LITTLE = sys.byteorder == "little"

_TAIL = b"\xa5start\xcf"  # fixstr "start", then a msgpack uint64
INDEX_RECORD_PREFIX = b"\x84\xa5index"
"""How every index record begins: a map of four entries, ``index`` first."""
TAIL_BYTES = len(_TAIL) + 8

_BLOCK_ENTRIES = 1 << 15
_BLOCK_BYTES = 8 << 20
"""A block is closed at this many entries or packed head bytes: its columns stay far
below the reader's limits on arrays and on what one block may inflate to."""
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


_Entry = tuple[int, int, bytes | None, list[list[int]], Any, Any, int, Any, Any]
"""What ``IndexBuilder`` keeps of one interaction (``entry_for``)."""


def entry_for(obj: dict[str, Any], offset: int, length: int, parts: list[list[int]]) -> _Entry:
    """What the index record lists of the interaction object ``obj`` written at ``offset``.

    ``parts``: ``[offset, length]`` of the part records of the streams it
    names, in file order. The head is the interaction as a row (or its map
    with the response's body left out), packed; None when the interaction is
    read whole at open, and then ``parts`` lists the part records it needs.
    """
    recorded_at = obj.get("recorded_at")
    if type(recorded_at) not in (float, int):
        recorded_at = None
    if not _read_whole(obj):
        response = obj.get("response")
        row = _row(obj)
        head: Any = row
        if head is None:
            head = (
                {**obj, "response": {**response, "body": None}} if type(response) is dict else obj
            )
        packed = pack(head)
        if len(packed) <= _HEAD_INLINE_LIMIT:
            if row is None:
                state = _state_code(obj.get("tags"))
                return (offset, length, packed, [], None, "", 0, state, recorded_at)
            request = obj["request"]
            facts = PLAIN if _plain_request(request) else 0
            if any(
                type(pair) is list and pair and str(pair[0]).lower() in OFFERING_HEADERS
                for pair in obj["response"].get("headers") or ()
            ):
                facts |= OFFERS
            kind = (request["method"], request["scheme"], request["host"], request["port"])
            return (
                offset,
                length,
                packed,
                [],
                kind,
                request["path"],
                facts,
                _state_code(obj.get("tags")),
                recorded_at,
            )
    return (offset, length, None, parts, None, "", 0, None, recorded_at)


def value_free_header(name: str) -> bool:
    """True for a request header no dynamic or generated value is ever read from."""
    lower = name.lower()
    return lower in VALUE_FREE_HEADERS or lower in TRACE_HEADERS or lower.startswith("sec-")


def state_code(tags: Any) -> Any:
    """The ``state`` column's item for an interaction's tags (``_state_code``)."""
    return _state_code(tags)


def _plain_request(request: dict[str, Any]) -> bool:
    """No query, an empty body, and no header a dynamic or generated value could sit in."""
    if request.get("query") or request.get("body") != b"":
        return False
    for pair in request.get("headers") or ():
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            return False
        if not value_free_header(pair[0]):
            return False
    return True


def _state_code(tags: Any) -> Any:
    """The ``state`` tag as replay/state.py's ``recorded_state`` reads it: nil (none or
    mangled), ``writes * 2 + write``, or ``[writes, write, session]`` when it names one."""
    tag = tags.get("state") if type(tags) is dict else None
    if not isinstance(tag, dict):
        return None
    writes = tag.get("writes")
    if not isinstance(writes, int) or isinstance(writes, bool) or writes < 0:
        return None
    session = tag.get("session", "")
    session = session if isinstance(session, str) else ""
    write = bool(tag.get("write"))
    return [writes, write, session] if session else writes * 2 + write


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


def _packed_integers(values: list[int]) -> bytes:
    """``values`` as little-endian unsigned 64-bit integers."""
    packed = array("Q", values)
    if not _LITTLE:
        packed.byteswap()
    return packed.tobytes()


def _integers(data: Any, count: int) -> array[int]:
    """The ``count`` little-endian unsigned 64-bit integers of ``data``; ``TrailingIndexError``."""
    if type(data) is not bytes or len(data) != 8 * count:
        raise TrailingIndexError("damaged (a column of integers)")
    values = array("Q")
    values.frombytes(data)
    if not _LITTLE:
        values.byteswap()
    return values


class IndexBuilder:
    """Collects the entries as interactions are written, compressed a block at a time.

    A recorder holds its index while it runs: entries are kept as columns and
    compressed (tens of bytes per interaction), not as objects.
    """

    def __init__(self) -> None:
        self.count = 0
        self._blocks: list[list[Any]] = []
        self._pending: list[_Entry] = []
        self._pending_bytes = 0

    def add(self, entry: _Entry) -> None:
        """Add one entry (``entry_for``), in file order."""
        self._pending.append(entry)
        self._pending_bytes += 64 if entry[2] is None else len(entry[2])
        self.count += 1
        if len(self._pending) >= _BLOCK_ENTRIES or self._pending_bytes >= _BLOCK_BYTES:
            self._close_block()

    def _close_block(self) -> None:
        if not self._pending:
            return
        entries, self._pending, self._pending_bytes = self._pending, [], 0
        kinds: dict[Any, int] = {}
        kind_column: list[int] = []
        rows_at: list[int] = []
        pages: list[bytes] = []
        page: list[bytes] = []
        page_bytes = 0
        whole: list[list[Any]] = []
        for number, entry in enumerate(entries):
            kind = entry[4]
            if kind is None:
                kind_column.append(0)
            else:
                kind_column.append(kinds.setdefault(kind, len(kinds)))
            if number and number % PAGE_ENTRIES == 0:
                pages.append(zlib.compress(b"".join(page), 1))
                page, page_bytes = [], 0
            rows_at.append(page_bytes)
            head = entry[2] if entry[2] is not None else b"\xc0"
            page.append(head)
            page_bytes += len(head)
            if entry[2] is None:
                whole.append([number, entry[3]])
        pages.append(zlib.compress(b"".join(page), 1))
        times = [entry[8] for entry in entries if entry[8] is not None]
        columns = {
            "n": len(entries),
            "at": _packed_integers([entry[0] for entry in entries]),
            "len": _packed_integers([entry[1] for entry in entries]),
            "kinds": [list(kind) for kind in kinds] or [["", "", "", 0]],
            "kind": kind_column,
            "path": [entry[5] for entry in entries],
            "facts_version": FACTS_VERSION,
            "facts": [entry[6] for entry in entries],
            "state": [entry[7] for entry in entries],
            "earliest": min(times) if len(times) == len(entries) else None,
            "whole": whole,
            "rows_at": _packed_integers(rows_at),
        }
        data = zlib.compress(pack(columns), 1)
        crc = zlib.crc32(data)
        for compressed in pages:
            crc = zlib.crc32(compressed, crc)
        self._blocks.append([crc, data, pages])

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


def _record(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> tuple[dict[str, Any], int]:
    """The index record that ends the file and where it starts, its outer fields checked."""
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
    if record.get(INDEX_KEY) not in (ENTRY_LIST_LAYOUT, INDEX_LAYOUT):
        raise TrailingIndexError(f"of another layout ({record.get(INDEX_KEY)!r})")
    count, blocks = record.get("count"), record.get("blocks")
    if record.get("start") != start or type(count) is not int or type(blocks) is not list:
        raise TrailingIndexError("damaged (its fields)")
    return record, start


def index_layout(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> int:
    """The layout of the index record that ends the file (``TrailingIndexError`` if none)."""
    try:
        record, _ = _record(pread, file_size, header_end, max_object_bytes, max_str_bytes)
    except TrailingIndexError:
        raise
    except Exception as exc:  # a hostile record must only ever mean "scan instead"
        raise TrailingIndexError(f"damaged ({type(exc).__name__})") from exc
    return int(record[INDEX_KEY])


def _inflated(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, _MAX_BLOCK_INFLATED)
    if inflater.unconsumed_tail or not inflater.eof:
        raise TrailingIndexError("damaged (a block inflates too far or is cut short)")
    return out


def _entries(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> Iterator[IndexEntry]:
    record, start = _record(pread, file_size, header_end, max_object_bytes, max_str_bytes)
    if record[INDEX_KEY] != ENTRY_LIST_LAYOUT:
        raise TrailingIndexError(f"of another layout ({record[INDEX_KEY]!r})")
    count, blocks = record["count"], record["blocks"]
    seen = 0
    last_end = header_end
    for block in blocks:
        if type(block) is not list or len(block) != 2 or type(block[1]) is not bytes:
            raise TrailingIndexError("damaged (a block)")
        if zlib.crc32(block[1]) != block[0]:
            raise TrailingIndexError("damaged (a block's CRC-32 differs)")
        entries = _unpack(_inflated(block[1]), max_object_bytes, max_str_bytes)
        if type(entries) is not list:
            raise TrailingIndexError("damaged (a block is not a list)")
        for raw in entries:
            entry = _entry(raw, last_end, start, header_end)
            last_end = entry.offset + entry.length
            seen += 1
            yield entry
    if seen != count:
        raise TrailingIndexError(f"damaged (it counts {count} interactions and lists {seen})")


@dataclass(slots=True)
class ColumnBlock:
    """One block of a layout-2 record, every column checked against the file; heads packed."""

    first: int
    """The number of its first interaction in the file (0-based)."""
    count: int
    offsets: array[int]
    lengths: array[int]
    kinds: list[tuple[str, str, str, int]]
    """Per interaction: (method, scheme, host, port); meaningful where ``PLAIN`` is set."""
    paths: list[str]
    """Per interaction: its request's path where ``PLAIN`` is set (else meaningless)."""
    facts: array[int] | list[int]
    states: list[Any]
    """``_state_code`` per interaction (decoded by the reader)."""
    earliest: float | None
    """The earliest ``recorded_at`` of its interactions (None: one had none)."""
    whole: dict[int, list[list[int]]]
    """Position in the block -> the part records of an interaction read whole at open."""
    rows_at: array[int]
    pages: list[bytes]
    """Compressed pages of packed heads, ``PAGE_ENTRIES`` to a page."""

    def page(self, number: int) -> bytes:
        """Page ``number``'s packed heads, inflated (``TrailingIndexError`` if damaged)."""
        return _inflated(self.pages[number])

    def head(self, page: bytes, position: int, max_object_bytes: int, max_str_bytes: int) -> Any:
        """The decoded head (row or map) at ``position``, from its inflated ``page``."""
        begin = self.rows_at[position]
        end = (
            self.rows_at[position + 1]
            if (position + 1) % PAGE_ENTRIES and position + 1 < self.count
            else len(page)
        )
        if not begin < end <= len(page):
            raise TrailingIndexError(f"damaged (the head of entry {position})")
        return _unpack(page[begin:end], max_object_bytes, max_str_bytes)


def read_column_blocks(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> list[ColumnBlock]:
    """The blocks of the layout-2 index record that ends the file, every check passed.

    Raises ``TrailingIndexError`` saying why the record cannot be used; never
    anything else. Heads stay compressed (checked by the CRC, decoded on demand).
    """
    try:
        return _column_blocks(pread, file_size, header_end, max_object_bytes, max_str_bytes)
    except TrailingIndexError:
        raise
    except Exception as exc:  # a hostile record must only ever mean "scan instead"
        raise TrailingIndexError(f"damaged ({type(exc).__name__})") from exc


_COLUMN_TYPES: dict[str, set[type]] = {
    "kind": {int},
    "path": {str},
    "facts": {int},
    "state": {int, list, type(None)},
}
"""What each column's items may be; checked in bulk (an ``array`` refuses any other item,
``str.join`` any item not a text)."""


def _column_blocks(
    pread: Any, file_size: int, header_end: int, max_object_bytes: int, max_str_bytes: int
) -> list[ColumnBlock]:
    record, start = _record(pread, file_size, header_end, max_object_bytes, max_str_bytes)
    if record[INDEX_KEY] == ENTRY_LIST_LAYOUT:
        raise TrailingIndexError(OF_LAYOUT_1)
    out: list[ColumnBlock] = []
    seen = 0
    last_end = header_end
    for block in record["blocks"]:
        if (
            type(block) is not list
            or len(block) != 3
            or type(block[1]) is not bytes
            or type(block[2]) is not list
            or not all(type(page) is bytes for page in block[2])
        ):
            raise TrailingIndexError("damaged (a block)")
        crc = zlib.crc32(block[1])
        for page in block[2]:
            crc = zlib.crc32(page, crc)
        if crc != block[0]:
            raise TrailingIndexError("damaged (a block's CRC-32 differs)")
        columns = _unpack(_inflated(block[1]), max_object_bytes, max_str_bytes)
        if type(columns) is not dict or type(columns.get("n")) is not int:
            raise TrailingIndexError("damaged (a block's columns)")
        count = columns["n"]
        offsets = _integers(columns.get("at"), count)
        lengths = _integers(columns.get("len"), count)
        rows_at = _integers(columns.get("rows_at"), count)
        for name in _COLUMN_TYPES:
            column = columns.get(name)
            if type(column) is not list or len(column) != count:
                raise TrailingIndexError(f"damaged (the {name} column)")
        try:
            kind = array("L", columns["kind"])  # unsigned: a float, a text or -1 is refused
            facts: array[int] | list[int] = array("B", columns["facts"])
            "".join(columns["path"])
        except (TypeError, OverflowError) as exc:
            raise TrailingIndexError("damaged (a column of a block)") from exc
        if not set(map(type, columns["state"])) <= _COLUMN_TYPES["state"]:
            raise TrailingIndexError("damaged (the state column)")
        kinds = columns.get("kinds")
        if (
            type(kinds) is not list
            or not kinds
            or not all(
                type(kind) is list
                and len(kind) == 4
                and all(type(text) is str for text in kind[:3])
                and type(kind[3]) is int
                for kind in kinds
            )
        ):
            raise TrailingIndexError("damaged (the kinds of a block)")
        if count and max(kind) >= len(kinds):
            raise TrailingIndexError("damaged (the kind column)")
        pages = block[2]
        if len(pages) != max(1, -(-count // PAGE_ENTRIES)):
            raise TrailingIndexError("damaged (the pages of a block)")
        if count:
            ends = list(map(add, offsets, lengths))
            if (
                min(lengths) <= 0
                or offsets[0] < last_end
                or ends[-1] > start
                or not all(map(le, ends, offsets[1:]))
            ):
                raise TrailingIndexError(f"damaged (the offsets of the block at {seen})")
            last_end = ends[-1]
        if columns.get("facts_version") != FACTS_VERSION:
            facts = [0] * count
        earliest = columns.get("earliest")
        if earliest is not None and type(earliest) not in (float, int):
            raise TrailingIndexError("damaged (the earliest time of a block)")
        whole: dict[int, list[list[int]]] = {}
        raw_whole = columns.get("whole")
        if type(raw_whole) is not list:
            raise TrailingIndexError("damaged (the whole column)")
        for item in raw_whole:
            if (
                type(item) is not list
                or len(item) != 2
                or type(item[0]) is not int
                or not 0 <= item[0] < count
                or type(item[1]) is not list
            ):
                raise TrailingIndexError("damaged (an entry read whole)")
            position, spans = item
            at = offsets[position]
            for span in spans:
                _check_part(span, header_end, at)
            whole[position] = spans
        table: list[tuple[str, str, str, int]] = [tuple(kind) for kind in kinds]
        out.append(
            ColumnBlock(
                seen,
                count,
                offsets,
                lengths,
                list(map(table.__getitem__, kind)),
                columns["path"],
                facts,
                columns["state"],
                earliest,
                whole,
                rows_at,
                pages,
            )
        )
        seen += count
    if seen != record["count"]:
        raise TrailingIndexError(
            f"damaged (it counts {record['count']} interactions and lists {seen})"
        )
    return out


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
            _check_part(span, header_end, offset)
            spans.append(span)
    return IndexEntry(offset, length, head, spans)


def _check_part(span: Any, header_end: int, entry_offset: int) -> None:
    """A part record's ``[offset, length]``: after the header and before its interaction."""
    if (
        type(span) is not list
        or len(span) != 2
        or type(span[0]) is not int
        or type(span[1]) is not int
        or span[1] <= 0
        or span[0] < header_end
        or span[0] + span[1] > entry_offset
    ):
        raise TrailingIndexError(f"damaged (a part of the entry at byte {entry_offset})")
