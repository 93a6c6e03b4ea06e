"""Render interactions for people (``baton show``) and for line-oriented tools (JSON lines).

Bodies are decoded only here, for display: content-encoding undone, text
shown as text in its charset, anything else summarised by size and digest.
Colour (ANSI) is the caller's choice — a terminal, never a pipe — and only
marks the method and the status, so the text reads the same without it.

The ``stable`` form is what ``git diff`` sees through ``baton textconv``: it
leaves out everything that changes when the same traffic is recorded again
— ids, times, durations, client addresses, and the values of headers a
server stamps on every answer (``Date``, request and trace ids) — so two
recordings differ only where the content did.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.grpc_display import grpc_json, grpc_lines, grpc_summary
from baton.cassettes.grpc_model import grpc_call_of
from baton.cassettes.model import Headers, Interaction, Request, Response, WebSocketConversation
from baton.cassettes.sse import is_event_stream, parse_events
from baton.cassettes.wording import plural

__all__ = [
    "VOLATILE_HEADERS",
    "InteractionFilter",
    "SummaryTotals",
    "body_as_text",
    "interaction_to_json",
    "parse_status_filter",
    "render_interaction",
    "render_summary_line",
    "websocket_lines",
]

VOLATILE_HEADERS = frozenset(
    {
        "date",
        "age",
        "expires",
        "x-request-id",
        "x-correlation-id",
        "request-id",
        "traceparent",
        "tracestate",
        "x-amzn-trace-id",
        "x-amzn-requestid",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-cloud-trace-context",
        "cf-ray",
        "server-timing",
        "x-runtime",
        "x-response-time",
        # A fresh key (and its accept token) for every WebSocket connection.
        "sec-websocket-key",
        "sec-websocket-accept",
    }
)
"""Headers whose value changes on every answer without the content changing."""
_VARIES = "[varies with each recording]"

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_STATUS_COLOURS = {2: "\x1b[32m", 3: "\x1b[36m", 4: "\x1b[33m", 5: "\x1b[31m"}
_ERROR_COLOUR = "\x1b[31m"

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


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _paint(text: str, code: str, colour: bool) -> str:
    return f"{code}{text}{_RESET}" if colour and code else text


def _status_text(
    interaction: Interaction, colour: bool, *, reason: bool = True, width: int = 0
) -> str:
    """The status (and reason), or ERROR; coloured by class when ``colour``."""
    response = interaction.response
    if response is None:
        text = f"ERROR {interaction.error}" if reason else "ERROR"
        return _paint(f"{text:<{width}}", _ERROR_COLOUR, colour)
    text = f"{response.status} {response.reason}".rstrip() if reason else str(response.status)
    return _paint(f"{text:<{width}}", _STATUS_COLOURS.get(response.status // 100, ""), colour)


def _block(lines: list[str], prefix: str, headers: Headers, stable: bool = False) -> None:
    for name, value in headers:
        shown = _VARIES if stable and name.lower() in VOLATILE_HEADERS else value
        lines.append(f"{prefix} {name}: {shown}")


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


def _duration(interaction: Interaction) -> str:
    return f"{interaction.duration_ms:.0f} ms" if interaction.duration_ms is not None else "-"


def render_interaction(
    interaction: Interaction,
    number: int,
    *,
    headers: bool = True,
    max_body: int = 4096,
    stable: bool = False,
    colour: bool = False,
) -> str:
    """Return a readable multi-line block for one interaction.

    ``stable`` leaves out what changes with every recording (id, time,
    duration, the values of ``VOLATILE_HEADERS``) and pretty-prints JSON with
    sorted keys: the form for ``git diff``. ``colour`` marks the method and
    the status with ANSI codes, for a terminal.
    """
    request, response = interaction.request, interaction.response
    when = datetime.fromtimestamp(interaction.recorded_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    outcome = _status_text(interaction, colour)
    if stable:
        summary = f"  -> {outcome}  ({request.http_version})"
    else:
        summary = (
            f"  -> {outcome}  ({_message_size(request)} sent, "
            f"{_message_size(response) if response else '-'} received, {_duration(interaction)}, "
            f"{when}Z, {request.http_version}, id {interaction.id})"
        )
    lines = [f"#{number} {_paint(request.method, _BOLD, colour)} {request.url}", summary]
    if interaction.tags.get("redacted"):
        lines.append(f"  redacted: {', '.join(map(str, interaction.tags['redacted']))}")
    for note in interaction.tags.get("body_not_scrubbed") or ():
        lines.append(f"  body not scrubbed: {note}")
    if interaction.tags.get("stream_unfinished"):
        lines.append("  stream unfinished: the recorder stopped before the body ended")
    if headers:
        _block(lines, ">", request.headers, stable)
    _message_body_lines(lines, request, max_body, stable)
    if response is not None:
        if headers:
            _block(lines, "<", response.headers, stable)
        _message_body_lines(lines, response, max_body, stable)
        if response.trailers:
            _block(lines, "< trailer", response.trailers, stable)
    if interaction.websocket is not None:
        lines += websocket_lines(interaction.websocket, max_body=max_body, stable=stable)
    call = grpc_call_of(interaction)
    if call is not None:
        lines += grpc_lines(interaction, call, max_body=max_body, stable=stable)
    return "\n".join(lines)


# -- baton show --summary and its filters ---------------------------------------------


_STATUS_FILTER = re.compile(r"^(?:[1-5]\d\d|[1-5]xx|error)$", re.IGNORECASE)


def parse_status_filter(text: str) -> str:
    """``404``, ``4xx`` (any 4..), or ``error`` (no response), normalised; ``ValueError`` else."""
    value = text.strip().lower()
    if not _STATUS_FILTER.match(value):
        raise ValueError(f"--status {text!r}: give a status (404), a class (4xx) or error")
    return value


@dataclass(frozen=True)
class InteractionFilter:
    """Which interactions to show: any of the globs or statuses of each kind, all kinds at once.

    ``hosts`` match the host (or ``host:port``), case-insensitively; ``paths``
    the path without its query; ``statuses`` are ``parse_status_filter`` values.
    An empty kind matches everything.
    """

    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hosts or self.paths or self.statuses)

    def matches(self, interaction: Interaction) -> bool:
        request = interaction.request
        if self.hosts:
            names = (request.host.lower(), f"{request.host}:{request.port}".lower())
            if not any(fnmatch.fnmatchcase(n, g.lower()) for g in self.hosts for n in names):
                return False
        if self.paths and not any(fnmatch.fnmatchcase(request.path, g) for g in self.paths):
            return False
        return not self.statuses or any(_status_matches(interaction, s) for s in self.statuses)


def _status_matches(interaction: Interaction, wanted: str) -> bool:
    if interaction.response is None:
        return wanted == "error"
    status = str(interaction.response.status)
    return status == wanted or (wanted.endswith("xx") and status[0] == wanted[0])


def render_summary_line(interaction: Interaction, number: int, *, colour: bool = False) -> str:
    """One line: number, method, URL, status, sizes sent and received, duration."""
    request, response = interaction.request, interaction.response
    sent_size = _body_size(request)
    received_size = None if response is None else _body_size(response)
    sent = "-" if sent_size is None else _human_size(sent_size)
    received = "-" if received_size is None else _human_size(received_size)
    method = _paint(f"{request.method:<7}", _BOLD, colour)
    status = _status_text(interaction, colour, reason=False, width=5)
    line = f"#{number:<4} {method} {request.url}  {status} {sent} -> {received}  {_duration(interaction)}"
    if interaction.websocket is not None:
        line += f"  websocket: {plural(len(interaction.websocket.messages), 'message')}"
    call = grpc_call_of(interaction)
    if call is not None:
        line += grpc_summary(interaction, call)
    return line


@dataclass
class SummaryTotals:
    """What ``baton show --summary`` adds up over the interactions it shows."""

    shown: int = 0
    read: int = 0
    sent: int = 0
    received: int = 0
    duration_ms: float | None = None
    statuses: Counter[str] = field(default_factory=Counter)

    def add(self, interaction: Interaction) -> None:
        self.shown += 1
        self.sent += _body_size(interaction.request) or 0
        response = interaction.response
        self.received += (_body_size(response) or 0) if response else 0
        if interaction.duration_ms is not None:
            self.duration_ms = (self.duration_ms or 0.0) + interaction.duration_ms
        self.statuses[str(response.status) if response else "error"] += 1

    def render(self, filtered: bool) -> str:
        of = f" (of {self.read} read)" if filtered else ""
        statuses = ", ".join(f"{status} x{n}" for status, n in sorted(self.statuses.items()))
        return (
            f"{plural(self.shown, 'interaction')}{of}: {_human_size(self.sent)} sent, "
            f"{_human_size(self.received)} received, "
            + (
                "no duration recorded"
                if self.duration_ms is None
                else f"{self.duration_ms:.0f} ms in all"
            )
            + (f"; {statuses}" if statuses else "")
        )


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
            **_json_stream(request),
        },
        "response": None,
        "error": interaction.error,
        "tags": _jsonable(dict(interaction.tags)),
    }
    if interaction.websocket is not None:
        out["websocket"] = _websocket_json(interaction.websocket)
    call = grpc_call_of(interaction)
    if call is not None:
        out["grpc"] = grpc_json(call)
    if response is not None:
        out["response"] = {
            "status": response.status,
            "reason": response.reason,
            "http_version": response.http_version,
            "headers": [list(pair) for pair in response.headers],
            **_json_body(response.body),
            **_json_stream(response),
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


# -- WebSocket conversations -------------------------------------------------------


def _closing(conversation: WebSocketConversation) -> str:
    code, reason = conversation.close_code, conversation.close_reason
    if code is None:
        return "still open when the recording stopped"
    said = f'{code} "{reason}"' if reason else str(code)
    if code == 1006:
        return "the connection ended without a close frame (1006)"
    if conversation.closed_by_client is None:
        return f"closed: {said}"
    return f"closed by the {'client' if conversation.closed_by_client else 'server'}: {said}"


def _payload(data: bytes, is_text: bool, limit: int, stable: bool) -> str:
    if not is_text:
        digest = hashlib.sha256(data).hexdigest()[:16]
        head = data[:16].hex(" ")
        return f"[{head}{' …' if len(data) > 16 else ''}] sha256 {digest}…"
    text = data.decode("utf-8", "replace")
    if stable and text.lstrip()[:1] in ("{", "["):
        import json

        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if limit and len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters)"
    return text


def websocket_lines(
    conversation: WebSocketConversation, *, max_body: int = 4096, stable: bool = False
) -> list[str]:
    """The messages of a conversation, one line each: number, direction, type, size, time, payload.

    ``→`` is a message from the client, ``←`` one from the server; numbers
    are the message's position in the conversation (what ``baton diff`` and
    the replay near-miss report name). ``stable`` leaves out the times and
    prints JSON with sorted keys, for ``git diff``.
    """
    messages = conversation.messages
    from_client = sum(1 for m in messages if m.from_client)
    lines = [
        f"  websocket: {plural(len(messages), 'message')} ({from_client} from the client, "
        f"{len(messages) - from_client} from the server), {_closing(conversation)}"
    ]
    width = len(str(len(messages)))
    for number, message in enumerate(messages, 1):
        arrow = "→" if message.from_client else "←"
        kind = "text" if message.is_text else "binary"
        when = "" if stable else f"  +{message.offset_ms:.1f} ms"
        payload = _payload(message.data, message.is_text, max_body, stable)
        lines.append(
            f"  {arrow} #{number:<{width}} {kind:<6} {_human_size(len(message.data)):>9}{when}  {payload}"
        )
    return lines


def _websocket_json(conversation: WebSocketConversation) -> dict[str, Any]:
    messages = []
    for message in conversation.messages:
        item: dict[str, Any] = {
            "from_client": message.from_client,
            "text": message.is_text,
            "offset_ms": message.offset_ms,
        }
        try:
            item["data"] = message.data.decode("utf-8")
        except UnicodeDecodeError:
            item["data"] = base64.b64encode(message.data).decode("ascii")
            item["data_encoding"] = "base64"
        messages.append(item)
    return {
        "messages": messages,
        "close_code": conversation.close_code,
        "close_reason": conversation.close_reason,
        "closed_by_client": conversation.closed_by_client,
    }


# -- streamed bodies: pieces, server-sent events, bodies left in the cassette ---------------


def _body_size(message: Request | Response) -> int | None:
    """The body's size in bytes (a stored one's too), None when it was not captured."""
    if message.stored is not None:
        return message.stored.size
    return None if message.body is None else len(message.body)


def _message_size(message: Request | Response) -> str:
    if message.stored is not None:
        return f"{message.stored.size} B stored"
    return _size(message.body)


def _message_body_lines(
    lines: list[str], message: Request | Response, max_body: int, stable: bool
) -> None:
    """The body as ``_body_lines`` shows it, or its events, or where it lies if it is stored.

    ``stable`` (textconv) leaves out the pieces and their times: how a stream
    was cut into pieces changes with every recording of the same content.
    """
    stored = message.stored
    if stored is not None:
        pieces = "" if stable else f" in {plural(len(stored.spans), 'piece')}"
        lines.append(
            f"  [stored in the cassette: {_human_size(stored.size)}{pieces}, "
            f"sha256 {stored.sha256[:16]}…]"
        )
        return
    chunks = message.chunks
    if (
        message.body is not None
        and is_event_stream(message.headers)
        and not _header(message.headers, "content-encoding")
    ):
        _event_lines(lines, message, max_body, stable)
        return
    if chunks is not None and not stable:
        lines.append(f"  [streamed: {plural(len(chunks), 'piece')}{_over(message)}]")
    _body_lines(lines, message.body, message.headers, max_body, stable)


def _over(message: Request | Response) -> str:
    chunks = message.chunks
    if not chunks:
        return ""
    return f" from {chunks[0].offset_ms:.0f} to {chunks[-1].offset_ms:.0f} ms"


def _event_lines(
    lines: list[str], message: Request | Response, max_body: int, stable: bool
) -> None:
    if message.chunks is not None:
        events = parse_events((c.offset_ms, c.data) for c in message.chunks)
    else:
        events = parse_events(message.body or b"")
    summary = f"text/event-stream: {plural(len(events), 'event')}"
    if message.chunks is not None and not stable:
        summary += f" in {plural(len(message.chunks), 'piece')}{_over(message)}"
    lines.append(f"  [{summary}]")
    width = len(str(len(events)))
    for number, event in enumerate(events, 1):
        about = [f"id {event.id}"] if event.id is not None else []
        about += [event.event] if event.event is not None else []
        about += [f"retry {event.retry}"] if event.retry is not None else []
        if event.offset_ms is not None and not stable:
            about.append(f"at {event.offset_ms:.0f} ms")
        if not event.complete:
            about.append("unfinished")
        data = event.data
        if max_body and len(data) > max_body:
            data = data[:max_body] + f"… ({len(data) - max_body} more characters)"
        head = f"  event {number:>{width}}" + (f" ({', '.join(about)})" if about else "")
        data_lines = data.split("\n")
        lines.append(f"{head}: {data_lines[0]}")
        lines.extend(f"  {'':>{width + 6}}  {line}" for line in data_lines[1:])


def _json_stream(message: Request | Response) -> dict[str, Any]:
    """How a streamed body came: its pieces' times and sizes, or where a stored one lies."""
    if message.stored is not None:
        return {
            "body_captured": True,
            "body_stored": {
                "size": message.stored.size,
                "sha256": message.stored.sha256,
                "pieces": len(message.stored.spans),
            },
        }
    if message.chunks is not None:
        return {"pieces": [{"offset_ms": c.offset_ms, "size": len(c.data)} for c in message.chunks]}
    return {}
