"""The HTML reports' pure parts: the inert JSON block, the CSP hashes, the chart, schema excerpts.

The browser tests (tests/test_html_report.py) show the pages work; these pin
the pieces they rest on, quickly and without a browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from xml.etree import ElementTree

import pytest

from baton.replay.comparison import Change, DriftClass
from baton.replay.contract_check import Violation, ViolationKind
from baton.replay.drift import DriftReport, Outcome
from baton.replay.html import (
    EndpointLatency,
    LoadReportData,
    latency_chart_svg,
    render_drift_html,
    render_load_html,
)
from baton.replay.html.chart import nice_ticks
from baton.replay.html.contract import schema_excerpt
from baton.replay.html.drift import drift_page_data, value_limit, written_size
from baton.replay.html.page import inert_json

SVG = "{http://www.w3.org/2000/svg}"


def test_inert_json_cannot_end_its_script_block_and_reads_back_the_same() -> None:
    value = {"a": "</script><script>alert(1)</script>", "b": "<!-- & \u2028 -->", "c": [1.5, None]}
    text = str(inert_json(value))
    assert "</" not in text and "<!--" not in text and "<" not in text and "&" not in text
    assert "\u2028" not in text
    assert json.loads(text) == value


def _hashes(policy: str, directive: str) -> set[str]:
    match = re.search(rf"{directive} ([^;]+)", policy)
    assert match, policy
    return set(re.findall(r"'sha256-([^']+)'", match.group(1)))


def _digest(block: str) -> str:
    return base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()


def test_the_csp_admits_exactly_the_pages_own_inline_blocks_and_nothing_else() -> None:
    page = render_load_html(
        LoadReportData(target="http://127.0.0.1:1", duration_s=1.0, endpoints=[])
    )
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy
    csp = policy.group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert "unsafe-inline" not in csp
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert {_digest(s) for s in styles} == _hashes(csp, "style-src")
    assert "script-src 'none'" in csp  # the load page needs no script
    assert "<script" not in page

    drift = render_drift_html(DriftReport(source="a.cassette", target="b.cassette"))
    csp = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', drift)[0]
    scripts = re.findall(r"<script>(.*?)</script>", drift, re.S)
    assert len(scripts) == 1 and {_digest(s) for s in scripts} == _hashes(csp, "script-src")
    # The data block is not a script the policy has to admit: the browser never runs it.
    assert '<script type="application/json" id="baton-data">' in drift


def _parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def test_values_are_cut_to_their_share_of_the_page_escapes_counted() -> None:
    assert value_limit(10) == 20_000 and value_limit(10_000) == 500
    assert value_limit(1_000_000) == 400
    hostile = "</script>" * 2000
    report = DriftReport(
        source="a",
        target="b",
        outcomes=[
            Outcome(
                number=n,
                interaction_id=str(n),
                method="GET",
                target="/x",
                endpoint="GET /x",
                outcome="compared",
                changes=[Change(DriftClass.VALUE, "value_changed", "body.a", hostile, "")],
            )
            for n in range(10_000)
        ],
    )
    data = drift_page_data(report)
    shown = data["changes"][0]["o"]
    assert written_size(shown.split("\n…")[0]) <= 500
    assert shown.endswith("more characters in the JSON report)")
    assert len(str(inert_json(data))) < 20 * 1024 * 1024


def test_the_latency_chart_draws_one_line_per_series_inside_its_axes() -> None:
    series = {
        "GET /a": [(0.0, 10.0), (1.0, 30.0), (2.0, 20.0)],
        "GET /b": [(2.0, 95.0), (0.5, 5.0)],
    }
    svg = _parse(str(latency_chart_svg(series, width=700, height=300)))
    assert svg.get("width") == "700" and svg.get("height") == "300"
    lines = svg.findall(f"{SVG}polyline")
    assert [line.get("data-series") for line in lines] == ["GET /a", "GET /b"]
    assert lines[0].get("stroke") != lines[1].get("stroke")
    points = [tuple(map(float, p.split(","))) for p in lines[1].get("points", "").split()]
    # Sorted by time; y grows downward, so the 95 ms point is higher up than the 5 ms one.
    assert points[0][0] < points[1][0] and points[1][1] < points[0][1]
    for line in lines:
        for point in line.get("points", "").split():
            x, y = map(float, point.split(","))
            assert 0 <= x <= 700 and 0 <= y <= 300
    labels = {t.text for t in svg.iter(f"{SVG}text")}
    assert {"GET /a", "GET /b", "0", "100", "seconds", "ms"} <= labels


def test_the_latency_chart_escapes_series_names_and_says_when_it_is_empty() -> None:
    hostile = '<script>alert(1)</script>" onload="x'
    svg = str(latency_chart_svg({hostile: [(0.0, 1.0), (1.0, 2.0)]}))
    assert "<script>" not in svg and 'onload="x' not in svg
    parsed = _parse(svg)
    assert any(t.text == hostile for t in parsed.iter(f"{SVG}text"))
    empty = _parse(str(latency_chart_svg({})))
    assert [t.text for t in empty.iter(f"{SVG}text")] == ["no samples"]
    assert empty.findall(f"{SVG}polyline") == []


@pytest.mark.parametrize(
    ("high", "ticks"),
    [
        (95.0, [0, 20, 40, 60, 80, 100]),
        (3.0, [0, 1, 2, 3]),
        (0.0, [0, 1]),
        (1234.0, [0, 500, 1000, 1500]),
    ],
)
def test_chart_ticks_are_round_and_reach_the_highest_value(high: float, ticks: list[float]) -> None:
    assert nice_ticks(high) == ticks


def test_the_load_page_shows_the_percentiles_it_is_given() -> None:
    data = LoadReportData(
        target="http://127.0.0.1:8000",
        duration_s=30.0,
        endpoints=[EndpointLatency("GET /products/{id}", 900, 3, 4.2, 9.1, 12.5, 40.0, 88.8)],
        latency_over_time={"p95": [(0.0, 12.0), (1.0, 13.0)]},
        verdict="OK: p95 under 50 ms",
    )
    page = render_load_html(data)
    assert "<td><code>GET /products/{id}</code></td>" in page
    assert '<td class="n">12.5</td>' in page and '<td class="n">88.8</td>' in page
    assert 'data-series="p95"' in page and "OK: p95 under 50 ms" in page


SPEC = {
    "openapi": "3.1.0",
    "paths": {
        "/orders/{id}": {
            "get": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}},
                ],
                "responses": {
                    "404": {"description": "missing"},
                    "200": {
                        "description": "an order",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
                        },
                    },
                },
            }
        }
    },
    "components": {
        "schemas": {
            "Order": {
                "type": "object",
                "properties": {
                    "total": {"type": "number"},
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
                    },
                },
            }
        }
    },
}


def _violation(side: str, kind: ViolationKind, location: str) -> Violation:
    return Violation(
        source="a.cassette",
        number=1,
        interaction_id="x",
        endpoint="GET /orders/{id}",
        target="/orders/1",
        side=side,
        kind=kind,
        location=location,
        message="...",
    )


@pytest.mark.parametrize(
    ("side", "kind", "location", "expected"),
    [
        ("response", ViolationKind.SCHEMA, "$.total", {"type": "number"}),
        ("response", ViolationKind.SCHEMA, "$.items[2].sku", {"type": "string"}),
        ("response", ViolationKind.UNDOCUMENTED_STATUS, "status", {"responses": ["200", "404"]}),
        (
            "request",
            ViolationKind.INVALID_PARAMETER,
            "query.limit",
            {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}},
        ),
    ],
)
def test_a_violation_is_shown_with_the_part_of_the_spec_it_broke(
    side: str, kind: ViolationKind, location: str, expected: object
) -> None:
    assert json.loads(schema_excerpt(SPEC, _violation(side, kind, location))) == expected


def test_a_violation_of_a_path_the_spec_does_not_have_has_no_excerpt() -> None:
    violation = _violation("request", ViolationKind.UNKNOWN_PATH, "path")
    assert schema_excerpt(SPEC, violation) == ""
