"""OpenAPI 3.1 documents inferred from recorded traffic, one per recorded origin.

Every HTTP interaction of the cassettes adds to one operation (method and
path template, see ``path_templates``): its path, query and header
parameters (required when present in every request), its request bodies
and its responses, each per status and media type, with a JSON Schema
merged from every observed body (``schema_inference``: genson, formats,
small enums) and the first observed value as the example. Examples come
from the interactions as given: the command line redacts them first.

What OpenAPI cannot describe is left out and counted: WebSocket
conversations (their handshake included), bodies too large to hold
(``stored`` in pieces: the operation is described, that body is not), and
bodies never captured. ``merge_documents`` folds a newly inferred document
into one a person edited, keeping everything they wrote and adding only
what the traffic showed that the document lacked.
"""

from __future__ import annotations

import http
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from baton.cassettes.model import Interaction
from baton.formats.bodies import BodyKind, ReadBody, read_body
from baton.formats.path_templates import PathTemplate, TemplateRules, parameter_kind
from baton.formats.schema_inference import ObservedSchema

__all__ = [
    "InferenceOptions",
    "InferenceResult",
    "OperationKey",
    "dump_document",
    "infer_openapi",
    "load_document",
    "merge_documents",
]

OPENAPI_VERSION = "3.1.0"
_EXAMPLE_LIMIT = 64 * 1024
_PATH_VALUES_KEPT = 64
# Headers that say how a message travels, not what an operation takes; OpenAPI
# also ignores Accept, Content-Type and Authorization as header parameters.
_TRANSPORT_HEADERS = {
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "forwarded",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "keep-alive",
    "origin",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "referer",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
}
_TRANSPORT_PREFIXES = ("sec-", "x-forwarded-", ":")

OperationKey = tuple[str, str]
"""(method, path template text), e.g. ("GET", "/products/{id}")."""


@dataclass(frozen=True)
class InferenceOptions:
    """How to infer: user path templates, the enum threshold, one host only."""

    path_templates: tuple[str, ...] = ()
    enum_max: int = 5
    host: str | None = None
    """Only this host (``host`` or ``host:port`` or an origin URL); every host when None."""
    title: str | None = None


