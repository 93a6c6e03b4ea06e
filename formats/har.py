"""HAR 1.1/1.2 in and out: browsers, Charles, Fiddler, Polly.JS and mitmproxy write it.

Import keeps what a cassette can hold and says what it could not:

* bodies: ``text`` or base64 (``encoding: "base64"``); a body a HAR stores
  decoded while its headers still name a ``Content-Encoding`` (what browsers
  do) is kept decoded and the stale ``Content-Encoding`` (and
  ``Content-Length``) headers are dropped, so the body and headers agree —
  baton never invents compressed bytes that were not on the wire;
* ``text`` is turned back into bytes with the encoding whose length matches
  the size the HAR states (``content.size``, mitmproxy's ``size +
  compression``, ``bodySize`` for a request): mitmproxy's exporter writes a
  body it does not judge binary as Latin-1 text, so 256 bytes must come back
  as 256 bytes, not as 384 bytes of their UTF-8 encoding;
* entries with status 0 (failed in the browser) become interactions
  without a response, with the error;
* ``_webSocketMessages`` (Chrome's: ``type`` send/receive, ``time`` in epoch
  seconds, ``opcode`` 1 text / 2 binary, ``data`` — base64 for binary) become
  the interaction's WebSocket conversation, each message's offset counted
  from the entry's ``startedDateTime``; the close code and reason come from
  ``_batonWebSocketClose`` when baton wrote the file (Chrome records none);
* HTTP versions ``http/2.0``, ``HTTP/2``, ``h2``, ``h3`` and empty are normalised;
* a UTF-8 byte-order mark and zlib compression (``.zhar``) are accepted.

Export writes HAR 1.2 that devtools and ``mitmproxy -r`` open: bodies decoded
for display as the spec wants, plus ``_batonRaw`` (the wire bytes, base64)
so that a baton → HAR → baton round trip is exact; a WebSocket conversation
as Chrome's ``_webSocketMessages`` plus ``_batonWebSocketClose``.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import (
    Headers,
    Interaction,
    Request,
    Response,
    WebSocketConversation,
    WebSocketMessage,
    header_values,
)
from baton.formats.imported import (
    ImportResult,
    Skipped,
    consistent_body,
    normalise_http_version,
    request_from_url,
)

__all__ = ["HarError", "export_har", "import_har", "load_har_document"]

_CHARSET = re.compile(r"charset=\"?([\w.:-]+)", re.IGNORECASE)


class HarError(ValueError):
    """The document is not HAR at all."""


def load_har_document(data: bytes) -> dict[str, Any]:
    """Parse HAR bytes (BOM, zlib-compressed ``.zhar`` accepted); ``HarError`` if not HAR."""
    if data[:1] == b"\x78":
        try:
            data = zlib.decompress(data)
        except zlib.error as exc:
            raise HarError(f"looks zlib-compressed but does not decompress: {exc}") from exc
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HarError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("log"), dict):
        raise HarError("not a HAR file (no top-level 'log' object)")
    if not isinstance(document["log"].get("entries", []), list):
        raise HarError("'log.entries' is not a list")
    return document


def _headers(items: Any) -> Headers:
    if not isinstance(items, list):
        return ()
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            name = item["name"]
            if name.startswith(":"):
                continue  # HTTP/2 pseudo-headers: already in the method, URL and status
            out.append((name, str(item.get("value", ""))))
    return tuple(out)


def _is_exact(holder: dict[str, Any]) -> bool:
    """True when the holder carries the wire bytes as baton exported them."""
    return isinstance(holder.get("_batonRaw"), str) or bool(holder.get("_batonNotCaptured"))


def _stated_sizes(*values: Any) -> set[int]:
    """The body lengths a HAR states, leaving out the unknown (-1, missing, not a number)."""
    return {v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def _text_to_bytes(text: str, charset: str | None, sizes: set[int]) -> bytes:
    """``text`` encoded the way its writer decoded it: the encoding whose length is a stated size.

    Writers decode a body to put it in ``text``: browsers with the declared
    charset, mitmproxy with that charset, else Latin-1 for types it does not
    know, else UTF-8 with lone surrogates for bytes that are not UTF-8. With no
    size stated, or none matching, UTF-8 (lone surrogates back to their bytes).
    """
    fallback = text.encode("utf-8", "surrogateescape")
    if not sizes:
        return fallback
    for name in ([charset] if charset else []) + ["utf-8", "latin-1"]:
        try:
            data = text.encode(name, "surrogateescape")
        except (UnicodeError, LookupError):
            continue
        if len(data) in sizes:
            return data
    return fallback


def _body_bytes(
    holder: dict[str, Any], sizes: set[int] | None = None, charset: str | None = None
) -> bytes | None:
    raw = holder.get("_batonRaw")
    if isinstance(raw, str):
        return base64.b64decode(raw)
    if holder.get("_batonNotCaptured"):
        return None
    text = holder.get("text")
    if text is None:
        params = holder.get("params")
        if isinstance(params, list) and params:
            from urllib.parse import urlencode

            return urlencode([(p.get("name", ""), p.get("value", "")) for p in params]).encode()
        return b""
    if holder.get("encoding") == "base64":
        return base64.b64decode(text)
    return _text_to_bytes(str(text), charset, sizes or set())


def _charset(headers: Headers, holder: dict[str, Any]) -> str | None:
    """The charset the body's content type declares (headers first, then ``mimeType``)."""
    declared = (header_values(headers, "content-type") or [str(holder.get("mimeType") or "")])[0]
    match = _CHARSET.search(declared)
    return match.group(1) if match else None


