"""Recorded traffic checked against an OpenAPI document, with openapi-core doing the validating.

Each HTTP interaction becomes an openapi-core request and response (bodies
with their content-encoding undone) and every error openapi-core finds is
one ``Violation``: an unknown path or method, an undocumented status or
media type, a missing required parameter or body, a parameter or body that
breaks its schema (each schema error with its JSON path, ``$.items[0].price``).

The check is about paths, not hosts: a spec's servers keep only their path
(``http://api.example.com/v1`` -> ``/v1``), so traffic recorded against
staging, a laptop or a replay checks against the same document.

What cannot be checked is counted, not failed: WebSocket conversations
(OpenAPI describes HTTP exchanges), bodies stored in pieces because they
were too large to hold (the rest of that exchange is checked), exchanges
that got no response (the request is checked).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from werkzeug.datastructures import Headers as WerkzeugHeaders
from werkzeug.datastructures import ImmutableMultiDict

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import Headers, Interaction, header_values

__all__ = [
    "CheckReport",
    "ContractChecker",
    "SpecError",
    "Violation",
    "ViolationKind",
]


class SpecError(ValueError):
    """The document is not an OpenAPI document openapi-core accepts; the message says why."""


class ViolationKind(StrEnum):
    UNKNOWN_PATH = "unknown-path"
    UNKNOWN_OPERATION = "unknown-operation"
    UNDOCUMENTED_STATUS = "undocumented-status"
    UNDOCUMENTED_MEDIA_TYPE = "undocumented-media-type"
    MISSING_PARAMETER = "missing-parameter"
    INVALID_PARAMETER = "invalid-parameter"
    MISSING_BODY = "missing-body"
    SCHEMA = "schema"
    MISSING_HEADER = "missing-header"
    INVALID_HEADER = "invalid-header"
    SECURITY = "security"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Violation:
    """One way an interaction broke the contract."""

    source: str
    number: int
    """The interaction's place in its source, from 1."""
    interaction_id: str
    endpoint: str
    """``GET /products/{id}`` as the spec names it, or the recorded path when the spec has none."""
    target: str
    side: str
    """``request`` or ``response``."""
    kind: ViolationKind
    location: str
    """Where: ``$.price`` in a body, ``query.limit``, ``header.x-id``, ``status``, ``path``."""
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "number": self.number,
            "id": self.interaction_id,
            "endpoint": self.endpoint,
            "target": self.target,
            "side": self.side,
            "kind": self.kind.value,
            "location": self.location,
            "message": self.message,
        }


@dataclass
class CheckReport:
    """What a check found, and what it could not look at."""

    spec: str
    sources: list[str] = field(default_factory=list)
    checked: int = 0
    endpoints: Counter[str] = field(default_factory=Counter)
    """Interactions checked per endpoint (unknown ones under their recorded path)."""
    violations: list[Violation] = field(default_factory=list)
    websocket: int = 0
    bodies_not_held: int = 0
    no_response: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.violations else 0

    def notes(self) -> list[str]:
        from baton.cassettes.wording import plural

        lines = []
        if self.websocket:
            lines.append(
                f"{plural(self.websocket, 'WebSocket conversation')} not checked "
                "(OpenAPI describes HTTP exchanges)"
            )
        if self.bodies_not_held:
            lines.append(
                f"{plural(self.bodies_not_held, 'body', 'bodies')} too large to hold "
                "(stored in pieces) or not captured: not checked, the rest of each exchange was"
            )
        if self.no_response:
            lines.append(
                f"{plural(self.no_response, 'exchange')} without a response: request checked only"
            )
        return lines


class _Request:
    """An interaction's request in the shape openapi-core reads (its ``Request`` protocol)."""

    def __init__(self, interaction: Interaction, body: bytes | None) -> None:
        from openapi_core.datatypes import RequestParameters

        request = interaction.request
        self.host_url = f"{request.scheme}://{request.authority}"
        self.path = request.path
        self.method = request.method.lower()
        self.body = body
        self.content_type = (request.header("content-type") or "").lower()
        cookies: list[tuple[str, str]] = []
        for value in header_values(request.headers, "cookie"):
            for part in value.split(";"):
                name, _, text = part.strip().partition("=")
                if name:
                    cookies.append((name, text))
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.query)),
            header=WerkzeugHeaders(list(request.headers)),
            cookie=ImmutableMultiDict(cookies),
        )


