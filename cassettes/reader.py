"""Read a cassette incrementally, treating it as untrusted input.

The file is parsed object by object with msgpack's streaming ``Unpacker``, so
a large cassette is never held in memory twice and ``baton show`` prints the
first interaction before the last one is read. Size limits bound what a
hostile file can make baton allocate.

A cassette whose recorder was killed mid-write ends in a torn object. That is
expected damage, not corruption: the reader stops before it, logs a warning
naming the byte offset, and records it in ``torn_at`` so that ``baton repair``
can cut it off. Anything else that is wrong raises ``CassetteFormatError``.

Format 2's part records (pieces of streamed bodies, WebSocket messages) come
before the interaction that closes their stream. The reader gathers each
stream's parts as it meets them; when the interaction arrives, a body small
enough to hold (``ReadLimits.max_held_stream_bytes``) becomes ``chunks`` in
memory, a larger one a ``StoredBody`` that remembers only where its parts
lie, so a 1 GB body is never held. Parts whose interaction never came (a
recorder killed mid-stream) are counted in ``orphan_parts`` and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, overload

import msgpack

from baton.cassettes.codec import (
    _EARLIEST_TIMESTAMP,
    _LATEST_TIMESTAMP,
    Part,
    StreamRef,
    _fast_pairs,
    _shared,
    check_header,
    interaction_from_object,
    is_part,
    part_from_object,
)
from baton.cassettes.errors import CassetteError, CassetteFormatError
from baton.cassettes.model import (
    Chunk,
    Interaction,
    LazyResponse,
    Request,
    StoredBody,
    WebSocketMessage,
)
from baton.cassettes.trailing_index import (
    INDEX_RECORD_PREFIX,
    OF_LAYOUT_1,
    OFFERING_HEADERS,
    OFFERS,
    PAGE_ENTRIES,
    PLAIN,
    ColumnBlock,
    IndexEntry,
    TrailingIndexError,
    each_index_entry,
    index_record_start,
    is_index_record,
    read_column_blocks,
    state_code,
    value_free_header,
)

__all__ = [
    "CassetteReader",
    "InteractionTable",
    "LazyCassette",
    "RawObject",
    "ReadLimits",
    "load_indexed",
    "load_lazily",
    "read_cassette",
    "read_stored_chunks",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Upper bounds on what one cassette object may make the reader allocate.

    The defaults admit bodies of hundreds of megabytes (a real recording can
    hold a large download) while refusing the multi-gigabyte lengths a
    corrupted or hostile length prefix would claim.
    """

    max_object_bytes: int = 1 << 30
    max_bin_bytes: int = 1 << 30
    max_str_bytes: int = 64 << 20
    max_array_len: int = 1 << 20
    max_map_len: int = 1 << 16
    max_held_stream_bytes: int = 16 << 20
    """A streamed body up to this size is held as chunks; a larger one stays in the file."""
    max_open_streams: int = 1 << 16
    """Streams whose parts may be waiting for their interaction at one time."""


@dataclass(frozen=True, slots=True)
class RawObject:
    """One decoded msgpack object of the stream and where it lies in the file."""

    number: int
    offset: int
    end: int
    value: Any


@dataclass
class _Gathered:
    """The parts of one stream met so far: where each lies, and their bytes while they are few."""

    spans: list[tuple[int, int, float]] = field(default_factory=list)
    parts: list[Part] | None = field(default_factory=list)
    size: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)


