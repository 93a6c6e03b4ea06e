"""mitmproxy flow files (``mitmdump -w``) into interactions, read with mitmproxy's own reader.

mitmproxy's ``FlowReader`` knows every flow format version mitmproxy can
still read and migrates it, so baton does not parse tnetstrings itself. This
is the one module of ``formats`` that imports mitmproxy; the conversion of a
flow to an ``Interaction`` is ``proxy.flows``, the same one recording uses.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from baton.formats.imported import FlowFileError, ImportResult, Skipped

__all__ = ["import_mitmproxy"]


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


def import_mitmproxy(path: Path) -> ImportResult:
    """Every HTTP flow of ``path``; ``FlowFileError`` when mitmproxy cannot read the file."""
    from mitmproxy import exceptions, http, io

    from baton.proxy.flows import interaction_from_flow

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
        raise FlowFileError(
            f"mitmproxy cannot read it ({exc}); a flow file this old cannot be migrated, "
            "re-record the traffic"
        ) from exc
    if other:
        result.notes.append(
            "skipped non-HTTP flows: " + ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
        )
    return result
