"""Pact files from recorded traffic: one per consumer/provider pair, Pact specification 3.0.0.

A recording already is what a consumer-driven contract writes down by
hand: the requests a consumer made and the answers it relied on. Each
distinct recorded request (method, path, query, body) with its answer
becomes one interaction. Matching rules come from the traffic itself: a
body value that differed between recordings of the same endpoint and
status (ids, timestamps, names) gets a type matcher — or, where the
inferred schema knows more, a regex (a small enum, a UUID) — and every
value that never changed is matched exactly. Content-Type is matched by
media type, other response headers are left out (Date, Server and the
like are no promise).

Who is who: the consumer is ``--consumer``, or a request header's value,
or a name for the recorded client address; the provider is
``--provider`` or the recorded host. A provider state can come from a
request header; otherwise interactions have none. What Pact cannot hold
is left out and counted: WebSocket conversations, bodies that are binary
or too large to hold.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from baton.cassettes.model import Interaction
from baton.formats.bodies import BodyKind, read_body
from baton.formats.openapi import InferenceOptions, infer_openapi
from baton.formats.path_templates import TemplateRules

__all__ = ["PactOptions", "PactResult", "export_pacts"]

PACT_SPECIFICATION = "3.0.0"
_VALUES_KEPT = 8
# Request headers a provider needs to answer as recorded; the rest is transport.
_REQUEST_HEADERS_LEFT_OUT = {
    "host",
    "content-length",
    "connection",
    "accept-encoding",
    "user-agent",
    "transfer-encoding",
    "keep-alive",
    "te",
    "upgrade",
    "via",
    "proxy-connection",
}


@dataclass(frozen=True)
class PactOptions:
    """Who the consumer and provider are, and where provider states come from."""

    consumer: str | None = None
    consumer_header: str | None = None
    consumer_addresses: dict[str, str] = field(default_factory=dict)
    """Client address (IP) -> consumer name."""
    provider: str | None = None
    provider_state_header: str | None = None
    path_templates: tuple[str, ...] = ()
    baton_version: str = ""


@dataclass
class PactResult:
    """Pact documents by (consumer, provider), and what was left out."""

    pacts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    websocket: int = 0
    bodies_left_out: int = 0
    repeats: int = 0
    """Recorded requests identical to one already written (same answer status): one is enough."""

    def notes(self) -> list[str]:
        from baton.cassettes.wording import plural

        lines = []
        if self.websocket:
            lines.append(f"{plural(self.websocket, 'WebSocket conversation')} left out")
        if self.bodies_left_out:
            lines.append(
                f"{plural(self.bodies_left_out, 'body', 'bodies')} left out "
                "(binary, too large to hold, or not captured): their interactions match any body"
            )
        if self.repeats:
            lines.append(f"{plural(self.repeats, 'repeated request')} written once")
        return lines


def _consumer(interaction: Interaction, options: PactOptions) -> str:
    if options.consumer_header:
        value = interaction.request.header(options.consumer_header)
        if value:
            return value
    client = str(interaction.tags.get("client", ""))
    address = client.rsplit(":", 1)[0].strip("[]") if client else ""
    if address in options.consumer_addresses:
        return options.consumer_addresses[address]
    return options.consumer or "consumer"


def _provider(interaction: Interaction, options: PactOptions) -> str:
    return options.provider or interaction.request.authority


def _paths(value: Any, location: str = "$") -> Iterator[tuple[str, Any]]:
    """Every leaf and container of a JSON value by Pact's JSONPath (arrays as ``[*]``)."""
    yield location, value
    if isinstance(value, dict):
        for key, sub in value.items():
            step = f".{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"['{key}']"
            yield from _paths(sub, location + step)
    elif isinstance(value, list):
        for sub in value:
            yield from _paths(sub, f"{location}[*]")


