"""gRPC calls as ``baton show`` prints them: method, status, every message with its decoded form."""

from __future__ import annotations

import json
from typing import Any

from baton.cassettes.grpc_model import GrpcCall, GrpcMessage, status_from_headers
from baton.cassettes.model import Interaction

__all__ = ["grpc_json", "grpc_lines", "grpc_summary"]

_SCHEMA_NOTES = {
    "wire": "no schema: field numbers, nested messages and text are guesses",
    "": "not decoded",
}


def _status(interaction: Interaction) -> str:
    response = interaction.response
    if response is None:
        return "no answer"
    status = status_from_headers(response.trailers, response.headers)
    if status is None:
        return "no grpc-status"
    text = f"{status.code} {status.name}"
    if status.message:
        text += f": {status.message}"
    if status.details is not None:
        text += f" (+{len(status.details)} bytes of details)"
    return text


def _form(message: GrpcMessage, limit: int, stable: bool) -> str:
    if message.decoded is None:
        return f"({len(message.data)} bytes, not decoded)"
    text = json.dumps(message.decoded, sort_keys=stable, ensure_ascii=False)
    if limit and len(text) > limit:  # 0: no limit (textconv, --max-body 0)
        return text[:limit] + f"... ({len(text)} chars)"
    return text


def grpc_lines(
    interaction: Interaction, call: GrpcCall, *, max_body: int = 4096, stable: bool = False
) -> list[str]:
    """The call's method, status, schema and messages, one line each."""
    note = _SCHEMA_NOTES.get(call.schema, f"schema: {call.schema}")
    lines = [
        f"  grpc: {call.service}/{call.method}  status {_status(interaction)}",
        f"  grpc: {len(call.requests)} request, {len(call.responses)} response messages ({note})",
    ]
    for arrow, messages in ((">", call.requests), ("<", call.responses)):
        for n, message in enumerate(messages):
            when = "" if stable else f" +{message.offset_ms:.1f}ms"
            flag = " compressed" if message.compressed else ""
            lines.append(f"  {arrow} [{n}]{when}{flag} {_form(message, max_body, stable)}")
    return lines


def grpc_summary(interaction: Interaction, call: GrpcCall) -> str:
    """The tail of a summary line: ``grpc: NOT_FOUND, 1 -> 0 messages``."""
    response = interaction.response
    status = None if response is None else status_from_headers(response.trailers, response.headers)
    name = "no status" if status is None else status.name
    return f"  grpc: {name}, {len(call.requests)} -> {len(call.responses)} messages"


def grpc_json(call: GrpcCall) -> dict[str, Any]:
    """The ``grpc`` map of ``baton show --json``: messages decoded, bytes left to the bodies."""
    return {
        "service": call.service,
        "method": call.method,
        "schema": call.schema,
        "request": [{"offset_ms": m.offset_ms, "decoded": m.decoded} for m in call.requests],
        "response": [{"offset_ms": m.offset_ms, "decoded": m.decoded} for m in call.responses],
    }
