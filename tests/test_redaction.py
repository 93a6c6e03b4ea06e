"""Redaction rules, placeholders and the scrubbing of echoed secrets, without a proxy."""

from __future__ import annotations

import gzip
import json
import os
import stat
import zlib
from pathlib import Path

import brotli
import pytest
import zstandard

from baton.cassettes import (
    PLACEHOLDER_PATTERN,
    Interaction,
    RedactionError,
    RedactionRules,
    Redactor,
    Request,
    Response,
)
from baton.cassettes.redaction import load_or_create_key

KEY = bytes(range(32))


def redactor(**rules: object) -> Redactor:
    return Redactor(RedactionRules.build(**rules), KEY)  # type: ignore[arg-type]


def exchange(
    *,
    path: str = "/",
    query: tuple[tuple[str, str], ...] = (),
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    response_headers: tuple[tuple[str, str], ...] = (),
    response_body: bytes = b"",
) -> Interaction:
    return Interaction(
        id="x",
        request=Request("POST", "https", "api.test", 443, path, query, "HTTP/1.1", headers, body),
        response=Response(200, "OK", "HTTP/1.1", response_headers, response_body),
        recorded_at=0.0,
    )


def everything(interaction: Interaction) -> bytes:
    """All bytes of an interaction, bodies decoded when compressed, for leak checks."""
    parts = [repr(interaction).encode()]
    for message in (interaction.request, interaction.response):
        body = message.body or b""
        encoding = message.header("content-encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":
            body = brotli.decompress(body)
        elif encoding == "zstd":
            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        parts.append(body)
    return b"\n".join(parts)


def test_default_headers_keep_what_a_reader_needs() -> None:
    out = redactor().redact(
        exchange(
            headers=(
                ("Authorization", "Bearer abc.def.ghi"),
                ("Cookie", "session=s3ss10n; theme=dark"),
                ("X-Api-Key", "k-123456"),
                ("X-Auth-Token", "t-123456"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Idempotency-Key", "retry-77"),
                ("Accept", "application/json"),
            ),
            response_headers=(("Set-Cookie", "session=n3w; Path=/; HttpOnly"),),
        )
    )
    headers = dict(out.request.headers)
    assert headers["Authorization"].startswith("Bearer REDACTED-")
    assert (
        headers["Cookie"].startswith("session=REDACTED-")
        and "; theme=REDACTED-" in headers["Cookie"]
    )
    assert PLACEHOLDER_PATTERN.fullmatch(headers["X-Api-Key"])
    assert PLACEHOLDER_PATTERN.fullmatch(headers["X-Auth-Token"])
    assert headers["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert headers["Idempotency-Key"] == "retry-77"
    assert headers["Accept"] == "application/json"
    set_cookie = out.response.header("set-cookie")
    assert set_cookie.startswith("session=REDACTED-") and set_cookie.endswith("; Path=/; HttpOnly")
    for secret in (b"abc.def.ghi", b"s3ss10n", b"k-123456", b"t-123456", b"n3w"):
        assert secret not in everything(out)


def test_same_secret_same_placeholder_different_secrets_different_placeholders() -> None:
    r = redactor()
    a1 = r.redact(exchange(headers=(("Authorization", "Bearer token-a"),)))
    a2 = r.redact(exchange(headers=(("Authorization", "Bearer token-a"),)))
    b = r.redact(exchange(headers=(("Authorization", "Bearer token-b"),)))
    assert a1.request.headers == a2.request.headers != b.request.headers
    other_key = Redactor(RedactionRules.build(), bytes(32))
    assert (
        other_key.redact(exchange(headers=(("Authorization", "Bearer token-a"),))).request.headers
        != a1.request.headers
    )


def test_query_form_and_json_fields_at_any_depth_and_in_any_case() -> None:
    body = json.dumps(
        {
            "user": "ann",
            "auth": {"accessToken": "at-1234567", "nested": [{"Client_Secret": "cs-7654321"}]},
            "note": "keep me",
            "password": "pw-99999999",
        },
        indent=2,
    ).encode()
    out = redactor().redact(
        exchange(
            query=(("api_key", "q-abcdefg"), ("page", "2")),
            headers=(("Content-Type", "application/json"),),
            body=body,
        )
    )
    assert out.request.query[0][1].startswith("REDACTED-")
    assert out.request.query[1] == ("page", "2")
    document = json.loads(out.request.body)
    assert document["user"] == "ann" and document["note"] == "keep me"
    assert PLACEHOLDER_PATTERN.fullmatch(document["auth"]["accessToken"])
    assert PLACEHOLDER_PATTERN.fullmatch(document["auth"]["nested"][0]["Client_Secret"])
    assert PLACEHOLDER_PATTERN.fullmatch(document["password"])
    # Formatting is kept: only the secret values changed.
    assert out.request.body.count(b"\n") == body.count(b"\n")


def test_form_body_fields_are_redacted_in_place() -> None:
    out = redactor().redact(
        exchange(
            headers=(("Content-Type", "application/x-www-form-urlencoded"),),
            body=b"user=ann&password=p%40ss+word%21&remember=1",
        )
    )
    assert out.request.body.startswith(b"user=ann&password=REDACTED-")
    assert out.request.body.endswith(b"&remember=1")


def test_echoes_are_scrubbed_from_compressed_bodies_and_headers() -> None:
    echo = json.dumps(
        {
            "headers": {"Authorization": "Bearer echo-token-123"},
            "url": "https://api.test/cb?token=qtok-98765",
        }
    ).encode()
    for coding, compress in [
        ("gzip", gzip.compress),
        ("br", brotli.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
        ("deflate", zlib.compress),
    ]:
        wire = compress(echo)
        out = redactor().redact(
            exchange(
                query=(("token", "qtok-98765"),),
                headers=(("Authorization", "Bearer echo-token-123"),),
                response_headers=(
                    ("Content-Encoding", coding),
                    ("Content-Length", str(len(wire))),
                    ("Location", "https://api.test/next?token=qtok-98765&x=1"),
                ),
                response_body=wire,
            )
        )
        data = everything(out)
        assert b"echo-token-123" not in data and b"qtok-98765" not in data, coding
        assert int(out.response.header("content-length")) == len(out.response.body)
        assert out.tags["body_reencoded"] == [f"response.body ({coding})"]
        assert "response.body" in out.tags["redacted"]
        assert out.response.header("location").startswith("https://api.test/next?token=REDACTED-")


def test_url_and_json_escaped_echoes_are_scrubbed() -> None:
    secret = 'p@ss/w0rd+"quoted"'
    out = redactor().redact(
        exchange(
            query=(("password", secret),),
            response_headers=(("Content-Type", "text/html"),),
            response_body=(
                b"raw "
                + secret.encode()
                + b" url p%40ss%2Fw0rd%2B%22quoted%22 plus p%40ss%2Fw0rd%2B%22quoted%22"
                + b' json "p@ss\\/w0rd+\\"quoted\\"" html p@ss/w0rd+&quot;quoted&quot;'
            ),
        )
    )
    body = out.response.body
    assert b"w0rd" not in body, body
    assert body.count(b"REDACTED-") == 5


def test_short_secrets_are_replaced_where_found_but_not_searched_for() -> None:
    out = redactor().redact(
        exchange(query=(("token", "ab"),), response_body=b"a table of abs and abc"),
    )
    assert out.request.query[0][1].startswith("REDACTED-")
    assert out.response.body == b"a table of abs and abc"


def test_user_rules_json_path_regex_header_glob_and_field() -> None:
    body = json.dumps(
        {"user": {"ssn": "123-45-6789", "cards": [{"number": 4111111111111111}]}}
    ).encode()
    out = redactor(
        json_paths=["$.user.ssn", "user.cards[*].number"],
        patterns=[r"acct-(\d{6})"],
        headers=["X-Internal-*"],
        fields=["session_id"],
    ).redact(
        exchange(
            path="/accounts/acct-123456",
            query=(("session_id", "sid-000111"),),
            headers=(("Content-Type", "application/json"), ("X-Internal-Trace", "trace-secret-1")),
            body=body,
        )
    )
    assert b"123-45-6789" not in out.request.body
    assert b"4111111111111111" not in out.request.body
    json.loads(out.request.body)  # still JSON after a number became a placeholder string
    assert out.request.path.startswith("/accounts/acct-REDACTED-")
    assert out.request.header("x-internal-trace").startswith("REDACTED-")
    assert out.request.query[0][1].startswith("REDACTED-")


def test_an_interaction_without_secrets_is_returned_untouched() -> None:
    original = exchange(headers=(("Accept", "*/*"),), response_body=b'{"ok": true}')
    assert redactor().redact(original) is original


def test_redaction_is_idempotent() -> None:
    once = redactor().redact(exchange(headers=(("Authorization", "Bearer xyz-12345"),)))
    twice = redactor().redact(once)
    assert twice.request.headers == once.request.headers


def test_no_default_rules_means_only_the_users() -> None:
    out = redactor(defaults=False, headers=["X-Mine"]).redact(
        exchange(headers=(("Authorization", "Bearer keep-1234"), ("X-Mine", "mine-1234")))
    )
    assert out.request.header("authorization") == "Bearer keep-1234"
    assert out.request.header("x-mine").startswith("REDACTED-")


@pytest.mark.parametrize(
    "bad", [{"json_paths": ["$.a[b"]}, {"patterns": ["(unclosed"]}, {"headers": [" "]}]
)
def test_bad_rules_are_refused_with_a_message(bad: dict[str, list[str]]) -> None:
    with pytest.raises(RedactionError):
        RedactionRules.build(**bad)  # type: ignore[arg-type]


def test_the_key_file_is_created_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATON_REDACTION_KEY", raising=False)
    path = tmp_path / "conf" / "redaction.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path) == key
    monkeypatch.setenv("BATON_REDACTION_KEY", "ab" * 32)
    assert load_or_create_key(path) == bytes([0xAB]) * 32
    monkeypatch.delenv("BATON_REDACTION_KEY")
    path.write_text("short")
    with pytest.raises(RedactionError, match="at least 32 hex digits"):
        load_or_create_key(path)