class _Streams:
    """The reader's side of ``StreamResolver``: gathered parts, handed over by stream id."""

    def __init__(self, path: Path, limits: ReadLimits) -> None:
        self.path = path
        self.limits = limits
        self.open: dict[str, _Gathered] = {}

    def add(self, part: Part, offset: int, end: int, where: str) -> None:
        gathered = self.open.get(part.stream)
        if gathered is None:
            if len(self.open) >= self.limits.max_open_streams:
                raise CassetteFormatError(f"{where}: more than {len(self.open)} open streams")
            gathered = self.open[part.stream] = _Gathered()
        if part.seq != len(gathered.spans):
            raise CassetteFormatError(
                f"{where}: part {part.seq} of stream {part.stream!r} out of order "
                f"(expected {len(gathered.spans)})"
            )
        gathered.spans.append((offset, end - offset, part.offset_ms))
        gathered.size += len(part.data)
        gathered.digest.update(part.data)
        if gathered.parts is not None:
            if gathered.size > self.limits.max_held_stream_bytes:
                gathered.parts = None  # too big to hold: keep where the parts are, not their bytes
            else:
                gathered.parts.append(part)

    def _take(self, ref: StreamRef, where: str) -> _Gathered:
        gathered = self.open.pop(ref.id, None) or _Gathered()
        if len(gathered.spans) != ref.count or gathered.size != ref.size:
            raise CassetteFormatError(
                f"{where}: stream {ref.id!r} names {ref.count} parts ({ref.size} bytes), "
                f"the file holds {len(gathered.spans)} ({gathered.size} bytes) before it"
            )
        if ref.sha256 and gathered.digest.hexdigest() != ref.sha256:
            raise CassetteFormatError(
                f"{where}: stream {ref.id!r}: its parts do not match its sha256"
            )
        return gathered

    def body(self, ref: StreamRef, where: str) -> tuple[Chunk, ...] | StoredBody:
        gathered = self._take(ref, where)
        if gathered.parts is None:
            return StoredBody(
                str(self.path), tuple(gathered.spans), gathered.size, gathered.digest.hexdigest()
            )
        return tuple(Chunk(p.offset_ms, p.data) for p in gathered.parts)

    def messages(self, ref: StreamRef, where: str) -> tuple[WebSocketMessage, ...]:
        gathered = self._take(ref, where)
        if gathered.parts is None:
            raise CassetteFormatError(
                f"{where}: WebSocket messages of stream {ref.id!r} exceed "
                f"{self.limits.max_held_stream_bytes} bytes"
            )
        return tuple(
            WebSocketMessage(bool(p.from_client), bool(p.is_text), p.data, p.offset_ms)
            for p in gathered.parts
        )


