"""The page of ``baton show --html``: a cassette's conversation as a timeline, bodies by type.

JSON bodies become a collapsible tree, images are shown inline as ``data:``
URIs (raster types only: an SVG can carry script), text as text, event
streams event by event, WebSocket conversations message by message. A body
stored in pieces (too large to hold) is named, never read.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any

from markupsafe import Markup, escape

from baton.cassettes.display import body_as_text
from baton.cassettes.model import Headers, Interaction, Request, Response
from baton.cassettes.sse import is_event_stream, parse_events
from baton.replay.html.page import render_page

__all__ = ["TEXT_LIMIT", "render_cassette_html"]

TEXT_LIMIT = 64 * 1024
"""Characters of a text body shown; the rest is counted."""
_IMAGE_LIMIT = 2 * 1024 * 1024
_TREE_NODES = 4000
_TREE_DEPTH = 40
_INLINE_IMAGES = re.compile(r"^image/(png|jpeg|gif|webp|avif|bmp)$")
_TIMELINE_ROWS = 400


def _header(headers: Headers, name: str) -> str:
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), "")


class _Budget:
    def __init__(self) -> None:
        self.left = _TREE_NODES


def _tree(value: Any, key: str | None, depth: int, budget: _Budget) -> dict[str, Any] | None:
    budget.left -= 1
    if budget.left < 0 or depth > _TREE_DEPTH:
        return None
    node: dict[str, Any] = {"key": key}
    if isinstance(value, dict):
        node["kind"] = "object"
        node["summary"] = f"{{{len(value)}}}"
        children = [_tree(v, str(k), depth + 1, budget) for k, v in value.items()]
    elif isinstance(value, list):
        node["kind"] = "array"
        node["summary"] = f"[{len(value)}]"
        children = [_tree(v, str(n), depth + 1, budget) for n, v in enumerate(value)]
    else:
        node["kind"] = (
            "str"
            if isinstance(value, str)
            else "num"
            if isinstance(value, int | float) and not isinstance(value, bool)
            else "lit"
        )
        node["text"] = json.dumps(value, ensure_ascii=False)
        return node
    if any(child is None for child in children):
        return None
    node["children"] = children
    node["open"] = depth < 2
    return node


def _body_view(message: Request | Response) -> dict[str, Any]:
    """How one body is shown: its kind and what the template needs for it."""
    if message.stored is not None:
        return {
            "kind": "note",
            "note": f"stored in the cassette in {len(message.stored.spans)} pieces: "
            f"{message.stored.size} bytes, not shown",
        }
    body = message.body
    headers = message.headers
    if body is None:
        return {"kind": "note", "note": "body not captured"}
    if not body:
        return {"kind": "empty"}
    content_type = _header(headers, "content-type").split(";")[0].strip().lower()
    streamed = ""
    if message.chunks:
        streamed = (
            f"streamed in {len(message.chunks)} pieces, from {message.chunks[0].offset_ms:.0f} "
            f"to {message.chunks[-1].offset_ms:.0f} ms"
        )
    if is_event_stream(headers) and not _header(headers, "content-encoding"):
        pieces = (
            [(c.offset_ms, c.data) for c in message.chunks] if message.chunks is not None else body
        )
        events = parse_events(pieces)
        return {"kind": "events", "events": events, "note": streamed}
    if _INLINE_IMAGES.match(content_type) and not _header(headers, "content-encoding"):
        if len(body) > _IMAGE_LIMIT:
            return {
                "kind": "note",
                "note": f"{content_type}, {len(body)} bytes: too large to inline",
            }
        encoded = base64.b64encode(body).decode("ascii")
        return {
            "kind": "image",
            "src": f"data:{content_type};base64,{encoded}",
            "note": f"{content_type}, {len(body)} bytes",
        }
    text, note = body_as_text(body, headers)
    note = ", ".join(n for n in (streamed, note) if n)
    if text is None:
        return {"kind": "note", "note": note}
    if "json" in content_type or (not content_type and text[:1] in "{["):
        try:
            tree = _tree(json.loads(text), None, 0, _Budget())
        except ValueError:
            tree = None
        if tree is not None:
            return {"kind": "json", "tree": tree, "note": note}
    more = len(text) - TEXT_LIMIT
    if more > 0:
        text = text[:TEXT_LIMIT]
        note = ", ".join(n for n in (note, f"{more} more characters not shown") if n)
    return {"kind": "text", "text": text, "note": note}


def _payload(data: bytes, is_text: bool) -> str:
    if is_text:
        text = data.decode("utf-8", "replace")
        return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"
    return f"binary, {len(data)} bytes: {data[:32].hex(' ')}{'…' if len(data) > 32 else ''}"


def _interaction_view(interaction: Interaction, number: int, start: float) -> dict[str, Any]:
    response = interaction.response
    view: dict[str, Any] = {
        "number": number,
        "id": interaction.id,
        "offset": interaction.recorded_at - start,
        "duration": interaction.duration_ms,
        "method": interaction.request.method,
        "url": interaction.request.url,
        "status": response.status if response is not None else None,
        "reason": response.reason if response is not None else "",
        "status_class": f"status-{response.status // 100}" if response else "status-error",
        "error": interaction.error or "",
        "request_headers": list(interaction.request.headers),
        "request_body": _body_view(interaction.request),
        "response_headers": list(response.headers) if response is not None else [],
        "response_body": _body_view(response) if response is not None else None,
        "messages": [],
        "closing": "",
    }
    conversation = interaction.websocket
    if conversation is not None:
        view["messages"] = [
            {
                "from_client": m.from_client,
                "offset": m.offset_ms,
                "kind": "text" if m.is_text else "binary",
                "payload": _payload(m.data, m.is_text),
            }
            for m in conversation.messages
        ]
        if conversation.close_code is not None:
            who = {True: "the client", False: "the server", None: "?"}[
                conversation.closed_by_client
            ]
            view["closing"] = (
                f"closed by {who} with {conversation.close_code} {conversation.close_reason}"
            )
    return view


def _timeline_svg(views: list[dict[str, Any]]) -> Markup:
    """One row per interaction: a bar from when it was recorded, as long as it took."""
    rows = views[:_TIMELINE_ROWS]
    if not rows:
        return Markup("")
    end = max(v["offset"] + (v["duration"] or 0) / 1000 for v in rows) or 1.0
    width, left, row_h = 760, 8, 6
    height = row_h * len(rows) + 24
    scale = (width - 2 * left) / end
    parts = [
        f'<svg class="timeline-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
        "<title>when each interaction was recorded, and how long it took</title>"
    ]
    for n, view in enumerate(rows):
        x = left + view["offset"] * scale
        w = max(2.0, (view["duration"] or 0) / 1000 * scale)
        colour = {
            "status-1": "#667085",
            "status-2": "#12b76a",
            "status-3": "#0e7090",
            "status-4": "#f79009",
        }.get(view["status_class"], "#d92d20")
        label = f"#{view['number']} {view['method']} {view['url']} {view['status'] or 'error'}"
        parts.append(
            f'<rect x="{x:.1f}" y="{n * row_h + 2}" width="{w:.1f}" height="{row_h - 1}" '
            f'fill="{colour}"><title>{escape(label)}</title></rect>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}">0 s</text>'
        f'<text x="{width - left}" y="{height - 6}" text-anchor="end">{end:.2f} s</text></svg>'
    )
    return Markup("".join(parts))


def render_cassette_html(
    interactions: Iterable[tuple[int, Interaction]], *, cassette: str, note: str = ""
) -> str:
    """``baton show --html``: the numbered interactions as one self-contained page."""
    listed = list(interactions)
    start = min((i.recorded_at for _, i in listed), default=0.0)
    views = [_interaction_view(interaction, number, start) for number, interaction in listed]
    return render_page(
        "cassette.html",
        title=f"baton show: {cassette}",
        cassette=cassette,
        interactions=views,
        timeline=_timeline_svg(views),
        note=note,
    )