class _Variation:
    """Per endpoint and status: which body locations took more than one value."""

    def __init__(self) -> None:
        self.values: dict[str, set[str]] = defaultdict(set)
        self.lengths: dict[str, set[int]] = defaultdict(set)

    def add(self, body: Any) -> None:
        for location, value in _paths(body):
            if isinstance(value, list):
                self.lengths[location].add(len(value))
            elif not isinstance(value, dict):
                seen = self.values[location]
                if len(seen) <= _VALUES_KEPT:
                    seen.add(json.dumps(value, sort_keys=True))

    def varies(self, location: str) -> bool:
        return len(self.values.get(location, ())) > 1

    def length_varies(self, location: str) -> bool:
        return len(self.lengths.get(location, ())) > 1


def _schema_at(schema: dict[str, Any], location: str) -> dict[str, Any]:
    """The inferred schema of a body location (``$.products[*].price``), {} when unknown."""
    node: Any = schema
    for step in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['([^']*)'\]|(\[\*\])", location[1:]):
        name = step[0] or step[1]
        if not isinstance(node, dict):
            return {}
        node = _non_null(node)
        node = node.get("items", {}) if step[2] else node.get("properties", {}).get(name, {})
    return _non_null(node) if isinstance(node, dict) else {}


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    variants = [v for v in schema.get("anyOf", []) if v != {"type": "null"}]
    return variants[0] if len(variants) == 1 and isinstance(variants[0], dict) else schema


_UUID_REGEX = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _matcher(schema: dict[str, Any]) -> dict[str, Any]:
    enum = [v for v in schema.get("enum", []) if isinstance(v, str)]
    if enum and len(enum) == len(schema.get("enum", [])):
        return {"match": "regex", "regex": "^(" + "|".join(re.escape(v) for v in enum) + ")$"}
    if schema.get("format") == "uuid":
        return {"match": "regex", "regex": _UUID_REGEX}
    return {"match": "type"}


def _body_rules(body: Any, variation: _Variation, schema: dict[str, Any]) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for location, value in _paths(body):
        if isinstance(value, list) and variation.length_varies(location):
            rules[location] = {"matchers": [{"match": "type", "min": 0}]}
        elif not isinstance(value, dict | list) and variation.varies(location):
            rules[location] = {"matchers": [_matcher(_schema_at(schema, location))]}
    return rules


def _media_rule(value: str) -> dict[str, Any]:
    media = value.split(";", 1)[0].strip()
    return {"matchers": [{"match": "regex", "regex": f"^{re.escape(media)}(\\s*;.*)?$"}]}


def export_pacts(interactions: Iterable[Interaction], options: PactOptions) -> PactResult:
    """Pact documents for every consumer/provider pair in ``interactions``."""
    result = PactResult()
    usable: list[Interaction] = []
    for interaction in interactions:
        response = interaction.response
        if interaction.websocket is not None or (response is not None and response.status == 101):
            result.websocket += 1
        elif response is not None:
            usable.append(interaction)
    rules = TemplateRules(options.path_templates)
    first = {i.id: (i.request.authority, rules.first_pass(i.request.path)) for i in usable}
    templates = {
        host: rules.second_pass(path for h, path in first.values() if h == host)
        for host in {h for h, _ in first.values()}
    }
    inferred = infer_openapi(usable, InferenceOptions(path_templates=options.path_templates))

    def endpoint(interaction: Interaction) -> tuple[str, str, str]:
        host, path = first[interaction.id]
        return host, interaction.request.method.upper(), templates[host][path].text

    variations: dict[tuple[str, str, str, int], _Variation] = defaultdict(_Variation)
    bodies: dict[str, Any] = {}
    for interaction in usable:
        assert interaction.response is not None
        answer = interaction.response
        read = read_body(answer.body, answer.headers, held=answer.stored is None)
        if read.kind is BodyKind.JSON:
            bodies[interaction.id] = read.value
            variations[(*endpoint(interaction), answer.status)].add(read.value)
    seen: set[str] = set()
    for interaction in usable:
        host, method, template = endpoint(interaction)
        document = inferred.documents.get(f"{interaction.request.scheme}://{host}", {})
        entry = _interaction(interaction, bodies, variations, document, (method, template), result)
        if entry is None:
            continue
        identity = json.dumps([entry["request"], entry["response"]["status"]], sort_keys=True)
        if identity in seen:
            result.repeats += 1
            continue
        seen.add(identity)
        pair = (_consumer(interaction, options), _provider(interaction, options))
        pact = result.pacts.setdefault(pair, _empty_pact(pair, options))
        entry["description"] = _unique(
            entry["description"], {i["description"] for i in pact["interactions"]}
        )
        state = (
            interaction.request.header(options.provider_state_header)
            if options.provider_state_header
            else None
        )
        if state:
            entry["providerStates"] = [{"name": state}]
        pact["interactions"].append(entry)
    return result