class CassetteReader:
    """Iterate over the interactions of a cassette file.

    Use as a context manager or call ``close()``. ``header`` is read and
    checked on construction, so a file that is not a cassette fails at once.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        limits: ReadLimits | None = None,
        *,
        warn_torn: bool = True,
    ) -> None:
        """Open ``path``; ``warn_torn=False`` for callers that report ``torn_at`` themselves."""
        self.path = Path(path)
        self._warn_torn = warn_torn
        self.limits = limits or ReadLimits()
        self.torn_at: int | None = None
        """Byte offset of a torn last object, once iteration has reached it."""
        self.orphan_parts = 0
        """Parts of streams no interaction closed (a recorder killed mid-stream), once read."""
        self.file_size = 0
        self.trailing_index_at: int | None = None
        """Byte offset of an index record that was the last object read (format 3), if any."""
        self.failed_at: int | None = None
        """Byte offset of the object that was not valid msgpack, once met."""
        self.stale_index_at: int | None = None
        """Byte offset of an index record that more objects followed (stale), once read."""
        try:
            self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError as exc:
            raise CassetteError(f"{self.path}: no such file") from exc
        except IsADirectoryError as exc:
            raise CassetteError(f"{self.path}: is a directory, not a cassette") from exc
        except OSError as exc:
            raise CassetteError(f"{self.path}: cannot open: {exc.strerror}") from exc
        self._unpacker = self._make_unpacker()
        self._count = 0
        try:
            self.header = self._read_header()
            self.header_end = self._unpacker.tell()
            """Byte offset where the first interaction starts."""
        except BaseException:
            self.close()
            raise

    def _make_unpacker(self) -> msgpack.Unpacker:
        limits = self.limits
        return msgpack.Unpacker(
            self._file,
            read_size=min(1 << 16, limits.max_object_bytes),
            max_buffer_size=limits.max_object_bytes,
            max_bin_len=limits.max_bin_bytes,
            max_str_len=limits.max_str_bytes,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
            raw=False,
            strict_map_key=True,
        )

    @property
    def position(self) -> int:
        """Byte offset up to which the file has been parsed."""
        return int(self._unpacker.tell())

    @property
    def version(self) -> int:
        """The format version named in the header."""
        return int(self.header["version"])

    @property
    def meta(self) -> dict[str, Any]:
        """The free ``meta`` map of the header."""
        return dict(self.header.get("meta") or {})

    def _read_header(self) -> dict[str, Any]:
        self.file_size = os.fstat(self._file.fileno()).st_size
        if self.file_size == 0:
            raise CassetteFormatError(f"{self.path}: empty file, not a cassette")
        try:
            obj = self._unpacker.unpack()
        except msgpack.OutOfData as exc:
            raise CassetteFormatError(
                f"{self.path}: the header is incomplete ({self.file_size} bytes): "
                "not a cassette, or its recorder stopped before writing anything"
            ) from exc
        except Exception as exc:
            raise CassetteFormatError(
                f"{self.path}: not a baton cassette (the header is not valid msgpack: "
                f"{type(exc).__name__})"
            ) from exc
        return check_header(obj, str(self.path))

    def objects(self) -> Iterator[RawObject]:
        """Yield the raw objects after the header, with their byte offsets.

        Index records (format 3) are not yielded: they say where the others
        are and are rebuilt by every writer. Stops quietly at a torn last object (setting ``torn_at``) and raises
        ``CassetteFormatError`` at bytes that are not msgpack at all.
        """
        while True:
            offset = self._unpacker.tell()
            try:
                value = self._unpacker.unpack()
            except msgpack.OutOfData:
                self.file_size = os.fstat(self._file.fileno()).st_size
                if offset < self.file_size:
                    self.torn_at = offset
                    if self._warn_torn:
                        logger.warning(
                            "%s: torn object at byte %d (%d bytes) skipped; "
                            "`baton repair %s` removes it",
                            self.path,
                            offset,
                            self.file_size - offset,
                            self.path,
                        )
                return
            except Exception as exc:
                self.failed_at = offset
                # msgpack's exceptions often have empty messages: name the type.
                detail = str(exc) or "malformed data"
                raise CassetteFormatError(
                    f"{self.path}: interaction {self._count + 1} at byte {offset}: "
                    f"not valid msgpack ({type(exc).__name__}: {detail})"
                ) from exc
            if is_index_record(value):
                # A writer's trailing index (format 3); one in the middle of the file is stale.
                self.trailing_index_at = offset
                continue
            if self.trailing_index_at is not None:
                self.stale_index_at, self.trailing_index_at = self.trailing_index_at, None
            self._count += 1
            yield RawObject(self._count, offset, self._unpacker.tell(), value)

    def __iter__(self) -> Iterator[Interaction]:
        version = self.version
        streams = _Streams(self.path, self.limits)
        for raw in self.objects():
            where = f"{self.path}: object {raw.number} at byte {raw.offset}"
            if is_part(raw.value):
                streams.add(part_from_object(raw.value, where), raw.offset, raw.end, where)
                continue
            yield interaction_from_object(
                raw.value,
                f"{self.path}: interaction {raw.number} at byte {raw.offset}",
                version,
                streams,
            )
        self.orphan_parts = sum(len(g.spans) for g in streams.open.values())
        if self.orphan_parts and self._warn_torn:
            logger.warning(
                "%s: %d parts of unfinished streams skipped (a recorder stopped mid-stream); "
                "`baton repair %s` removes them",
                self.path,
                self.orphan_parts,
                self.path,
            )

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()

    def __enter__(self) -> CassetteReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_stored_chunks(stored: StoredBody, limits: ReadLimits | None = None) -> Iterator[Chunk]:
    """The pieces of a body left in its cassette, read one record at a time.

    Only one piece is in memory at once. The file must still hold what was
    read when the ``StoredBody`` was made: a changed file is a ``CassetteError``.
    """
    limits = limits or ReadLimits()
    try:
        handle = open(stored.path, "rb")  # noqa: SIM115 - closed below, also when abandoned
    except OSError as exc:
        raise CassetteError(f"{stored.path}: cannot open: {exc.strerror}") from exc
    try:
        for offset, length, _ in stored.spans:
            handle.seek(offset)
            record = handle.read(length)
            try:
                value = msgpack.unpackb(
                    record,
                    raw=False,
                    max_bin_len=limits.max_bin_bytes,
                    max_str_len=limits.max_str_bytes,
                    max_ext_len=0,
                )
                part = part_from_object(value, f"{stored.path}: byte {offset}")
            except CassetteFormatError:
                raise
            except Exception as exc:
                raise CassetteError(
                    f"{stored.path}: the part at byte {offset} is gone or changed since it was "
                    f"read ({type(exc).__name__}); was the cassette rewritten?"
                ) from exc
            yield Chunk(part.offset_ms, part.data)
    finally:
        handle.close()


def read_cassette(
    path: str | os.PathLike[str], limits: ReadLimits | None = None
) -> list[Interaction]:
    """Read every complete interaction of a cassette into a list."""
    with CassetteReader(path, limits) as reader:
        return list(reader)


class _FileAnswers:
    """Reads the bodies of a cassette's ``LazyResponse``s back by offset (``os.pread``).

    It keeps its own descriptor of the file that was opened, so a cassette
    replaced on disk meanwhile (repaired, re-recorded) still answers from
    the bytes that were indexed. pread rather than mmap: a file cut shorter
    under an mmap kills the process with SIGBUS; pread returns short.
    """

    def __init__(self, path: Path, fd: int, version: int, limits: ReadLimits) -> None:
        self.path = path
        self.version = version
        self.limits = limits
        self._fd = fd

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def pread(self, length: int, offset: int) -> bytes:
        """``length`` bytes of the file at ``offset`` (fewer at its end)."""
        return os.pread(self._fd, length, offset)

    def read_object(self, offset: int, length: int, what: str) -> Any:
        """The one msgpack object at ``offset``, exactly ``length`` bytes long."""
        limits = self.limits
        try:
            return msgpack.unpackb(
                os.pread(self._fd, length, offset),
                raw=False,
                strict_map_key=True,
                max_bin_len=limits.max_bin_bytes,
                max_str_len=limits.max_str_bytes,
                max_array_len=limits.max_array_len,
                max_map_len=limits.max_map_len,
                max_ext_len=0,
            )
        except Exception as exc:
            raise CassetteError(
                f"{self.path}: {what} at byte {offset} cannot be read back "
                f"({type(exc).__name__}); was the cassette changed since it was opened?"
            ) from exc

    def interaction(self, identity: str, offset: int, length: int) -> Interaction:
        """The whole interaction at ``offset``, which must be the one called ``identity``."""
        where = f"{self.path}: interaction {identity!r} at byte {offset}"
        obj = self.read_object(offset, length, f"interaction {identity!r}")
        if type(obj) is not dict or obj.get("id") != identity:
            raise CassetteError(
                f"{where}: the file holds another object there; "
                "was the cassette changed since it was opened?"
            )
        return interaction_from_object(obj, where, self.version)

    def body(self, response: LazyResponse) -> bytes | None:
        """The body of ``response``, read from its interaction's record and checked."""
        identity, offset, length = response.location
        full = self.interaction(identity, offset, length).response
        if full is None or (full.status, full.reason, full.headers, full.trailers) != (
            response.status,
            response.reason,
            response.headers,
            response.trailers,
        ):
            raise CassetteError(
                f"{self.path}: interaction {identity!r} at byte {offset}: its response differs "
                "from the one indexed; was the cassette changed since it was opened?"
            )
        return full.body


