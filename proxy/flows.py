"""Convert mitmproxy flows to interactions: the one place where the two models meet.

Everything is taken from the wire-level fields: ``raw_content`` (bytes as
sent, content-encoding kept; ``.content`` would decode and can raise) and
``headers.fields`` (ordered pairs with repeats; ``headers[name]`` joins them).
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http

from baton.cassettes.model import Headers, Interaction, Request, Response

__all__ = ["interaction_from_flow", "request_from_flow", "response_from_flow"]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _headers(headers: http.Headers) -> Headers:
    return tuple((_text(name), _text(value)) for name, value in headers.fields)


def request_from_flow(request: http.Request) -> Request:
    """Return the cassette ``Request`` for a mitmproxy request."""
    path = request.path
    return Request(
        method=request.method,
        scheme=request.scheme,
        # pretty_host prefers the Host header / :authority: in transparent
        # mode the name the client asked for, not an IP address.
        host=request.pretty_host,
        port=request.port,
        path=path.split("?", 1)[0],
        query=tuple(request.query.fields),
        http_version=request.http_version,
        headers=_headers(request.headers),
        body=request.raw_content,
    )


def response_from_flow(response: http.Response) -> Response:
    """Return the cassette ``Response`` for a mitmproxy response."""
    return Response(
        status=response.status_code,
        reason=response.reason,
        http_version=response.http_version,
        headers=_headers(response.headers),
        body=response.raw_content,
        trailers=None if response.trailers is None else _headers(response.trailers),
    )


def interaction_from_flow(flow: http.HTTPFlow) -> Interaction:
    """Return the interaction a completed (or failed) flow represents."""
    request = flow.request
    response = flow.response
    end = None
    if response is not None and response.timestamp_end is not None:
        end = response.timestamp_end
    elif flow.error is not None:
        end = flow.error.timestamp
    duration_ms = None
    if end is not None and request.timestamp_start is not None:
        duration_ms = round((end - request.timestamp_start) * 1000.0, 3)
    tags: dict[str, Any] = {}
    client = flow.client_conn
    mode = getattr(client, "proxy_mode", None)
    if mode is not None:
        tags["mode"] = mode.full_spec
    if client.peername:
        tags["client"] = f"{client.peername[0]}:{client.peername[1]}"
    if response is not None and flow.error is not None:
        # The answer came, then broke off (a stream reset): keep why.
        tags["error_after_response"] = flow.error.msg
    state = flow.metadata.get("baton_state")
    if state is not None:  # stamped by the Recorder as the request came (replay/state.py)
        tags["state"] = state
    return Interaction(
        id=flow.id,
        request=request_from_flow(request),
        response=None if response is None else response_from_flow(response),
        recorded_at=request.timestamp_start,
        duration_ms=duration_ms,
        error=None if response is not None or flow.error is None else flow.error.msg,
        tags=tags,
    )
