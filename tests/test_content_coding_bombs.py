"""Decompression bombs in untrusted bodies: br and zstd decode piece by piece, memory bounded.

A cassette is untrusted input and a diff target an untrusted server: a few
kilobytes that decode to hundreds of megabytes must be refused, not
decoded whole. Each check runs in a fresh interpreter so its peak memory
(VmHWM) is its own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

BOMB_MB = 256

PROGRAM = """
import sys
{make}
def high_water():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
before = high_water()
from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.replay.limits import decoded_size_over
try:
    decode_body(bomb, {coding!r}, limit=1 << 20)
    print("decoded")
except ContentCodingError as exc:
    print("refused:", exc)
print("over:", decoded_size_over(bomb, {coding!r}, 1 << 20))
print("small:", decode_body(small, {coding!r}) == b"hello" * 100)
print("peak_mb:", (high_water() - before) // 1024)
"""

MAKERS = {
    "br": (
        "import brotli\n"
        f"bomb = brotli.compress(bytes({BOMB_MB} << 20), quality=1)\n"
        "small = brotli.compress(b'hello' * 100)\n"
    ),
    "zstd": (
        "import zstandard\n"
        f"bomb = zstandard.ZstdCompressor(level=1).compress(bytes({BOMB_MB} << 20))\n"
        "small = zstandard.ZstdCompressor().compress(b'hello' * 100)\n"
    ),
}


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_a_bomb_is_refused_with_memory_bounded(coding: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(make=MAKERS[coding], coding=coding)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert "decodes to more than 1048576 bytes" in lines["refused"], done.stdout
    assert lines["over"].strip() == "True"
    assert lines["small"].strip() == "True"  # ordinary bodies still decode
    # Decoding the 256 MB whole would raise the peak by 256 MB or more.
    assert int(lines["peak_mb"]) < 64, done.stdout
