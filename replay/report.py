"""Render a ``DriftReport``: for a terminal, for machines (JSON), for CI (JUnit), for a pull request.

The terminal report groups by endpoint, worst first, shows the first
examples of each kind of change with old -> new values, and ends with a
one-line verdict, where a terminal's eye lands; it reads the same without
colour. The Markdown report reads top-down as a pull-request comment should:
the verdict and the counts first, then the changes by class — breaking,
additive, value, noise (folded) — each per endpoint, then what was not
compared. The JSON form follows the schema in
``docs/drift-report.schema.json`` (``schema: baton-drift-report/1``).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from baton.cassettes.wording import plural
from baton.replay.comparison import Change, DriftClass
from baton.replay.drift import DriftReport, Outcome, gate_includes

__all__ = ["INSECURE_NOTE", "SCHEMA_ID", "render", "render_json", "verdict"]

SCHEMA_ID = "baton-drift-report/1"
_EXAMPLES = 3
_ORDER = [DriftClass.BREAKING, DriftClass.ADDITIVE, DriftClass.VALUE, DriftClass.NOISE]
INSECURE_NOTE = (
    "certificates were not verified (--insecure): the answers may not come from the target"
)


def _short(value: Any, limit: int = 60, *, as_json: bool = True) -> str:
    # JSON values are shown as JSON, so 11.0 -> "11.00" shows the type change.
    if as_json or not isinstance(value, str):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = value
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _arrow(change: Change) -> str:
    as_json = change.location.startswith("body.") or change.location == "status"
    if change.old is None and change.new is not None:
        return f"added: {_short(change.new, as_json=as_json)}"
    if change.new is None and change.old is not None:
        return f"was: {_short(change.old, as_json=as_json)}"
    return f"{_short(change.old, as_json=as_json)} -> {_short(change.new, as_json=as_json)}"


def verdict(report: DriftReport) -> str:
    counts = report.counts()
    gated = report.gated()
    summary = ", ".join(f"{counts[c.value]} {c.value}" for c in _ORDER)
    if gated:
        return (
            f"DRIFT: {plural(len(gated), 'change')} {'fails' if len(gated) == 1 else 'fail'} "
            f"the gate (--fail-on {report.fail_on.value}); "
            f"{summary}. Exit code 1."
        )
    return f"OK: no {report.fail_on.value} drift (--fail-on {report.fail_on.value}); {summary}. Exit code 0."


def _severity_order(report: DriftReport) -> list[tuple[str, list[Outcome]]]:
    """Endpoints worst first (breaking, additive, value, noise, unchanged), then by name."""

    def worst(outcomes: list[Outcome]) -> int:
        classes = {c.drift for o in outcomes for c in o.changes}
        return next((n for n, drift in enumerate(_ORDER) if drift in classes), len(_ORDER))

    return sorted(report.endpoints().items(), key=lambda item: (worst(item[1]), item[0]))


def render_text(report: DriftReport) -> str:
    """The terminal report."""
    lines = [f"baton diff: {report.source} against {report.target}"]
    if report.insecure:
        lines.append(f"warning: {INSECURE_NOTE}")
    oc = report.outcome_counts()
    lines.append(
        f"{oc['compared']} compared, {oc['skipped']} skipped, "
        f"{oc['only-in-old']} only in the recording, {oc['only-in-new']} only in the new one"
    )
    for endpoint, outcomes in _severity_order(report):
        changes = [c for o in outcomes for c in o.changes]
        by_class = Counter(c.drift for c in changes)
        status = ", ".join(f"{by_class[c]} {c.value}" for c in _ORDER if by_class[c]) or "no change"
        extra = Counter(o.outcome for o in outcomes if o.outcome != "compared")
        more = "".join(f", {n} {kind}" for kind, n in extra.items())
        lines.append("")
        count = plural(len(outcomes), "interaction")
        lines.append(f"{endpoint}  ({count}: {status}{more})")
        for drift in _ORDER:
            kinds: dict[tuple[str, str], list[Change]] = {}
            for change in changes:
                if change.drift is drift:
                    kinds.setdefault((change.kind, change.location), []).append(change)
            if not kinds:
                continue
            gate = " [fails the gate]" if gate_includes(drift, report.fail_on) else ""
            lines.append(f"  {drift.value}{gate}:")
            for (kind, location), found in list(kinds.items())[: 2 * _EXAMPLES]:
                times = f" (x{len(found)})" if len(found) > 1 else ""
                rule = f"  [{found[0].rule}]" if found[0].rule else ""
                lines.append(f"    {location}: {kind}{times}: {_arrow(found[0])}{rule}")
            if len(kinds) > 2 * _EXAMPLES:
                lines.append(f"    ... {len(kinds) - 2 * _EXAMPLES} more locations")
        notes = Counter(o.note for o in outcomes if o.note)
        for note, n in notes.items():
            lines.append(f"  note ({n}x): {note}")
    if report.learned_noise is not None and report.learned_noise.learned:
        learned = sum(len(v) for v in report.learned_noise.learned.values())
        lines.append("")
        lines.append(
            f"learned noise: {learned} locations over {len(report.learned_noise.learned)} endpoints"
        )
    lines.append("")
    lines.append(verdict(report))
    return "\n".join(lines) + "\n"


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "number": outcome.number,
        "id": outcome.interaction_id,
        "method": outcome.method,
        "target": outcome.target,
        "endpoint": outcome.endpoint,
        "outcome": outcome.outcome,
        "status": {"recorded": outcome.recorded_status, "new": outcome.new_status},
        "changes": [c.to_json() for c in outcome.changes],
        "note": outcome.note,
    }


def report_json(report: DriftReport) -> dict[str, Any]:
    """The JSON report as a value (schema ``baton-drift-report/1``)."""
    counts = report.counts()
    out: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "source": report.source,
        "target": report.target,
        "insecure": report.insecure,
        "fail_on": report.fail_on.value,
        "verdict": "drift" if report.gated() else "ok",
        "exit_code": report.exit_code,
        "summary": {
            "interactions": len(report.outcomes),
            **{k.replace("-", "_"): v for k, v in report.outcome_counts().items()},
            "endpoints": len(report.endpoints()),
            "changes": counts,
            "gated_changes": len(report.gated()),
        },
        "interactions": [_outcome_json(o) for o in report.outcomes],
    }
    if report.shard is not None:  # a shard's report: what `baton report merge` needs
        out["shard"] = report.shard.to_json()
    return out


def render_json(report: DriftReport) -> str:
    """The JSON report as text: ``json.dumps(report_json(report), indent=2)``, byte for byte.

    json's indenting encoder is pure Python, and a run of 10,000 interactions
    spent as long writing its report as comparing. Each interaction without
    changes (nearly all of them) is written from a template with the C string
    encoder; the others, and the head, by ``json.dumps`` itself. Strings never
    hold a raw newline in JSON, so a nested value's text is the value's own
    with every line indented further.
    """
    value = report_json(report)
    interactions = value.pop("interactions")
    shard = value.pop("shard", None)
    head = json.dumps(value, indent=2, ensure_ascii=False)
    parts = [head[: -len("\n}")], ',\n  "interactions": ']
    if interactions:
        parts.append("[\n    ")
        parts.append(",\n    ".join(_interaction_json(entry) for entry in interactions))
        parts.append("\n  ]")
    else:
        parts.append("[]")
    if shard is not None:
        parts.append(',\n  "shard": ')
        parts.append(json.dumps(shard, indent=2, ensure_ascii=False).replace("\n", "\n  "))
    parts.append("\n}\n")
    return "".join(parts)


_encode_string = json.encoder.encode_basestring  # ensure_ascii=False's encoder (C where built)
_ENTRY_KEYS = [
    "number",
    "id",
    "method",
    "target",
    "endpoint",
    "outcome",
    "status",
    "changes",
    "note",
]
_STATUS_KEYS = ["recorded", "new"]


def _status_json(value: object) -> str | None:
    """A status as json.dumps writes it (an int or null); None for anything else."""
    if type(value) is int:
        return int.__repr__(value)
    return "null" if value is None else None


def _interaction_json(entry: dict[str, Any]) -> str:
    """One entry of ``interactions`` as ``json.dumps(entry, indent=2)`` nested two levels deep."""
    number, id_, method, target = entry["number"], entry["id"], entry["method"], entry["target"]
    endpoint, outcome, status, note = (
        entry["endpoint"],
        entry["outcome"],
        entry["status"],
        entry["note"],
    )
    recorded = _status_json(status["recorded"])
    new = _status_json(status["new"])
    if (
        not entry["changes"]
        and recorded is not None
        and new is not None
        and type(number) is int
        and type(id_) is str
        and type(method) is str
        and type(target) is str
        and type(endpoint) is str
        and type(outcome) is str
        and type(note) is str
        and list(entry) == _ENTRY_KEYS
        and list(status) == _STATUS_KEYS
    ):
        encode = _encode_string
        return (
            f'{{\n      "number": {int.__repr__(number)},\n      "id": {encode(id_)},\n'
            f'      "method": {encode(method)},\n      "target": {encode(target)},\n'
            f'      "endpoint": {encode(endpoint)},\n      "outcome": {encode(outcome)},\n'
            f'      "status": {{\n        "recorded": {recorded},\n        "new": {new}\n      }},\n'
            f'      "changes": [],\n      "note": {encode(note)}\n    }}'
        )
    return json.dumps(entry, indent=2, ensure_ascii=False).replace("\n", "\n    ")


def render_junit(report: DriftReport) -> str:
    """JUnit XML: one testcase per endpoint, a failure where a change fails the gate."""
    from xml.etree import ElementTree  # only this format needs it

    suite = ElementTree.Element(
        "testsuite",
        name=f"baton diff {report.source}",
        tests=str(len(report.endpoints())),
    )
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in (
        ("source", report.source),
        ("target", report.target),
        ("fail_on", report.fail_on.value),
        ("insecure", "true" if report.insecure else "false"),
    ):
        ElementTree.SubElement(properties, "property", name=name, value=value)
    failures = skipped = 0
    for endpoint, outcomes in sorted(report.endpoints().items()):
        case = ElementTree.SubElement(suite, "testcase", classname="baton.drift", name=endpoint)
        gated = [c for o in outcomes for c in o.changes if gate_includes(c.drift, report.fail_on)]
        if gated:
            failures += 1
            failure = ElementTree.SubElement(
                case,
                "failure",
                message=f"{len(gated)} {report.fail_on.value}-gated change(s)",
                type="drift",
            )
            failure.text = "\n".join(
                f"{c.drift.value} {c.location}: {c.kind}: {_arrow(c)}" for c in gated
            )
        elif all(o.outcome == "skipped" for o in outcomes):
            skipped += 1
            ElementTree.SubElement(case, "skipped", message=outcomes[0].note)
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


_MARKDOWN_LINES_PER_ENDPOINT = 20


def _markdown_changes(report: DriftReport, drift: DriftClass) -> list[str]:
    """The changes of one class, per endpoint, each kind and location once with its count."""
    lines: list[str] = []
    for endpoint, outcomes in sorted(report.endpoints().items()):
        kinds: dict[tuple[str, str], list[Change]] = {}
        for change in (c for o in outcomes for c in o.changes if c.drift is drift):
            kinds.setdefault((change.kind, change.location), []).append(change)
        if not kinds:
            continue
        lines += [f"**`{endpoint}`**", ""]
        for (kind, location), found in list(kinds.items())[:_MARKDOWN_LINES_PER_ENDPOINT]:
            times = f" (x{len(found)})" if len(found) > 1 else ""
            rule = f" — {found[0].rule}" if found[0].rule else ""
            lines.append(f"- `{location}` {kind}{times}: {_arrow(found[0])}{rule}")
        if len(kinds) > _MARKDOWN_LINES_PER_ENDPOINT:
            hidden = len(kinds) - _MARKDOWN_LINES_PER_ENDPOINT
            lines.append(f"- … {plural(hidden, 'more location')} (the JSON report has all)")
        lines.append("")
    return lines


def render_markdown(report: DriftReport) -> str:
    """A pull-request comment: verdict and counts, then breaking, additive, value, noise, skipped."""
    counts = report.counts()
    oc = report.outcome_counts()
    icon = "❌" if report.gated() else "✅"
    lines = [
        f"### {icon} baton drift: `{report.target}` against `{report.source}`",
        "",
        f"**{verdict(report)}**",
        "",
    ]
    if report.insecure:
        lines += [f"> ⚠️ {INSECURE_NOTE.replace('--insecure', '`--insecure`')}", ""]
    lines += [
        "| breaking | additive | value | noise | compared | skipped | only in old | only in new |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {counts['breaking']} | {counts['additive']} | {counts['value']} | {counts['noise']} "
        f"| {oc['compared']} | {oc['skipped']} | {oc['only-in-old']} | {oc['only-in-new']} |",
        "",
    ]
    for drift in _ORDER:
        if not counts[drift.value]:
            continue
        gate = " — fails the gate" if gate_includes(drift, report.fail_on) else ""
        lines += [f"#### {drift.value.capitalize()} ({counts[drift.value]}){gate}", ""]
        body = _markdown_changes(report, drift)
        if drift is DriftClass.NOISE:
            # Expected and often long: folded, so the comment stays about what matters.
            summary = "matched an ignore rule or learned noise"
            body = ["<details><summary>" + summary + "</summary>", "", *body, "</details>", ""]
        lines += body
    not_compared = [
        (endpoint, note, n)
        for endpoint, outcomes in sorted(report.endpoints().items())
        for note, n in Counter(o.note for o in outcomes if o.outcome != "compared").items()
    ]
    if not_compared:
        total = sum(n for _, _, n in not_compared)
        lines += [f"#### Not compared ({total})", ""]
        lines += [f"- `{endpoint}` ({n}x): {note}" for endpoint, note, n in not_compared]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render(report: DriftReport, fmt: str) -> str:
    """The report in ``fmt``: text, json, junit, markdown or html."""
    if fmt == "html":
        from baton.replay.html import render_drift_html

        return render_drift_html(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "junit":
        return render_junit(report)
    if fmt == "markdown":
        return render_markdown(report)
    return render_text(report)
