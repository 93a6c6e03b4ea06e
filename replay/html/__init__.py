"""HTML reports: one self-contained page per report, for people to look at rather than read.

Every page is a Jinja2 template (autoescaping on) with its stylesheet and
script inline and a Content-Security-Policy of their hashes: no network
request, works opened from disk (a CI artifact), and recorded values, which
are untrusted, only ever reach the page as escaped text — in the markup, or
in an inert JSON block the page's script shows with ``textContent``.

- ``render_drift_html``: ``baton diff --format html``
- ``render_check_html``, ``render_spec_diff_html``: ``baton contract check|diff --format html``
- ``render_cassette_html``: ``baton show --html``
- ``render_load_html`` with ``LoadReportData``: the load report, fed a plain value
- ``latency_chart_svg``: the latency-over-time chart, drawn server-side as inline SVG
"""

from __future__ import annotations

from baton.replay.html.cassette import render_cassette_html
from baton.replay.html.chart import latency_chart_svg
from baton.replay.html.contract import render_check_html, render_spec_diff_html
from baton.replay.html.drift import render_drift_html
from baton.replay.html.load import EndpointLatency, LoadReportData, render_load_html

__all__ = [
    "EndpointLatency",
    "LoadReportData",
    "latency_chart_svg",
    "render_cassette_html",
    "render_check_html",
    "render_drift_html",
    "render_load_html",
    "render_spec_diff_html",
]
