"""The load report: HDR percentiles overall and per endpoint, errors by kind, gates, renderings.

Samples from every worker (replay/load.py) become ``HdrHistogram``s here,
microseconds from 1 µs to an hour at three significant digits, so p99.9 of
a million samples is exact to 0.1 % and costs kilobytes. The JSON form is
the one ``--save-baseline`` writes and ``--baseline`` reads
(docs/load-report.schema.json); text, JSON, JUnit, Markdown and HTML come
from one value, as the drift report's formats do.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from hdrh.histogram import HdrHistogram

from baton.replay.load import LoadPlan, WorkerSamples

__all__ = [
    "BaselineError",
    "Gates",
    "Latency",
    "LoadReport",
    "build_report",
    "read_baseline",
    "render_load",
]

REPORT_VERSION = 1
_HIGHEST_US = 3_600_000_000


class BaselineError(ValueError):
    """A ``--baseline`` file that cannot be read as a load report; one line for the user."""


@dataclass(frozen=True)
class Latency:
    """Percentiles in milliseconds."""

    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Latency:
        if histogram.get_total_count() == 0:
            return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

        def at(percent: float) -> float:
            return round(float(histogram.get_value_at_percentile(percent)) / 1000.0, 3)

        return cls(
            p50=at(50),
            p90=at(90),
            p95=at(95),
            p99=at(99),
            p999=at(99.9),
            max=round(histogram.get_max_value() / 1000.0, 3),
            mean=round(histogram.get_mean_value() / 1000.0, 3),
        )

    def as_json(self) -> dict[str, float]:
        return {
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "p999": self.p999,
            "max": self.max,
            "mean": self.mean,
        }


@dataclass(frozen=True)
class EndpointResult:
    endpoint: str
    requests: int
    errors: int
    errors_by_kind: dict[str, int]
    latency: Latency


@dataclass(frozen=True)
class Gates:
    """``--max-p99-regression`` and ``--max-error-rate`` as fractions (0.2 for 20%)."""

    max_p99_regression: float | None = None
    max_error_rate: float | None = None


@dataclass
class LoadReport:
    """A finished load run, compared with its baseline and gated."""

    target: str
    mode: str
    rate: float | None
    speed: float | None
    concurrency: int
    workers: int
    duration_s: float
    warmup_s: float
    requests: int
    errors: int
    errors_by_kind: dict[str, int]
    latency: Latency
    endpoints: list[EndpointResult]
    over_time: dict[str, list[tuple[float, float]]]
    late_sends: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    baseline: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    gates: Gates = field(default_factory=lambda: Gates())

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def apply_gates(self, gates: Gates, baseline: dict[str, Any] | None) -> None:
        """Compare with ``baseline`` (a JSON report) and fail what crosses a gate."""
        self.failures = []
        self.gates = gates
        if baseline is not None:
            base_p99 = float(baseline["latency_ms"]["p99"])
            change = (self.latency.p99 - base_p99) / base_p99 if base_p99 > 0 else 0.0
            self.baseline = {
                "p99_ms": base_p99,
                "p99_change": round(change, 4),
                "throughput": baseline.get("throughput"),
                "error_rate": baseline.get("error_rate"),
            }
            if gates.max_p99_regression is not None and change > gates.max_p99_regression:
                self.failures.append(
                    f"p99 {self.latency.p99:g} ms is {change:+.1%} against the baseline's "
                    f"{base_p99:g} ms (gate: at most {gates.max_p99_regression:+.1%})"
                )
        if gates.max_error_rate is not None and self.error_rate > gates.max_error_rate:
            self.failures.append(
                f"error rate {self.error_rate:.3%} ({self.errors} of {self.requests}) is above "
                f"the gate of {gates.max_error_rate:.3%}"
            )

    def verdict(self) -> str:
        if self.failures:
            return "FAIL: " + "; ".join(self.failures)
        return (
            f"ok: {self.requests} requests, {self.throughput:.0f}/s, p99 {self.latency.p99:g} ms, "
            f"{self.errors} errors"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "report": "baton-load",
            "version": REPORT_VERSION,
            "target": self.target,
            "mode": self.mode,
            "rate": self.rate,
            "speed": self.speed,
            "concurrency": self.concurrency,
            "workers": self.workers,
            "duration_s": round(self.duration_s, 3),
            "warmup_s": self.warmup_s,
            "requests": self.requests,
            "errors": self.errors,
            "errors_by_kind": self.errors_by_kind,
            "error_rate": round(self.error_rate, 6),
            "throughput": round(self.throughput, 2),
            "late_sends": self.late_sends,
            "latency_ms": self.latency.as_json(),
            "endpoints": {
                e.endpoint: {
                    "requests": e.requests,
                    "errors": e.errors,
                    "errors_by_kind": e.errors_by_kind,
                    "throughput": round(e.requests / self.duration_s, 2) if self.duration_s else 0,
                    "latency_ms": e.latency.as_json(),
                }
                for e in self.endpoints
            },
            "over_time": {
                name: [list(p) for p in points] for name, points in self.over_time.items()
            },
            "skipped": self.skipped,
            "baseline": self.baseline,
            "failures": self.failures,
            "verdict": self.verdict(),
        }


def _histogram(values: Any) -> HdrHistogram:
    histogram = HdrHistogram(1, _HIGHEST_US, 3)
    # Counted first (C speed): a histogram takes each distinct value once, with its count.
    for value, count in Counter(values).items():
        histogram.record_value(min(value, _HIGHEST_US), count)
    return histogram


def build_report(
    samples: WorkerSamples,
    plan: LoadPlan,
    *,
    target: str,
    rate: float | None,
    speed: float | None,
    concurrency: int,
    workers: int,
    duration_s: float,
    warmup_s: float,
) -> LoadReport:
    """Histograms, per endpoint and overall, and the latency over time, from merged samples."""
    per_endpoint: list[list[int]] = [[] for _ in plan.endpoints]
    for value, number in zip(samples.latency_us, samples.endpoint, strict=True):
        per_endpoint[number].append(value)
    errors_by_endpoint: list[Counter[str]] = [Counter() for _ in plan.endpoints]
    for (number, kind), count in samples.errors.items():
        errors_by_endpoint[number][kind] += count
    endpoints = []
    for number, name in enumerate(plan.endpoints):
        errors = errors_by_endpoint[number]
        requests = len(per_endpoint[number]) + sum(errors.values())
        if not requests:
            continue
        endpoints.append(
            EndpointResult(
                name,
                requests,
                sum(errors.values()),
                dict(errors),
                Latency.of(_histogram(per_endpoint[number])),
            )
        )
    all_errors: Counter[str] = Counter()
    for (_, kind), count in samples.errors.items():
        all_errors[kind] += count
    # p50 and p99 per slice of the run (about 60 slices): where in time a stall fell.
    slices = max(1, min(60, math.ceil(duration_s)))
    width = duration_s / slices
    buckets: list[list[int]] = [[] for _ in range(slices)]
    for value, at in zip(samples.latency_us, samples.at_s, strict=True):
        buckets[min(slices - 1, max(0, int(at / width)))].append(value)
    over_time: dict[str, list[tuple[float, float]]] = {"p50": [], "p99": []}
    for number, bucket in enumerate(buckets):
        if bucket:
            latency = Latency.of(_histogram(bucket))
            middle = round((number + 0.5) * width, 3)
            over_time["p50"].append((middle, latency.p50))
            over_time["p99"].append((middle, latency.p99))
    mode = "closed" if rate is None and speed is None else "open"
    return LoadReport(
        target=target,
        mode=mode,
        rate=rate,
        speed=speed,
        concurrency=concurrency,
        workers=workers,
        duration_s=duration_s,
        warmup_s=warmup_s,
        requests=samples.requests,
        errors=sum(all_errors.values()),
        errors_by_kind=dict(all_errors),
        latency=Latency.of(_histogram(samples.latency_us)),
        endpoints=endpoints,
        over_time=over_time,
        late_sends=samples.late_sends,
        skipped=dict(plan.skipped),
    )


def read_baseline(text: str, name: str) -> dict[str, Any]:
    """A saved load report (``--save-baseline``); ``BaselineError`` naming the file otherwise."""
    try:
        data = json.loads(text)
        if data.get("report") != "baton-load":
            raise KeyError("report")
        float(data["latency_ms"]["p99"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BaselineError(
            f"--baseline {name}: not a baton load report (save one with --save-baseline)"
        ) from exc
    return dict(data)


def render_text(report: LoadReport) -> str:
    """A terminal summary, wrk's layout: percentiles, throughput, errors, then endpoints."""
    latency = report.latency
    how = (
        f"open model at {report.rate:g}/s"
        if report.rate is not None
        else f"open model at {report.speed:g}x the recorded timing"
        if report.speed is not None
        else "closed loop (as fast as answers come)"
    )
    lines = [
        f"baton load {report.target}: {how}, {report.concurrency} connections x "
        f"{report.workers} worker(s), {report.duration_s:g} s measured"
        + (f" after {report.warmup_s:g} s warmup" if report.warmup_s else ""),
        f"  requests   {report.requests}  ({report.throughput:.1f}/s)",
        f"  errors     {report.errors}  ({report.error_rate:.3%})"
        + (
            "  " + ", ".join(f"{k}: {n}" for k, n in sorted(report.errors_by_kind.items()))
            if report.errors_by_kind
            else ""
        ),
        f"  latency ms p50 {latency.p50:g}  p90 {latency.p90:g}  p99 {latency.p99:g}  "
        f"p99.9 {latency.p999:g}  max {latency.max:g}",
    ]
    if report.mode == "open" and report.late_sends:
        lines.append(
            f"  {report.late_sends} requests waited for a free connection "
            "(their wait is in the latency)"
        )
    lines.append("")
    width = max([len("endpoint"), *(len(e.endpoint) for e in report.endpoints)])
    lines.append(
        f"  {'endpoint':<{width}}  {'requests':>8}  {'errors':>6}  {'p50':>8}  {'p90':>8}  "
        f"{'p99':>8}  {'p99.9':>8}  {'max':>8}"
    )
    for e in report.endpoints:
        lines.append(
            f"  {e.endpoint:<{width}}  {e.requests:>8}  {e.errors:>6}  {e.latency.p50:>8g}  "
            f"{e.latency.p90:>8g}  {e.latency.p99:>8g}  {e.latency.p999:>8g}  {e.latency.max:>8g}"
        )
    for why, count in report.skipped.items():
        lines.append(f"  not sent: {count} {why}")
    if report.baseline is not None:
        lines.append(
            f"  baseline p99 {report.baseline['p99_ms']:g} ms: {report.baseline['p99_change']:+.1%}"
        )
    lines.append(report.verdict())
    return "\n".join(lines) + "\n"


