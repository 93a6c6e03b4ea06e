"""Two OpenAPI documents compared: what changed, and whether it breaks a client.

The rules are oasdiff's (``oasdiff checks changelog``): each change carries
the id oasdiff gives the same finding and oasdiff's level — ``error`` (a
client that followed the old contract breaks), ``warning`` (it may break)
or ``info``. baton classes them as ``baton diff`` does its drift: error and
warning are ``breaking``, info that adds something (a path, an optional
field, a status) is ``additive``, other info (a relaxed constraint, a
removed error status) is ``value``. ``RULES`` lists every rule covered;
docs/contracts.md lists those that are not.

Direction matters, as in oasdiff: a request schema may only loosen (the
server must still accept what clients send), a response schema may only
tighten (clients must still understand what comes back). Paths match with
their parameters' names ignored (``/pets/{id}`` is ``/pets/{petId}``);
local ``$ref``s are followed; ``allOf`` is flattened; a nullable ``anyOf``
(``[{type: null}, {...}]``, what genson writes) is read as a nullable type.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from baton.replay.comparison import DriftClass

__all__ = ["RULES", "SpecChange", "SpecDiffReport", "diff_specs"]

ERR, WARN, INFO = "error", "warning", "info"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Rule id (oasdiff's) -> level. "{p}" stands for request-body/request-property,
# response-body/response-property or request-parameter, as the place of the change.
RULES: dict[str, str] = {
    "api-path-removed-without-deprecation": ERR,
    "api-path-removed-with-deprecation": INFO,
    "api-removed-without-deprecation": ERR,
    "api-removed-with-deprecation": INFO,
    "endpoint-added": INFO,
    "new-required-request-parameter": ERR,
    "new-optional-request-parameter": INFO,
    "request-parameter-removed": WARN,
    "request-parameter-became-required": ERR,
    "request-parameter-became-optional": INFO,
    "request-body-added-required": ERR,
    "request-body-added-optional": INFO,
    "request-body-removed": ERR,
    "request-body-became-required": ERR,
    "request-body-became-optional": INFO,
    "request-body-media-type-removed": ERR,
    "request-body-media-type-added": INFO,
    "response-success-status-removed": ERR,
    "response-non-success-status-removed": INFO,
    "response-success-status-added": INFO,
    "response-non-success-status-added": INFO,
    "response-media-type-removed": ERR,
    "response-media-type-added": INFO,
    "required-response-header-removed": ERR,
    "optional-response-header-removed": WARN,
    "response-header-added": INFO,
    "response-header-became-optional": ERR,
    "request-property-removed": WARN,
    "new-required-request-property": ERR,
    "new-optional-request-property": INFO,
    "request-property-became-required": ERR,
    "request-property-became-optional": INFO,
    "response-required-property-removed": ERR,
    "response-optional-property-removed": WARN,
    "response-required-property-added": INFO,
    "response-optional-property-added": INFO,
    "response-property-became-optional": ERR,
    "response-property-became-required": INFO,
}
for _p in ("request-body", "request-property", "request-parameter"):
    RULES |= {
        f"{_p}-type-changed": ERR,
        f"{_p}-type-generalized": INFO,
        f"{_p}-list-of-types-narrowed": ERR,
        f"{_p}-list-of-types-widened": INFO,
        f"{_p}-became-not-nullable": ERR,
        f"{_p}-became-nullable": INFO,
        f"{_p}-became-enum": ERR,
        f"{_p}-enum-value-removed": ERR,
        f"{_p}-enum-value-added": INFO,
        f"{_p}-max-length-decreased": ERR,
        f"{_p}-max-length-set": WARN,
        f"{_p}-max-length-increased": INFO,
        f"{_p}-max-decreased": ERR,
        f"{_p}-max-set": WARN,
        f"{_p}-max-increased": INFO,
        f"{_p}-max-items-decreased": ERR,
        f"{_p}-max-items-increased": INFO,
        f"{_p}-min-length-increased": ERR,
        f"{_p}-min-length-decreased": INFO,
        f"{_p}-min-increased": ERR,
        f"{_p}-min-set": WARN,
        f"{_p}-min-decreased": INFO,
        f"{_p}-min-items-increased": ERR,
        f"{_p}-min-items-set": WARN,
        f"{_p}-min-items-decreased": INFO,
        f"{_p}-pattern-added": ERR,
        f"{_p}-pattern-changed": WARN,
        f"{_p}-pattern-removed": INFO,
    }
for _p in ("response-body", "response-property"):
    RULES |= {
        f"{_p}-type-changed": ERR,
        f"{_p}-type-generalized": ERR,
        f"{_p}-type-specialized": INFO,
        f"{_p}-list-of-types-widened": ERR,
        f"{_p}-list-of-types-narrowed": INFO,
        f"{_p}-became-nullable": ERR,
        f"{_p}-became-not-nullable": INFO,
        f"{_p}-enum-value-added": WARN,
        f"{_p}-enum-value-removed": INFO,
        f"{_p}-max-length-increased": ERR,
        f"{_p}-max-length-unset": ERR,
        f"{_p}-max-increased": ERR,
        f"{_p}-min-length-decreased": ERR,
        f"{_p}-min-decreased": ERR,
        f"{_p}-min-items-decreased": ERR,
        f"{_p}-min-items-unset": ERR,
        f"{_p}-pattern-added": INFO,
        f"{_p}-pattern-changed": INFO,
        f"{_p}-pattern-removed": INFO,
    }
RULES["schema-composition-changed"] = INFO  # baton's own: anyOf/oneOf differ, not compared further

_ADDITIVE = {
    "endpoint-added",
    "new-optional-request-parameter",
    "request-body-added-optional",
    "request-body-media-type-added",
    "response-success-status-added",
    "response-non-success-status-added",
    "response-media-type-added",
    "response-header-added",
    "new-optional-request-property",
    "response-optional-property-added",
    "response-required-property-added",
}


@dataclass(frozen=True, slots=True)
class SpecChange:
    """One change between the two documents, with oasdiff's rule id and level."""

    rule: str
    endpoint: str
    location: str
    message: str
    old: Any = None
    new: Any = None

    @property
    def level(self) -> str:
        return RULES[self.rule]

    @property
    def drift(self) -> DriftClass:
        if self.level in (ERR, WARN):
            return DriftClass.BREAKING
        return DriftClass.ADDITIVE if self.rule in _ADDITIVE else DriftClass.VALUE

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.drift.value,
            "rule": self.rule,
            "level": self.level,
            "endpoint": self.endpoint,
            "location": self.location,
            "message": self.message,
            "old": self.old,
            "new": self.new,
        }