@dataclass
class LazyCassette:
    """A cassette opened for replay: its interactions, their response bodies left in the file."""

    path: Path
    header: dict[str, Any]
    interactions: list[Interaction]
    """Plain interactions carry a ``LazyResponse``; streams and messages are read whole."""
    source: str
    """``"index"`` (its trailing index record was used) or ``"scan"`` (every object read)."""
    why_scanned: str | None = None
    """Why the index record was not used: ``absent``, ``stale (...)``, ``damaged (...)``."""
    torn_at: int | None = None
    orphan_parts: int = 0


def _plain(interaction: Interaction) -> bool:
    """True when its response body can be left in the file (no streams, no messages)."""
    request, response = interaction.request, interaction.response
    return (
        response is not None
        and response.chunks is None
        and response.stored is None
        and request.chunks is None
        and request.stored is None
        and interaction.websocket is None
        and interaction.grpc is None
    )


def _with_lazy_body(
    interaction: Interaction, answers: _FileAnswers, offset: int, length: int
) -> Interaction:
    """``interaction`` (just built, not yet shared) with its response body left in the file."""
    assert interaction.response is not None
    lazy = LazyResponse.placed(interaction.response, answers, interaction.id, offset, length)
    # A fresh value no one else holds yet: setting the field beats a copy per interaction.
    object.__setattr__(interaction, "response", lazy)
    return interaction