def _empty_pact(pair: tuple[str, str], options: PactOptions) -> dict[str, Any]:
    return {
        "consumer": {"name": pair[0]},
        "provider": {"name": pair[1]},
        "interactions": [],
        "metadata": {
            "pactSpecification": {"version": PACT_SPECIFICATION},
            "baton": {"version": options.baton_version, "source": "recorded traffic"},
        },
    }


def _unique(description: str, taken: set[str]) -> str:
    if description not in taken:
        return description
    number = 2
    while f"{description} ({number})" in taken:
        number += 1
    return f"{description} ({number})"


def _interaction(
    interaction: Interaction,
    bodies: dict[str, Any],
    variations: dict[tuple[str, str, str, int], _Variation],
    document: dict[str, Any],
    operation: tuple[str, str],
    result: PactResult,
) -> dict[str, Any] | None:
    request, response = interaction.request, interaction.response
    assert response is not None
    method, template = operation
    wanted: dict[str, Any] = {"method": method, "path": request.path}
    if request.query:
        query: dict[str, list[str]] = {}
        for name, value in request.query:
            query.setdefault(name, []).append(value)
        wanted["query"] = query
    headers = {
        name: value
        for name, value in request.headers
        if name.lower() not in _REQUEST_HEADERS_LEFT_OUT and not name.startswith(":")
    }
    sent = read_body(request.body, request.headers, held=request.stored is None)
    if sent.kind is BodyKind.JSON:
        wanted["body"] = sent.value
    elif sent.kind in (BodyKind.TEXT, BodyKind.FORM):
        raw = request.body or b""
        wanted["body"] = (
            raw.decode("utf-8", "replace") if sent.kind is BodyKind.FORM else sent.value
        )
    elif sent.kind in (BodyKind.BINARY, BodyKind.NOT_HELD):
        result.bodies_left_out += 1
    if headers:
        wanted["headers"] = headers
    answer: dict[str, Any] = {"status": response.status}
    content_type = response.header("content-type")
    matching: dict[str, Any] = {}
    if content_type:
        answer["headers"] = {"Content-Type": content_type}
        matching["header"] = {"Content-Type": _media_rule(content_type)}
    read = read_body(response.body, response.headers, held=response.stored is None)
    if interaction.id in bodies:
        answer["body"] = bodies[interaction.id]
        media = read.media_type or "application/json"
        schema = (
            document.get("paths", {})
            .get(template, {})
            .get(method.lower(), {})
            .get("responses", {})
            .get(str(response.status), {})
            .get("content", {})
            .get(media, {})
            .get("schema", {})
        )
        variation = variations[(request.authority, method, template, response.status)]
        body_rules = _body_rules(answer["body"], variation, schema)
        if body_rules:
            matching["body"] = body_rules
    elif read.kind is BodyKind.TEXT:
        answer["body"] = read.value
    elif read.kind in (BodyKind.BINARY, BodyKind.NOT_HELD):
        result.bodies_left_out += 1
    if matching:
        answer["matchingRules"] = matching
    return {
        "description": f"{method} {request.target} -> {response.status}",
        "request": wanted,
        "response": answer,
    }