@dataclass
class InferenceResult:
    """One document per origin (``http://127.0.0.1:8001``), and what was left out and why."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    interactions: int = 0
    websocket: Counter[str] = field(default_factory=Counter)
    """WebSocket conversations left out, per ``METHOD path``."""
    not_held: int = 0
    """Bodies stored in pieces or never captured, left out of the schemas."""
    failed: int = 0
    """Exchanges without a response (refused, reset): their requests still count."""
    other_hosts: int = 0

    def notes(self) -> list[str]:
        """What a reader of the document should know it does not show, one line each."""
        from baton.cassettes.wording import plural

        lines = []
        if self.websocket:
            where = ", ".join(sorted(self.websocket))
            lines.append(
                f"{plural(sum(self.websocket.values()), 'WebSocket conversation')} left out "
                f"(OpenAPI describes HTTP exchanges only): {where}"
            )
        if self.not_held:
            lines.append(
                f"{plural(self.not_held, 'body', 'bodies')} too large to hold (stored in pieces) "
                "or not captured: their operations are described, those bodies are not"
            )
        if self.failed:
            lines.append(
                f"{plural(self.failed, 'exchange')} without a response: only the request counted"
            )
        if self.other_hosts:
            lines.append(f"{plural(self.other_hosts, 'interaction')} with other hosts skipped")
        return lines


class _Parameter:
    def __init__(self, name: str, enum_max: int) -> None:
        self.name = name
        self.present = 0
        self.values = ObservedSchema(enum_max)
        self.example: Any = None

    def add(self, value: str) -> None:
        self.present += 1
        self.values.add(_scalar(value))
        if self.example is None:
            self.example = _scalar(value)

    def merge(self, other: _Parameter) -> None:
        self.present += other.present
        self.values.merge(other.values)
        if self.example is None:
            self.example = other.example


class _Media:
    def __init__(self, kind: BodyKind, enum_max: int) -> None:
        self.kind = kind
        self.schema = ObservedSchema(enum_max)
        self.example: Any = None
        self.has_example = False

    def add(self, body: ReadBody) -> None:
        if body.kind in (BodyKind.JSON, BodyKind.FORM):
            self.schema.add(body.value)
        readable = body.kind in (BodyKind.JSON, BodyKind.FORM, BodyKind.TEXT)
        if (
            readable
            and not self.has_example
            and len(json.dumps(body.value, default=str)) <= _EXAMPLE_LIMIT
        ):
            self.example, self.has_example = body.value, True

    def merge(self, other: _Media) -> None:
        self.schema.merge(other.schema)
        if not self.has_example and other.has_example:
            self.example, self.has_example = other.example, True

    def document(self) -> dict[str, Any]:
        if self.kind in (BodyKind.JSON, BodyKind.FORM):
            schema = self.schema.schema() if self.schema.count else {}
        elif self.kind is BodyKind.TEXT:
            schema = {"type": "string"}
        else:
            schema = {"type": "string", "format": "binary"}
        media: dict[str, Any] = {"schema": schema}
        if self.has_example:
            media["example"] = self.example
        return media


class _Operation:
    """Everything observed for one method on one path template of one origin."""

    def __init__(self, enum_max: int) -> None:
        self.enum_max = enum_max
        self.count = 0
        self.path_values: dict[int, list[str]] = {}
        self.query: dict[str, _Parameter] = {}
        self.headers: dict[str, _Parameter] = {}
        self.with_body = 0
        self.bodies: dict[str, _Media] = {}
        self.responses: dict[int, tuple[str, dict[str, _Media]]] = {}
        self.auth: Counter[str] = Counter()

    def add(self, interaction: Interaction, result: InferenceResult) -> None:
        request, response = interaction.request, interaction.response
        self.count += 1
        for n, segment in enumerate(s for s in request.path.split("/") if s):
            kept = self.path_values.setdefault(n, [])
            if len(kept) < _PATH_VALUES_KEPT:
                kept.append(segment)
        for name in dict.fromkeys(name for name, _ in request.query):
            values = [v for k, v in request.query if k == name]
            self.query.setdefault(name, _Parameter(name, self.enum_max)).add(values[0])
        seen_headers: dict[str, str] = {}
        for name, value in request.headers:
            lower = name.lower()
            if lower not in _TRANSPORT_HEADERS and not lower.startswith(_TRANSPORT_PREFIXES):
                seen_headers.setdefault(lower, value)
                # Header values are rarely a closed set (trace ids, versions): no enums.
                self.headers.setdefault(lower, _Parameter(name, 0))
        for lower, value in seen_headers.items():
            self.headers[lower].add(value)
        scheme = (request.header("authorization") or "").split(" ", 1)[0].lower()
        if scheme:
            self.auth[scheme] += 1
        body = read_body(request.body, request.headers, held=request.stored is None)
        self._add_body(body, self.bodies, result)
        if body.kind is not BodyKind.EMPTY:
            self.with_body += 1
        if response is None:
            result.failed += 1
            return
        _, media = self.responses.setdefault(response.status, (response.reason, {}))
        answer = read_body(response.body, response.headers, held=response.stored is None)
        self._add_body(answer, media, result)

    def _add_body(self, body: ReadBody, media: dict[str, _Media], result: InferenceResult) -> None:
        if body.kind is BodyKind.NOT_HELD:
            result.not_held += 1
            return
        if body.kind is BodyKind.EMPTY or body.media_type is None:
            return
        media.setdefault(body.media_type, _Media(body.kind, self.enum_max)).add(body)

    def merge(self, other: _Operation) -> None:
        self.count += other.count
        for n, values in other.path_values.items():
            kept = self.path_values.setdefault(n, [])
            kept.extend(values[: max(0, _PATH_VALUES_KEPT - len(kept))])
        for mine, theirs in ((self.query, other.query), (self.headers, other.headers)):
            for name, parameter in theirs.items():
                if name in mine:
                    mine[name].merge(parameter)
                else:
                    mine[name] = parameter
        self.with_body += other.with_body
        _merge_media(self.bodies, other.bodies)
        for status, (reason, media) in other.responses.items():
            _, mine_media = self.responses.setdefault(status, (reason, {}))
            _merge_media(mine_media, media)
        self.auth.update(other.auth)

    def document(self, method: str, template: PathTemplate) -> dict[str, Any]:
        operation: dict[str, Any] = {"operationId": _operation_id(method, template)}
        parameters: list[dict[str, Any]] = []
        for index, name in template.parameters:
            parameters.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": parameter_kind(self.path_values.get(index, [])),
                }
            )
        for where, found in (("query", self.query), ("header", self.headers)):
            for _, parameter in sorted(found.items()):
                entry: dict[str, Any] = {
                    "name": parameter.name,
                    "in": where,
                    "required": parameter.present == self.count,
                    "schema": parameter.values.schema(),
                }
                if parameter.example is not None:
                    entry["example"] = parameter.example
                parameters.append(entry)
        if parameters:
            operation["parameters"] = parameters
        if self.bodies:
            operation["requestBody"] = {
                "required": self.with_body == self.count,
                "content": {name: m.document() for name, m in sorted(self.bodies.items())},
            }
        responses: dict[str, Any] = {}
        for status, (reason, media) in sorted(self.responses.items()):
            answer: dict[str, Any] = {"description": _describe_status(status, reason)}
            if media:
                answer["content"] = {name: m.document() for name, m in sorted(media.items())}
            responses[str(status)] = answer
        operation["responses"] = responses or {"default": {"description": "no response recorded"}}
        scheme = self._security_scheme()
        if scheme is not None:
            operation["security"] = [{scheme: []}]
        return operation

    def _security_scheme(self) -> str | None:
        """``bearerAuth``/``basicAuth`` when every request carried that Authorization scheme."""
        if len(self.auth) != 1:
            return None
        scheme, count = next(iter(self.auth.items()))
        if count != self.count or scheme not in ("bearer", "basic"):
            return None
        return f"{scheme}Auth"


def _merge_media(mine: dict[str, _Media], theirs: dict[str, _Media]) -> None:
    for name, media in theirs.items():
        if name in mine:
            mine[name].merge(media)
        else:
            mine[name] = media


def _scalar(value: str) -> Any:
    """A query or header value as the JSON value it spells: 12 -> integer, 1.5 -> number."""
    if re.fullmatch(r"-?\d{1,18}", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d+", value):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    return value


def _describe_status(status: int, reason: str) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return reason or f"Status {status}"


def _operation_id(method: str, template: PathTemplate) -> str:
    words = [method.lower()]
    for segment in template.segments:
        if segment.startswith("{"):
            words.append("By" + segment[1:2].upper() + segment[2:-1])
        else:
            words += [p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", segment) if p]
    return "".join(words)


def _origin(interaction: Interaction) -> str:
    request = interaction.request
    return f"{request.scheme}://{request.authority}"


def _wanted(origin: str, host: str | None) -> bool:
    if host is None:
        return True
    bare = origin.split("://", 1)[1]
    return host in (origin, bare, bare.rsplit(":", 1)[0] if ":" in bare else bare)


def infer_openapi(
    interactions: Iterable[Interaction], options: InferenceOptions | None = None
) -> InferenceResult:
    """OpenAPI documents for the origins in ``interactions`` (streamed once)."""
    options = options or InferenceOptions()
    rules = TemplateRules(options.path_templates)
    result = InferenceResult()
    # origin -> (method, first-pass segments) -> what was observed
    observed: dict[str, dict[tuple[str, tuple[str, ...]], _Operation]] = {}
    for interaction in interactions:
        origin = _origin(interaction)
        if not _wanted(origin, options.host):
            result.other_hosts += 1
            continue
        request = interaction.request
        if interaction.websocket is not None or (
            interaction.response is not None and interaction.response.status == 101
        ):
            result.websocket[f"{request.method} {request.path}"] += 1
            continue
        result.interactions += 1
        key = (request.method.upper(), rules.first_pass(request.path))
        operations = observed.setdefault(origin, {})
        operations.setdefault(key, _Operation(options.enum_max)).add(interaction, result)
    for origin, operations in sorted(observed.items()):
        templates = rules.second_pass(path for _, path in operations)
        merged: dict[OperationKey, tuple[PathTemplate, _Operation]] = {}
        for (method, path), operation in operations.items():
            template = templates[path]
            found = merged.get((method, template.text))
            if found is not None:
                found[1].merge(operation)
            else:
                merged[(method, template.text)] = (template, operation)
        result.documents[origin] = _document(origin, merged, options)
    return result


def _document(
    origin: str,
    operations: dict[OperationKey, tuple[PathTemplate, _Operation]],
    options: InferenceOptions,
) -> dict[str, Any]:
    total = sum(op.count for _, op in operations.values())
    paths: dict[str, dict[str, Any]] = {}
    schemes: set[str] = set()
    for (method, text), (template, operation) in sorted(operations.items(), key=_path_order):
        described = operation.document(method, template)
        for requirement in described.get("security", []):
            schemes.update(requirement)
        paths.setdefault(text, {})[method.lower()] = described
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": options.title or f"{origin.split('://', 1)[1]} (inferred from traffic)",
            "version": "0.0.0",
            "description": f"Inferred by baton from {total} recorded interactions.",
        },
        "servers": [{"url": origin}],
        "paths": paths,
    }
    if schemes:
        document["components"] = {
            "securitySchemes": {
                name: {"type": "http", "scheme": name.removesuffix("Auth")}
                for name in sorted(schemes)
            }
        }
    return document


_METHOD_ORDER = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]


def _path_order(item: tuple[OperationKey, Any]) -> tuple[str, int, str]:
    method, text = item[0]
    lower = method.lower()
    rank = _METHOD_ORDER.index(lower) if lower in _METHOD_ORDER else len(_METHOD_ORDER)
    return text, rank, lower


# -- merging into a document a person edited ----------------------------------------------

_KEEP_AS_WRITTEN = {"required", "type", "format", "description", "summary", "example", "examples"}


def merge_documents(existing: dict[str, Any], inferred: dict[str, Any]) -> dict[str, Any]:
    """``existing`` with what ``inferred`` adds: new paths, operations, statuses, fields, values.

    Nothing ``existing`` says is changed or removed: descriptions, summaries,
    types, required lists and examples stay as written, and a ``$ref`` is
    not followed (what it points to is the person's). Enums take the new
    values seen; parameter lists are merged by name and location; servers
    by URL.
    """
    merged = _merge(existing, inferred)
    return merged if isinstance(merged, dict) else existing


def _merge(existing: Any, new: Any, key: str = "") -> Any:
    if isinstance(existing, dict) and isinstance(new, dict):
        if "$ref" in existing:
            return existing
        out = dict(existing)
        for name, value in new.items():
            if name not in out:
                out[name] = value
            elif name not in _KEEP_AS_WRITTEN or isinstance(out[name], dict):
                out[name] = _merge(out[name], value, name)
        return out
    if isinstance(existing, list) and isinstance(new, list):
        if key == "enum":
            return existing + [v for v in new if v not in existing]
        if key == "parameters":
            return _merge_keyed(existing, new, lambda p: (p.get("in"), p.get("name")))
        if key == "servers":
            return _merge_keyed(existing, new, lambda s: s.get("url"))
    return existing


def _merge_keyed(existing: list[Any], new: list[Any], key: Any) -> list[Any]:
    def identity(item: Any) -> Any:
        return key(item) if isinstance(item, dict) else json.dumps(item, sort_keys=True)

    index = {identity(item): n for n, item in enumerate(existing)}
    out = list(existing)
    for item in new:
        found = index.get(identity(item))
        if found is None:
            out.append(item)
        else:
            out[found] = _merge(out[found], item)
    return out


# -- reading and writing ----------------------------------------------------------------


def load_document(path: Path) -> dict[str, Any]:
    """An OpenAPI document from YAML or JSON; ``ValueError`` naming the file when it is not one."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not a YAML or JSON document ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("paths", {}), dict):
        raise ValueError(f"{path}: not an OpenAPI document (no 'paths' mapping)")
    if "swagger" in data and "openapi" not in data:
        raise ValueError(
            f"{path}: Swagger {data['swagger']} is not read; convert it to OpenAPI 3 first "
            "(e.g. with swagger2openapi)"
        )
    if "openapi" not in data:
        raise ValueError(f"{path}: not an OpenAPI document (no 'openapi' version)")
    return data


def dump_document(document: dict[str, Any], path: Path | None = None) -> str:
    """The document as YAML (JSON when ``path`` ends in .json), written atomically to ``path``."""
    if path is not None and path.suffix.lower() == ".json":
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    if path is not None:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    return text