def _row_interaction(
    row: list[Any], answers: _FileAnswers, offset: int, length: int, where: str
) -> Interaction:
    """The interaction a head row describes (``trailing_index.ROW_FIELDS``), every type checked."""
    (
        identity,
        recorded_at,
        duration_ms,
        tags,
        method,
        scheme,
        host,
        port,
        path,
        query,
        http_version,
        request_headers,
        request_body,
        status,
        reason,
        response_version,
        response_headers,
        trailers,
    ) = row
    query_pairs = _fast_pairs(query)
    request_pairs = _fast_pairs(request_headers)
    response_pairs = _fast_pairs(response_headers)
    trailer_pairs = None if trailers is None else _fast_pairs(trailers)
    if (
        type(identity) is not str
        or type(method) is not str
        or type(scheme) is not str
        or type(host) is not str
        or type(path) is not str
        or type(http_version) is not str
        or type(reason) is not str
        or type(response_version) is not str
        or type(port) is not int
        or type(status) is not int
        or type(request_body) is not bytes
        or type(tags) is not dict
        or type(recorded_at) is not float
        or not _EARLIEST_TIMESTAMP <= recorded_at <= _LATEST_TIMESTAMP
        or (duration_ms is not None and type(duration_ms) not in (float, int))
        or query_pairs is None
        or request_pairs is None
        or response_pairs is None
        or (trailers is not None and trailer_pairs is None)
    ):
        raise CassetteFormatError(f"{where}: a field of its head row has the wrong type")
    return Interaction(
        identity,
        Request(
            _shared(method),
            _shared(scheme),
            _shared(host),
            port,
            path,
            query_pairs,
            _shared(http_version),
            request_pairs,
            request_body,
        ),
        LazyResponse.unread(
            status,
            _shared(reason),
            _shared(response_version),
            response_pairs,
            trailer_pairs,
            answers,
            identity,
            offset,
            length,
        ),
        recorded_at,
        None if duration_ms is None else float(duration_ms),
        None,
        tags,
    )


def _head_interaction(
    head: Any, answers: _FileAnswers, offset: int, length: int, where: str
) -> Interaction:
    """The interaction an index entry's head (a row or a map) describes, body left in the file."""
    if type(head) is list:
        return _row_interaction(head, answers, offset, length, where)
    interaction = interaction_from_object(head, where, answers.version)
    if interaction.response is None:  # an upstream error: nothing left in the file
        return interaction
    if _plain(interaction):
        return _with_lazy_body(interaction, answers, offset, length)
    raise CassetteFormatError(f"{where}: streams in an entry read lazily")


def _read_whole(
    answers: _FileAnswers, offset: int, length: int, parts: Iterable[list[int]], where: str
) -> Interaction:
    """The interaction at ``offset`` read in full, with the part records it names."""
    streams = _Streams(answers.path, answers.limits)
    for part_at, part_length in parts:
        value = answers.read_object(part_at, part_length, "a part")
        streams.add(part_from_object(value, where), part_at, part_at + part_length, where)
    obj = answers.read_object(offset, length, "an interaction")
    if type(obj) is not dict:
        raise CassetteFormatError(f"{where}: the file holds no interaction there")
    return interaction_from_object(obj, where, answers.version, streams)


def _from_entries(entries: Iterable[IndexEntry], answers: _FileAnswers) -> list[Interaction]:
    """The interactions a layout-1 index record lists; ``CassetteError`` or
    ``TrailingIndexError`` when an entry does not hold (entries come a block at a time:
    the raw maps of one block are in memory at once, not the whole record's)."""
    out: list[Interaction] = []
    append = out.append
    path = answers.path
    for entry in entries:
        where = f"{path}: index entry for byte {entry.offset}"
        if entry.head is not None:
            append(_head_interaction(entry.head, answers, entry.offset, entry.length, where))
        else:
            append(_read_whole(answers, entry.offset, entry.length, entry.parts, where))
    return out


