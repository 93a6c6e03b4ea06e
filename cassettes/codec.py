"""Convert interactions to and from the plain objects of cassette format v1.

This is the only module that knows the field names of the format, and (with
the reader and writer) the only one that touches msgpack. Decoding validates
every field, so that a damaged or hostile cassette fails with a message naming
the object and the field, never with a ``KeyError`` deep inside baton.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import msgpack

from baton.cassettes.errors import CassetteFormatError, UnsupportedVersion
from baton.cassettes.model import Interaction, Pairs, Request, Response

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MIGRATIONS",
    "check_header",
    "interaction_from_object",
    "interaction_to_object",
    "make_header",
    "pack",
]

FORMAT_NAME = "baton-cassette"
FORMAT_VERSION = 1

# Older versions are upgraded one step at a time, object by object, when read:
# MIGRATIONS[n] turns a version-n interaction object into a version-(n+1) one.
# Version 1 is the first, so the table is empty; it is here so that the first
# change of format has an obvious place to go.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def pack(obj: Any) -> bytes:
    """Serialize one object of the stream."""
    # A fresh Packer per call keeps this thread-safe; Packer construction is cheap.
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def make_header(meta: Mapping[str, Any] | None = None, baton_version: str = "") -> dict[str, Any]:
    """Return the header object that opens every cassette."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "baton": baton_version,
        "meta": dict(meta or {}),
    }


def check_header(obj: Any, where: str) -> dict[str, Any]:
    """Validate a header object and return it; raise ``CassetteFormatError`` otherwise."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise CassetteFormatError(
            f"{where}: not a baton cassette (the first object is not a baton-cassette header)"
        )
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CassetteFormatError(f"{where}: header field 'version' must be a positive integer")
    if version > FORMAT_VERSION:
        raise UnsupportedVersion(
            f"{where}: cassette format version {version} is newer than this baton reads "
            f"(up to {FORMAT_VERSION}); upgrade baton to read it"
        )
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise CassetteFormatError(f"{where}: header field 'meta' must be a map")
    return obj


# -- encoding -----------------------------------------------------------------


def _wire_text(value: str) -> str | bytes:
    """Text that is valid UTF-8 is stored as a msgpack str; anything else as bin.

    Header values and paths are bytes on the wire and need not be UTF-8;
    storing the odd ones as bin keeps them exact without making the common
    case unreadable.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")
    return value


def _pairs_out(pairs: Pairs) -> list[list[str | bytes]]:
    return [[_wire_text(name), _wire_text(value)] for name, value in pairs]


def _request_out(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "scheme": request.scheme,
        "host": request.host,
        "port": request.port,
        "path": _wire_text(request.path),
        "query": _pairs_out(request.query),
        "http_version": request.http_version,
        "headers": _pairs_out(request.headers),
        "body": request.body,
    }


def _response_out(response: Response) -> dict[str, Any]:
    return {
        "status": response.status,
        "reason": _wire_text(response.reason),
        "http_version": response.http_version,
        "headers": _pairs_out(response.headers),
        "body": response.body,
        "trailers": None if response.trailers is None else _pairs_out(response.trailers),
    }


def interaction_to_object(interaction: Interaction) -> dict[str, Any]:
    """Return the format-v1 map for ``interaction``."""
    return {
        "id": interaction.id,
        "recorded_at": interaction.recorded_at,
        "duration_ms": interaction.duration_ms,
        "request": _request_out(interaction.request),
        "response": None if interaction.response is None else _response_out(interaction.response),
        "error": interaction.error,
        "tags": dict(interaction.tags),
    }


# -- decoding -----------------------------------------------------------------


def _as_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


class _Fields:
    """Typed access to one map of an object, with errors that name the field."""

    def __init__(self, obj: Any, where: str, path: str) -> None:
        if not isinstance(obj, dict):
            raise CassetteFormatError(f"{where}: field {path or 'object'}: expected a map")
        self._obj = obj
        self._where = where
        self._path = path

    def _fail(self, name: str, expected: str) -> CassetteFormatError:
        got = type(self._obj.get(name)).__name__ if name in self._obj else "nothing"
        return CassetteFormatError(
            f"{self._where}: field {self._path}{name}: expected {expected}, got {got}"
        )

    def has(self, name: str) -> bool:
        return name in self._obj and self._obj[name] is not None

    def raw(self, name: str) -> Any:
        return self._obj.get(name)

    def text(self, name: str) -> str:
        value = self._obj.get(name)
        if isinstance(value, str):
            return value
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        raise self._fail(name, "text")

    def optional_text(self, name: str) -> str | None:
        return self.text(name) if self.has(name) else None

    def integer(self, name: str) -> int:
        value = self._obj.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._fail(name, "an integer")

    def number(self, name: str) -> float:
        value = self._obj.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self._fail(name, "a number")

    def optional_number(self, name: str) -> float | None:
        return self.number(name) if self.has(name) else None

    def body(self, name: str) -> bytes | None:
        value = self._obj.get(name)
        if value is None or isinstance(value, bytes):
            return value
        raise self._fail(name, "bytes or nil")

    def pairs(self, name: str) -> Pairs:
        value = self._obj.get(name)
        if not isinstance(value, list):
            raise self._fail(name, "a list of [name, value] pairs")
        out: list[tuple[str, str]] = []
        append = out.append
        for n, pair in enumerate(value):
            # The common case, checked cheaply: a list of two str (this runs
            # for every header of every interaction a reader loads).
            if type(pair) is list and len(pair) == 2:
                first, second = pair
                if type(first) is str and type(second) is str:
                    append((first, second))
                    continue
                if isinstance(first, str | bytes) and isinstance(second, str | bytes):
                    append((_as_text(first), _as_text(second)))
                    continue
            raise CassetteFormatError(
                f"{self._where}: field {self._path}{name}[{n}]: expected a [name, value] pair"
            )
        return tuple(out)

    def optional_pairs(self, name: str) -> Pairs | None:
        return self.pairs(name) if self.has(name) else None

    def child(self, name: str) -> _Fields:
        if name not in self._obj:
            raise self._fail(name, "a map")
        return _Fields(self._obj[name], self._where, f"{self._path}{name}.")


