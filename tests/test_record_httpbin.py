"""Record real httpbin traffic through ``baton record`` and check the cassette byte for byte."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx

from baton.cassettes import PLACEHOLDER_PATTERN, Interaction, read_cassette
from tests.processes import BatonProcess, Upstream, trusting

TOKEN = "tok-4f1c2e9a7b30"
API_KEY = "key-0a9b8c7d6e5f"
QUERY_TOKEN = "qs-secret-81c3d"
JSON_PASSWORD = "pw-hunter2-json"
FORM_PASSWORD = "pw/hunter2+form&x"
COOKIE = "ck-session-5e6f7a"
SECRETS = [TOKEN, API_KEY, QUERY_TOKEN, JSON_PASSWORD, FORM_PASSWORD, COOKIE]


@dataclass
class Exchange:
    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    holds_secret: bool = False


EXCHANGES = [
    Exchange("GET", "/get?a=1&b=2&a=3"),
    Exchange(
        "POST", "/post", {"json": {"name": "widget", "nested": {"password": JSON_PASSWORD}}}, True
    ),
    Exchange("POST", "/post", {"data": {"user": "ann", "password": FORM_PASSWORD}}, True),
    Exchange("GET", "/gzip"),
    Exchange("GET", "/brotli"),
    Exchange("GET", "/image/png"),
    Exchange("GET", "/bytes/2048?seed=7"),
    Exchange("GET", "/redirect/1"),
    Exchange("GET", "/status/404"),
    Exchange("GET", "/status/500"),
    Exchange(
        "GET",
        "/headers",
        {"headers": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY}},
        True,
    ),
    Exchange("GET", f"/anything?access_token={QUERY_TOKEN}&keep=1", {}, True),
    Exchange("GET", f"/cookies/set?session={COOKIE}", {}, True),
    Exchange("GET", "/cookies", {"headers": {"Cookie": f"session={COOKIE}"}}, True),
]


@dataclass
class Seen:
    """What the client got: the status and the body bytes exactly as on the wire."""

    status: int
    raw_body: bytes
    headers: dict[str, str]


def send_all(base_url: str, client: httpx.Client, exchanges: list[Exchange]) -> list[Seen]:
    seen = []
    for exchange in exchanges:
        with client.stream(
            exchange.method, base_url + exchange.path, **exchange.kwargs
        ) as response:
            raw = b"".join(response.iter_raw())
            seen.append(Seen(response.status_code, raw, dict(response.headers)))
    return seen


def assert_no_secret_in(path: Path) -> None:
    data = path.read_bytes()
    for secret in SECRETS:
        for form in {
            secret,
            quote(secret, safe=""),
            quote_plus(secret),
            base64.b64encode(secret.encode()).decode(),
        }:
            assert form.encode() not in data, (
                f"secret {secret!r} (as {form!r}) leaked into the cassette"
            )


def assert_matches_wire(
    interactions: list[Interaction],
    exchanges: list[Exchange],
    seen: list[Seen],
    upstream: Upstream,
    scheme: str,
) -> None:
    assert [(i.request.method, i.request.path) for i in interactions] == [
        (e.method, e.path.split("?")[0]) for e in exchanges
    ]
    for exchange, got, interaction in zip(exchanges, seen, interactions, strict=True):
        request, response = interaction.request, interaction.response
        assert response is not None, interaction.error
        assert (request.scheme, request.host, request.port) == (scheme, "127.0.0.1", upstream.port)
        assert response.status == got.status
        if not exchange.holds_secret:
            assert response.body == got.raw_body, f"{exchange.path}: body differs from the wire"
        else:
            assert PLACEHOLDER_PATTERN.search(repr(interaction)), exchange.path
            assert interaction.tags.get("redacted"), exchange.path


def client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=30, follow_redirects=False, **kwargs)


def test_reverse_mode_records_every_exchange_exactly(
    baton: Callable[..., BatonProcess], httpbin: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "httpbin.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{httpbin.url}", "--listen-port", "0"
    )

    with client() as c:
        seen = send_all(recorder.url, c, EXCHANGES)

    assert recorder.stop() == 0
    assert f"recorded {len(EXCHANGES)} interactions" in recorder.output
    interactions = read_cassette(cassette)
    assert_matches_wire(interactions, EXCHANGES, seen, httpbin, "http")
    assert_no_secret_in(cassette)

    by_path = {i.request.target: i for i in interactions}
    # Repeated query names keep their order and repeats.
    assert by_path["/get?a=1&b=2&a=3"].request.query == (("a", "1"), ("b", "2"), ("a", "3"))
    # gzip stays gzip on disk: the bytes httpbin sent, not a decoded copy.
    gzipped = by_path["/gzip"].response
    assert gzipped.header("content-encoding") == "gzip"
    assert gzip.decompress(gzipped.body).startswith(b"{")
    assert by_path["/brotli"].response.header("content-encoding") == "br"
    assert by_path["/image/png"].response.body.startswith(b"\x89PNG\r\n\x1a\n")
    assert by_path["/redirect/1"].response.status == 302
    assert by_path["/redirect/1"].response.header("location") == "/get"
    # httpbin echoed the bearer token in its body: the body holds the placeholder instead.
    headers_echo = by_path["/headers"]
    auth = headers_echo.request.header("authorization")
    assert auth.startswith("Bearer REDACTED-")
    assert auth.removeprefix("Bearer ").encode() in headers_echo.response.body
    assert int(headers_echo.response.header("content-length")) == len(headers_echo.response.body)
    # A cookie value set through a query parameter: redacted in Set-Cookie,
    # and therefore scrubbed from the query where it came from, same placeholder.
    set_cookie = next(i for i in interactions if i.request.path == "/cookies/set")
    placeholder = set_cookie.response.header("set-cookie").split(";")[0].split("=", 1)[1]
    assert PLACEHOLDER_PATTERN.fullmatch(placeholder)
    assert set_cookie.request.query == (("session", placeholder),)
    # The same secret gets the same placeholder in another interaction.
    cookie_echo = next(i for i in interactions if i.request.path == "/cookies")
    assert cookie_echo.request.header("cookie") == f"session={placeholder}"
    assert placeholder.encode() in cookie_echo.response.body


def test_regular_mode_records_http_and_https(
    baton: Callable[..., BatonProcess],
    httpbin: Upstream,
    httpbin_tls: Upstream,
    tls_files: Any,
    mitm_confdir: Path,
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "regular.cassette"
    recorder = baton(
        "record",
        "-o",
        str(cassette),
        "--listen-port",
        "0",
        "--set",
        f"ssl_verify_upstream_trusted_ca={tls_files.ca}",
    )
    subset = [EXCHANGES[0], EXCHANGES[3], EXCHANGES[5], EXCHANGES[10]]
    with client(proxy=recorder.url, verify=trusting(mitm_confdir / "mitmproxy-ca-cert.pem")) as c:
        seen_http = send_all(httpbin.url, c, subset)
        seen_https = send_all(httpbin_tls.url, c, subset)

    assert recorder.stop() == 0
    interactions = read_cassette(cassette)
    assert len(interactions) == 2 * len(subset)
    assert_matches_wire(interactions[: len(subset)], subset, seen_http, httpbin, "http")
    assert_matches_wire(interactions[len(subset) :], subset, seen_https, httpbin_tls, "https")
    assert_no_secret_in(cassette)


def test_http2_to_and_from_the_proxy(
    baton: Callable[..., BatonProcess],
    httpbin_tls: Upstream,
    tls_files: Any,
    mitm_confdir: Path,
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "h2.cassette"
    recorder = baton(
        "record",
        "-o",
        str(cassette),
        "--listen-port",
        "0",
        "--set",
        f"ssl_verify_upstream_trusted_ca={tls_files.ca}",
    )
    with httpx.Client(
        http2=True,
        proxy=recorder.url,
        verify=trusting(mitm_confdir / "mitmproxy-ca-cert.pem"),
        trust_env=False,
    ) as client:
        first = client.get(
            httpbin_tls.url + "/get?via=h2", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        second = client.post(httpbin_tls.url + "/post", json={"k": "v"})
    assert first.http_version == "HTTP/2"
    assert first.status_code == second.status_code == 200

    assert recorder.stop() == 0
    interactions = read_cassette(cassette)
    assert len(interactions) == 2
    for interaction in interactions:
        assert interaction.request.http_version == "HTTP/2.0"
        assert interaction.response.http_version == "HTTP/2.0"
        assert interaction.request.scheme == "https"
        assert interaction.request.host == "127.0.0.1"
    assert interactions[0].request.query == (("via", "h2"),)
    assert interactions[1].request.body == b'{"k":"v"}'
    assert TOKEN.encode() not in cassette.read_bytes()
