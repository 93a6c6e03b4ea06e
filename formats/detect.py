"""``baton import``: which foreign format a file is in, and the importer that reads it.

HAR and VCR.py are parsed with the standard library and PyYAML; mitmproxy
flow files with mitmproxy's own reader (``formats.mitmproxy_flows``), which
is imported only when such a file is met, so detecting and importing HAR
or VCR.py never loads mitmproxy.

Format detection looks at the content, not the name: zlib or ``{"log"``
is HAR, a tnetstring length prefix (``1234:``) is a mitmproxy flow file, a
YAML/JSON document with ``interactions`` (or the 2014 bare list) is VCR.py.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from baton.formats.har import HarError, import_har
from baton.formats.imported import FlowFileError, ImportResult
from baton.formats.vcr import VcrError, import_vcr, looks_like_vcr

__all__ = ["SourceError", "SourceFormat", "detect_format", "import_file"]

_TNETSTRING = re.compile(rb"^\d{1,10}:")


class SourceFormat(StrEnum):
    HAR = "har"
    VCR = "vcr"
    MITMPROXY = "mitmproxy"


class SourceError(ValueError):
    """A source file that cannot be imported at all; the message says why and what to do."""


def detect_format(data: bytes, name: str = "") -> SourceFormat:
    """The format of ``data``, from its content (the file name only breaks ties)."""
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if data[:1] == b"\x78" or (head.startswith(b"{") and b'"log"' in data[:4096]):
        return SourceFormat.HAR
    if _TNETSTRING.match(data[:16]):
        return SourceFormat.MITMPROXY
    if looks_like_vcr(data):
        return SourceFormat.VCR
    suffix = Path(name).suffix.lower()
    if suffix in (".har", ".zhar"):
        return SourceFormat.HAR
    if suffix in (".yaml", ".yml"):
        return SourceFormat.VCR
    raise SourceError("format not recognised (HAR, VCR.py or mitmproxy flows); name it with --from")


def import_file(
    path: Path, forced: SourceFormat | None = None
) -> tuple[SourceFormat, ImportResult]:
    """Read ``path`` as ``forced`` or as detected; ``SourceError`` when nothing can be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SourceError("no such file") from exc
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror}") from exc
    if not data:
        raise SourceError("empty file")
    kind = forced or detect_format(data, path.name)
    try:
        if kind is SourceFormat.HAR:
            return kind, import_har(data)
        if kind is SourceFormat.VCR:
            return kind, import_vcr(data)
        from baton.formats.mitmproxy_flows import import_mitmproxy

        return kind, import_mitmproxy(path)
    except FlowFileError as exc:
        raise SourceError(str(exc)) from exc
    except (HarError, VcrError, UnicodeDecodeError) as exc:
        raise SourceError(f"not a {kind.value} file: {exc}") from exc
