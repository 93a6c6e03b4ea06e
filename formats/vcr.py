"""Import VCR.py cassettes: YAML and JSON, version 1, the older httpx layout, and the 2014 format.

YAML is read with PyYAML's *safe* loader only. The pre-versioned cassettes
(2014) carry ``!!python/object:vcr.request.Request`` and similar tags; VCR.py
loaded those with an unsafe loader, the path of a past code-execution
advisory. Here such tags are read as the plain mappings, lists and strings
they are written as — no Python object is ever constructed, nothing runs —
and the old layout is migrated: ``protocol``/``host``/``port``/``path``
become the URI, frozenset-of-tuples and ``"name: value\\r\\n"`` headers become
pairs.

``!!binary`` bodies are bytes as recorded. A body stored decoded while its
headers still say ``Content-Encoding`` (the httpx and aiohttp stubs do this)
is kept decoded and the stale header dropped (see ``cassettes.imported``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import yaml

from baton.cassettes.model import Headers, Interaction, Request, Response
from baton.formats.imported import (
    ImportResult,
    Skipped,
    consistent_body,
    normalise_http_version,
    request_from_url,
)

__all__ = ["VcrError", "import_vcr", "looks_like_vcr"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class VcrError(ValueError):
    """The document is not a VCR.py cassette."""


_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _InertLoader(_BaseLoader):  # type: ignore[misc]
    """A safe loader that reads ``!!python/...`` tags as plain data instead of refusing them."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_InertLoader.add_multi_constructor("tag:yaml.org,2002:python/", _plain)


def _parse(data: bytes) -> Any:
    text = data.decode("utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass  # flow-style YAML also starts with "{"
    try:
        return yaml.load(text, Loader=_InertLoader)
    except yaml.YAMLError as exc:
        raise VcrError(f"neither JSON nor YAML: {exc}") from exc


def looks_like_vcr(data: bytes) -> bool:
    """Cheap sniffing: does this read like a VCR.py cassette?"""
    head = data[:4096]
    return b"interactions" in head or (b"request" in head and b"response" in head)


def _body(value: Any) -> bytes:
    if isinstance(value, dict):
        value = value.get("string", value.get("content"))
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def _header_pairs(value: Any) -> Headers:
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for name, values in value.items():
            for item in values if isinstance(values, list) else [values]:
                out.append((str(name), str(item)))
    elif isinstance(value, list):
        # 2014 layouts: ["name: value\r\n", ...] or [[[name, value], ...]] (a frozenset of tuples).
        if (
            len(value) == 1
            and isinstance(value[0], list)
            and all(isinstance(p, list) for p in value[0])
        ):
            value = value[0]
        for item in value:
            if isinstance(item, str):
                name, _, rest = item.partition(":")
                out.append((name.strip(), rest.strip()))
            elif isinstance(item, list | tuple) and len(item) == 2:
                out.append((str(item[0]), str(item[1])))
    return tuple(out)


def _request(raw: dict[str, Any], notes: list[str], where: str) -> Request:
    uri = raw.get("uri")
    if not isinstance(uri, str):  # the 2014 layout
        protocol, host = raw.get("protocol", "http"), raw.get("host")
        if not host:
            raise ValueError("request has neither a uri nor a host")
        port = raw.get("port") or _DEFAULT_PORTS.get(protocol, 80)
        uri = f"{protocol}://{host}:{port}{raw.get('path', '/')}"
    headers = _header_pairs(raw.get("headers"))
    body = _body(raw.get("body"))
    headers = consistent_body(headers, body, f"{where} request", notes)
    return request_from_url(str(raw.get("method", "GET")), uri, headers, body)


def _response(raw: dict[str, Any], notes: list[str], where: str) -> Response:
    status = raw.get("status")
    if isinstance(status, dict):
        code, reason = status.get("code"), str(status.get("message", ""))
    else:  # the older httpx layout: status_code, content, http_version
        code, reason = raw.get("status_code", status), ""
    if not isinstance(code, int):
        raise ValueError("response has no status code")
    body = _body(raw["body"] if "body" in raw else raw.get("content"))
    headers = consistent_body(_header_pairs(raw.get("headers")), body, f"{where} response", notes)
    return Response(
        status=code,
        reason=reason,
        http_version=normalise_http_version(raw.get("http_version")),
        headers=headers,
        body=body,
    )


def import_vcr(data: bytes) -> ImportResult:
    """Interactions of a VCR.py cassette; a bad interaction is skipped with its index and reason."""
    document = _parse(data)
    if isinstance(document, dict) and isinstance(document.get("interactions"), list):
        version = document.get("version", 1)
        if version != 1:
            raise VcrError(f"VCR.py cassette version {version!r} is not supported (version 1 is)")
        entries = document["interactions"]
        migrated = False
    elif isinstance(document, list):
        entries, migrated = document, True
    else:
        raise VcrError("not a VCR.py cassette (no 'interactions' list)")
    result = ImportResult()
    if migrated:
        result.notes.append(
            "pre-versioned VCR.py cassette migrated (its Python tags read as plain data)"
        )
    for index, entry in enumerate(entries):
        where = f"interaction {index}"
        try:
            if not isinstance(entry, dict):
                raise ValueError("not a mapping")
            request = _request(entry["request"], result.notes, where)
            response = _response(entry["response"], result.notes, where)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            result.skipped.append(Skipped(index, str(exc) or type(exc).__name__))
            continue
        result.interactions.append(
            Interaction(
                str(uuid.uuid4()), request, response, 0.0, None, None, {"imported_from": "vcrpy"}
            )
        )
    return result
