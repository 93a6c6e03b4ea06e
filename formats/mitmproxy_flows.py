"""mitmproxy flow files (``mitmdump -w``) into interactions, read with mitmproxy's own reader.

mitmproxy's ``FlowReader`` knows every flow format version mitmproxy can
still read and migrates it, so baton does not parse tnetstrings itself. This
is the one module of ``formats`` that imports mitmproxy; the conversion of a
flow to an ``Interaction`` is ``proxy.flows``, the same one recording uses.
A WebSocket flow's messages become the interaction's conversation, with
offsets counted from the end of its ``101`` as ``baton record`` counts them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from baton.cassettes.model import WebSocketConversation, WebSocketMessage
from baton.formats.imported import FlowFileError, ImportResult, Skipped

__all__ = ["import_mitmproxy"]


def _conversation(flow: Any) -> WebSocketConversation:
    """A WebSocket flow's messages and close, in the cassette's model."""
    websocket = flow.websocket
    response = flow.response
    stamps = [m.timestamp for m in websocket.messages if getattr(m, "timestamp", None)]
    started = (
        getattr(response, "timestamp_end", None)
        or flow.request.timestamp_start
        or min(stamps, default=0.0)  # a flow without times of its own
    )
    messages = []
    for message in websocket.messages:
        content = message.content
        if not isinstance(content, bytes):  # old flow formats hand back str
            content = str(content).encode("utf-8", "surrogateescape")
        stamp = getattr(message, "timestamp", None)
        offset_ms = max(0.0, round((stamp - started) * 1000.0, 3)) if stamp else 0.0
        messages.append(
            WebSocketMessage(bool(message.from_client), bool(message.is_text), content, offset_ms)
        )
    return WebSocketConversation(
        tuple(messages),
        websocket.close_code,
        websocket.close_reason or "",
        websocket.closed_by_client,
    )


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
                websocket = _conversation(flow) if flow.websocket is not None else None
                result.interactions.append(replace(interaction, tags=tags, websocket=websocket))
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