_PAGES_KEPT = 8
"""Inflated pages of heads an ``InteractionTable`` keeps (reading in order inflates each once)."""


class InteractionTable(Sequence[Interaction]):
    """The interactions of cassettes opened for replay, each built when first asked for.

    From a layout-2 index record (cassettes/trailing_index.py) opening costs
    its columns: ``kinds`` (method, scheme, host, port), ``paths``, ``facts``
    and ``states`` per interaction, which is what the replay index needs to
    place a ``PLAIN`` one without building it. ``table[n]`` builds
    interaction ``n`` from its head (checked against its columns), once; its
    response body stays in the file (``LazyResponse``). A cassette without
    such a record is a table of interactions already built, every fact off.
    """

    def __init__(self) -> None:
        self.kinds: list[tuple[str, str, str, int]] = []
        """Per interaction: its request's method, scheme, host, port where ``PLAIN`` is set."""
        self.paths: list[str] = []
        self.facts: list[int] = []
        self.states: list[Any] = []
        """The ``state`` tag as the index record codes it (trailing_index ``_state_code``)."""
        self.earliest: float | None = None
        """The earliest ``recorded_at`` when the records say (else None)."""
        self._count = 0
        self._built: dict[int, Interaction] = {}
        self._starts: list[int] = []
        self._blocks: list[tuple[ColumnBlock, _FileAnswers]] = []
        self._pages: dict[tuple[int, int], bytes] = {}
        self._added: list[Interaction] = []

    @classmethod
    def of_list(cls, interactions: Iterable[Interaction]) -> InteractionTable:
        """A table of interactions already built, with the facts a writer would have
        recorded for them (a scanned cassette then indexes as fast as a recorded one)."""
        table = cls()
        built = list(interactions)
        table._count = len(built)
        table._built = dict(enumerate(built))
        blank = ("", "", "", 0)
        for interaction in built:
            request, response = interaction.request, interaction.response
            plain = (
                response is not None
                and not request.query
                and request.body == b""
                and request.chunks is None
                and request.stored is None
                and response.chunks is None
                and response.stored is None
                and interaction.websocket is None
                and interaction.grpc is None
                and all(value_free_header(name) for name, _ in request.headers)
            )
            if not plain:
                table.kinds.append(blank)
                table.paths.append("")
                table.facts.append(0)
                table.states.append(None)
                continue
            assert response is not None
            table.kinds.append((request.method, request.scheme, request.host, request.port))
            table.paths.append(request.path)
            offers = any(name.lower() in OFFERING_HEADERS for name, _ in response.headers)
            table.facts.append(PLAIN | OFFERS if offers else PLAIN)
            table.states.append(state_code(interaction.tags))
        table.earliest = min((i.recorded_at for i in built), default=None)
        return table

    @classmethod
    def _of_blocks(cls, blocks: list[ColumnBlock], answers: _FileAnswers) -> InteractionTable:
        table = cls()
        earliest: list[float | None] = []
        for block in blocks:
            table._starts.append(block.first)
            table._blocks.append((block, answers))
            table.kinds += block.kinds
            table.paths += block.paths
            table.facts += block.facts
            table.states += block.states
            earliest.append(block.earliest)
            for position, parts in block.whole.items():
                offset, length = block.offsets[position], block.lengths[position]
                where = f"{answers.path}: index entry for byte {offset}"
                table._built[block.first + position] = _read_whole(
                    answers, offset, length, parts, where
                )
        table._count = len(table.facts)
        if earliest and None not in earliest:
            table.earliest = min(e for e in earliest if e is not None)
        return table

    @classmethod
    def joined(cls, tables: Sequence[InteractionTable]) -> InteractionTable:
        """One table of several cassettes' interactions, in the order given."""
        if len(tables) == 1:
            return tables[0]
        out = cls()
        earliest = []
        for table in tables:
            if table._added:
                raise ValueError("a table that grew cannot be joined")
            base = out._count
            out.kinds += table.kinds
            out.paths += table.paths
            out.facts += table.facts
            out.states += table.states
            out._built.update({base + n: i for n, i in table._built.items()})
            out._starts += [base + start for start in table._starts]
            out._blocks += table._blocks
            out._count += table._count
            earliest.append(table.earliest)
        if earliest and None not in earliest:
            out.earliest = min(e for e in earliest if e is not None)
        return out

    def __len__(self) -> int:
        return self._count + len(self._added)

    @overload
    def __getitem__(self, number: int) -> Interaction: ...

    @overload
    def __getitem__(self, number: slice) -> list[Interaction]: ...

    def __getitem__(self, number: int | slice) -> Interaction | list[Interaction]:
        if isinstance(number, slice):
            return [self[n] for n in range(*number.indices(len(self)))]
        if number < 0:
            number += len(self)
        if not 0 <= number < len(self):
            raise IndexError("interaction number out of range")
        if number >= self._count:
            return self._added[number - self._count]
        found = self._built.get(number)
        if found is None:
            found = self._built[number] = self._build(number)
        return found

    def __iter__(self) -> Iterator[Interaction]:
        for number in range(len(self)):
            yield self[number]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, InteractionTable | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def append(self, interaction: Interaction) -> None:
        """Add an interaction recorded since (``new_episodes``)."""
        self._added.append(interaction)

    def built(self, number: int) -> bool:
        """True once interaction ``number`` has been built."""
        return number >= self._count or number in self._built

    def _page(self, which: int, block: ColumnBlock, number: int) -> bytes:
        key = (which, number)
        page = self._pages.get(key)
        if page is None:
            if len(self._pages) >= _PAGES_KEPT:
                del self._pages[next(iter(self._pages))]
            page = self._pages[key] = block.page(number)
        return page

    def _build(self, number: int) -> Interaction:
        which = bisect_right(self._starts, number) - 1
        block, answers = self._blocks[which]
        position = number - self._starts[which]
        offset, length = block.offsets[position], block.lengths[position]
        where = f"{answers.path}: index entry for byte {offset}"
        limits = answers.limits
        try:
            page = self._page(which, block, position // PAGE_ENTRIES)
            head = block.head(page, position, limits.max_object_bytes, limits.max_str_bytes)
        except TrailingIndexError as exc:
            raise CassetteFormatError(f"{where}: {exc}") from exc
        except Exception as exc:
            raise CassetteFormatError(
                f"{where}: its head cannot be read ({type(exc).__name__})"
            ) from exc
        interaction = _head_interaction(head, answers, offset, length, where)
        if self.facts[number] & PLAIN:
            request = interaction.request
            if (
                (request.method, request.scheme, request.host, request.port) != self.kinds[number]
                or request.path != self.paths[number]
                or request.query
                or request.body != b""
            ):
                raise CassetteFormatError(f"{where}: its head differs from its index entry")
        return interaction


def load_indexed(
    path: str | os.PathLike[str], limits: ReadLimits | None = None
) -> InteractionTable:
    """Open a cassette for replay as an ``InteractionTable``: from its layout-2 index record
    when it has a valid one (nothing but the record is read), else as ``load_lazily`` does.
    Raises ``CassetteError``."""
    with CassetteReader(path, limits, warn_torn=False) as reader:
        answers = _FileAnswers(
            reader.path, os.dup(reader._file.fileno()), reader.version, reader.limits
        )
        try:
            return _table(reader, answers)
        except (TrailingIndexError, CassetteError) as exc:
            logger.debug("%s: index record not used (%s)", reader.path, exc)
    return InteractionTable.of_list(load_lazily(path, limits).interactions)


def _table(reader: CassetteReader, answers: _FileAnswers) -> InteractionTable:
    """The table of a layout-2 index record (``TrailingIndexError`` for any other; for
    layout 1 its message is ``OF_LAYOUT_1``)."""
    arguments = (
        answers.pread,
        reader.file_size,
        reader.header_end,
        reader.limits.max_object_bytes,
        reader.limits.max_str_bytes,
    )
    return InteractionTable._of_blocks(read_column_blocks(*arguments), answers)


def _damaged_index(
    reader: CassetteReader, answers: _FileAnswers, offset: int | None, index_at: int | None
) -> bool:
    """True when the object at ``offset`` is (what is left of) the trailing index record:
    where the file's tail points, or starting as one does, or right after one."""
    if offset is None:
        return False
    if not (
        offset == index_at
        or reader.trailing_index_at is not None
        or answers.pread(len(INDEX_RECORD_PREFIX), offset) == INDEX_RECORD_PREFIX
    ):
        return False
    logger.warning("%s: damaged index record at byte %d ignored", reader.path, offset)
    return True


def _scanned(
    reader: CassetteReader, answers: _FileAnswers, index_at: int | None
) -> list[Interaction]:
    """Every interaction, read in full and checked; plain ones drop their response bodies.

    ``index_at``: where the file's last bytes say an index record starts. A
    damaged one there (it did not check out) ends the scan with a warning
    instead of failing the cassette: it only ever said where the rest is.
    """
    out: list[Interaction] = []
    streams = _Streams(reader.path, reader.limits)
    version = reader.version
    objects = reader.objects()
    while True:
        try:
            raw = next(objects)
        except StopIteration:
            break
        except CassetteFormatError:
            if not _damaged_index(reader, answers, reader.failed_at, index_at):
                raise
            break
        if _damaged_index(reader, answers, raw.offset, index_at):
            break  # not an index record any more, nor anything else baton writes
        where = f"{reader.path}: object {raw.number} at byte {raw.offset}"
        if is_part(raw.value):
            streams.add(part_from_object(raw.value, where), raw.offset, raw.end, where)
            continue
        full = interaction_from_object(
            raw.value,
            f"{reader.path}: interaction {raw.number} at byte {raw.offset}",
            version,
            streams,
        )
        if _plain(full):
            full = _with_lazy_body(full, answers, raw.offset, raw.end - raw.offset)
        out.append(full)
    reader.orphan_parts = sum(len(g.spans) for g in streams.open.values())
    return out


def load_lazily(path: str | os.PathLike[str], limits: ReadLimits | None = None) -> LazyCassette:
    """Open a cassette for replay: its interactions with their response bodies left in the file.

    A valid trailing index record (format 3) is read instead of every
    interaction; without one (absent, stale, damaged) every object is read
    and checked, as ``CassetteReader`` does, and the bodies are dropped
    again. Either way a body is read back by offset when first asked for,
    so memory holds the requests, the response heads and what was served.
    Raises ``CassetteError``.
    """
    with CassetteReader(path, limits, warn_torn=False) as reader:
        answers = _FileAnswers(
            reader.path, os.dup(reader._file.fileno()), reader.version, reader.limits
        )
        why: str | None = None
        try:
            try:
                interactions = list(_table(reader, answers))
            except TrailingIndexError as exc:
                if str(exc) != OF_LAYOUT_1:
                    raise
                entries = each_index_entry(
                    answers.pread,
                    reader.file_size,
                    reader.header_end,
                    reader.limits.max_object_bytes,
                    reader.limits.max_str_bytes,
                )
                interactions = _from_entries(entries, answers)
        except (TrailingIndexError, CassetteError) as exc:
            why = str(exc) if isinstance(exc, TrailingIndexError) else f"damaged ({exc})"
            logger.debug("%s: index record not used (%s); scanning", reader.path, why)
            interactions = _scanned(
                reader, answers, index_record_start(answers.pread, reader.file_size)
            )
            if reader.stale_index_at is not None and why == "absent":
                why = (
                    f"stale (the index record at byte {reader.stale_index_at} has objects after it)"
                )
            if reader.torn_at is not None:
                logger.warning(
                    "%s: torn object at byte %d (%d bytes) skipped; `baton repair %s` removes it",
                    reader.path,
                    reader.torn_at,
                    reader.file_size - reader.torn_at,
                    reader.path,
                )
            if reader.orphan_parts:
                logger.warning(
                    "%s: %d parts of unfinished streams skipped (a recorder stopped mid-stream); "
                    "`baton repair %s` removes them",
                    reader.path,
                    reader.orphan_parts,
                    reader.path,
                )
        return LazyCassette(
            reader.path,
            reader.header,
            interactions,
            "scan" if why is not None else "index",
            why,
            reader.torn_at,
            reader.orphan_parts,
        )
