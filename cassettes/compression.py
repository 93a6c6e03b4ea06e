"""Compress bodies inside a cassette with zstd, and read them back within bounds.

Why: a cassette of ordinary API traffic is mostly its bodies, and those are
mostly text (JSON, HTML, XML) that zstd shrinks four to six times at a few
microseconds each. Compression is a property of the file, not of the traffic:
the body a reader hands back is the recorded bytes exactly, so replay, ``baton
show``, the exports, diff, merge and repair all see what was on the wire.

A compressed body is stored in place of the plain ``bin`` as a map
``{"coding": "zstd", "size": N, "data": bin}`` (docs/cassette-format.md). A
reader that predates it fails on that field instead of serving compressed
bytes as if they were the body; a reader that knows it needs no option.

What is compressed, and what is not:

* only bodies held whole (never the parts of a streamed body: they are
  written as they pass, and are large enough to be left to the filesystem);
* never a body that already carries a Content-Encoding (gzip, br, zstd...),
  nor media that is compressed by nature (images, audio, video, archives);
* only bodies of at least ``min_size`` bytes, and a result is kept only when
  it saves at least an eighth of the body: anything else is stored plain.

A cassette is untrusted input, and a compressed body is where a small file
could ask for a large allocation. ``decompress_body`` refuses, as a
``CassetteFormatError`` naming the field, a declared size above
``MAX_DECODED_BYTES`` (the same bound as a plain body) or more than
``MAX_RATIO`` times the stored bytes, a zstd frame whose own size disagrees,
and a window larger than ``MAX_WINDOW_BYTES``; the writer never produces a
body those rules would refuse.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from baton.cassettes.errors import CassetteFormatError

__all__ = [
    "CODINGS",
    "DEFAULT_LEVEL",
    "MAX_DECODED_BYTES",
    "MAX_RATIO",
    "BodyCompression",
    "compress_body",
    "decompress_body",
    "is_compressed_body",
]

CODINGS = ("zstd",)
DEFAULT_LEVEL = 3
"""zstd's own default: at 1 KB JSON, levels 1-3 cost ~6 us a body, 9 three times that for 4% less."""
MAX_DECODED_BYTES = 1 << 30
"""A compressed body may stand for no more than a plain ``bin`` may hold (ReadLimits)."""
MAX_RATIO = 1024
"""Decoded bytes per stored byte a reader accepts; real text stays far below (JSON: 4-20)."""
MAX_WINDOW_BYTES = 1 << 27
"""The largest zstd window a reader allocates (zstd's own default limit)."""

_MIN_SIZE = 128
_LEVELS = range(1, 20)
# Media types whose bytes are compressed already: trying would cost time for nothing.
_COMPRESSED_MEDIA = (
    "image/",
    "audio/",
    "video/",
    "font/woff",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-bzip2",
    "application/x-xz",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-rar-compressed",
)
_TEXT_IMAGES = ("image/svg+xml", "image/bmp", "image/x-icon", "image/vnd.microsoft.icon")


@dataclass(frozen=True, slots=True)
class BodyCompression:
    """How a writer compresses the bodies it stores: the coding, its level, the smallest body."""

    coding: str = "zstd"
    level: int = DEFAULT_LEVEL
    min_size: int = _MIN_SIZE

    @classmethod
    def parse(cls, text: str) -> BodyCompression | None:
        """``zstd``, ``zstd:LEVEL`` (1-19) or ``none``; ``ValueError`` says what is accepted."""
        name, _, level = text.strip().lower().partition(":")
        if name in ("none", "off", "") and not level:
            return None
        if name not in CODINGS:
            raise ValueError(f"unknown compression {text!r}; use zstd, zstd:LEVEL (1-19) or none")
        if not level:
            return cls(name)
        try:
            number = int(level)
        except ValueError:
            number = 0
        if number not in _LEVELS:
            raise ValueError(f"compression level {level!r}: use a whole number from 1 to 19")
        return cls(name, number)

    @classmethod
    def from_description(cls, value: Any) -> BodyCompression | None:
        """The settings a header's ``meta.body_compression`` names; None when absent or unusable.

        Rewriting a cassette (merge, dedupe, expire, prune) keeps its bodies as compact as they were.
        """
        if not isinstance(value, dict):
            return None
        coding, level, min_size = value.get("coding"), value.get("level"), value.get("min_size")
        if coding not in CODINGS or type(level) is not int or level not in _LEVELS:
            return None
        if type(min_size) is not int or min_size < 0:
            min_size = _MIN_SIZE
        return cls(coding, level, min_size)

    def describe(self) -> dict[str, Any]:
        """What the header's ``meta.body_compression`` records of these settings."""
        return {"coding": self.coding, "level": self.level, "min_size": self.min_size}

    def __str__(self) -> str:
        return f"{self.coding}:{self.level}"


