"""Convert mitmproxy flows to interactions: the one place where the two models meet.

Everything is taken from the wire-level fields: ``raw_content`` (bytes as
sent, content-encoding kept; ``.content`` would decode and can raise) and
``headers.fields`` (ordered pairs with repeats; ``headers[name]`` joins them).

This runs on mitmproxy's event loop for every recorded exchange, so two of
mitmproxy's accessors are replaced by cheaper equivalents with the same
results (tests/test_record_conversion.py compares them): ``pretty_host``
parses the Host header with a regular expression on every call (here it is
remembered per Host value), and ``query`` builds the whole URL and parses it
again (here the path's query string is decoded directly, and a request
without one costs nothing).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from mitmproxy import http
from mitmproxy.net.http import url

from baton.cassettes.model import Headers, Interaction, Pairs, Request, Response

__all__ = ["header_value", "interaction_from_flow", "request_from_flow", "response_from_flow"]


def _headers(headers: http.Headers) -> Headers:
    return tuple(
        (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        for name, value in headers.fields
    )


_HOSTS: dict[str, str] = {}
"""Host header -> the host ``pretty_host`` makes of it; a recorder sees few distinct ones."""
_HOSTS_KEPT = 4096


def header_value(headers: http.Headers, name: bytes) -> str | None:
    """``headers.get(name)`` (repeats joined with ", "), for a lowercase ``name``, a few times faster.

    mitmproxy's lookup decodes and case-folds every header name on every call;
    the recorder asks two or three of these per exchange on the event loop.
    """
    values = [value for key, value in headers.fields if key.lower() == name]
    if not values:
        return None
    return ", ".join(v.decode("utf-8", "surrogateescape") for v in values)


def _pretty_host(request: http.Request, headers: Headers) -> str:
    """``request.pretty_host``, without parsing the same Host header again for every request."""
    if request.is_http2 or request.is_http3:
        authority = request.host_header  # :authority first, then Host
    else:
        hosts = [value for name, value in headers if name.lower() == "host"]
        authority = ", ".join(hosts) if hosts else None
    if not authority:
        return request.host
    host = _HOSTS.get(authority)
    if host is None:
        host = url.parse_authority(authority, check=False)[0]
        if len(_HOSTS) >= _HOSTS_KEPT:
            _HOSTS.clear()
        _HOSTS[authority] = host
    return host


_NOT_PLAIN = re.compile(r"[#\x00-\x20\x7f]")
"""Characters with which ``urlsplit`` would do more than cut the query at ``?``."""


def _query(request: http.Request, path: str) -> Pairs:
    """``tuple(request.query.fields)``: the query string of ``path``, decoded as mitmproxy does."""
    if "?" not in path:
        return ()
    if _NOT_PLAIN.search(path):
        # A fragment, whitespace or control characters: urlsplit's rules, through mitmproxy.
        return tuple(request.query.fields)
    # What mitmproxy's url.decode does (typed here: mitmproxy's is not).
    pairs = parse_qsl(path.split("?", 1)[1], keep_blank_values=True, errors="surrogateescape")
    return tuple(pairs)


def request_from_flow(request: http.Request) -> Request:
    """Return the cassette ``Request`` for a mitmproxy request."""
    path = request.path
    headers = _headers(request.headers)
    return Request(
        method=request.method,
        scheme=request.scheme,
        # pretty_host prefers the Host header / :authority: in transparent
        # mode the name the client asked for, not an IP address.
        host=_pretty_host(request, headers),
        port=request.port,
        path=path.split("?", 1)[0],
        query=_query(request, path),
        http_version=request.http_version,
        headers=headers,
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
