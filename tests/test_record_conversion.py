"""The recorder's cheaper flow conversion gives what mitmproxy's own accessors give.

proxy/flows.py reads the Host header, the query string and single headers
without going through ``pretty_host``, ``query`` and ``headers.get`` (they
cost the recorder a third of its time per exchange); the Recorder stamps the
``state`` tag from a partial request. These tests hold each shortcut to the
slow path it replaces, on real mitmproxy requests (mitmproxy's own test
factories), across the odd cases: fragments, blanks, repeats, encodings,
IPv6, HTTP/2's ``:authority``, no Host at all.
"""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from baton.proxy.flows import header_value, interaction_from_flow, request_from_flow
from baton.proxy.recorder import Recorder
from baton.replay.state import SessionBy, StateCounter, StateRules

PATHS = [
    "/",
    "/items",
    "/items?",
    "/items?a=1",
    "/items?a=1&b=2&a=3",
    "/items?flag&empty=&=novalue",
    "/items?q=caf%C3%A9+au+lait&x=%2F%3F%26",
    "/items?q=bad%ZZescape&p=%FF",
    "/items?a=1#fragment",
    "/items#frag?not=query",
    "/items?a=b;c=d",
    "/items?a=%20spaced%20",
    "/items?ü=ö",
    "/a/b/../c?x=1?y=2",
    "*",
]

HOSTS: list[list[tuple[bytes, bytes]]] = [
    [(b"Host", b"example.com")],
    [(b"Host", b"Example.COM:8443")],
    [(b"host", b"[::1]:8080")],
    [(b"Host", b"127.0.0.1")],
    [],
    [(b"Host", b"a.example"), (b"HOST", b"b.example")],
    [(b"Host", b"")],
    [(b"Host", b"bad host name:99999")],
]


def _request(path: str, fields: list[tuple[bytes, bytes]], http_version: str) -> http.Request:
    request = tutils.treq(path=path.encode(), http_version=http_version.encode())
    request.headers = http.Headers([*fields, (b"User-Agent", b"t"), (b"X-Twice", b"1")])
    request.headers.add("x-twice", "2")
    return request


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("http_version", ["HTTP/1.1", "HTTP/2.0"])
def test_query_and_path_are_mitmproxys(path: str, http_version: str) -> None:
    request = _request(path, [(b"Host", b"example.com")], http_version)
    converted = request_from_flow(request)
    assert converted.query == tuple(request.query.fields)
    assert converted.path == request.path.split("?", 1)[0]


@pytest.mark.parametrize("fields", HOSTS, ids=lambda f: repr(f))
@pytest.mark.parametrize("http_version", ["HTTP/1.1", "HTTP/2.0"])
def test_host_is_pretty_host(fields: list[tuple[bytes, bytes]], http_version: str) -> None:
    request = _request("/x", fields, http_version)
    if http_version == "HTTP/2.0":
        request.authority = "h2.example:443"
    expected = request.pretty_host
    assert request_from_flow(request).host == expected
    assert request_from_flow(request).host == expected  # remembered: still the same answer


def test_host_changes_with_the_header() -> None:
    request = _request("/x", [(b"Host", b"one.example")], "HTTP/1.1")
    assert request_from_flow(request).host == "one.example"
    request.headers["Host"] = "two.example:81"
    assert request_from_flow(request).host == "two.example"


@pytest.mark.parametrize(
    "name", [b"content-length", b"content-type", b"transfer-encoding", b"x-twice", b"absent"]
)
def test_header_value_is_headers_get(name: bytes) -> None:
    headers = http.Headers(
        [
            (b"Content-Type", b"text/event-stream; charset=utf-8"),
            (b"content-length", b"12"),
            (b"Transfer-Encoding", b"chunked"),
            (b"X-Twice", b"1"),
            (b"x-twice", b"\xff2"),
        ]
    )
    assert header_value(headers, name) == headers.get(name.decode())


STATE_CASES = [
    ("GET", "/cart", b""),
    ("POST", "/cart/items", b'{"sku": 1}'),
    ("POST", "/graphql", b'{"query": "query { cart { id } }"}'),
    ("POST", "/graphql", b'{"query": "mutation { add(sku: 1) { id } }"}'),
    ("DELETE", "/cart/items/1?force=1", b""),
    ("post", "/search", b"q=1"),
]


@pytest.mark.parametrize(
    "rules",
    [StateRules(), StateRules.build(reads=["POST /search"], writes=["GET /logout*"])],
    ids=["default rules", "routes"],
)
@pytest.mark.parametrize("session_by", ["none", "client", "header:X-Session", "cookie:sid"])
def test_state_stamp_matches_the_full_conversion(rules: StateRules, session_by: str) -> None:
    """The recorder's partial request gives the tag a whole conversion gives, request by request."""
    recorder = Recorder()
    recorder._state = StateCounter(rules, SessionBy.parse(session_by))
    reference = StateCounter(rules, SessionBy.parse(session_by))
    for method, path, body in [*STATE_CASES, ("GET", "/logout?all=1", b""), *STATE_CASES]:
        flow = tflow.tflow()
        flow.request.method = method
        flow.request.path = path
        flow.request.content = body
        flow.request.headers["X-Session"] = "s-1"
        flow.request.headers["Cookie"] = "sid=abc; other=2"
        peer = flow.client_conn.peername
        expected = reference.stamp(request_from_flow(flow.request), f"{peer[0]}:{peer[1]}")
        recorder._stamp_state(flow)
        assert flow.metadata["baton_state"] == expected, (method, path)


def test_interaction_from_flow_keeps_everything_on_the_wire() -> None:
    flow = tflow.tflow(resp=True)
    flow.request.path = "/items?a=1&a=2&token=t0k3n"
    flow.request.headers["Host"] = "api.example:8080"
    flow.response.headers.add("Set-Cookie", "a=1")
    flow.response.headers.add("set-cookie", "b=2")
    interaction = interaction_from_flow(flow)
    assert interaction.request.host == "api.example"
    assert interaction.request.query == (("a", "1"), ("a", "2"), ("token", "t0k3n"))
    assert interaction.request.headers == tuple(
        (k.decode(), v.decode()) for k, v in flow.request.headers.fields
    )
    assert interaction.response is not None
    assert [v for k, v in interaction.response.headers if k.lower() == "set-cookie"] == [
        "a=1",
        "b=2",
    ]
    assert interaction.response.body == flow.response.raw_content
