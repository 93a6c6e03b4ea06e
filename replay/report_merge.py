"""Merge the JSON reports of n shards into the report one unsharded run would have written.

Each shard report holds the outcomes of its interactions with their numbers
in the whole recording, so the merged outcomes are theirs in number order;
what only the new recording has is numbered by its place there and is
renumbered after the recording's last interaction, as an unsharded run
numbers it. Counts, the verdict and the exit code follow from the outcomes.

The shards must add up: one report for each of 1..n, of the same recording
(cassette fingerprints), the same target and the same settings. Anything
else is a ``ReportMergeError`` naming the report and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from baton.replay.comparison import Change, DriftClass, NoiseRules
from baton.replay.drift import DriftReport, Outcome
from baton.replay.report import SCHEMA_ID

__all__ = ["ReportMergeError", "merge_shard_reports", "report_from_json"]


class ReportMergeError(ValueError):
    """The shard reports cannot be merged: malformed, missing, doubled or of different runs."""


def _change(data: dict[str, Any]) -> Change:
    return Change(
        DriftClass(data["class"]),
        data["kind"],
        data["location"],
        data.get("old"),
        data.get("new"),
        data.get("rule"),
    )


def _outcome(data: dict[str, Any]) -> Outcome:
    return Outcome(
        number=int(data["number"]),
        interaction_id=data["id"],
        method=data["method"],
        target=data["target"],
        endpoint=data["endpoint"],
        outcome=data["outcome"],
        recorded_status=data["status"]["recorded"],
        new_status=data["status"]["new"],
        changes=[_change(c) for c in data["changes"]],
        note=data["note"],
    )


def report_from_json(data: Any, where: str) -> DriftReport:
    """A ``DriftReport`` from its JSON form; ``ReportMergeError`` naming ``where`` if it is not one."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        raise ReportMergeError(
            f"{where}: not a baton drift report (no schema {SCHEMA_ID!r}); "
            "write it with baton diff --format json"
        )
    try:
        report = DriftReport(
            source=data["source"],
            target=data["target"],
            fail_on=DriftClass(data["fail_on"]),
            outcomes=[_outcome(o) for o in data["interactions"]],
            insecure=bool(data.get("insecure", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportMergeError(
            f"{where}: not a baton drift report ({type(exc).__name__}: {exc})"
        ) from exc
    return report


def _shard_section(data: dict[str, Any], where: str) -> dict[str, Any]:
    shard = data.get("shard")
    if not isinstance(shard, dict):
        raise ReportMergeError(
            f"{where}: not the report of a shard; write each with baton diff --shard I/N "
            "--format json"
        )
    try:
        int(shard["index"]), int(shard["count"]), int(shard["recorded"])
        shard["key"], shard["cassettes"], shard["learned"], shard["learn_noise"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportMergeError(
            f"{where}: its shard section is incomplete ({type(exc).__name__}: {exc})"
        ) from exc
    return shard


_MUST_AGREE = (
    ("source", "the recording"),
    ("target", "the target"),
    ("insecure", "--insecure"),
)
_SHARD_MUST_AGREE = (
    ("count", "the shard count"),
    ("key", "the shard key (--learn-noise or not)"),
    ("cassettes", "the cassettes"),
    ("recorded", "the number of recorded interactions"),
    ("learn_noise", "--learn-noise"),
)


def merge_shard_reports(
    reports: Sequence[tuple[str, Any]], fail_on: DriftClass | None = None
) -> DriftReport:
    """The report of the unsharded run, from ``(where, json)`` of every shard.

    ``fail_on`` sets the gate; by default the shards' (which must agree).
    """
    if not reports:
        raise ReportMergeError("no shard reports to merge")
    parsed: list[tuple[str, dict[str, Any], dict[str, Any], DriftReport]] = []
    for where, data in reports:
        report = report_from_json(data, where)
        parsed.append((where, data, _shard_section(data, where), report))
    first_where, first, first_shard, _ = parsed[0]
    for where, data, shard, _ in parsed[1:]:
        for name, what in _MUST_AGREE:
            if data.get(name) != first.get(name):
                raise ReportMergeError(
                    f"{where}: {what} differs from {first_where}'s "
                    f"({data.get(name)!r}, not {first.get(name)!r}); merge shards of one run"
                )
        if fail_on is None and data["fail_on"] != first["fail_on"]:
            raise ReportMergeError(
                f"{where}: --fail-on {data['fail_on']} differs from {first_where}'s "
                f"({first['fail_on']}); choose the gate with --fail-on"
            )
        for name, what in _SHARD_MUST_AGREE:
            if shard[name] != first_shard[name]:
                raise ReportMergeError(
                    f"{where}: {what} differs from {first_where}'s; merge shards of one run"
                )
    count = int(first_shard["count"])
    seen: dict[int, str] = {}
    for where, _, shard, _ in parsed:
        index = int(shard["index"])
        if index in seen:
            raise ReportMergeError(
                f"shard {index}/{count} given twice ({seen[index]} and {where}); give each once"
            )
        seen[index] = where
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing:
        names = ", ".join(f"{i}/{count}" for i in missing)
        raise ReportMergeError(f"shard {names} missing; merge all {count} shard reports")
    outcomes = [o for *_, report in parsed for o in report.outcomes]
    numbers = [o.number for o in outcomes]
    if len(set(numbers)) != len(numbers):
        raise ReportMergeError("the shards overlap (an interaction is in two); rerun the shards")
    recorded = int(first_shard["recorded"])
    ordered = sorted((o for o in outcomes if o.outcome != "only-in-new"), key=lambda o: o.number)
    extra = sorted((o for o in outcomes if o.outcome == "only-in-new"), key=lambda o: o.number)
    for place, outcome in enumerate(extra, recorded + 1):
        outcome.number = place
    learned = NoiseRules()
    for *_, shard, _ in parsed:
        for endpoint, locations in shard["learned"].items():
            learned.learn(endpoint, locations)
    return DriftReport(
        source=first["source"],
        target=first["target"],
        fail_on=fail_on or DriftClass(first["fail_on"]),
        outcomes=ordered + extra,
        learned_noise=learned if first_shard["learn_noise"] else None,
        insecure=bool(first.get("insecure", False)),
        recorded=recorded,
    )