def _timestamp(text: Any) -> float:
    if isinstance(text, str) and text:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return 0.0


def _request(entry: dict[str, Any], notes: list[str], where: str) -> Request:
    raw = entry.get("request")
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise ValueError("no request URL")
    headers = _headers(raw.get("headers"))
    body: bytes | None = b""
    post = raw.get("postData")
    if isinstance(post, dict):
        body = _body_bytes(post, _stated_sizes(raw.get("bodySize")), _charset(headers, post))
        if not _is_exact(post):
            headers = consistent_body(headers, body, f"{where} request", notes)
    return request_from_url(
        str(raw.get("method", "GET")),
        raw["url"],
        headers,
        body,
        normalise_http_version(raw.get("httpVersion")),
    )


def _entry(index: int, entry: Any, notes: list[str]) -> Interaction:
    if not isinstance(entry, dict):
        raise ValueError("entry is not an object")
    where = f"entry {index}"
    request = _request(entry, notes, where)
    raw: dict[str, Any] = entry["response"] if isinstance(entry.get("response"), dict) else {}
    status = raw.get("status", 0)
    tags: dict[str, Any] = {"imported_from": "har"}
    started = _timestamp(entry.get("startedDateTime"))
    websocket = _conversation_in(entry, started)
    baton = entry.get("_baton")
    if isinstance(baton, dict):
        tags.update(baton.get("tags") or {})
    duration = entry.get("time")
    duration_ms = float(duration) if isinstance(duration, int | float) and duration >= 0 else None
    identity = (
        str(baton.get("id")) if isinstance(baton, dict) and baton.get("id") else str(uuid.uuid4())
    )
    if not isinstance(status, int) or status <= 0:
        error = raw.get("_error") or entry.get("_error") or "failed in the browser (HAR status 0)"
        return Interaction(
            identity,
            request,
            None,
            _timestamp(entry.get("startedDateTime")),
            duration_ms,
            str(error),
            tags,
        )
    content: dict[str, Any] = raw["content"] if isinstance(raw.get("content"), dict) else {}
    headers = _headers(raw.get("headers"))
    sizes = _stated_sizes(content.get("size"))
    compression = content.get("compression")
    if sizes and isinstance(compression, int) and not isinstance(compression, bool):
        # mitmproxy states the size on the wire, and the decoded size minus it as compression.
        sizes |= _stated_sizes(min(sizes) + compression)
    body = _body_bytes(content, sizes, _charset(headers, content))
    if not _is_exact(content):
        headers = consistent_body(headers, body, f"{where} response", notes)
    response = Response(
        status=status,
        reason=str(raw.get("statusText", "")),
        http_version=normalise_http_version(raw.get("httpVersion")),
        headers=headers,
        body=body,
    )
    return Interaction(
        identity,
        request,
        response,
        started,
        duration_ms,
        None,
        tags,
        websocket,
    )


def _conversation_in(entry: dict[str, Any], started: float) -> WebSocketConversation | None:
    """Chrome's ``_webSocketMessages`` (and baton's ``_batonWebSocketClose``) as a conversation."""
    raw = entry.get("_webSocketMessages")
    if not isinstance(raw, list):
        return None
    messages = []
    for item in raw:
        if not isinstance(item, dict) or item.get("type") not in ("send", "receive"):
            continue  # Chrome also lists control frames under other types
        opcode = item.get("opcode", 1)
        if opcode not in (1, 2):
            continue
        text = str(item.get("data") or "")
        data = text.encode("utf-8", "surrogateescape") if opcode == 1 else base64.b64decode(text)
        when = item.get("time")
        offset_ms = 0.0
        if isinstance(when, int | float) and not isinstance(when, bool) and started:
            offset_ms = max(0.0, round((float(when) - started) * 1000.0, 3))
        messages.append(WebSocketMessage(item["type"] == "send", opcode == 1, data, offset_ms))
    close = entry.get("_batonWebSocketClose")
    if not isinstance(close, dict):
        return WebSocketConversation(tuple(messages))
    code = close.get("code")
    by_client = close.get("closedByClient")
    return WebSocketConversation(
        tuple(messages),
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        str(close.get("reason") or ""),
        by_client if isinstance(by_client, bool) else None,
    )