def render_html(report: LoadReport) -> str:
    from baton.replay.html.load import EndpointLatency, LoadReportData, render_load_html

    notes = [
        f"{how}: {report.requests} requests, {report.throughput:.1f}/s, "
        f"{report.errors} errors ({report.error_rate:.3%})"
        for how in [report.mode + " model" if report.mode == "open" else "closed loop"]
    ]
    notes += [f"errors: {kind}: {n}" for kind, n in sorted(report.errors_by_kind.items())]
    notes.append(
        f"overall latency ms: p50 {report.latency.p50:g}, p90 {report.latency.p90:g}, "
        f"p99 {report.latency.p99:g}, p99.9 {report.latency.p999:g}, max {report.latency.max:g}"
    )
    data = LoadReportData(
        target=report.target,
        duration_s=report.duration_s,
        endpoints=[
            EndpointLatency(
                e.endpoint,
                e.requests,
                e.errors,
                e.latency.p50,
                e.latency.p90,
                e.latency.p95,
                e.latency.p99,
                e.latency.max,
            )
            for e in report.endpoints
        ],
        latency_over_time=report.over_time,
        verdict=report.verdict(),
        failed=bool(report.failures),
        notes=tuple(notes),
    )
    return render_load_html(data)


def render_junit(report: LoadReport) -> str:
    """JUnit XML for CI: one testcase per endpoint (failed when it had errors) and one per gate.

    A gate that was not asked for is no testcase, so a run without gates
    fails in JUnit only where requests failed, as its exit code says nothing.
    """
    suite = ElementTree.Element("testsuite", name=f"baton load {report.target}")
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in (
        ("target", report.target),
        ("requests", str(report.requests)),
        ("throughput", f"{report.throughput:.2f}"),
        ("p99_ms", f"{report.latency.p99:g}"),
    ):
        ElementTree.SubElement(properties, "property", name=name, value=value)
    tests = failures = 0
    for endpoint in report.endpoints:
        tests += 1
        case = ElementTree.SubElement(
            suite, "testcase", classname="baton.load", name=endpoint.endpoint
        )
        case.set("time", f"{endpoint.latency.p50 / 1000:.6f}")
        if endpoint.errors:
            failures += 1
            failure = ElementTree.SubElement(
                case,
                "failure",
                message=f"{endpoint.errors} of {endpoint.requests} failed",
                type="errors",
            )
            failure.text = "\n".join(
                f"{kind}: {n}" for kind, n in sorted(endpoint.errors_by_kind.items())
            )
    asked = [
        ("max-p99-regression", report.gates.max_p99_regression is not None, "p99 "),
        ("max-error-rate", report.gates.max_error_rate is not None, "error rate "),
    ]
    for gate, given, starts in asked:
        if not given:
            continue
        tests += 1
        case = ElementTree.SubElement(suite, "testcase", classname="baton.load.gate", name=gate)
        for failed in (f for f in report.failures if f.startswith(starts)):
            failures += 1
            ElementTree.SubElement(case, "failure", message=failed, type="gate")
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _cell(text: str) -> str:
    """A Markdown table cell: recorded paths may hold pipes and backticks."""
    return text.replace("|", "\\|").replace("`", "'")