@dataclass
class SpecDiffReport:
    """Every change from ``source`` to ``target``, and the gate they are held to."""

    source: str
    target: str
    fail_on: DriftClass = DriftClass.BREAKING
    changes: list[SpecChange] = field(default_factory=list)
    endpoints_compared: int = 0

    def counts(self) -> dict[str, int]:
        found = Counter(c.drift.value for c in self.changes)
        return {d.value: found[d.value] for d in DriftClass}

    def gated(self) -> list[SpecChange]:
        from baton.replay.drift import gate_includes

        return [c for c in self.changes if gate_includes(c.drift, self.fail_on)]

    @property
    def exit_code(self) -> int:
        return 1 if self.gated() else 0


def diff_specs(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    source: str = "old",
    target: str = "new",
    fail_on: DriftClass = DriftClass.BREAKING,
) -> SpecDiffReport:
    """The changes from ``old`` to ``new``, classified."""
    report = SpecDiffReport(source, target, fail_on)
    differ = _Differ(_Refs(old), _Refs(new), report.changes)
    old_ops, new_ops = _operations(old), _operations(new)
    new_paths = {key[1] for key in new_ops}
    for key in sorted(old_ops.keys() - new_ops.keys()):
        shown, operation = old_ops[key]
        endpoint = f"{key[0].upper()} {shown}"
        deprecated = "with" if operation.get("deprecated") else "without"
        scope = "api-path" if key[1] not in new_paths else "api"
        what = "path" if scope == "api-path" else "operation"
        differ.add(f"{scope}-removed-{deprecated}-deprecation", endpoint, "", f"{what} removed")
    for key in sorted(new_ops.keys() - old_ops.keys()):
        shown, _ = new_ops[key]
        differ.add("endpoint-added", f"{key[0].upper()} {shown}", "", "operation added")
    for key in sorted(old_ops.keys() & new_ops.keys()):
        report.endpoints_compared += 1
        _, before = old_ops[key]
        shown, after = new_ops[key]
        differ.operation(f"{key[0].upper()} {shown}", before, after)
    return report


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(method, path with parameter names blanked) -> (path as written, operation + path parameters)."""
    found: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for path, item in (spec.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                merged = dict(operation)
                merged["parameters"] = [*shared, *(operation.get("parameters") or [])]
                found[(method, re.sub(r"\{[^{}]*\}", "{}", path))] = (path, merged)
    return found


class _Refs:
    """Follows local ``$ref``s of one document; a cycle resolves to an empty schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, node: Any, seen: frozenset[str] = frozenset()) -> Any:
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen or not ref.startswith("#/"):
                return {}
            seen = seen | {ref}
            target: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
            node = target if target is not None else {}
        return node

    def schema(self, node: Any) -> dict[str, Any]:
        """The schema with refs followed and allOf flattened."""
        node = self.resolve(node)
        if not isinstance(node, dict):
            return {}
        if "allOf" not in node:
            return node
        merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            part = self.schema(part)
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = sorted({*merged.get("required", []), *value})
                else:
                    merged.setdefault(key, value)
        return merged


