"""Undo and redo HTTP content-encodings (gzip, deflate, br, zstd).

Cassettes keep bodies as they were on the wire. Some work needs the decoded
bytes: scrubbing a secret from a gzip response, showing a body to a person,
comparing two JSON answers. This module does that without mitmproxy (the
cassette layer must not import it), and bounds the decoded size so that a
decompression bomb in an untrusted cassette cannot exhaust memory.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any

from baton.cassettes.errors import ContentCodingError

__all__ = [
    "MAX_DECODED_BYTES",
    "brotli_pieces",
    "decode_body",
    "encode_body",
    "parse_codings",
    "zstd_pieces",
]

MAX_DECODED_BYTES = 1 << 30
_IDENTITY = {"", "identity"}
_CHUNK = 1 << 20


def parse_codings(header_value: str | None) -> list[str]:
    """Return the codings of a Content-Encoding value in the order they were applied."""
    if not header_value:
        return []
    return [
        c.strip().lower() for c in header_value.split(",") if c.strip().lower() not in _IDENTITY
    ]


def _bounded(decompressor: zlib._Decompress, data: bytes, limit: int, name: str) -> bytes:
    out = bytearray()
    chunk = decompressor.decompress(data, _CHUNK)
    while True:
        out += chunk
        if len(out) > limit:
            raise ContentCodingError(f"{name} body decodes to more than {limit} bytes")
        tail = decompressor.unconsumed_tail
        if not tail:
            break
        chunk = decompressor.decompress(tail, _CHUNK)
    return bytes(out)


def _gunzip(data: bytes, limit: int) -> bytes:
    out = bytearray()
    rest = data
    # A gzip body may hold several members back to back.
    while rest:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out += _bounded(d, rest, limit - len(out), "gzip")
        if not d.eof:
            raise ContentCodingError("gzip body is truncated")
        rest = d.unused_data.lstrip(b"\x00")
    return bytes(out)


def _inflate(data: bytes, limit: int) -> bytes:
    # "deflate" is meant to be zlib-wrapped, but many servers send raw deflate.
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        try:
            return _bounded(zlib.decompressobj(wbits=wbits), data, limit, "deflate")
        except zlib.error:
            continue
    raise ContentCodingError("deflate body is neither zlib nor raw deflate data")


def _brotli_decoder() -> tuple[Any, bool]:
    """A brotli decompressor, and whether one call's output can be capped.

    brotli 1.2 and brotlicffi 1.2 take ``output_buffer_limit``; mitmproxy 11
    pins brotli to 1.1, which cannot cap, so brotlicffi (a dependency for
    this) is preferred there.
    """
    import brotli

    decoder = brotli.Decompressor()
    try:
        decoder.process(b"", output_buffer_limit=_CHUNK)
        return decoder, True
    except TypeError:
        pass
    try:
        import brotlicffi
    except ImportError:
        return brotli.Decompressor(), False
    return brotlicffi.Decompressor(), True


def brotli_pieces(data: bytes, piece: int = _CHUNK) -> Iterator[bytes]:
    """Decode a br body piece by piece, each at most ``piece`` bytes where the library can cap.

    Without a cap (brotli 1.1 and no brotlicffi), input goes in 64-byte slices,
    so one call's output is bounded by brotli's window in practice, not strictly.
    """
    decoder, capped = _brotli_decoder()
    if not capped:
        for start in range(0, len(data), 64):
            yield decoder.process(data[start : start + 64])
        return
    for start in range(0, len(data), piece):
        out = decoder.process(data[start : start + piece], output_buffer_limit=piece)
        yield out
        while out and not decoder.is_finished():  # drain what this slice holds
            out = decoder.process(b"", output_buffer_limit=piece)
            yield out


def _unbrotli(data: bytes, limit: int) -> bytes:
    out = bytearray()
    try:
        for piece in brotli_pieces(data):
            out += piece
            if len(out) > limit:
                raise ContentCodingError(f"br body decodes to more than {limit} bytes")
    except ContentCodingError:
        raise
    except Exception as exc:  # brotli.error / brotlicffi.error: a different class each
        raise ContentCodingError(f"br body does not decode: {exc}") from exc
    return bytes(out)


def zstd_pieces(data: bytes, piece: int = _CHUNK) -> Iterator[bytes]:
    """Decode a zstd body (every frame) piece by piece, each at most ``piece`` bytes."""
    import io

    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    while out := reader.read(piece):
        yield out


def _unzstd(data: bytes, limit: int) -> bytes:
    import zstandard

    out = bytearray()
    try:
        for piece in zstd_pieces(data):
            out += piece
            if len(out) > limit:
                raise ContentCodingError(f"zstd body decodes to more than {limit} bytes")
    except zstandard.ZstdError as exc:
        raise ContentCodingError(f"zstd body does not decode: {exc}") from exc
    return bytes(out)


def decode_body(body: bytes, content_encoding: str | None, limit: int = MAX_DECODED_BYTES) -> bytes:
    """Return ``body`` with every coding named in ``content_encoding`` undone.

    Raises ``ContentCodingError`` for an unknown coding or undecodable bytes.
    """
    for coding in reversed(parse_codings(content_encoding)):
        try:
            if coding in ("gzip", "x-gzip"):
                body = _gunzip(body, limit)
            elif coding == "deflate":
                body = _inflate(body, limit)
            elif coding == "br":
                body = _unbrotli(body, limit)
            elif coding == "zstd":
                body = _unzstd(body, limit)
            else:
                raise ContentCodingError(f"unknown content-encoding {coding!r}")
        except zlib.error as exc:
            raise ContentCodingError(f"{coding} body does not decode: {exc}") from exc
    return body


def encode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Return ``body`` encoded with every coding named in ``content_encoding``, in order."""
    for coding in parse_codings(content_encoding):
        if coding in ("gzip", "x-gzip"):
            # mtime=0 makes the output depend on the content alone.
            body = gzip.compress(body, mtime=0)
        elif coding == "deflate":
            body = zlib.compress(body)
        elif coding == "br":
            import brotli

            body = brotli.compress(body)
        elif coding == "zstd":
            import zstandard

            body = zstandard.ZstdCompressor().compress(body)
        else:
            raise ContentCodingError(f"unknown content-encoding {coding!r}")
    return body