def render_markdown(report: LoadReport) -> str:
    """A pull-request comment: the verdict, the overall figures, then a row per endpoint."""
    latency = report.latency
    icon = "❌" if report.failures else "✅"
    lines = [
        f"### {icon} baton load: `{_cell(report.target)}`",
        "",
        f"**{report.verdict()}**",
        "",
        "| requests | errors | throughput/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {report.requests} | {report.errors} | {report.throughput:.1f} | {latency.p50:g} "
        f"| {latency.p90:g} | {latency.p99:g} | {latency.p999:g} | {latency.max:g} |",
        "",
    ]
    if report.baseline is not None:
        lines += [
            f"Baseline p99 {report.baseline['p99_ms']:g} ms: {report.baseline['p99_change']:+.1%}",
            "",
        ]
    if report.endpoints:
        lines += [
            "| endpoint | requests | errors | p50 ms | p99 ms | max ms |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{_cell(e.endpoint)}` | {e.requests} | {e.errors} | {e.latency.p50:g} "
            f"| {e.latency.p99:g} | {e.latency.max:g} |"
            for e in report.endpoints
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_load(report: LoadReport, fmt: str) -> str:
    """The report as ``text``, ``json``, ``junit``, ``markdown`` or ``html``."""
    if fmt == "json":
        return json.dumps(report.as_json(), indent=2) + "\n"
    if fmt == "html":
        return render_html(report)
    if fmt == "junit":
        return render_junit(report)
    if fmt == "markdown":
        return render_markdown(report)
    return render_text(report)
