"""Latency over time as an inline SVG chart, drawn server-side: no chart library, no script.

Presentation attributes only (no ``style=``), so the page's CSP needs no
exception for it; series names are escaped like every other text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

__all__ = ["PALETTE", "latency_chart_svg", "nice_ticks"]

PALETTE = ("#175cd3", "#b42318", "#067647", "#b54708", "#6941c6", "#0e7090", "#c11574", "#475467")
"""Line colours, in the order series are given; they repeat past eight."""

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 56, 16, 12, 36


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``high``: 0, 20, 40, ... (1, 2 or 5 times a power of ten)."""
    if not math.isfinite(high) or high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    top = math.ceil(high / step - 1e-9) * step
    return [round(n * step, 10) for n in range(round(top / step) + 1)]


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def latency_chart_svg(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    width: int = 760,
    height: int = 260,
    title: str = "latency over time",
) -> Markup:
    """An SVG chart: one line per series of ``(seconds since the start, latency in ms)`` points.

    The axes start at 0; the x axis ends at the last second, the y axis at
    a round value above the highest latency. An empty chart says so.
    """
    plot_w = width - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = height - _MARGIN_TOP - _MARGIN_BOTTOM
    points = [p for values in series.values() for p in values]
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
    ]
    if not points:
        parts.append(
            f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">no samples</text>'
        )
        parts.append("</svg>")
        return Markup("".join(parts))
    x_ticks = nice_ticks(max(p[0] for p in points))
    y_ticks = nice_ticks(max(p[1] for p in points))
    x_top, y_top = x_ticks[-1], y_ticks[-1]

    def x_of(seconds: float) -> float:
        return _MARGIN_LEFT + plot_w * seconds / x_top

    def y_of(ms: float) -> float:
        return _MARGIN_TOP + plot_h * (1 - ms / y_top)

    for tick in y_ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{_MARGIN_LEFT}" y1="{y:.1f}" x2="{width - _MARGIN_RIGHT}" y2="{y:.1f}" '
            'stroke="#eaecf0"/>'
        )
        parts.append(
            f'<text x="{_MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>'
        )
    for tick in x_ticks:
        x = x_of(tick)
        parts.append(
            f'<text x="{x:.1f}" y="{height - _MARGIN_BOTTOM + 16}" text-anchor="middle">'
            f"{_number(tick)}</text>"
        )
    base = height - _MARGIN_BOTTOM
    parts.append(
        f'<line x1="{_MARGIN_LEFT}" y1="{base}" x2="{width - _MARGIN_RIGHT}" y2="{base}" '
        'stroke="#98a2b3"/>'
    )
    parts.append(
        f'<text x="{width - _MARGIN_RIGHT}" y="{height - 4}" text-anchor="end">seconds</text>'
    )
    parts.append(f'<text x="4" y="{_MARGIN_TOP + 10}">ms</text>')
    for n, (name, values) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        ordered = sorted(values)
        coordinates = " ".join(f"{x_of(s):.1f},{y_of(ms):.1f}" for s, ms in ordered)
        parts.append(
            f'<polyline class="series" data-series="{escape(name)}" fill="none" '
            f'stroke="{colour}" stroke-width="1.5" points="{coordinates}"/>'
        )
        legend_x = _MARGIN_LEFT + 8 + 160 * (n % 4)
        legend_y = _MARGIN_TOP + 12 + 14 * (n // 4)
        parts.append(
            f'<rect x="{legend_x}" y="{legend_y - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{legend_y + 1}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
