"""Server-sent events: a ``text/event-stream`` body read as the events a browser would see.

The format (WHATWG HTML, "server-sent events"): lines end with CRLF, LF or
CR; a line ``field: value`` sets a field (one space after the colon is
dropped), a line starting with ``:`` is a comment, an empty line ends the
event. ``data`` lines accumulate, joined with newlines; ``id``, ``event`` and
``retry`` keep their last value. Unlike a browser, this parser keeps every
event that set any field (a browser drops one without data) and the
unterminated last one, marked incomplete: ``baton show`` and ``baton diff``
should show what was sent, not hide it.

It lives here, beside the model, because ``baton show`` (``display.py``)
lists events and ``cassettes`` imports nothing from ``replay``; the
event-by-event comparison is ``replay/sse.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from baton.cassettes.model import Headers, header_values

__all__ = ["SseEvent", "is_event_stream", "parse_events"]

_LINE = re.compile(rb"([^\r\n]*)(\r\n|\n|\r|$)")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event: its fields as the client would read them, and when it arrived."""

    data: str = ""
    event: str | None = None
    """The ``event`` field; None means the default type, ``message``."""
    id: str | None = None
    retry: int | None = None
    offset_ms: float | None = None
    """When its last byte arrived (ms from the request's start), where the recording says."""
    complete: bool = True
    """False for the last event when the stream ended before its blank line."""

    @property
    def type(self) -> str:
        return self.event if self.event is not None else "message"


def is_event_stream(headers: Headers) -> bool:
    """True when the ``Content-Type`` is ``text/event-stream``."""
    values = header_values(headers, "content-type")
    return bool(values) and values[0].split(";")[0].strip().lower() == "text/event-stream"


def parse_events(pieces: bytes | Iterable[tuple[float | None, bytes]]) -> list[SseEvent]:
    """The events of a body, given whole or as ``(offset_ms, piece)`` pairs as recorded."""
    if isinstance(pieces, bytes):
        pieces = [(None, pieces)]
    body = bytearray()
    ends: list[tuple[int, float | None]] = []
    for offset, piece in pieces:
        body += piece
        ends.append((len(body), offset))
    events: list[SseEvent] = []
    fields: dict[str, str] = {}
    data: list[str] = []
    seen = False
    at = 0
    for match in _LINE.finditer(bytes(body)):
        line, ending = match.group(1), match.group(2)
        if not line and not ending:
            break
        if line:
            text = line.decode("utf-8", "replace")
            if text.startswith(":"):
                continue
            name, colon, value = text.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
                seen = True
            elif name in ("id", "event", "retry"):
                fields[name] = value
                seen = True
            if ending:
                continue
        if seen:
            while at < len(ends) - 1 and ends[at][0] < match.end():
                at += 1
            events.append(_event(fields, data, ends[at][1] if ends else None, bool(ending)))
        fields, data, seen = {}, [], False
    return events


def _event(
    fields: dict[str, str], data: list[str], offset: float | None, complete: bool
) -> SseEvent:
    retry = fields.get("retry")
    return SseEvent(
        data="\n".join(data),
        event=fields.get("event"),
        id=fields.get("id"),
        retry=int(retry) if retry is not None and retry.isdigit() else None,
        offset_ms=offset,
        complete=complete,
    )
