"""Match a live request to recorded ones: named matchers, each a pure function.

A request's *match key* is the tuple of its normalised parts, one per active
matcher (``method``, ``scheme``, ``host``, ``port``, ``path``, ``query``,
``body``, plus ``header:NAME`` for each header the user adds). Normalising
makes the key mean what a person means by "the same request":

* the query is a multiset: order-free, repeats kept;
* a JSON body is parsed and re-serialised with sorted keys, so key order and
  whitespace do not matter; a form body's fields are sorted; any other body
  counts by its SHA-256, and so does any body above 16 MiB, as on the wire
  (a recorded body that large stays in the cassette file, and its key is the
  digest the reader already has: loading never reads it);
* volatile parts the user names (``--ignore-query``, ``--ignore-field``)
  are dropped;
* secrets are compared the way they were recorded. A redacted value in the
  cassette (``REDACTED-...``) and the live request's real token both become
  ``<secret>``, so a test matches whatever credential it carries, as
  VCR.py's filters do. With ``match_secrets`` the live value is turned into
  its keyed-hash placeholder instead, so a cassette where the token tells
  users apart still tells them apart.

On a miss, ``explain`` compares the request with recorded ones matcher by
matcher and says what differed — a near-miss report in the manner of
WireMock's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import Request, header_values
from baton.cassettes.redaction import (
    PLACEHOLDER_PATTERN,
    RedactionRules,
    parse_json_path,
    redact_header_value,
)
from baton.replay.graphql import field_paths as graphql_field_paths
from baton.replay.graphql import normalise as graphql_normalise

__all__ = [
    "DEFAULT_MATCHERS",
    "MATCHERS",
    "MatchConfig",
    "Mismatch",
    "SecretPolicy",
    "closest",
    "explain",
    "match_key",
]

SECRET = "<secret>"
DEFAULT_MATCHERS = ("method", "scheme", "host", "port", "path", "query", "body")
ADDRESS_MATCHERS = frozenset({"scheme", "host", "port"})

KeyPart = Any
"""A hashable, comparable normalised value of one matcher."""


@dataclass(frozen=True)
class SecretPolicy:
    """How secrets enter a match key: blanked (default) or as keyed-hash placeholders."""

    rules: RedactionRules = field(default_factory=RedactionRules.build)
    placeholder: Callable[[str], str] | None = None
    """When set (``--match-secrets``), live secrets become this placeholder."""
    learned_fields: frozenset[str] = frozenset()
    """Query/form/JSON names that hold a placeholder somewhere in the cassette."""

    def value(self, value: str) -> str:
        if self.placeholder is None:
            return SECRET
        if PLACEHOLDER_PATTERN.fullmatch(value):
            return value
        return self.placeholder(value)

    def is_secret_field(self, name: str) -> bool:
        return name in self.learned_fields or self.rules.field_is_secret(name)

    def in_text(self, value: str) -> str:
        """A value that may already hold placeholders (a recorded one) or not (a live one)."""
        if self.placeholder is None:
            return PLACEHOLDER_PATTERN.sub(SECRET, value)
        return value


@dataclass(frozen=True)
class MatchConfig:
    """Which matchers make the key, and what each leaves out."""

    matchers: tuple[str, ...] = DEFAULT_MATCHERS
    headers: tuple[str, ...] = ()
    ignore_query: frozenset[str] = frozenset()
    ignore_fields: tuple[tuple[str | int, ...], ...] = ()
    secrets: SecretPolicy = field(default_factory=SecretPolicy)

    @classmethod
    def build(
        cls,
        *,
        match_on: Iterable[str] | None = None,
        headers: Iterable[str] = (),
        ignore_query: Iterable[str] = (),
        ignore_fields: Iterable[str] = (),
        secrets: SecretPolicy | None = None,
        address: bool = True,
    ) -> MatchConfig:
        """Validate user choices; ``address=False`` drops scheme/host/port (reverse mode).

        Raises ``ValueError`` naming an unknown matcher.
        """
        chosen = tuple(match_on) if match_on is not None else DEFAULT_MATCHERS
        unknown = [m for m in chosen if m not in MATCHERS]
        if unknown:
            raise ValueError(f"unknown matcher {unknown[0]!r}; choose from {', '.join(MATCHERS)}")
        if not address:
            chosen = tuple(m for m in chosen if m not in ADDRESS_MATCHERS)
        return cls(
            matchers=chosen,
            headers=tuple(h.lower() for h in headers),
            ignore_query=frozenset(ignore_query),
            ignore_fields=tuple(parse_json_path(p) for p in ignore_fields),
            secrets=secrets or SecretPolicy(),
        )

    def with_secrets(self, secrets: SecretPolicy) -> MatchConfig:
        return MatchConfig(
            self.matchers, self.headers, self.ignore_query, self.ignore_fields, secrets
        )


# -- the matchers ---------------------------------------------------------------


def _method(request: Request, config: MatchConfig) -> KeyPart:
    return request.method.upper()


def _scheme(request: Request, config: MatchConfig) -> KeyPart:
    return request.scheme.lower()


def _host(request: Request, config: MatchConfig) -> KeyPart:
    return request.host.lower().rstrip(".")


def _port(request: Request, config: MatchConfig) -> KeyPart:
    return request.port


def _path(request: Request, config: MatchConfig) -> KeyPart:
    return config.secrets.in_text(unquote(request.path))


def _query(request: Request, config: MatchConfig) -> KeyPart:
    secrets = config.secrets
    if request.method.upper() == "GET" and any(n == "query" for n, _ in request.query):
        operation = _graphql_get(request.query)
        if operation is not None:
            return operation.key()
    pairs = []
    for name, value in request.query:
        if name in config.ignore_query:
            continue
        if value and (secrets.is_secret_field(name) or PLACEHOLDER_PATTERN.fullmatch(value)):
            value = secrets.value(value)
        else:
            value = secrets.in_text(value)
        pairs.append((name, value))
    return tuple(sorted(pairs))


def _graphql_get(query: tuple[tuple[str, str], ...]) -> Any:
    """A GraphQL request sent by GET (``?query=...&variables=...``), normalised, or None."""
    fields = dict(query)
    document: dict[str, Any] = {"query": fields.get("query")}
    if "operationName" in fields:
        document["operationName"] = fields["operationName"]
    if "variables" in fields:
        try:
            document["variables"] = json.loads(fields["variables"])
        except (ValueError, RecursionError):
            return None
    return graphql_normalise(document)


def _content_type(request: Request) -> str:
    values = header_values(request.headers, "content-type")
    return values[0].lower() if values else ""


LARGE_BODY = 16 << 20
"""A body above this size counts by its SHA-256 as on the wire, unparsed: a recorded body this
large stays in the cassette file (``StoredBody``), and its key must come without reading it."""


def _body(request: Request, config: MatchConfig) -> KeyPart:
    body = request.body
    if body is None:
        if request.stored is not None:
            return ("sha256", request.stored.sha256)
        return ("not-captured",)
    if not body:
        return ("empty",)
    if len(body) > LARGE_BODY:
        return ("sha256", hashlib.sha256(body).hexdigest())
    encoding = header_values(request.headers, "content-encoding")
    if encoding:
        with contextlib.suppress(ContentCodingError):
            body = decode_body(body, encoding[0])
    content_type = _content_type(request)
    if "json" in content_type or body.lstrip()[:1] in (b"{", b"["):
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            pass
        else:
            operation = graphql_normalise(document) if b'"query"' in body else None
            if operation is not None:
                # All of GraphQL goes to one URL: the operation, normalised, is the request.
                return operation.key()
            document = _normalise_json(document, config)
            return ("json", json.dumps(document, sort_keys=True, separators=(",", ":")))
    if "x-www-form-urlencoded" in content_type:
        fields = []
        for name, value in parse_qsl(
            body.decode("utf-8", "surrogateescape"), keep_blank_values=True
        ):
            if name in config.ignore_query:
                continue
            if value and (
                config.secrets.is_secret_field(name) or PLACEHOLDER_PATTERN.fullmatch(value)
            ):
                value = config.secrets.value(value)
            fields.append((name, value))
        return ("form", tuple(sorted(fields)))
    if config.secrets.placeholder is None and PLACEHOLDER_PATTERN.search(body.decode("latin-1")):
        body = PLACEHOLDER_PATTERN.sub(SECRET, body.decode("latin-1")).encode("latin-1")
    return ("sha256", hashlib.sha256(body).hexdigest())


def _normalise_json(document: Any, config: MatchConfig) -> Any:
    for path in config.ignore_fields:
        document = _drop_path(document, path)
    return _blank_secrets(document, config.secrets)


def _blank_secrets(node: Any, secrets: SecretPolicy) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if (
                isinstance(value, str | int | float)
                and not isinstance(value, bool)
                and (secrets.is_secret_field(str(key)))
            ):
                out[key] = secrets.value(str(value))
            else:
                out[key] = _blank_secrets(value, secrets)
        return out
    if isinstance(node, list):
        return [_blank_secrets(v, secrets) for v in node]
    if isinstance(node, str):
        return secrets.in_text(node)
    return node


def _drop_path(node: Any, path: tuple[str | int, ...]) -> Any:
    if not path:
        return node
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        keys = list(node) if head == "*" else [head] if head in node else []
        out = dict(node)
        for key in keys:
            if rest:
                out[key] = _drop_path(node[key], rest)
            else:
                del out[key]
        return out
    if isinstance(node, list):
        if head == "*":
            return [_drop_path(v, rest) for v in node] if rest else []
        if isinstance(head, int) and -len(node) <= head < len(node):
            out_list = list(node)
            if rest:
                out_list[head] = _drop_path(node[head], rest)
            else:
                del out_list[head]
            return out_list
    return node


def _header(name: str) -> Callable[[Request, MatchConfig], KeyPart]:
    def match_header(request: Request, config: MatchConfig) -> KeyPart:
        values = []
        secret = config.secrets.rules.header_is_secret(name)
        for value in header_values(request.headers, name):
            if secret:
                value = redact_header_value(name, value, config.secrets.value)
            values.append(config.secrets.in_text(value))
        return tuple(values)

    return match_header


MATCHERS: dict[str, Callable[[Request, MatchConfig], KeyPart]] = {
    "method": _method,
    "scheme": _scheme,
    "host": _host,
    "port": _port,
    "path": _path,
    "query": _query,
    "body": _body,
}


def match_key(request: Request, config: MatchConfig) -> tuple[KeyPart, ...]:
    """Return the hashable key of ``request`` under ``config``."""
    parts = [MATCHERS[name](request, config) for name in config.matchers]
    parts += [_header(name)(request, config) for name in config.headers]
    return tuple(parts)


# -- near misses ------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """One matcher that differed: what the recording had and what the request had."""

    matcher: str
    expected: str
    got: str


# Differences in these weigh more when ranking the closest recorded requests.
_WEIGHTS = {"method": 8, "path": 8, "host": 4, "scheme": 2, "port": 2, "query": 2, "body": 2}


def _show(part: KeyPart, limit: int = 160) -> str:
    if isinstance(part, tuple) and part and part[0] in ("json", "sha256", "form", "empty"):
        text = part[1] if len(part) > 1 else part[0]
        if part[0] == "sha256":
            text = f"body sha256 {str(text)[:16]}…"
        elif part[0] == "form":
            text = "&".join(f"{n}={v}" for n, v in text)
    elif isinstance(part, tuple):
        text = (
            "&".join(f"{n}={v}" for n, v in part)
            if all(isinstance(p, tuple) for p in part)
            else ", ".join(map(str, part))
        )
    else:
        text = str(part)
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_differences(expected: Any, got: Any, where: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(expected) | set(got), key=str):
            child = f"{where}.{key}" if where else str(key)
            if key not in got:
                out.append(f"{child} missing")
            elif key not in expected:
                out.append(f"{child} not recorded")
            else:
                out += _json_differences(expected[key], got[key], child)
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where or 'body'} has {len(got)} items, recorded {len(expected)}"]
        out = []
        for n, (a, b) in enumerate(zip(expected, got, strict=True)):
            out += _json_differences(a, b, f"{where}[{n}]")
        return out
    if expected != got:
        return [
            f"{where or 'body'}: recorded {json.dumps(expected)[:60]}, got {json.dumps(got)[:60]}"
        ]
    return []


def _graphql_mismatch(name: str, expected: KeyPart, got: KeyPart) -> Mismatch:
    """Name the operation, then what differed: the operation, its fields, or a variable."""
    _, expected_name, expected_text, expected_variables = expected
    _, got_name, got_text, got_variables = got
    operation = f"GraphQL operation {got_name or '(anonymous)'}"
    if expected_name != got_name:
        return Mismatch(name, f"GraphQL operation {expected_name or '(anonymous)'}", operation)
    if expected_text != got_text:
        before, after = graphql_field_paths(expected_text), graphql_field_paths(got_text)
        fields = [f"+ {p}" for p in sorted(after - before)] + [
            f"- {p}" for p in sorted(before - after)
        ]
        return Mismatch(
            name,
            f"{operation}: {_show(expected_text, 200)}",
            f"fields differ: {', '.join(fields[:8])}"
            if fields
            else f"arguments or directives differ: {_show(got_text, 200)}",
        )
    differences = _json_differences(
        json.loads(expected_variables), json.loads(got_variables), "variables"
    )
    return Mismatch(
        name, f"{operation} with variables {expected_variables}", "; ".join(differences[:5])
    )


def _mismatch(name: str, expected: KeyPart, got: KeyPart) -> Mismatch:
    if not (isinstance(expected, tuple) and isinstance(got, tuple) and expected and got):
        return Mismatch(name, _show(expected), _show(got))  # a port (int), a method (str), ...
    if expected[:1] == got[:1] == ("graphql",):
        return _graphql_mismatch(name, expected, got)
    if name == "body" and expected[0] == got[0] == "json":
        fields = _json_differences(json.loads(expected[1]), json.loads(got[1]))
        return Mismatch(name, _show(expected), "; ".join(fields[:5]) or _show(got))
    return Mismatch(name, _show(expected), _show(got))


def explain(
    request: Request,
    recorded: Iterable[tuple[Request, tuple[KeyPart, ...]]],
    config: MatchConfig,
    limit: int = 3,
) -> list[tuple[Request, list[Mismatch]]]:
    """Return the ``limit`` closest recorded requests and, for each, what differed."""
    pairs = list(recorded)
    return [
        (pairs[position][0], mismatches)
        for position, mismatches in closest(request, [key for _, key in pairs], config, limit)
    ]


def closest(
    request: Request,
    keys: Iterable[tuple[KeyPart, ...]],
    config: MatchConfig,
    limit: int = 3,
) -> list[tuple[int, list[Mismatch]]]:
    """``explain`` by recorded keys alone: the positions of the ``limit`` closest and what
    differed (the caller builds only those requests)."""
    key = match_key(request, config)
    names = list(config.matchers) + [f"header:{h}" for h in config.headers]
    scored = []
    for number, candidate_key in enumerate(keys):
        differences = [
            (name, expected, got)
            for name, expected, got in zip(names, candidate_key, key, strict=True)
            if expected != got
        ]
        score = sum(_WEIGHTS.get(name, 1) for name, _, _ in differences)
        scored.append((score, number, differences))
    scored.sort(key=lambda item: (item[0], item[1]))
    return [
        (number, [_mismatch(name, expected, got) for name, expected, got in differences])
        for _, number, differences in scored[:limit]
    ]