class _Response:
    """An interaction's response in the shape openapi-core reads."""

    def __init__(self, status: int, headers: Headers, body: bytes | None) -> None:
        self.status_code = status
        self.headers = WerkzeugHeaders(list(headers))
        self.content_type = (
            next((v for k, v in headers if k.lower() == "content-type"), "") or ""
        ).lower()
        self.data = body


def _decoded(body: bytes | None, headers: Headers) -> bytes | None:
    if not body:
        return body
    encodings = header_values(headers, "content-encoding")
    if not encodings:
        return body
    try:
        return decode_body(body, encodings[0])
    except ContentCodingError:
        return body


def _relative_servers(spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The spec with every server reduced to its path, and those base paths."""
    document = copy.deepcopy(spec)
    bases = []
    for server in document.get("servers") or [{"url": "/"}]:
        url = str(server.get("url", "/"))
        for name, variable in (server.get("variables") or {}).items():
            url = url.replace("{" + name + "}", str(variable.get("default", "")))
        path = urlsplit(url).path if "://" in url else url
        bases.append(path.rstrip("/"))
    base_list = sorted(set(bases), key=len, reverse=True)
    document["servers"] = [{"url": base or "/"} for base in base_list]
    return document, base_list


class ContractChecker:
    """Checks interactions against one OpenAPI document (3.0 or 3.1)."""

    def __init__(self, spec: dict[str, Any], name: str = "spec") -> None:
        from openapi_core import OpenAPI

        self.name = name
        document, self._bases = _relative_servers(spec)
        try:
            self._api = OpenAPI.from_dict(document)
        except Exception as exc:  # openapi-core raises its validator's own error tree
            # The validator's message goes on to print whole schemas: its first sentence says it.
            reason = " ".join(str(exc).split("\n\n")[0].split()).split(" Failed validating")[0]
            reason = reason if len(reason) <= 200 else reason[:199] + "…"
            raise SpecError(f"{name}: not a valid OpenAPI document: {reason}") from exc
        self._templates = [
            (template, _template_pattern(template)) for template in (spec.get("paths") or {})
        ]
        # Literal paths first: /pets/mine before /pets/{id}.
        self._templates.sort(key=lambda item: (item[0].count("{"), -len(item[0])))

    def endpoint(self, method: str, path: str) -> str:
        """``METHOD template`` for a recorded path, or ``METHOD path`` when no template matches."""
        for base in self._bases:
            if base and not path.startswith(base):
                continue
            rest = path[len(base) :] or "/"
            for template, pattern in self._templates:
                if pattern.match(rest):
                    return f"{method.upper()} {template}"
        return f"{method.upper()} {path}"

    def check(
        self, interaction: Interaction, *, source: str = "", number: int = 0
    ) -> list[Violation]:
        """Every violation of ``interaction``; WebSocket conversations give none (not checkable)."""
        if interaction.websocket is not None:
            return []
        request = interaction.request
        endpoint = self.endpoint(request.method, request.path)

        def violation(side: str, kind: ViolationKind, location: str, message: str) -> Violation:
            return Violation(
                source,
                number,
                interaction.id,
                endpoint,
                request.target,
                side,
                kind,
                location,
                message,
            )

        found: list[Violation] = []
        request_held = request.body is not None and request.stored is None
        wrapped = _Request(interaction, _decoded(request.body, request.headers) or b"")
        path_known = True
        for error in self._api.iter_request_errors(wrapped):
            if not request_held and _about_body(error):
                continue
            kind, location, message = _describe(error)
            if kind in (ViolationKind.UNKNOWN_PATH, ViolationKind.UNKNOWN_OPERATION):
                path_known = False
            found += [
                violation("request", kind, loc, text)
                for loc, text in _split(location, message, error)
            ]
        response = interaction.response
        if response is None or not path_known:
            return found
        response_held = response.body is not None and response.stored is None
        answer = _Response(
            response.status, response.headers, _decoded(response.body, response.headers)
        )
        for error in self._api.iter_response_errors(wrapped, answer):
            if not response_held and _about_body(error):
                continue
            kind, location, message = _describe(error)
            if kind is ViolationKind.UNDOCUMENTED_STATUS:
                message = f"status {response.status} is not documented for {endpoint}"
            found += [
                violation("response", kind, loc, text)
                for loc, text in _split(location, message, error)
            ]
        return found

    def check_all(self, sources: Iterable[tuple[str, Iterable[Interaction]]]) -> CheckReport:
        """Check every interaction of every (name, interactions) source into one report."""
        report = CheckReport(spec=self.name)
        for name, interactions in sources:
            report.sources.append(name)
            for number, interaction in enumerate(interactions, 1):
                self.add_to(report, interaction, source=name, number=number)
        return report

    def add_to(
        self, report: CheckReport, interaction: Interaction, *, source: str, number: int
    ) -> list[Violation]:
        """Check one interaction and count it (and what could not be checked) in ``report``."""
        if interaction.websocket is not None:
            report.websocket += 1
            return []
        request, response = interaction.request, interaction.response
        report.checked += 1
        report.endpoints[self.endpoint(request.method, request.path)] += 1
        held = [request.body is not None and request.stored is None]
        if response is None:
            report.no_response += 1
        else:
            held.append(response.body is not None and response.stored is None)
        report.bodies_not_held += held.count(False)
        found = self.check(interaction, source=source, number=number)
        report.violations += found
        return found


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^{}]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}/?$")


def _about_body(error: Exception) -> bool:
    from openapi_core.validation.request.exceptions import RequestBodyValidationError
    from openapi_core.validation.response.exceptions import DataValidationError

    return isinstance(error, RequestBodyValidationError | DataValidationError)


def _describe(error: Exception) -> tuple[ViolationKind, str, str]:
    """A violation's kind, where it is, and what it says, from one openapi-core error."""
    from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
    from openapi_core.templating.paths.exceptions import (
        OperationNotFound,
        PathNotFound,
        ServerNotFound,
    )
    from openapi_core.templating.responses.exceptions import ResponseNotFound
    from openapi_core.validation.request.exceptions import (
        MissingParameterError,
        MissingRequestBodyError,
        ParameterValidationError,
        RequestBodyValidationError,
        SecurityValidationError,
    )
    from openapi_core.validation.response.exceptions import (
        DataValidationError,
        HeaderValidationError,
        MissingData,
        MissingHeaderError,
    )

    cause = error.__cause__
    message = " ".join(str(error).split())
    if isinstance(error, PathNotFound | ServerNotFound):
        return ViolationKind.UNKNOWN_PATH, "path", "no path of the spec matches this request"
    if isinstance(error, OperationNotFound):
        return ViolationKind.UNKNOWN_OPERATION, "method", "the path does not document this method"
    if isinstance(error, ResponseNotFound):
        return ViolationKind.UNDOCUMENTED_STATUS, "status", message
    if isinstance(cause, MediaTypeNotFound):
        return ViolationKind.UNDOCUMENTED_MEDIA_TYPE, "content-type", " ".join(str(cause).split())
    if isinstance(error, MissingParameterError):
        assert isinstance(error, ParameterValidationError)
        return (
            ViolationKind.MISSING_PARAMETER,
            f"{error.location}.{error.name}",
            f"required {error.location} parameter {error.name!r} is missing",
        )
    if isinstance(error, ParameterValidationError):
        kind = ViolationKind.INVALID_PARAMETER
        detail = " ".join(str(cause).split()) if cause is not None else message
        return kind, f"{error.location}.{error.name}", detail
    if isinstance(error, MissingRequestBodyError):
        return ViolationKind.MISSING_BODY, "body", "the spec requires a request body"
    if isinstance(error, MissingData):
        return ViolationKind.MISSING_BODY, "body", "the spec documents a body; none was sent"
    if isinstance(error, RequestBodyValidationError | DataValidationError):
        return ViolationKind.SCHEMA, "$", " ".join(str(cause or error).split())
    if isinstance(error, MissingHeaderError):
        assert isinstance(error, HeaderValidationError)
        return (
            ViolationKind.MISSING_HEADER,
            f"header.{error.name}",
            f"required header {error.name!r} is missing",
        )
    if isinstance(error, HeaderValidationError):
        return ViolationKind.INVALID_HEADER, f"header.{error.name}", message
    if isinstance(error, SecurityValidationError):
        return ViolationKind.SECURITY, "security", message
    return ViolationKind.OTHER, "-", message


def _split(location: str, message: str, error: Exception) -> Iterator[tuple[str, str]]:
    """One (location, message) per schema error, each at its JSON path; else the one given."""
    errors = getattr(error.__cause__, "schema_errors", None)
    if not errors:
        yield location, message
        return
    for schema_error in errors:
        json_path = getattr(schema_error, "json_path", "$")
        if location.startswith(("query.", "header.", "path.", "cookie.")):
            where = location + json_path.removeprefix("$")
        else:
            where = json_path
        yield where, schema_error.message
