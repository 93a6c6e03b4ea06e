"""The pages of ``baton contract check|diff --format html``: violations and changes by path.

A violation is shown with the part of the spec it broke: the schema at its
JSON path (``$.total`` -> the ``total`` property of the response schema),
the parameter it names, or the statuses the operation documents.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from typing import Any

from baton.replay.comparison import DriftClass
from baton.replay.contract_check import CheckReport, Violation
from baton.replay.drift import gate_includes
from baton.replay.html.page import render_page
from baton.replay.spec_diff import SpecChange, SpecDiffReport

__all__ = ["render_check_html", "render_spec_diff_html", "schema_excerpt"]

_EXCERPT_LIMIT = 3000
_SEEN_LISTED = 20
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+|\*)\]")
_CLASSES = [DriftClass.BREAKING, DriftClass.ADDITIVE, DriftClass.VALUE]


def _resolve(spec: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """``node`` with a local ``$ref`` followed (a few levels deep at most)."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and depth < 8:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        target: Any = spec
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                return node
            target = target[part]
        node, depth = target, depth + 1
    return node


def _walk(spec: dict[str, Any], schema: Any, location: str) -> Any:
    """The subschema at a JSON path such as ``$.items[0].sku``; None where it has none."""
    node = _resolve(spec, schema)
    for name, index in _STEP.findall(location.removeprefix("$")):
        if not isinstance(node, dict):
            return None
        if index:
            node = _resolve(spec, node.get("items"))
        else:
            properties = node.get("properties") or {}
            if name not in properties:
                return node  # the object whose rules the field broke (e.g. additionalProperties)
            node = _resolve(spec, properties[name])
    return node


def _operation(spec: dict[str, Any], endpoint: str) -> dict[str, Any] | None:
    method, _, path = endpoint.partition(" ")
    item = (spec.get("paths") or {}).get(path)
    if not isinstance(item, dict):
        return None
    operation = item.get(method.lower())
    return operation if isinstance(operation, dict) else None


def _media_schemas(spec: dict[str, Any], holder: Any) -> list[Any]:
    content = (_resolve(spec, holder) or {}).get("content") or {}
    return [media.get("schema") for media in content.values() if isinstance(media, dict)]


def schema_excerpt(spec: dict[str, Any], violation: Violation) -> str:
    """The part of ``spec`` that ``violation`` broke, as indented JSON; empty when none is found."""
    operation = _operation(spec, violation.endpoint)
    found: Any = None
    if violation.kind.value in ("unknown-path", "unknown-operation"):
        found = None
    elif operation is None:
        return ""
    elif violation.location == "status" or violation.kind.value == "undocumented-status":
        found = {"responses": sorted(map(str, (operation.get("responses") or {}).keys()))}
    elif violation.location.startswith("$"):
        if violation.side == "request":
            holders = [operation.get("requestBody")]
        else:
            responses = operation.get("responses") or {}
            holders = [responses[k] for k in sorted(responses, key=lambda k: str(k)[0] != "2")]
        for holder in holders:
            for schema in _media_schemas(spec, holder):
                found = _walk(spec, schema, violation.location)
                if found is not None:
                    break
            if found is not None:
                break
    elif "." in violation.location:
        where, _, name = violation.location.partition(".")
        parameters = [_resolve(spec, p) for p in operation.get("parameters") or []]
        found = next(
            (
                p
                for p in parameters
                if isinstance(p, dict)
                and p.get("in") == where
                and str(p.get("name", "")).lower() == name.lower()
            ),
            None,
        )
    if found is None:
        return ""
    text = json.dumps(found, indent=2, ensure_ascii=False, default=str)
    if len(text) > _EXCERPT_LIMIT:
        text = text[:_EXCERPT_LIMIT] + "\n…"
    return text


def render_check_html(report: CheckReport, spec: dict[str, Any]) -> str:
    """``baton contract check --format html``: violations grouped by path, each with its schema excerpt."""
    from baton.replay.contract_report import check_verdict

    grouped: dict[str, list[Violation]] = defaultdict(list)
    for violation in report.violations:
        grouped[violation.endpoint].append(violation)
    names = set(report.endpoints) | set(grouped)
    ordered = sorted(names, key=lambda name: (-len(grouped.get(name, [])), name))
    groups = []
    for name in ordered:
        # Each side, kind and location once, as the text report does, with where it was seen.
        kinds: dict[tuple[str, str, str], list[Violation]] = {}
        for violation in grouped.get(name, []):
            key = (violation.side, violation.kind.value, violation.location)
            kinds.setdefault(key, []).append(violation)
        groups.append(
            {
                "endpoint": name,
                "checked": report.endpoints.get(name, 0),
                "total": len(grouped.get(name, [])),
                "violations": [
                    {
                        "v": found[0],
                        "seen": found[:_SEEN_LISTED],
                        "count": len(found),
                        "excerpt": schema_excerpt(spec, found[0]),
                    }
                    for found in kinds.values()
                ],
            }
        )
    return render_page(
        "contract_check.html",
        title=f"baton contract check: {report.spec}",
        report=report,
        verdict=check_verdict(report),
        by_kind=sorted(Counter(v.kind.value for v in report.violations).items()),
        groups=groups,
        notes=report.notes(),
    )


def _value(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def render_spec_diff_html(report: SpecDiffReport) -> str:
    """``baton contract diff --format html``: changes by endpoint, worst first, old and new side by side."""
    from baton.replay.contract_report import diff_verdict

    found: dict[str, list[SpecChange]] = defaultdict(list)
    for change in report.changes:
        found[change.endpoint].append(change)
    rank = {drift: n for n, drift in enumerate(_CLASSES)}

    def worst(changes: list[SpecChange]) -> int:
        return min((rank[c.drift] for c in changes), default=len(_CLASSES))

    groups = [
        {
            "endpoint": endpoint,
            "changes": [
                {
                    "c": change,
                    "old": _value(change.old),
                    "new": _value(change.new),
                    "gated": gate_includes(change.drift, report.fail_on),
                }
                for change in sorted(changes, key=lambda c: rank[c.drift])
            ],
        }
        for endpoint, changes in sorted(found.items(), key=lambda i: (worst(i[1]), i[0]))
    ]
    return render_page(
        "spec_diff.html",
        title=f"baton contract diff: {report.source} → {report.target}",
        report=report,
        verdict=diff_verdict(report),
        failed=bool(report.gated()),
        counts=report.counts(),
        classes=_CLASSES,
        groups=groups,
    )