def _request_in(fields: _Fields) -> Request:
    return Request(
        method=fields.text("method"),
        scheme=fields.text("scheme"),
        host=fields.text("host"),
        port=fields.integer("port"),
        path=fields.text("path"),
        query=fields.pairs("query"),
        http_version=fields.text("http_version"),
        headers=fields.pairs("headers"),
        body=fields.body("body"),
    )


def _response_in(fields: _Fields) -> Response:
    return Response(
        status=fields.integer("status"),
        reason=fields.text("reason"),
        http_version=fields.text("http_version"),
        headers=fields.pairs("headers"),
        body=fields.body("body"),
        trailers=fields.optional_pairs("trailers"),
    )


_TEXT_FIELDS = ("method", "scheme", "host", "path", "http_version")


def _fast_pairs(value: Any) -> Pairs | None:
    if type(value) is not list:
        return None
    out = []
    for pair in value:
        if type(pair) is not list or len(pair) != 2:
            return None
        first, second = pair
        if type(first) is not str or type(second) is not str:
            return None
        out.append((first, second))
    return tuple(out)


def _fast_interaction(obj: dict[str, Any]) -> Interaction | None:
    """The common, well-formed case without per-field wrappers; None sends it to the full check.

    Every type is still checked: anything unexpected (bytes text, a missing or
    extra-typed field) returns None and the validating path names the problem.
    """
    request = obj.get("request")
    response = obj.get("response")
    if type(request) is not dict or (response is not None and type(response) is not dict):
        return None
    texts = [request.get(name) for name in _TEXT_FIELDS]
    if any(type(t) is not str for t in texts):
        return None
    port, req_body = request.get("port"), request.get("body")
    if type(port) is not int or (req_body is not None and type(req_body) is not bytes):
        return None
    query, req_headers = _fast_pairs(request.get("query")), _fast_pairs(request.get("headers"))
    if query is None or req_headers is None:
        return None
    built_response = None
    if response is not None:
        status, reason, version = (
            response.get("status"),
            response.get("reason"),
            response.get("http_version"),
        )
        body, trailers = response.get("body"), response.get("trailers")
        headers = _fast_pairs(response.get("headers"))
        fast_trailers = None if trailers is None else _fast_pairs(trailers)
        if (
            type(status) is not int
            or type(reason) is not str
            or type(version) is not str
            or (body is not None and type(body) is not bytes)
            or headers is None
            or (trailers is not None and fast_trailers is None)
        ):
            return None
        built_response = Response(status, reason, version, headers, body, fast_trailers)
    identity, recorded_at = obj.get("id"), obj.get("recorded_at")
    duration, error, tags = obj.get("duration_ms"), obj.get("error"), obj.get("tags")
    if (
        type(identity) is not str
        or type(recorded_at) not in (float, int)
        or (duration is not None and type(duration) not in (float, int))
        or (error is not None and type(error) is not str)
        or (tags is not None and type(tags) is not dict)
        or (built_response is None and error is None)
    ):
        return None
    method, scheme, host, path, http_version = cast(list[str], texts)
    return Interaction(
        id=identity,
        request=Request(
            method, scheme, host, port, path, query, http_version, req_headers, req_body
        ),
        response=built_response,
        recorded_at=float(cast(float, recorded_at)),
        duration_ms=None if duration is None else float(duration),
        error=error,
        tags=tags if tags is not None else {},
    )


def interaction_from_object(obj: Any, where: str, version: int = FORMAT_VERSION) -> Interaction:
    """Build an ``Interaction`` from a decoded map, validating every field.

    ``where`` prefixes every error ("file.cassette: object 7"); ``version`` is
    the header's, and older objects are migrated first.
    """
    if not isinstance(obj, dict):
        raise CassetteFormatError(f"{where}: expected an interaction map")
    for step in range(version, FORMAT_VERSION):
        obj = MIGRATIONS[step](obj)
    fast = _fast_interaction(obj)
    if fast is not None:
        return fast
    fields = _Fields(obj, where, "")
    tags = fields.raw("tags")
    if tags is None:
        tags = {}
    if not isinstance(tags, dict):
        raise CassetteFormatError(f"{where}: field tags: expected a map")
    response = _response_in(fields.child("response")) if fields.has("response") else None
    error = fields.optional_text("error")
    if response is None and error is None:
        raise CassetteFormatError(f"{where}: field response: nil without an error")
    return Interaction(
        id=fields.text("id"),
        recorded_at=fields.number("recorded_at"),
        duration_ms=fields.optional_number("duration_ms"),
        request=_request_in(fields.child("request")),
        response=response,
        error=error,
        tags=tags,
    )
