"""What a recorded body means to a contract: its media type, and its value where one can be read.

A contract (OpenAPI, Pact) describes bodies by media type and, for JSON
and forms, by structure. The cassette keeps bytes as on the wire, so the
content-encoding is undone here and the bytes parsed by their type. A body
that is not held (``stored`` in pieces, or never captured) has no value:
callers count those and say so, rather than describe an empty body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import Headers, header_values

__all__ = ["BodyKind", "ReadBody", "is_json", "media_type", "read_body"]


class BodyKind(StrEnum):
    JSON = "json"
    FORM = "form"
    TEXT = "text"
    BINARY = "binary"
    EMPTY = "empty"
    NOT_HELD = "not-held"
    """Stored in pieces in the cassette (too large to hold) or never captured."""


@dataclass(frozen=True, slots=True)
class ReadBody:
    kind: BodyKind
    media_type: str | None
    value: Any = None
    """Parsed JSON, a dict of form fields, or text; None for binary, empty and not held."""


def media_type(headers: Headers) -> str | None:
    """The ``Content-Type`` without parameters, lower case; None when absent."""
    values = header_values(headers, "content-type")
    if not values:
        return None
    value = values[0].split(";", 1)[0].strip().lower()
    return value or None


def is_json(media: str | None) -> bool:
    return media is not None and (media == "application/json" or media.endswith("+json"))


def read_body(body: bytes | None, headers: Headers, *, held: bool = True) -> ReadBody:
    """The body's kind and value; JSON that does not parse is text, text that does not decode binary."""
    media = media_type(headers)
    if body is None or not held:
        return ReadBody(BodyKind.NOT_HELD, media)
    if not body:
        return ReadBody(BodyKind.EMPTY, media)
    encodings = header_values(headers, "content-encoding")
    try:
        data = decode_body(body, encodings[0]) if encodings else body
    except ContentCodingError:
        return ReadBody(BodyKind.BINARY, media or "application/octet-stream")
    media = media or "application/octet-stream"
    if is_json(media):
        try:
            return ReadBody(BodyKind.JSON, media, json.loads(data))
        except ValueError:
            pass
    if media == "application/x-www-form-urlencoded":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return ReadBody(BodyKind.BINARY, media)
        return ReadBody(BodyKind.FORM, media, dict(parse_qsl(text, keep_blank_values=True)))
    if (
        media.startswith("text/")
        or is_json(media)
        or media.endswith("+xml")
        or media
        in (
            "application/xml",
            "application/javascript",
        )
    ):
        try:
            return ReadBody(BodyKind.TEXT, media, data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return ReadBody(BodyKind.BINARY, media)
