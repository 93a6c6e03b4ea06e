"""Render interactions for people (``baton show``) and for line-oriented tools (JSON lines).

Bodies are decoded only here, for display: content-encoding undone, text
shown as text in its charset, anything else summarised by size and digest.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import Headers, Interaction

__all__ = ["body_as_text", "interaction_to_json", "render_interaction"]

_TEXT_TYPES = re.compile(
    r"^(text/|application/(.*\+)?(json|xml|javascript|x-www-form-urlencoded|graphql|yaml|x-ndjson))",
    re.IGNORECASE,
)
_CHARSET = re.compile(r"charset=\"?([\w.:-]+)", re.IGNORECASE)


def _header(headers: Headers, name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def body_as_text(body: bytes | None, headers: Headers) -> tuple[str | None, str]:
    """Return ``(text, note)``: the body as text if it is text, else None and a summary.

    The note says what was done ("gzip decoded") or why there is no text.
    """
    if body is None:
        return None, "body not captured (streamed by the proxy)"
    if not body:
        return "", ""
    notes = []
    content_encoding = _header(headers, "content-encoding")
    data = body
    if content_encoding:
        try:
            data = decode_body(body, content_encoding)
            notes.append(f"{content_encoding} decoded")
        except ContentCodingError as exc:
            return None, f"{len(body)} bytes, cannot decode {content_encoding}: {exc}"
    content_type = _header(headers, "content-type") or ""
    charset_match = _CHARSET.search(content_type)
    charset = charset_match.group(1) if charset_match else "utf-8"
    looks_textual = bool(_TEXT_TYPES.match(content_type.strip()))
    try:
        text = data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        text = None
    if text is not None and (looks_textual or not content_type) and "\x00" not in text:
        return text, ", ".join(notes)
    digest = hashlib.sha256(data).hexdigest()[:16]
    kind = content_type.split(";")[0].strip() or "binary"
    notes.insert(0, f"{kind}, {len(data)} bytes, sha256 {digest}…")
    return None, ", ".join(notes)


def _size(body: bytes | None) -> str:
    if body is None:
        return "not captured"
    return f"{len(body)} B"


def _block(lines: list[str], prefix: str, headers: Headers) -> None:
    for name, value in headers:
        lines.append(f"{prefix} {name}: {value}")


def _body_lines(
    lines: list[str], body: bytes | None, headers: Headers, max_body: int, pretty: bool = False
) -> None:
    text, note = body_as_text(body, headers)
    if text is None:
        lines.append(f"  [{note}]")
        return
    if not text:
        return
    if pretty and text.lstrip()[:1] in ("{", "["):
        import json

        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
    if note:
        lines.append(f"  [{note}]")
    if max_body and len(text) > max_body:
        text = (
            text[:max_body]
            + f"\n… ({len(text) - max_body} more characters; --max-body 0 shows all)"
        )
    lines.extend("  " + line for line in text.splitlines())


def render_interaction(
    interaction: Interaction,
    number: int,
    *,
    headers: bool = True,
    max_body: int = 4096,
    stable: bool = False,
) -> str:
    """Return a readable multi-line block for one interaction.

    ``stable`` leaves out what changes with every recording (id, time,
    duration) and pretty-prints JSON with sorted keys: the form for ``git diff``.
    """
    request, response = interaction.request, interaction.response
    when = datetime.fromtimestamp(interaction.recorded_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    duration = f"{interaction.duration_ms:.0f} ms" if interaction.duration_ms is not None else "-"
    if response is None:
        outcome = f"ERROR {interaction.error}"
    else:
        outcome = f"{response.status} {response.reason}".rstrip()
    if stable:
        summary = f"  -> {outcome}  ({request.http_version})"
    else:
        summary = (
            f"  -> {outcome}  ({_size(request.body)} sent, "
            f"{_size(response.body) if response else '-'} received, {duration}, {when}Z, "
            f"{request.http_version}, id {interaction.id})"
        )
    lines = [f"#{number} {request.method} {request.url}", summary]
    if interaction.tags.get("redacted"):
        lines.append(f"  redacted: {', '.join(map(str, interaction.tags['redacted']))}")
    if headers:
        _block(lines, ">", request.headers)
    _body_lines(lines, request.body, request.headers, max_body, stable)
    if response is not None:
        if headers:
            _block(lines, "<", response.headers)
        _body_lines(lines, response.body, response.headers, max_body, stable)
        if response.trailers:
            _block(lines, "< trailer", response.trailers)
    return "\n".join(lines)


def _json_body(body: bytes | None) -> dict[str, Any]:
    if body is None:
        return {"body": None, "body_captured": False}
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode("ascii"), "body_encoding": "base64"}


def interaction_to_json(interaction: Interaction) -> dict[str, Any]:
    """Return a JSON-ready map with the field names of the cassette format.

    Bodies are the raw bytes as UTF-8 text where they decode, else base64 with
    ``body_encoding: "base64"``; an uncaptured body is null with
    ``body_captured: false``.
    """
    request, response = interaction.request, interaction.response
    out: dict[str, Any] = {
        "id": interaction.id,
        "recorded_at": interaction.recorded_at,
        "duration_ms": interaction.duration_ms,
        "request": {
            "method": request.method,
            "scheme": request.scheme,
            "host": request.host,
            "port": request.port,
            "path": request.path,
            "query": [list(pair) for pair in request.query],
            "http_version": request.http_version,
            "headers": [list(pair) for pair in request.headers],
            **_json_body(request.body),
        },
        "response": None,
        "error": interaction.error,
        "tags": _jsonable(dict(interaction.tags)),
    }
    if response is not None:
        out["response"] = {
            "status": response.status,
            "reason": response.reason,
            "http_version": response.http_version,
            "headers": [list(pair) for pair in response.headers],
            **_json_body(response.body),
            "trailers": None
            if response.trailers is None
            else [list(pair) for pair in response.trailers],
        }
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
