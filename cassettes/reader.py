"""Read a cassette incrementally, treating it as untrusted input.

The file is parsed object by object with msgpack's streaming ``Unpacker``, so
a large cassette is never held in memory twice and ``baton show`` prints the
first interaction before the last one is read. Size limits bound what a
hostile file can make baton allocate.

A cassette whose recorder was killed mid-write ends in a torn object. That is
expected damage, not corruption: the reader stops before it, logs a warning
naming the byte offset, and records it in ``torn_at`` so that ``baton repair``
can cut it off. Anything else that is wrong raises ``CassetteFormatError``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import msgpack

from baton.cassettes.codec import check_header, interaction_from_object
from baton.cassettes.errors import CassetteError, CassetteFormatError
from baton.cassettes.model import Interaction

__all__ = ["CassetteReader", "RawObject", "ReadLimits", "read_cassette"]

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


@dataclass(frozen=True, slots=True)
class RawObject:
    """One decoded msgpack object of the stream and where it lies in the file."""

    number: int
    offset: int
    end: int
    value: Any


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
        for raw in self.objects():
            yield interaction_from_object(
                raw.value, f"{self.path}: interaction {raw.number} at byte {raw.offset}", version
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


def read_cassette(
    path: str | os.PathLike[str], limits: ReadLimits | None = None
) -> list[Interaction]:
    """Read every complete interaction of a cassette into a list."""
    with CassetteReader(path, limits) as reader:
        return list(reader)