def import_har(data: bytes) -> ImportResult:
    """Interactions of a HAR document; a bad entry is skipped with its index and reason."""
    document = load_har_document(data)
    result = ImportResult()
    for index, entry in enumerate(document["log"].get("entries", [])):
        try:
            result.interactions.append(_entry(index, entry, result.notes))
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as exc:
            result.skipped.append(Skipped(index, str(exc) or type(exc).__name__))
    return result


# -- export ------------------------------------------------------------------------


def _har_headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in headers]


def _content(body: bytes | None, headers: Headers) -> dict[str, Any]:
    mime = (header_values(headers, "content-type") or [""])[0]
    if body is None:
        return {"size": 0, "mimeType": mime, "_batonNotCaptured": True}
    shown = body
    encodings = header_values(headers, "content-encoding")
    if encodings and body:
        try:
            shown = decode_body(body, encodings[0])
        except ContentCodingError:
            shown = body
    out: dict[str, Any] = {"size": len(shown), "mimeType": mime}
    try:
        out["text"] = shown.decode("utf-8")
    except UnicodeDecodeError:
        out["text"] = base64.b64encode(shown).decode("ascii")
        out["encoding"] = "base64"
    if shown != body or encodings:
        # The wire bytes, for an exact round trip; devtools show "text".
        out["_batonRaw"] = base64.b64encode(body).decode("ascii")
    return out


def _entry_out(interaction: Interaction) -> dict[str, Any]:
    request, response = interaction.request, interaction.response
    started = (
        datetime.fromtimestamp(interaction.recorded_at, UTC).isoformat().replace("+00:00", "Z")
    )
    duration = interaction.duration_ms or 0.0
    request_out: dict[str, Any] = {
        "method": request.method,
        "url": request.url,
        "httpVersion": request.http_version,
        "cookies": [],
        "headers": _har_headers(request.headers),
        "queryString": [{"name": n, "value": v} for n, v in request.query],
        "headersSize": -1,
        "bodySize": len(request.body or b""),
    }
    if request.body or request.body is None:
        post = _content(request.body, request.headers)
        post.pop("size", None)
        request_out["postData"] = post
    if response is not None:
        response_out: dict[str, Any] = {
            "status": response.status,
            "statusText": response.reason,
            "httpVersion": response.http_version,
            "cookies": [],
            "headers": _har_headers(response.headers),
            "content": _content(response.body, response.headers),
            "redirectURL": (header_values(response.headers, "location") or [""])[0],
            "headersSize": -1,
            "bodySize": len(response.body or b""),
        }
    else:
        response_out = {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": interaction.error,
        }
    entry: dict[str, Any] = {
        "startedDateTime": started,
        "time": duration,
        "request": request_out,
        "response": response_out,
        "cache": {},
        "timings": {"send": 0, "wait": duration, "receive": 0},
        "_baton": {
            "id": interaction.id,
            "tags": {k: v for k, v in interaction.tags.items() if k != "imported_from"},
        },
    }
    if interaction.websocket is not None:
        entry["_webSocketMessages"] = _messages_out(interaction.websocket, interaction.recorded_at)
        entry["_batonWebSocketClose"] = {
            "code": interaction.websocket.close_code,
            "reason": interaction.websocket.close_reason,
            "closedByClient": interaction.websocket.closed_by_client,
        }
    elif isinstance(interaction.tags.get("websocket_messages"), list):
        entry["_webSocketMessages"] = interaction.tags["websocket_messages"]  # an older import
    return entry


def _messages_out(conversation: WebSocketConversation, started: float) -> list[dict[str, Any]]:
    """The messages as Chrome writes them: send/receive, epoch seconds, opcode, text or base64."""
    out = []
    for message in conversation.messages:
        if message.is_text:
            data = message.data.decode("utf-8", "surrogateescape")
        else:
            data = base64.b64encode(message.data).decode("ascii")
        out.append(
            {
                "type": "send" if message.from_client else "receive",
                "time": round(started + message.offset_ms / 1000.0, 6),
                "opcode": 1 if message.is_text else 2,
                "data": data,
            }
        )
    return out


def export_har(interactions: Iterable[Interaction], creator_version: str = "") -> dict[str, Any]:
    """A HAR 1.2 document holding every interaction."""
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "baton", "version": creator_version or "0"},
            "pages": [],
            "entries": [_entry_out(i) for i in interactions],
        }
    }
