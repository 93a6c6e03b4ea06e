"""The drift page of ``baton diff --format html``: a summary, endpoints, and every change to look at.

The summary and the endpoint table are rendered into the markup; the
changes (up to tens of thousands) travel as one inert JSON block that the
page's script filters and shows a page at a time, building every element
with ``textContent``. Values are pretty-printed JSON where the location is
in a body (or the status), each cut to its share of ``VALUES_BUDGET``
(between ``VALUE_FLOOR`` and ``VALUE_LIMIT`` bytes as written in the page,
escapes counted), so a report of 10,000 changes stays under 20 MB whatever
the values hold.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from baton.replay.comparison import Change, DriftClass
from baton.replay.drift import DriftReport, Outcome, gate_includes
from baton.replay.html.page import inert_json, render_page

__all__ = [
    "VALUES_BUDGET",
    "VALUE_FLOOR",
    "VALUE_LIMIT",
    "drift_page_data",
    "render_drift_html",
    "value_limit",
]

VALUE_LIMIT = 20_000
"""Bytes one recorded or new value may take in the page; the JSON report has them whole."""
VALUE_FLOOR = 400
"""Bytes of one value kept however many changes there are."""
VALUES_BUDGET = 10_000_000
"""Bytes of all values together, shared out evenly: 500 each for 10,000 changes."""


def value_limit(changes: int) -> int:
    """Bytes kept of each value in a report of ``changes`` changes (two values each)."""
    return max(VALUE_FLOOR, min(VALUE_LIMIT, VALUES_BUDGET // max(1, 2 * changes)))


def written_size(text: str) -> int:
    """Bytes ``text`` takes in the page's data block (UTF-8; ``<>&``, quotes, newlines escaped)."""
    escaped = text.count("<") + text.count(">") + text.count("&")
    doubled = text.count('"') + text.count("\\") + text.count("\n")
    return len(text.encode("utf-8")) + 5 * escaped + doubled


def _cut(text: str, limit: int) -> str:
    if len(text) * 6 <= limit:  # no character takes more than 6 bytes (``\u003c``)
        return text
    # Every character takes a byte at least, so only the first ``limit`` can fit.
    head = text[: limit + 1]
    size = written_size(head)
    if len(text) <= limit and size <= limit:
        return text
    keep = len(head) * limit // max(1, size)
    while keep and written_size(text[:keep]) > limit:
        keep = keep * 9 // 10
    return text[:keep] + f"\n… ({len(text) - keep} more characters in the JSON report)"


_ORDER = [DriftClass.BREAKING, DriftClass.ADDITIVE, DriftClass.VALUE, DriftClass.NOISE]


def _shown(value: Any, as_json: bool, limit: int) -> str:
    if as_json or not isinstance(value, str):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    else:
        text = value
    return _cut(text, limit)


def _change_json(change: Change, request: int, endpoint: str, limit: int) -> dict[str, Any]:
    as_json = change.location.startswith("body") or change.location == "status"
    absent_old = change.old is None and change.new is not None
    absent_new = change.new is None and change.old is not None
    return {
        "c": change.drift.value,
        "e": endpoint,
        "k": change.kind,
        "l": change.location,
        "o": None if absent_old else _shown(change.old, as_json, limit),
        "n": None if absent_new else _shown(change.new, as_json, limit),
        "r": change.rule or "",
        "q": request,
    }


def _worst(outcomes: list[Outcome]) -> int:
    classes = {c.drift for o in outcomes for c in o.changes}
    return next((n for n, drift in enumerate(_ORDER) if drift in classes), len(_ORDER))


def drift_page_data(report: DriftReport) -> dict[str, Any]:
    """What the page's script shows: changes grouped by endpoint (worst first), and their requests."""
    grouped = sorted(report.endpoints().items(), key=lambda item: (_worst(item[1]), item[0]))
    limit = value_limit(sum(len(o.changes) for o in report.outcomes))
    requests: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    endpoints: list[dict[str, Any]] = []
    for endpoint, outcomes in grouped:
        counts = Counter(c.drift.value for o in outcomes for c in o.changes)
        endpoints.append(
            {
                "name": endpoint,
                "interactions": len(outcomes),
                "counts": {drift.value: counts[drift.value] for drift in _ORDER},
            }
        )
        mine: list[dict[str, Any]] = []
        for outcome in outcomes:
            if not outcome.changes:
                continue
            number = len(requests)
            requests.append(
                {
                    "number": outcome.number,
                    "id": outcome.interaction_id,
                    "method": outcome.method,
                    "target": outcome.target,
                    "recorded": outcome.recorded_status,
                    "new": outcome.new_status,
                    "note": outcome.note,
                }
            )
            mine += [_change_json(c, number, endpoint, limit) for c in outcome.changes]
        # Within an endpoint: breaking first, then additive, value, noise; stable otherwise.
        rank = {drift.value: n for n, drift in enumerate(_ORDER)}
        changes += sorted(mine, key=lambda c: rank[c["c"]])
    return {
        "classes": [drift.value for drift in _ORDER],
        "gated": [drift.value for drift in _ORDER if gate_includes(drift, report.fail_on)],
        "endpoints": endpoints,
        "requests": requests,
        "changes": changes,
    }


def render_drift_html(report: DriftReport) -> str:
    """``baton diff --format html``: the whole report as one self-contained page."""
    from baton.replay.report import INSECURE_NOTE, verdict

    data = drift_page_data(report)
    not_compared = Counter(
        (o.endpoint, o.outcome, o.note) for o in report.outcomes if o.outcome != "compared"
    )
    learned = 0
    if report.learned_noise is not None:
        learned = sum(len(v) for v in report.learned_noise.learned.values())
    return render_page(
        "drift.html",
        title=f"baton diff: {report.target} against {report.source}",
        scripts=["drift.js"],
        report=report,
        verdict=verdict(report),
        failed=bool(report.gated()),
        insecure_note=INSECURE_NOTE if report.insecure else "",
        counts=report.counts(),
        outcome_counts=report.outcome_counts(),
        classes=_ORDER,
        gated=data["gated"],
        endpoints=data["endpoints"],
        not_compared=sorted(not_compared.items()),
        learned=learned,
        data=inert_json(data),
    )