def _types(schema: dict[str, Any]) -> tuple[set[str] | None, bool]:
    """(non-null types or None for any, nullable)."""
    declared = schema.get("type")
    nullable = bool(schema.get("nullable"))
    if declared is None:
        return None, nullable
    types = {declared} if isinstance(declared, str) else set(declared)
    if "null" in types:
        types.discard("null")
        nullable = True
    return types or None, nullable


def _accepts(wide: set[str], narrow: set[str]) -> bool:
    """Every type in ``narrow`` is one ``wide`` accepts (integer is a number)."""
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _unwrap_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [{type: null}, X]`` as X with null added to its type."""
    variants = schema.get("anyOf")
    if not isinstance(variants, list) or len(variants) != 2:
        return schema
    nulls = [v for v in variants if v == {"type": "null"}]
    others = [v for v in variants if v != {"type": "null"}]
    if len(nulls) != 1 or len(others) != 1 or not isinstance(others[0], dict):
        return schema
    inner = dict(others[0])
    kind = inner.get("type")
    if isinstance(kind, str):
        inner["type"] = [kind, "null"]
    elif isinstance(kind, list):
        inner["type"] = [*kind, "null"]
    return inner


_CONSTRAINTS = (
    ("maxLength", "max-length"),
    ("maximum", "max"),
    ("maxItems", "max-items"),
    ("minLength", "min-length"),
    ("minimum", "min"),
    ("minItems", "min-items"),
)


class _Differ:
    def __init__(self, old: _Refs, new: _Refs, out: list[SpecChange]) -> None:
        self.old, self.new, self.out = old, new, out

    def add(
        self,
        rule: str,
        endpoint: str,
        location: str,
        message: str,
        old: Any = None,
        new: Any = None,
    ) -> None:
        if rule in RULES:
            self.out.append(SpecChange(rule, endpoint, location, message, old, new))

    def operation(self, endpoint: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        self.parameters(endpoint, before, after)
        self.request_body(endpoint, before.get("requestBody"), after.get("requestBody"))
        old_responses = before.get("responses") or {}
        new_responses = after.get("responses") or {}
        for status in sorted(old_responses.keys() - new_responses.keys(), key=str):
            kind = "success" if str(status).startswith("2") else "non-success"
            self.add(
                f"response-{kind}-status-removed", endpoint, f"response {status}", "status removed"
            )
        for status in sorted(new_responses.keys() - old_responses.keys(), key=str):
            kind = "success" if str(status).startswith("2") else "non-success"
            self.add(
                f"response-{kind}-status-added", endpoint, f"response {status}", "status added"
            )
        for status in sorted(old_responses.keys() & new_responses.keys(), key=str):
            self.response(
                endpoint,
                f"response {status}",
                self.old.resolve(old_responses[status]),
                self.new.resolve(new_responses[status]),
            )

    def parameters(self, endpoint: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        def keyed(refs: _Refs, operation: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
            found: dict[tuple[str, str], dict[str, Any]] = {}
            path_number = 0
            for raw in operation.get("parameters") or []:
                parameter = refs.resolve(raw)
                if not isinstance(parameter, dict) or "name" not in parameter:
                    continue
                where = str(parameter.get("in", ""))
                name = str(parameter["name"])
                if where == "path":
                    # Path parameters are matched by position: {id} may become {petId}.
                    name, path_number = f"#{path_number}", path_number + 1
                elif where == "header":
                    name = name.lower()
                found[(where, name)] = parameter
            return found

        old, new = keyed(self.old, before), keyed(self.new, after)
        for key in sorted(old.keys() - new.keys()):
            if key[0] != "path":
                self.add(
                    "request-parameter-removed", endpoint, f"{key[0]}.{key[1]}", "parameter removed"
                )
        for key in sorted(new.keys() - old.keys()):
            required = bool(new[key].get("required"))
            rule = (
                "new-required-request-parameter" if required else "new-optional-request-parameter"
            )
            label = f"{key[0]}.{new[key]['name']}"
            self.add(
                rule, endpoint, label, f"{'required' if required else 'optional'} parameter added"
            )
        for key in sorted(old.keys() & new.keys()):
            label = f"{key[0]}.{new[key]['name']}"
            was, now = bool(old[key].get("required")), bool(new[key].get("required"))
            if now and not was:
                self.add("request-parameter-became-required", endpoint, label, "became required")
            elif was and not now:
                self.add("request-parameter-became-optional", endpoint, label, "became optional")
            self.schema(
                "request-parameter",
                endpoint,
                label,
                self.old.schema(old[key].get("schema", {})),
                self.new.schema(new[key].get("schema", {})),
            )

    def request_body(self, endpoint: str, before: Any, after: Any) -> None:
        before, after = self.old.resolve(before), self.new.resolve(after)
        if not before and not after:
            return
        if not after:
            self.add("request-body-removed", endpoint, "request body", "request body removed")
            return
        if not before:
            required = bool(after.get("required"))
            rule = "request-body-added-required" if required else "request-body-added-optional"
            self.add(rule, endpoint, "request body", "request body added")
            return
        was, now = bool(before.get("required")), bool(after.get("required"))
        if now and not was:
            self.add("request-body-became-required", endpoint, "request body", "became required")
        elif was and not now:
            self.add("request-body-became-optional", endpoint, "request body", "became optional")
        self.content("request", endpoint, "request", before.get("content"), after.get("content"))

    def response(self, endpoint: str, where: str, before: Any, after: Any) -> None:
        if not isinstance(before, dict) or not isinstance(after, dict):
            return
        self.content("response", endpoint, where, before.get("content"), after.get("content"))
        old_headers = {
            k.lower(): self.old.resolve(v) for k, v in (before.get("headers") or {}).items()
        }
        new_headers = {
            k.lower(): self.new.resolve(v) for k, v in (after.get("headers") or {}).items()
        }
        for name in sorted(old_headers.keys() - new_headers.keys()):
            required = isinstance(old_headers[name], dict) and old_headers[name].get("required")
            rule = (
                "required-response-header-removed"
                if required
                else "optional-response-header-removed"
            )
            self.add(rule, endpoint, f"{where} header.{name}", "header removed")
        for name in sorted(new_headers.keys() - old_headers.keys()):
            self.add("response-header-added", endpoint, f"{where} header.{name}", "header added")
        for name in sorted(old_headers.keys() & new_headers.keys()):
            was = isinstance(old_headers[name], dict) and old_headers[name].get("required")
            now = isinstance(new_headers[name], dict) and new_headers[name].get("required")
            if was and not now:
                self.add(
                    "response-header-became-optional",
                    endpoint,
                    f"{where} header.{name}",
                    "became optional",
                )

    def content(self, direction: str, endpoint: str, where: str, before: Any, after: Any) -> None:
        old = before if isinstance(before, dict) else {}
        new = after if isinstance(after, dict) else {}
        prefix = "request-body" if direction == "request" else "response"
        for media in sorted(old.keys() - new.keys()):
            self.add(
                f"{prefix}-media-type-removed", endpoint, f"{where} {media}", "media type removed"
            )
        for media in sorted(new.keys() - old.keys()):
            self.add(f"{prefix}-media-type-added", endpoint, f"{where} {media}", "media type added")
        for media in sorted(old.keys() & new.keys()):
            old_media, new_media = old[media] or {}, new[media] or {}
            self.schema(
                f"{direction}-body",
                endpoint,
                f"{where} {media}: body",
                self.old.schema(old_media.get("schema", {})),
                self.new.schema(new_media.get("schema", {})),
            )

    def schema(
        self,
        place: str,
        endpoint: str,
        location: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> None:
        """Compare two schemas at ``location``; ``place`` is e.g. response-body or request-property."""
        before, after = _unwrap_nullable(before), _unwrap_nullable(after)
        request = place.startswith("request")
        if not before or not after:
            return
        if ("anyOf" in before or "oneOf" in before or "anyOf" in after or "oneOf" in after) and (
            json.dumps(before, sort_keys=True) != json.dumps(after, sort_keys=True)
        ):
            self.add("schema-composition-changed", endpoint, location, "anyOf/oneOf changed")
            return
        old_types, old_null = _types(before)
        new_types, new_null = _types(after)
        if old_null != new_null:
            gained = new_null and not old_null
            rule = f"{place}-became-{'nullable' if gained else 'not-nullable'}"
            self.add(
                rule, endpoint, location, "null " + ("allowed" if gained else "no longer allowed")
            )
        if old_types is not None and new_types is not None and old_types != new_types:
            shown = ("|".join(sorted(old_types)), "|".join(sorted(new_types)))
            lists = len(old_types) > 1 or len(new_types) > 1
            if request and _accepts(new_types, old_types):
                rule = f"{place}-list-of-types-widened" if lists else f"{place}-type-generalized"
            elif not request and _accepts(old_types, new_types):
                rule = f"{place}-list-of-types-narrowed" if lists else f"{place}-type-specialized"
            elif old_types & new_types and lists:
                rule = f"{place}-list-of-types-{'narrowed' if request else 'widened'}"
            elif not request and _accepts(new_types, old_types):
                rule = f"{place}-type-generalized"
            else:
                rule = f"{place}-type-changed"
            self.add(rule, endpoint, location, f"type {shown[0]} -> {shown[1]}", shown[0], shown[1])
            if not old_types & new_types:
                return
        self.formats(place, endpoint, location, before.get("format"), after.get("format"))
        self.enums(place, endpoint, location, before.get("enum"), after.get("enum"))
        self.constraints(place, endpoint, location, before, after)
        child = "request-property" if request and place != "request-parameter" else place
        if not request:
            child = "response-property"
        self.properties(child, endpoint, location, before, after)
        old_items, new_items = before.get("items"), after.get("items")
        if isinstance(old_items, dict) and isinstance(new_items, dict):
            self.schema(
                child,
                endpoint,
                f"{location}[]",
                self.old.schema(old_items),
                self.new.schema(new_items),
            )
        old_more, new_more = before.get("additionalProperties"), after.get("additionalProperties")
        if isinstance(old_more, dict) and isinstance(new_more, dict):
            self.schema(
                child,
                endpoint,
                f"{location}.*",
                self.old.schema(old_more),
                self.new.schema(new_more),
            )

    def formats(self, place: str, endpoint: str, location: str, before: Any, after: Any) -> None:
        if before == after:
            return
        request = place.startswith("request")
        if before and after:
            rule = f"{place}-type-changed"
        elif after:  # a format appeared: stricter
            rule = f"{place}-type-changed" if request else f"{place}-type-specialized"
        else:  # the format went: looser
            rule = f"{place}-type-generalized"
        self.add(
            rule,
            endpoint,
            location,
            f"format {before or 'none'} -> {after or 'none'}",
            before,
            after,
        )

    def enums(self, place: str, endpoint: str, location: str, before: Any, after: Any) -> None:
        request = place.startswith("request")
        old = None if not isinstance(before, list) else before
        new = None if not isinstance(after, list) else after
        if old is None and new is None:
            return
        if old is None:
            if request:
                self.add(f"{place}-became-enum", endpoint, location, "became an enum", None, new)
            return
        if new is None:
            self.add(
                f"{place}-enum-value-added",
                endpoint,
                location,
                "enum dropped: any value now allowed",
                old,
                None,
            )
            return
        removed = [v for v in old if v not in new]
        added = [v for v in new if v not in old]
        if removed:
            self.add(
                f"{place}-enum-value-removed",
                endpoint,
                location,
                f"enum values removed: {removed}",
                removed,
                None,
            )
        if added:
            self.add(
                f"{place}-enum-value-added",
                endpoint,
                location,
                f"enum values added: {added}",
                None,
                added,
            )

    def constraints(
        self,
        place: str,
        endpoint: str,
        location: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> None:
        request = place.startswith("request")
        for key, name in _CONSTRAINTS:
            old, new = before.get(key), after.get(key)
            if old == new:
                continue
            if old is None:
                if request:
                    self.add(
                        f"{place}-{name}-set", endpoint, location, f"{key} set to {new}", None, new
                    )
                continue
            if new is None:
                if not request:
                    self.add(
                        f"{place}-{name}-unset", endpoint, location, f"{key} removed", old, None
                    )
                continue
            grew = new > old
            self.add(
                f"{place}-{name}-{'increased' if grew else 'decreased'}",
                endpoint,
                location,
                f"{key} {old} -> {new}",
                old,
                new,
            )
        old_pattern, new_pattern = before.get("pattern"), after.get("pattern")
        if old_pattern != new_pattern:
            change = (
                "added" if old_pattern is None else "removed" if new_pattern is None else "changed"
            )
            self.add(
                f"{place}-pattern-{change}",
                endpoint,
                location,
                f"pattern {change}",
                old_pattern,
                new_pattern,
            )

    def properties(
        self,
        place: str,
        endpoint: str,
        location: str,
        before: dict[str, Any],
        after: dict[str, Any],
    ) -> None:
        request = place.startswith("request")
        hidden = "readOnly" if request else "writeOnly"
        old = {k: self.old.schema(v) for k, v in (before.get("properties") or {}).items()}
        new = {k: self.new.schema(v) for k, v in (after.get("properties") or {}).items()}
        old = {k: v for k, v in old.items() if not v.get(hidden)}
        new = {k: v for k, v in new.items() if not v.get(hidden)}
        old_required = set(before.get("required") or [])
        new_required = set(after.get("required") or [])
        for name in sorted(old.keys() - new.keys()):
            where = f"{location}.{name}"
            if request:
                self.add("request-property-removed", endpoint, where, "property removed")
            elif name in old_required:
                self.add(
                    "response-required-property-removed",
                    endpoint,
                    where,
                    "required property removed",
                )
            else:
                self.add(
                    "response-optional-property-removed",
                    endpoint,
                    where,
                    "optional property removed",
                )
        for name in sorted(new.keys() - old.keys()):
            where = f"{location}.{name}"
            required = name in new_required
            if request:
                rule = (
                    "new-required-request-property" if required else "new-optional-request-property"
                )
            else:
                rule = f"response-{'required' if required else 'optional'}-property-added"
            self.add(
                rule, endpoint, where, f"{'required' if required else 'optional'} property added"
            )
        for name in sorted(old.keys() & new.keys()):
            where = f"{location}.{name}"
            was, now = name in old_required, name in new_required
            if was != now:
                side = "request" if request else "response"
                self.add(
                    f"{side}-property-became-{'required' if now else 'optional'}",
                    endpoint,
                    where,
                    f"became {'required' if now else 'optional'}",
                )
            self.schema(place, endpoint, where, old[name], new[name])
