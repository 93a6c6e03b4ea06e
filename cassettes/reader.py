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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import msgpack

from baton.cassettes.codec import (
    Part,
    StreamRef,
    check_header,
    interaction_from_object,
    is_part,
    part_from_object,
)
from baton.cassettes.errors import CassetteError, CassetteFormatError
from baton.cassettes.model import Chunk, Interaction, StoredBody, WebSocketMessage

__all__ = ["CassetteReader", "RawObject", "ReadLimits", "read_cassette", "read_stored_chunks"]

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

        Stops quietly at a torn last object (setting ``torn_at``) and raises
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
                # msgpack's exceptions often have empty messages: name the type.
                detail = str(exc) or "malformed data"
                raise CassetteFormatError(
                    f"{self.path}: interaction {self._count + 1} at byte {offset}: "
                    f"not valid msgpack ({type(exc).__name__}: {detail})"
                ) from exc
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