def _worth_trying(body: bytes, headers: tuple[tuple[str, str], ...], min_size: int) -> bool:
    if len(body) < min_size:
        return False
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-encoding" and value.strip().lower() not in ("", "identity"):
            return False
        if lowered == "content-type":
            media = value.strip().lower()
            if media.startswith(_COMPRESSED_MEDIA) and not media.startswith(_TEXT_IMAGES):
                return False
    return True


_local = threading.local()


def _compressor(level: int) -> Any:
    """One compressor per thread and level: zstandard's contexts are not thread-safe."""
    cache: dict[int, Any] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    found = cache.get(level)
    if found is None:
        import zstandard

        found = cache[level] = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False
        )
    return found


def _decompressor() -> Any:
    found = getattr(_local, "decompressor", None)
    if found is None:
        import zstandard

        found = _local.decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
    return found


def _admissible(size: int, stored: int) -> bool:
    return size <= MAX_DECODED_BYTES and size <= max(stored, 1) * MAX_RATIO


def compress_body(
    body: bytes | None, headers: tuple[tuple[str, str], ...], settings: BodyCompression
) -> bytes | dict[str, Any] | None:
    """What the cassette stores for ``body``: the compressed map where it pays, else ``body``.

    ``headers`` are the message's own (their Content-Encoding and
    Content-Type decide whether trying is worthwhile).
    """
    if body is None or not _worth_trying(body, headers, settings.min_size):
        return body
    data = _compressor(settings.level).compress(body)
    if len(data) > len(body) - len(body) // 8 or not _admissible(len(body), len(data)):
        return body
    return {"coding": settings.coding, "size": len(body), "data": data}


def is_compressed_body(value: Any) -> bool:
    """True for a stored body in the compressed form (a map where a ``bin`` would be)."""
    return type(value) is dict


def decompress_body(value: Any, where: str) -> bytes:
    """The plain bytes of a stored compressed body; ``CassetteFormatError`` naming ``where``.

    Allocates at most the declared size, itself bounded by ``MAX_DECODED_BYTES``
    and ``MAX_RATIO`` times the stored bytes.
    """
    if not isinstance(value, dict):
        raise CassetteFormatError(f"{where}: expected bytes, nil or a compressed body map")
    coding, size, data = value.get("coding"), value.get("size"), value.get("data")
    if coding not in CODINGS:
        raise CassetteFormatError(
            f"{where}: compressed with {coding!r}, which this baton does not know "
            f"(it reads {', '.join(CODINGS)}); upgrade baton to read it"
        )
    if type(size) is not int or size < 0 or type(data) is not bytes:
        raise CassetteFormatError(
            f"{where}: a compressed body needs 'size' (an integer) and 'data' (bytes)"
        )
    if not _admissible(size, len(data)):
        raise CassetteFormatError(
            f"{where}: a compressed body of {len(data)} bytes claims {size} bytes decoded, "
            f"more than baton accepts ({MAX_RATIO}x, at most {MAX_DECODED_BYTES} bytes)"
        )
    import zstandard

    try:
        frame = zstandard.get_frame_parameters(data)
        if frame.content_size != size:
            raise CassetteFormatError(
                f"{where}: the zstd frame holds {frame.content_size} bytes, the body claims {size}"
            )
        if frame.window_size > MAX_WINDOW_BYTES:
            raise CassetteFormatError(
                f"{where}: the zstd frame asks for a {frame.window_size}-byte window "
                f"(baton allows {MAX_WINDOW_BYTES})"
            )
        plain: bytes = _decompressor().decompress(data, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise CassetteFormatError(f"{where}: the compressed body does not decode: {exc}") from exc
    if len(plain) != size:
        raise CassetteFormatError(
            f"{where}: the compressed body decodes to {len(plain)} bytes, not {size}"
        )
    return plain
