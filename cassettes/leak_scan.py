"""Find secrets that redaction missed, for ``baton lint`` and a pre-commit hook.

Redaction knows secrets by where they travel (``Authorization``,
``access_token``...). This scan knows them by what they look like, anywhere
in a cassette: bearer credentials, JWTs, AWS access keys, private key
blocks, GitHub, Slack, Stripe and Google API keys, and long high-entropy
strings in headers and query values. Placeholders (``REDACTED-...``) are
what redaction leaves and never count.

A body too large to hold (``StoredBody``) is scanned piece by piece from the
cassette file, with an overlap so a secret across two pieces is still seen.
A streamed body the recorder could not scrub (``body_not_scrubbed``: a rule
needed the whole body parsed) is reported as such, whatever the scan finds.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import Headers, Interaction, StoredBody, header_values
from baton.cassettes.redaction import PLACEHOLDER_PATTERN

__all__ = ["NOT_SCRUBBED", "Finding", "scan_interaction"]

NOT_SCRUBBED = "body not scrubbed"
"""The kind of finding for a streamed body written unscrubbed (its tag says why)."""
_OVERLAP = 4096

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("Slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}")),
    ("Stripe key", re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    (
        "bearer credential",
        re.compile(r"\b(?:Bearer|Token|Basic)\s+(?!REDACTED-)[A-Za-z0-9._~+/=-]{12,}"),
    ),
]
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-auth-token"}
)
_TOKEN = re.compile(r"[A-Za-z0-9_+/=-]{24,}")
_QUIET_HEADERS = frozenset(
    {
        "etag",
        "content-security-policy",
        "report-to",
        "nel",
        "link",
        "alt-svc",
        "accept",
        "user-agent",
        "content-type",
        "if-none-match",
        "cf-ray",
        "x-amz-cf-id",
        "traceparent",
        "x-request-id",
        "x-amzn-trace-id",
        "x-amzn-requestid",
        "x-cache",
        "vary",
        "sec-websocket-key",
        "sec-websocket-accept",
        "date",
        "expires",
        "last-modified",
        "set-cookie",
        "cookie",
    }
)


@dataclass(frozen=True)
class Finding:
    """A likely secret: where it is and what it looks like (masked)."""

    interaction: int
    location: str
    kind: str
    excerpt: str


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _masked(secret: str) -> str:
    return secret[:4] + "…" + f"({len(secret)} chars)"


def _high_entropy(value: str) -> Iterator[str]:
    for match in _TOKEN.finditer(value):
        token = match.group(0)
        classes = sum(bool(re.search(p, token)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
        if classes >= 2 and _entropy(token) >= 4.0 and not token.isdigit():
            yield token


def _text(body: bytes | None, headers: Headers) -> str:
    if not body:
        return ""
    encodings = header_values(headers, "content-encoding")
    if encodings:
        with contextlib.suppress(ContentCodingError):
            body = decode_body(body, encodings[0])
    return body.decode("utf-8", "replace")


def _stored_texts(stored: StoredBody) -> Iterator[str]:
    """A stored body as text windows that overlap, read a piece at a time."""
    tail = b""
    for chunk in stored.chunks():
        window = tail + chunk.data
        yield window.decode("utf-8", "replace")
        tail = window[-_OVERLAP:]


def _scan_text(number: int, location: str, text: str, out: list[Finding]) -> None:
    clean = PLACEHOLDER_PATTERN.sub("", text)
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(clean):
            out.append(Finding(number, location, kind, _masked(match.group(0))))


def scan_interaction(
    number: int, interaction: Interaction, *, entropy: bool = True
) -> list[Finding]:
    """Likely secrets in one interaction."""
    out: list[Finding] = []
    request, response = interaction.request, interaction.response
    _scan_text(number, "request.url", request.url, out)
    messages = [("request", request.headers, request.body, request.stored)]
    if response is not None:
        messages.append(("response", response.headers, response.body, response.stored))
    for side, headers, body, stored in messages:
        for name, value in headers:
            location = f"{side}.header.{name.lower()}"
            _scan_text(number, location, value, out)
            credential = PLACEHOLDER_PATTERN.sub("", value).split()[-1:] if value else []
            if name.lower() in _CREDENTIAL_HEADERS and credential and len(credential[0]) >= 8:
                out.append(
                    Finding(
                        number, location, "unredacted credential header", _masked(credential[0])
                    )
                )
            if entropy and name.lower() not in _QUIET_HEADERS:
                for token in _high_entropy(PLACEHOLDER_PATTERN.sub("", value)):
                    out.append(Finding(number, location, "high-entropy token", _masked(token)))
        if stored is not None:
            for text in _stored_texts(stored):
                _scan_text(number, f"{side}.body", text, out)
        else:
            _scan_text(number, f"{side}.body", _text(body, headers), out)
    for note in interaction.tags.get("body_not_scrubbed") or ():
        where, _, reason = str(note).partition(": ")
        out.append(Finding(number, where, NOT_SCRUBBED, reason or "no reason recorded"))
    if entropy:
        for name, value in request.query:
            for token in _high_entropy(PLACEHOLDER_PATTERN.sub("", value)):
                out.append(
                    Finding(number, f"request.query.{name}", "high-entropy token", _masked(token))
                )
    # One finding per (location, kind) is enough to act on.
    unique: dict[tuple[str, str], Finding] = {}
    for finding in out:
        unique.setdefault((finding.location, finding.kind), finding)
    return list(unique.values())
