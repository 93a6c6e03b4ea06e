"""``baton import``: recordings made by other tools, into cassettes.

HAR and VCR.py are read by ``cassettes`` (no mitmproxy needed); mitmproxy
flow files are read with mitmproxy's own ``FlowReader``, which knows every
flow format version mitmproxy can still read and migrates it. That is why
the dispatch lives here, on the mitmproxy side of the layering.

Format detection looks at the content, not the name: zlib or ``{"log"``
is HAR, a tnetstring length prefix (``1234:``) is a mitmproxy flow file, a
YAML/JSON document with ``interactions`` (or the 2014 bare list) is VCR.py.
"""

from __future__ import annotations

import re
from dataclasses import replace
from enum import StrEnum
from pathlib import Path

from cassettes.har import HarError, import_har
from cassettes.imported import ImportResult, Skipped
from cassettes.vcr import VcrError, import_vcr, looks_like_vcr

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


def _message(message: object) -> dict[str, object]:
    """A WebSocket message as plain data for the interaction's tags."""
    content = getattr(message, "content", b"")
    if isinstance(content, bytes):
        text = (
            content.decode("utf-8", "replace")
            if getattr(message, "is_text", False)
            else content.hex()
        )
    else:  # old flow formats hand back str
        text = str(content)
    kind = getattr(message, "type", None)
    return {
        "from_client": bool(getattr(message, "from_client", False)),
        "type": getattr(kind, "name", str(kind)).lower(),
        "time": getattr(message, "timestamp", None),
        "data": text,
    }


def _import_mitmproxy(path: Path) -> ImportResult:
    from mitmproxy import exceptions, http, io

    from proxy.flows import interaction_from_flow

    result = ImportResult()
    other: dict[str, int] = {}
    try:
        with open(path, "rb") as handle:
            for index, flow in enumerate(io.FlowReader(handle).stream()):
                if not isinstance(flow, http.HTTPFlow):
                    kind = type(flow).__name__.removesuffix("Flow").upper()
                    other[kind] = other.get(kind, 0) + 1
                    result.skipped.append(Skipped(index, f"a {kind} flow, not HTTP"))
                    continue
                try:
                    interaction = interaction_from_flow(flow)
                except Exception as exc:  # one odd flow must not sink the file
                    result.skipped.append(Skipped(index, f"{type(exc).__name__}: {exc}"))
                    continue
                tags = {**interaction.tags, "imported_from": "mitmproxy"}
                if flow.websocket is not None:
                    tags["websocket_messages"] = [_message(m) for m in flow.websocket.messages]
                result.interactions.append(replace(interaction, tags=tags))
    except exceptions.FlowReadException as exc:
        raise SourceError(
            f"mitmproxy cannot read it ({exc}); a flow file this old cannot be migrated, "
            "re-record the traffic"
        ) from exc
    if other:
        result.notes.append(
            "skipped non-HTTP flows: " + ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
        )
    return result


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
        return kind, _import_mitmproxy(path)
    except (HarError, VcrError, UnicodeDecodeError) as exc:
        raise SourceError(f"not a {kind.value} file: {exc}") from exc
