"""The load report's page, fed a plain value: percentiles per endpoint and latency over time.

``baton load`` (issue 15) does not exist yet; whatever measures the load
builds a ``LoadReportData`` and calls ``render_load_html``. Nothing here
knows how the numbers were measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from baton.replay.html.chart import latency_chart_svg
from baton.replay.html.page import render_page

__all__ = ["EndpointLatency", "LoadReportData", "render_load_html"]


@dataclass(frozen=True, slots=True)
class EndpointLatency:
    """One endpoint's requests and latency percentiles, in milliseconds."""

    endpoint: str
    requests: int
    errors: int
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True)
class LoadReportData:
    """Everything the load page shows; plain values, so any load runner can fill it."""

    target: str
    duration_s: float
    endpoints: Sequence[EndpointLatency]
    latency_over_time: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    """Series name (an endpoint, or ``p95``) -> points of (seconds since the start, ms)."""
    verdict: str = ""
    failed: bool = False
    notes: Sequence[str] = ()


def render_load_html(data: LoadReportData) -> str:
    """The load report as one self-contained page: a table of percentiles, then the chart."""
    return render_page(
        "load.html",
        title=f"baton load: {data.target}",
        load=data,
        total_requests=sum(e.requests for e in data.endpoints),
        total_errors=sum(e.errors for e in data.endpoints),
        chart=latency_chart_svg(data.latency_over_time),
    )
