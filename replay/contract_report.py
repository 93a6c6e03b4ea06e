"""Reports of ``baton contract check`` and ``baton contract diff``, in baton's report formats.

The same four as ``baton diff``: a terminal report grouped by endpoint,
worst first, ending in a one-line verdict; JSON with a stable schema
(``baton-contract-check/1``, ``baton-spec-diff/1``); JUnit XML (a testcase
per endpoint, failed where a violation or a gated change is); Markdown for
a pull-request comment, verdict and counts first.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any
from xml.etree import ElementTree

from baton.cassettes.wording import plural
from baton.replay.comparison import DriftClass
from baton.replay.contract_check import CheckReport, Violation
from baton.replay.drift import gate_includes
from baton.replay.spec_diff import SpecChange, SpecDiffReport

__all__ = [
    "CHECK_SCHEMA_ID",
    "DIFF_SCHEMA_ID",
    "check_verdict",
    "diff_verdict",
    "render_check",
    "render_spec_diff",
]

CHECK_SCHEMA_ID = "baton-contract-check/1"
DIFF_SCHEMA_ID = "baton-spec-diff/1"
_CLASSES = [DriftClass.BREAKING, DriftClass.ADDITIVE, DriftClass.VALUE]
_SHOWN_PER_ENDPOINT = 12


# -- contract check ---------------------------------------------------------------------


def check_verdict(report: CheckReport) -> str:
    if report.violations:
        where = len({(v.source, v.number) for v in report.violations})
        return (
            f"VIOLATIONS: {plural(len(report.violations), 'violation')} of {report.spec} "
            f"in {plural(where, 'interaction')}. Exit code 1."
        )
    return f"OK: {plural(report.checked, 'interaction')} checked, all follow {report.spec}. Exit code 0."


def _by_endpoint(report: CheckReport) -> list[tuple[str, list[Violation]]]:
    found: dict[str, list[Violation]] = defaultdict(list)
    for violation in report.violations:
        found[violation.endpoint].append(violation)
    names = set(report.endpoints) | set(found)
    return sorted(((n, found.get(n, [])) for n in names), key=lambda item: (-len(item[1]), item[0]))


def _violation_line(violation: Violation) -> str:
    return (
        f"{violation.side} {violation.kind.value} {violation.location}: {violation.message}"
        f"  (#{violation.number} {violation.target} in {violation.source})"
    )


def _check_text(report: CheckReport) -> str:
    lines = [
        f"baton contract check: {', '.join(report.sources) or 'nothing'} against {report.spec}"
    ]
    lines.append(
        f"{plural(report.checked, 'interaction')} checked over "
        f"{plural(len(report.endpoints), 'endpoint')}"
    )
    for endpoint, violations in _by_endpoint(report):
        checked = report.endpoints.get(endpoint, 0)
        status = plural(len(violations), "violation") if violations else "ok"
        lines += ["", f"{endpoint}  ({checked} checked: {status})"]
        kinds: dict[tuple[str, str, str], list[Violation]] = {}
        for violation in violations:
            kinds.setdefault((violation.side, violation.kind.value, violation.location), []).append(
                violation
            )
        for found in list(kinds.values())[:_SHOWN_PER_ENDPOINT]:
            times = f" (x{len(found)})" if len(found) > 1 else ""
            lines.append(f"  {_violation_line(found[0])}{times}")
        if len(kinds) > _SHOWN_PER_ENDPOINT:
            lines.append(f"  ... {plural(len(kinds) - _SHOWN_PER_ENDPOINT, 'more kind')}")
    notes = report.notes()
    if notes:
        lines.append("")
        lines += [f"note: {note}" for note in notes]
    lines += ["", check_verdict(report)]
    return "\n".join(lines) + "\n"


def _check_json(report: CheckReport) -> dict[str, Any]:
    return {
        "schema": CHECK_SCHEMA_ID,
        "spec": report.spec,
        "sources": report.sources,
        "verdict": "violations" if report.violations else "ok",
        "exit_code": report.exit_code,
        "summary": {
            "checked": report.checked,
            "endpoints": len(report.endpoints),
            "violations": len(report.violations),
            "by_kind": dict(Counter(v.kind.value for v in report.violations)),
            "websocket_not_checked": report.websocket,
            "bodies_not_checked": report.bodies_not_held,
            "without_response": report.no_response,
        },
        "notes": report.notes(),
        "violations": [v.to_json() for v in report.violations],
    }


def _check_junit(report: CheckReport) -> str:
    suite = ElementTree.Element(
        "testsuite",
        name=f"baton contract check {report.spec}",
        tests=str(len(_by_endpoint(report))),
        errors="0",
        skipped="0",
    )
    failures = 0
    for endpoint, violations in sorted(_by_endpoint(report)):
        case = ElementTree.SubElement(suite, "testcase", classname="baton.contract", name=endpoint)
        if violations:
            failures += 1
            failure = ElementTree.SubElement(
                case,
                "failure",
                message=plural(len(violations), "violation"),
                type="contract",
            )
            failure.text = "\n".join(_violation_line(v) for v in violations)
    suite.set("failures", str(failures))
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _check_markdown(report: CheckReport) -> str:
    icon = "❌" if report.violations else "✅"
    lines = [
        f"### {icon} baton contract check against `{report.spec}`",
        "",
        f"**{check_verdict(report)}**",
        "",
        "| checked | endpoints | violations |",
        "| --- | --- | --- |",
        f"| {report.checked} | {len(report.endpoints)} | {len(report.violations)} |",
        "",
    ]
    for endpoint, violations in _by_endpoint(report):
        if not violations:
            continue
        lines += [f"**`{endpoint}`**", ""]
        for violation in violations[: _SHOWN_PER_ENDPOINT * 2]:
            lines.append(
                f"- {violation.side} `{violation.kind.value}` `{violation.location}`: "
                f"{violation.message} (#{violation.number} `{violation.target}`)"
            )
        lines.append("")
    for note in report.notes():
        lines.append(f"> {note}")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_check(report: CheckReport, fmt: str) -> str:
    """The check report in ``fmt``: text, json, junit or markdown."""
    if fmt == "json":
        return json.dumps(_check_json(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "junit":
        return _check_junit(report)
    if fmt == "markdown":
        return _check_markdown(report)
    return _check_text(report)


# -- spec diff --------------------------------------------------------------------------


def diff_verdict(report: SpecDiffReport) -> str:
    counts = report.counts()
    summary = ", ".join(f"{counts[c.value]} {c.value}" for c in _CLASSES)
    gated = report.gated()
    gate = f"--fail-on {report.fail_on.value}"
    if gated:
        verb = "fails" if len(gated) == 1 else "fail"
        return f"DRIFT: {plural(len(gated), 'change')} {verb} the gate ({gate}); {summary}. Exit code 1."
    return f"OK: no {report.fail_on.value} change ({gate}); {summary}. Exit code 0."


def _change_groups(report: SpecDiffReport) -> list[tuple[str, list[SpecChange]]]:
    found: dict[str, list[SpecChange]] = defaultdict(list)
    for change in report.changes:
        found[change.endpoint].append(change)

    def worst(changes: list[SpecChange]) -> int:
        classes = {c.drift for c in changes}
        return next((n for n, d in enumerate(_CLASSES) if d in classes), len(_CLASSES))

    return sorted(found.items(), key=lambda item: (worst(item[1]), item[0]))


def _change_line(change: SpecChange) -> str:
    where = f"{change.location}: " if change.location else ""
    return f"{where}{change.message}  [{change.rule}, {change.level}]"


def _diff_text(report: SpecDiffReport) -> str:
    lines = [f"baton contract diff: {report.source} -> {report.target}"]
    lines.append(
        f"{plural(report.endpoints_compared, 'operation')} in both, "
        f"{plural(len(report.changes), 'change')}"
    )
    for endpoint, changes in _change_groups(report):
        by_class = Counter(c.drift for c in changes)
        status = ", ".join(f"{by_class[c]} {c.value}" for c in _CLASSES if by_class[c])
        lines += ["", f"{endpoint}  ({status})"]
        for drift in _CLASSES:
            mine = [c for c in changes if c.drift is drift]
            if not mine:
                continue
            gate = " [fails the gate]" if gate_includes(drift, report.fail_on) else ""
            lines.append(f"  {drift.value}{gate}:")
            lines += [f"    {_change_line(c)}" for c in mine[: _SHOWN_PER_ENDPOINT * 2]]
            if len(mine) > _SHOWN_PER_ENDPOINT * 2:
                lines.append(
                    f"    ... {plural(len(mine) - _SHOWN_PER_ENDPOINT * 2, 'more change')}"
                )
    lines += ["", diff_verdict(report)]
    return "\n".join(lines) + "\n"


def _diff_json(report: SpecDiffReport) -> dict[str, Any]:
    return {
        "schema": DIFF_SCHEMA_ID,
        "source": report.source,
        "target": report.target,
        "fail_on": report.fail_on.value,
        "verdict": "drift" if report.gated() else "ok",
        "exit_code": report.exit_code,
        "summary": {
            "operations_compared": report.endpoints_compared,
            "changes": report.counts(),
            "gated_changes": len(report.gated()),
        },
        "changes": [c.to_json() for c in report.changes],
    }


def _diff_junit(report: SpecDiffReport) -> str:
    groups = _change_groups(report)
    suite = ElementTree.Element(
        "testsuite",
        name=f"baton contract diff {report.source}",
        tests=str(len(groups)),
        errors="0",
        skipped="0",
    )
    failures = 0
    for endpoint, changes in sorted(groups):
        case = ElementTree.SubElement(suite, "testcase", classname="baton.spec_diff", name=endpoint)
        gated = [c for c in changes if gate_includes(c.drift, report.fail_on)]
        if gated:
            failures += 1
            failure = ElementTree.SubElement(
                case,
                "failure",
                message=f"{len(gated)} {report.fail_on.value}-gated change(s)",
                type="spec-diff",
            )
            failure.text = "\n".join(f"{c.drift.value} {_change_line(c)}" for c in gated)
    suite.set("failures", str(failures))
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _diff_markdown(report: SpecDiffReport) -> str:
    counts = report.counts()
    icon = "❌" if report.gated() else "✅"
    lines = [
        f"### {icon} baton contract diff: `{report.source}` → `{report.target}`",
        "",
        f"**{diff_verdict(report)}**",
        "",
        "| breaking | additive | value |",
        "| --- | --- | --- |",
        f"| {counts['breaking']} | {counts['additive']} | {counts['value']} |",
        "",
    ]
    for drift in _CLASSES:
        if not counts[drift.value]:
            continue
        gate = " — fails the gate" if gate_includes(drift, report.fail_on) else ""
        lines += [f"#### {drift.value.capitalize()} ({counts[drift.value]}){gate}", ""]
        for endpoint, changes in _change_groups(report):
            mine = [c for c in changes if c.drift is drift]
            if not mine:
                continue
            lines += [f"**`{endpoint}`**", ""]
            for change in mine:
                where = f"`{change.location}` " if change.location else ""
                lines.append(f"- {where}{change.message} — `{change.rule}` ({change.level})")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_spec_diff(report: SpecDiffReport, fmt: str) -> str:
    """The spec diff in ``fmt``: text, json, junit or markdown."""
    if fmt == "json":
        return json.dumps(_diff_json(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "junit":
        return _diff_junit(report)
    if fmt == "markdown":
        return _diff_markdown(report)
    return _diff_text(report)
