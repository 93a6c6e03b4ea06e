"""Redact secrets from an interaction before it is written anywhere.

Two passes, both on one interaction at a time:

1. *Find*: values in places that hold secrets by name — headers such as
   ``Authorization`` and ``Cookie``, query and form fields such as
   ``access_token``, JSON keys of those names at any depth, JSON paths and
   regular expressions the user adds. Each is replaced in place by a
   placeholder.
2. *Scrub*: every secret found in pass 1 is then removed from *everywhere
   else* in the same interaction: other headers (``Location``), the path and
   query, and both bodies — decoded first when compressed, and re-encoded
   after. Services echo credentials (httpbin's ``/headers``, an error message
   quoting the token, a redirect URL), and a redaction that only looks where
   the secret was sent leaks it through the answer.

A placeholder is ``REDACTED-`` and 16 hex digits of an HMAC-SHA256 of the
secret under a per-user key that never enters the cassette: the same secret
always gives the same placeholder, so a reader (and the replay matcher) can
still tell two tokens apart, while the secret cannot be recovered or guessed
by hashing candidates without the key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import html
import json
import logging
import os
import re
import secrets as secrets_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

from baton.cassettes.content_coding import decode_body, encode_body, parse_codings
from baton.cassettes.errors import ContentCodingError, RedactionError
from baton.cassettes.model import Headers, Interaction, Pairs, Request, header_values

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_HEADERS",
    "DEFAULT_HEADER_GLOBS",
    "MIN_SCRUB_LENGTH",
    "PLACEHOLDER_PATTERN",
    "MessageRedaction",
    "RedactionRules",
    "Redactor",
    "StreamRedaction",
    "default_key_path",
    "load_or_create_key",
    "redact_header_value",
    "secrets_found",
    "stream_redaction",
]

logger = logging.getLogger(__name__)

DEFAULT_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
DEFAULT_HEADER_GLOBS = ("*-key", "*-token", "*-secret", "*-password")
# Names that match the globs above but carry no secret, and that tests and
# protocols depend on seeing (a WebSocket handshake, an idempotent retry).
_NOT_SECRET_HEADERS = frozenset(
    {"sec-websocket-key", "sec-websocket-accept", "idempotency-key", "x-idempotency-key"}
)
DEFAULT_FIELDS = frozenset(
    {
        "token",
        "access_token",
        "api_key",
        "apikey",
        "password",
        "secret",
        "client_secret",
        "refresh_token",
        "mfa_token",
        "id_token",
        "auth_token",
    }
)
_URL_HEADERS = frozenset({"location", "content-location", "referer", "refresh"})
_PLAIN, _SECRET, _URL = 0, 1, 2
"""What a header name is to redaction: nothing, a secret, or a URL whose query may hold one."""

PLACEHOLDER_PATTERN = re.compile(r"REDACTED-[0-9a-f]{16}")
_PLACEHOLDER_BYTES = re.compile(rb"REDACTED-[0-9a-f]{16}")

MIN_SCRUB_LENGTH = 4
"""Secrets shorter than this are replaced where they were found, but not
searched for elsewhere: scrubbing "abc" from every body would mangle them."""

_JSON_TYPES = ("json",)
_FORM_TYPE = "application/x-www-form-urlencoded"
_MULTIPART_TYPE = "multipart/form-data"
# One part of a multipart/form-data body: its Content-Disposition line (with
# the field's name), any other part headers, a blank line, then the value up to
# the next boundary line.
_MULTIPART_FIELD = re.compile(
    rb'(content-disposition:[^\r\n]*?\bname="([^"]*)"[^\r\n]*)\r\n(?:[^\r\n]+\r\n)*\r\n(.*?)(?=\r\n--)',
    re.IGNORECASE | re.DOTALL,
)


def _normalise_field(name: str) -> str:
    # "access_token", "accessToken" and "access-token" are one field.
    return name.lower().replace("_", "").replace("-", "")


# -- rules --------------------------------------------------------------------

JsonSegment = str | int
"""A JSON path step: a key, a list index, or "*" for every key or item."""


_JSON_PATH_STEP = re.compile(r"\.?([^.\[\]'\"]+)|\[(\*|\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def parse_json_path(text: str) -> tuple[JsonSegment, ...]:
    """Parse ``$.user.cards[*].number`` (the ``$.`` is optional) into segments."""
    source = text.strip().removeprefix("$")
    segments: list[JsonSegment] = []
    position = 0
    for match in _JSON_PATH_STEP.finditer(source):
        if match.start() != position:
            break
        position = match.end()
        key, index, quoted = match.groups()
        if key is not None or quoted is not None:
            segments.append(key if key is not None else quoted)
        else:
            segments.append("*" if index == "*" else int(index))
    if not segments or position != len(source):
        raise RedactionError(
            f"cannot parse JSON path {text!r}; write it like $.user.cards[*].number"
        )
    return tuple(segments)


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """What to redact. ``RedactionRules.build()`` gives the defaults plus the user's rules."""

    headers: frozenset[str] = frozenset()
    header_globs: tuple[str, ...] = ()
    fields: frozenset[str] = frozenset()
    field_stems: frozenset[bytes] = frozenset()
    json_paths: tuple[tuple[JsonSegment, ...], ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def build(
        cls,
        *,
        headers: Iterable[str] = (),
        fields: Iterable[str] = (),
        json_paths: Iterable[str] = (),
        patterns: Iterable[str] = (),
        defaults: bool = True,
    ) -> RedactionRules:
        """Combine the default rules (unless ``defaults`` is false) with the user's.

        ``headers`` may hold globs (``X-*-Token``); ``patterns`` are regular
        expressions whose first group, or whole match, is the secret.
        """
        exact = set(DEFAULT_HEADERS) if defaults else set()
        globs = list(DEFAULT_HEADER_GLOBS) if defaults else []
        for name in headers:
            name = name.strip().lower()
            if not name:
                raise RedactionError("an empty header name cannot be redacted")
            if any(c in name for c in "*?["):
                globs.append(name)
            else:
                exact.add(name)
        spellings = set(DEFAULT_FIELDS) if defaults else set()
        for name in fields:
            if not name.strip():
                raise RedactionError("an empty field name cannot be redacted")
            spellings.add(name.strip())
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise RedactionError(
                    f"redaction regex {pattern!r} does not compile: {exc}"
                ) from exc
        return cls(
            headers=frozenset(exact),
            header_globs=tuple(globs),
            fields=frozenset(_normalise_field(n) for n in spellings),
            field_stems=frozenset(_stem(n) for n in spellings),
            json_paths=tuple(parse_json_path(p) for p in json_paths),
            patterns=tuple(compiled),
        )

    def header_is_secret(self, name: str) -> bool:
        """True when a header of this name is redacted."""
        lowered = name.lower()
        if lowered in self.headers:
            return True
        if lowered in _NOT_SECRET_HEADERS:
            return False
        return any(fnmatch.fnmatchcase(lowered, glob) for glob in self.header_globs)

    def field_is_secret(self, name: str) -> bool:
        """True when a query, form or JSON field of this name is redacted."""
        return _normalise_field(name) in self.fields


# -- the key ------------------------------------------------------------------


def default_key_path() -> Path:
    """Where the redaction key lives unless told otherwise: outside every cassette."""
    if env := os.environ.get("BATON_REDACTION_KEY_FILE"):
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "baton" / "redaction.key"


def load_or_create_key(path: str | os.PathLike[str] | None = None) -> bytes:
    """Return the redaction key, creating a random one (mode 0600) on first use.

    ``BATON_REDACTION_KEY`` (64 hex digits) in the environment wins over any
    file, for CI jobs that hold the key as a secret variable. Share one key
    file across a team to get the same placeholders in everyone's cassettes.
    """
    if env := os.environ.get("BATON_REDACTION_KEY"):
        return _parse_key(env, "BATON_REDACTION_KEY")
    key_path = Path(path) if path is not None else default_key_path()
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            return _parse_key(key_path.read_text(encoding="ascii"), str(key_path))
        except (OSError, UnicodeDecodeError) as exc:
            raise RedactionError(f"{key_path}: cannot read the redaction key: {exc}") from exc
    except OSError as exc:
        raise RedactionError(
            f"{key_path}: cannot create the redaction key: {exc.strerror}"
        ) from exc
    key = secrets_module.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.hex() + "\n")
    logger.info("created redaction key %s", key_path)
    return key


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise RedactionError(
            f"{where}: a redaction key must be at least 32 hex digits; "
            "delete the file to have baton create a new one"
        )
    return key


# -- the redactor ---------------------------------------------------------------


@dataclass
class _Found:
    """Secrets found in one interaction, and where redaction changed it."""

    redactor: Redactor
    placeholders: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    reencoded: list[str] = field(default_factory=list)

    def add(self, secret: str) -> str:
        if PLACEHOLDER_PATTERN.fullmatch(secret):
            return secret
        placeholder = self.placeholders.get(secret)
        if placeholder is None:
            placeholder = self.redactor.placeholder(secret)
            self.placeholders[secret] = placeholder
        return placeholder

    def note(self, where: str) -> None:
        if where not in self.changed:
            self.changed.append(where)


class Redactor:
    """Apply ``RedactionRules`` to interactions with a keyed-hash placeholder.

    Thread-safe: its only state is a cache of per-header-name decisions.
    """

    def __init__(self, rules: RedactionRules | None = None, key: bytes | None = None) -> None:
        self.rules = rules if rules is not None else RedactionRules.build()
        self._key = key if key is not None else load_or_create_key()
        # Header names repeat endlessly: remember what each one is (bounded).
        self._header_kinds: dict[str, int] = {}

    def _header_kind(self, name: str) -> int:
        """``_SECRET``, ``_URL`` (may carry a query with secret fields) or ``_PLAIN``."""
        kind = self._header_kinds.get(name)
        if kind is None:
            lowered = name.lower()
            if self.rules.header_is_secret(name):
                kind = _SECRET
            elif lowered in _URL_HEADERS:
                kind = _URL
            else:
                kind = _PLAIN
            if len(self._header_kinds) < 4096:
                self._header_kinds[name] = kind
        return kind

    def placeholder(self, secret: str) -> str:
        """Return the stable placeholder for ``secret``."""
        digest = hmac.new(
            self._key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256
        ).hexdigest()
        return f"REDACTED-{digest[:16]}"

    def redact(self, interaction: Interaction) -> Interaction:
        """Return ``interaction`` with every secret replaced, noting what changed in its tags."""
        if interaction.websocket is not None and interaction.websocket.messages:
            return self._redact_conversation(interaction)
        found = _Found(self)
        request, response = interaction.request, interaction.response

        # Pass 1: secrets in the places named by the rules.
        req_headers = self._headers(request.headers, found, "request.headers")
        query = self._pairs(request.query, found, "request.query")
        req_body = _Body.of(request.body, request.headers, "request.body")
        self._body_fields(req_body, found)
        resp_headers = resp_trailers = None
        resp_body = None
        if response is not None:
            resp_headers = self._headers(response.headers, found, "response.headers")
            if response.trailers is not None:
                resp_trailers = self._headers(response.trailers, found, "response.trailers")
            resp_body = _Body.of(response.body, response.headers, "response.body")
            self._body_fields(resp_body, found)
        if self.rules.patterns:
            self._patterns(found, request, query, req_headers, resp_headers, req_body, resp_body)

        if not found.placeholders:
            return interaction

        # Pass 2: every secret found, wherever else it appears.
        scrub = _Scrubber(found)
        path = scrub.text(request.path, found, "request.path")
        query = tuple((n, scrub.text(v, found, "request.query")) for n, v in query)
        req_headers = scrub.headers(req_headers, found, "request.headers")
        new_request = replace(
            request,
            path=path,
            query=query,
            headers=req_headers,
        )
        new_request = replace(new_request, **req_body.finish(scrub, found, new_request.headers))
        new_response = None
        if response is not None:
            assert resp_headers is not None and resp_body is not None
            headers = scrub.headers(resp_headers, found, "response.headers")
            trailers = (
                None
                if resp_trailers is None
                else scrub.headers(resp_trailers, found, "response.trailers")
            )
            new_response = replace(response, headers=headers, trailers=trailers)
            new_response = replace(new_response, **resp_body.finish(scrub, found, headers))
        error = interaction.error
        if error is not None:
            error = scrub.text(error, found, "error")
        # Merged with what is already noted (WebSocket messages redacted as they passed).
        noted = [*interaction.tags.get("redacted", ()), *found.changed]
        tags: dict[str, Any] = {"redacted": list(dict.fromkeys(noted))}
        if found.reencoded:
            tags["body_reencoded"] = list(found.reencoded)
        return replace(
            interaction, request=new_request, response=new_response, error=error
        ).with_tags(**tags)

    # -- WebSocket messages ---------------------------------------------------

    def conversation(self, handshake: Interaction) -> MessageRedaction:
        """A scrubber for the messages that follow ``handshake``, applied one message at a time.

        Given the handshake as recorded (before its own redaction), so the
        secrets it carried are known and scrubbed from every message.
        """
        return MessageRedaction(self, handshake)

    def _redact_conversation(self, interaction: Interaction) -> Interaction:
        conversation = interaction.websocket
        assert conversation is not None
        stripped = replace(interaction, websocket=replace(conversation, messages=()))
        handshake = self.redact(stripped)
        scrub = self.conversation(interaction)
        messages = tuple(replace(m, data=scrub(m.data)) for m in conversation.messages)
        if not scrub.changed:
            return (
                interaction if handshake is stripped else replace(handshake, websocket=conversation)
            )
        out = replace(handshake, websocket=replace(conversation, messages=messages))
        noted = [*out.tags.get("redacted", ()), MessageRedaction.WHERE]
        return out.with_tags(redacted=list(dict.fromkeys(noted)))

    def _handshake_secrets(self, handshake: Interaction, found: _Found) -> None:
        """Pass 1 over a WebSocket handshake: its credentials, query, cookies and patterns."""
        request, response = handshake.request, handshake.response
        req_headers = self._headers(request.headers, found, "request.headers")
        query = self._pairs(request.query, found, "request.query")
        resp_headers = None
        if response is not None:
            resp_headers = self._headers(response.headers, found, "response.headers")
        if self.rules.patterns:
            body = _Body.of(request.body, request.headers, "request.body")
            self._patterns(found, request, query, req_headers, resp_headers, body, None)

    # -- pass 1 -------------------------------------------------------------

    def _headers(self, headers: Headers, found: _Found, where: str) -> Headers:
        # Most exchanges carry no secret header: then the same tuple comes back, unbuilt.
        changed: list[tuple[str, str]] | None = None
        for index, (name, value) in enumerate(headers):
            kind = self._header_kind(name)
            if kind == _PLAIN or not value:
                continue
            lowered = name.lower()
            if kind == _SECRET:
                new = redact_header_value(lowered, value, found.add)
            elif "?" in value:
                new = self._url_query(value, found)
            else:
                continue
            if new != value:
                found.note(f"{where}.{lowered}")
                if changed is None:
                    changed = list(headers)
                changed[index] = (name, new)
        return headers if changed is None else tuple(changed)

    def _url_query(self, url: str, found: _Found) -> str:
        head, _, query = url.partition("?")
        query, hash_mark, fragment = query.partition("#")
        parts = []
        for part in query.split("&"):
            name, eq, value = part.partition("=")
            if eq and value and self.rules.field_is_secret(unquote_plus(name)):
                part = f"{name}={found.add(unquote_plus(value))}"
            parts.append(part)
        return f"{head}?{'&'.join(parts)}{hash_mark}{fragment}"

    def _pairs(self, pairs: Pairs, found: _Found, where: str) -> Pairs:
        out = []
        for name, value in pairs:
            if value and self.rules.field_is_secret(name):
                value = found.add(value)
                found.note(f"{where}.{name}")
            out.append((name, value))
        return tuple(out)

    def _body_fields(self, body: _Body, found: _Found) -> None:
        if body.decoded is None:
            return
        if body.kind == "json" and (self.rules.fields or self.rules.json_paths):
            self._json_fields(body, found)
        elif body.kind == "form" and self.rules.fields:
            self._form_fields(body, found)
        elif body.kind == "multipart" and self.rules.fields:
            self._multipart_fields(body, found)

    def _json_fields(self, body: _Body, found: _Found) -> None:
        assert body.decoded is not None
        if not self.rules.json_paths and not _may_hold_field(body.decoded, self.rules.field_stems):
            return
        try:
            document = json.loads(body.decoded)
        except (ValueError, RecursionError):
            return
        values: list[Any] = []
        for key, value in _walk_json(document):
            if key is not None and self.rules.field_is_secret(key):
                values.append(value)
        for path in self.rules.json_paths:
            values.extend(_select_json(document, path))
        for value in values:
            if isinstance(value, str) and value:
                placeholder = found.add(value)
                body.exact.append((json.dumps(value).encode(), json.dumps(placeholder).encode()))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                # A number cannot become a string in place without breaking the
                # JSON; it is rewritten below with the document re-serialised.
                body.numbers.append(value)
                found.add(json.dumps(value))
        if body.exact or body.numbers:
            found.note(body.where)

    def _form_fields(self, body: _Body, found: _Found) -> None:
        assert body.working is not None
        parts = body.working.split(b"&")
        changed = False
        for i, part in enumerate(parts):
            name, eq, value = part.partition(b"=")
            if not eq or not value:
                continue
            text_name = unquote_plus(name.decode("latin-1"))
            if self.rules.field_is_secret(text_name):
                secret = unquote_plus(value.decode("utf-8", "surrogateescape"))
                parts[i] = name + b"=" + found.add(secret).encode()
                changed = True
        if changed:
            body.working = b"&".join(parts)
            found.note(body.where)

    def _multipart_fields(self, body: _Body, found: _Found) -> None:
        """A form sent as multipart/form-data holds ``password`` as a part, not as ``a=b``."""
        assert body.working is not None

        def replace_value(match: re.Match[bytes]) -> bytes:
            disposition, name, value = match.group(1), match.group(2), match.group(3)
            if b"filename=" in disposition.lower() or not value:
                return match.group(0)
            if not self.rules.field_is_secret(name.decode("latin-1")):
                return match.group(0)
            placeholder = found.add(value.decode("utf-8", "surrogateescape"))
            head = match.group(0)[: match.start(3) - match.start(0)]
            return head + placeholder.encode()

        working = _MULTIPART_FIELD.sub(replace_value, body.working)
        if working != body.working:
            body.working = working
            found.note(body.where)

    def _patterns(
        self,
        found: _Found,
        request: Request,
        query: Pairs,
        req_headers: Headers,
        resp_headers: Headers | None,
        req_body: _Body,
        resp_body: _Body | None,
    ) -> None:
        texts: list[str] = [request.path]
        texts += [value for _, value in query]
        texts += [value for _, value in req_headers]
        texts += [value for _, value in resp_headers or ()]
        for body in (req_body, resp_body):
            if body is not None and body.decoded is not None:
                texts.append(body.decoded.decode("utf-8", "surrogateescape"))
        for pattern in self.rules.patterns:
            for text in texts:
                for match in pattern.finditer(text):
                    secret = match.group(1) if pattern.groups else match.group(0)
                    if secret:
                        found.add(secret)


def redact_header_value(name: str, value: str, substitute: Callable[[str], str]) -> str:
    """Replace the secret part of a header value with ``substitute(secret)``.

    Keeps what a reader needs: the scheme of ``Authorization``, cookie names,
    ``Set-Cookie`` attributes. ``name`` is lowercase.
    """
    if name in ("authorization", "proxy-authorization"):
        scheme, space, credentials = value.strip().partition(" ")
        if space and credentials.strip() and re.fullmatch(r"[A-Za-z][\w.+-]*", scheme):
            return f"{scheme} {substitute(credentials.strip())}"
        return substitute(value)
    if name == "cookie":
        crumbs = []
        for crumb in value.split(";"):
            cname, eq, cvalue = crumb.partition("=")
            crumbs.append(f"{cname}={substitute(cvalue)}" if eq and cvalue else crumb)
        return ";".join(crumbs)
    if name == "set-cookie":
        first, semi, attributes = value.partition(";")
        cname, eq, cvalue = first.partition("=")
        if eq and cvalue:
            return f"{cname}={substitute(cvalue)}{semi}{attributes}"
        return value
    return substitute(value)


def _stem(name: str) -> bytes:
    """The last word of a field name, lowercased: "access_token" -> b"token".

    Every spelling of the field (``access_token``, ``accessToken``,
    ``ACCESS-TOKEN``) contains it, so a body without any stem has no secret key.
    """
    words = [w for w in re.split(r"[_-]|(?<=[a-z])(?=[A-Z])", name) if w]
    return (words[-1] if words else name).lower().encode()


def _may_hold_field(body: bytes, stems: frozenset[bytes]) -> bool:
    # A cheap test before parsing: most JSON bodies hold no secret key at all.
    lowered = body.lower()
    return any(stem in lowered for stem in stems)


def _walk_json(node: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    stack: list[tuple[str | None, Any]] = [(key, node)]
    while stack:
        key, node = stack.pop()
        yield key, node
        if isinstance(node, dict):
            stack.extend((str(k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((None, v) for v in node)


def _select_json(node: Any, path: tuple[JsonSegment, ...]) -> list[Any]:
    nodes = [node]
    for segment in path:
        following: list[Any] = []
        for current in nodes:
            if segment == "*":
                if isinstance(current, dict):
                    following.extend(current.values())
                elif isinstance(current, list):
                    following.extend(current)
            elif isinstance(segment, int):
                if isinstance(current, list) and -len(current) <= segment < len(current):
                    following.append(current[segment])
            elif isinstance(current, dict) and segment in current:
                following.append(current[segment])
        nodes = following
    return nodes


@dataclass
class _Body:
    """A body under redaction: decoded once, scrubbed, re-encoded only if it changed."""

    where: str
    original: bytes | None
    codings: list[str]
    content_encoding: str | None
    kind: str
    decoded: bytes | None
    working: bytes | None = None
    exact: list[tuple[bytes, bytes]] = field(default_factory=list)
    numbers: list[int | float] = field(default_factory=list)

    @classmethod
    def of(cls, body: bytes | None, headers: Headers, where: str) -> _Body:
        if not body:
            # Nothing to decode, parse or scrub (most requests): the headers need no reading.
            return cls(where, body, [], None, "other", body, body)
        content_encoding = None
        content_type = ""
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-encoding":
                content_encoding = value
            elif lowered == "content-type":
                content_type = value.lower()
        codings = parse_codings(content_encoding)
        decoded: bytes | None = body
        if body and codings:
            try:
                decoded = decode_body(body, content_encoding)
            except ContentCodingError as exc:
                # Scrubbed byte for byte instead: the secret can only sit in
                # the raw compressed stream by coincidence, but check anyway.
                logger.warning(
                    "%s: cannot decode for redaction (%s); scrubbing raw bytes", where, exc
                )
                codings = []
                decoded = body
        if any(t in content_type for t in _JSON_TYPES):
            kind = "json"
        elif _FORM_TYPE in content_type:
            kind = "form"
        elif _MULTIPART_TYPE in content_type:
            kind = "multipart"
        elif decoded and decoded.lstrip()[:1] in (b"{", b"["):
            kind = "json"
        else:
            kind = "other"
        return cls(where, body, codings, content_encoding, kind, decoded, decoded)

    def finish(self, scrub: _Scrubber, found: _Found, headers: Headers) -> dict[str, Any]:
        """Apply the scrub; return the fields to replace on the message (none if unchanged)."""
        if self.original is None or self.working is None:
            return {}
        data = self.working
        if self.numbers:
            data = _rewrite_json_numbers(data, self.numbers, found)
        for old, new in self.exact:
            data = data.replace(old, new)
        data = scrub.bytes(data)
        if data == self.decoded:
            return {}
        found.note(self.where)
        body = data
        if self.codings:
            body = encode_body(data, self.content_encoding)
            found.reencoded.append(f"{self.where} ({', '.join(self.codings)})")
        return {"body": body, "headers": _fix_content_length(headers, len(body))}


def _rewrite_json_numbers(data: bytes, numbers: list[int | float], found: _Found) -> bytes:
    try:
        document = json.loads(data)
    except ValueError:
        return data
    targets = {json.dumps(n) for n in numbers}

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: visit(v) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v) for v in node]
        if isinstance(node, int | float) and not isinstance(node, bool):
            text = json.dumps(node)
            if text in targets:
                return found.add(text)
        return node

    return json.dumps(visit(document), ensure_ascii=False).encode("utf-8")


def _fix_content_length(headers: Headers, length: int) -> Headers:
    # A scrubbed body has a new length; a stale Content-Length would make a
    # replayed response hang or be cut short.
    return tuple(
        (name, str(length)) if name.lower() == "content-length" else (name, value)
        for name, value in headers
    )


class _Scrubber:
    """Replace every known secret, in any of its common encodings, in one pass."""

    def __init__(self, found: _Found) -> None:
        by_variant: dict[bytes, bytes] = {}
        for secret, placeholder in found.placeholders.items():
            if len(secret) < MIN_SCRUB_LENGTH:
                continue
            for variant in _variants(secret):
                by_variant.setdefault(variant, placeholder.encode())
        self._by_variant = by_variant
        if by_variant:
            alternatives = sorted(by_variant, key=len, reverse=True)
            # Existing placeholders come first so that their hex digits are
            # never mistaken for part of a secret.
            self._pattern: re.Pattern[bytes] | None = re.compile(
                _PLACEHOLDER_BYTES.pattern + b"|" + b"|".join(re.escape(a) for a in alternatives)
            )
        else:
            self._pattern = None

    def bytes(self, data: bytes) -> bytes:
        if self._pattern is None or not data:
            return data
        return self._pattern.sub(lambda m: self._by_variant.get(m.group(0), m.group(0)), data)

    def text(self, value: str, found: _Found, where: str) -> str:
        raw = value.encode("utf-8", "surrogateescape")
        new = self.bytes(raw)
        if new == raw:
            return value
        found.note(where)
        return new.decode("utf-8", "surrogateescape")

    def headers(self, headers: Headers, found: _Found, where: str) -> Headers:
        return tuple(
            (name, self.text(value, found, f"{where}.{name.lower()}")) for name, value in headers
        )


def _variants(secret: str) -> set[bytes]:
    """The forms a secret takes when a service echoes it: raw, URL-, JSON- and HTML-escaped."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="/:"),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        html.escape(secret),
    }
    return {form.encode("utf-8", "surrogateescape") for form in forms if form}


class MessageRedaction:
    """Redact the messages of one WebSocket conversation, in order, as bodies are redacted.

    Each message is treated as a body: a JSON message has its fields
    redacted by the field-name and JSON-path rules, the regular expressions
    apply, and every secret known so far is scrubbed from it wherever it
    appears — the handshake's credentials (``Authorization``, a ``token``
    query, cookies) and any secret an earlier message carried in a JSON
    field. So a server echoing the client's token in a later message does
    not leak it. Called on the writer thread, one message after another;
    ``changed`` counts the messages it altered.
    """

    WHERE = "websocket.messages"

    def __init__(self, redactor: Redactor, handshake: Interaction) -> None:
        self._redactor = redactor
        self._found = _Found(redactor)
        redactor._handshake_secrets(handshake, self._found)
        self._scrubber = _Scrubber(self._found)
        self._known = len(self._found.placeholders)
        self.changed = 0

    def __call__(self, data: bytes) -> bytes:
        """The message's payload with its secrets replaced by their placeholders."""
        redactor, found = self._redactor, self._found
        body = _Body.of(data, (), self.WHERE)
        redactor._body_fields(body, found)
        if redactor.rules.patterns and body.decoded:
            text = body.decoded.decode("utf-8", "surrogateescape")
            for pattern in redactor.rules.patterns:
                for match in pattern.finditer(text):
                    secret = match.group(1) if pattern.groups else match.group(0)
                    if secret:
                        found.add(secret)
        if not found.placeholders:
            return data
        if len(found.placeholders) != self._known:
            self._scrubber = _Scrubber(found)
            self._known = len(found.placeholders)
        new = body.finish(self._scrubber, found, ()).get("body", data)
        if new != data:
            self.changed += 1
        return bytes(new)


# -- streamed bodies ------------------------------------------------------------------
#
# A body that passes through as a stream (server-sent events, a chunked answer, a
# download larger than memory) is redacted piece by piece: the client already has
# each piece, only the copy written to the cassette changes. Headers, the path and
# the query are redacted with the interaction as always; what a stream adds is:
#
# * echoes of the exchange's secrets are scrubbed from every piece, with a carry-over
#   window so that a secret split across two pieces is still found;
# * server-sent events are redacted event by event: the recorded copy is held back
#   to the end of each event (never the client's), JSON ``data:`` fields go through
#   the field and JSON-path rules, then echoes and the user's patterns are scrubbed;
# * where a rule needs the whole body parsed (a field rule on a 1 GB JSON download,
#   a JSON path, a compressed body) nothing is guessed: the body is written as it
#   came and the interaction is tagged ``body_not_scrubbed`` with the reason, which
#   ``baton lint`` reports.

SSE_EVENT_LIMIT = 1 << 20
"""An event longer than this is not held whole for redaction (echoes are still scrubbed)."""

PATTERN_LOOKAHEAD = 4096
"""Bytes held back so that a user pattern's match is decided with this much data after it."""

_SSE_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r(?!$))")


def secrets_found(redactor: Redactor, interaction: Interaction) -> dict[str, str]:
    """Pass 1 of ``Redactor.redact`` alone: every secret the rules find, mapped to its placeholder.

    Bodies that are None (streamed, not held) are skipped; what they hold is
    scrubbed for these secrets as it passes.
    """
    found = _Found(redactor)
    request, response = interaction.request, interaction.response
    req_headers = redactor._headers(request.headers, found, "request.headers")
    query = redactor._pairs(request.query, found, "request.query")
    req_body = _Body.of(request.body, request.headers, "request.body")
    redactor._body_fields(req_body, found)
    resp_headers: Headers | None = None
    resp_body: _Body | None = None
    if response is not None:
        resp_headers = redactor._headers(response.headers, found, "response.headers")
        resp_body = _Body.of(response.body, response.headers, "response.body")
        redactor._body_fields(resp_body, found)
    if redactor.rules.patterns:
        redactor._patterns(found, request, query, req_headers, resp_headers, req_body, resp_body)
    return dict(found.placeholders)


class StreamRedaction:
    """The recorded copy of one streamed body, redacted as its pieces pass.

    ``feed`` takes each piece and returns what may be written now (possibly
    less, held back to an event's end or for the carry-over window);
    ``finish`` returns the rest. ``changed`` tells whether anything was
    replaced, ``not_scrubbed`` why the body had to be written unscrubbed.
    Not thread-safe: one stream, one caller at a time.
    """

    where: str
    changed: bool = False
    not_scrubbed: str | None = None

    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _Passthrough(StreamRedaction):
    def __init__(self, where: str, not_scrubbed: str | None = None) -> None:
        self.where = where
        self.not_scrubbed = not_scrubbed


class _Window:
    """Replace the matches of one pattern in a stream, holding back ``hold`` bytes between pieces.

    A match that starts more than ``hold`` bytes before the end of what has
    arrived is final (every alternative of a literal pattern fits in the
    window); anything later waits for the next piece.
    """

    def __init__(
        self,
        pattern: re.Pattern[bytes],
        replace: Callable[[re.Match[bytes]], bytes],
        hold: int,
        literals: tuple[bytes, ...] = (),
    ) -> None:
        self._pattern = pattern
        self._replace = replace
        self._hold = hold
        self._literals = literals
        self._carry = b""
        self.changed = False

    def _quick_miss(self, buffer: bytes) -> bool:
        # bytes.find is far faster than the regex engine over a large body.
        return bool(self._literals) and not any(lit in buffer for lit in self._literals)

    def _apply(self, buffer: bytes, limit: int) -> tuple[bytes, int]:
        """The output for ``buffer`` up to the matches starting before ``limit``; where it ends."""
        out: list[bytes] = []
        position = 0
        for match in self._pattern.finditer(buffer):
            if match.start() >= limit:
                break
            new = self._replace(match)
            if new != match.group(0):
                self.changed = True
            out.append(buffer[position : match.start()])
            out.append(new)
            position = match.end()
        return b"".join(out), position

    def feed(self, data: bytes) -> bytes:
        buffer = self._carry + data if self._carry else data
        cut = max(0, len(buffer) - self._hold)
        if self._quick_miss(buffer):
            self._carry = buffer[cut:]
            return buffer[:cut]
        head, position = self._apply(buffer, cut)
        end = max(cut, position)
        self._carry = buffer[end:]
        return head + buffer[position:end]

    def finish(self) -> bytes:
        buffer, self._carry = self._carry, b""
        if not buffer or self._quick_miss(buffer):
            return buffer
        head, position = self._apply(buffer, len(buffer) + 1)
        return head + buffer[position:]


def _echo_window(scrubber: _Scrubber) -> _Window | None:
    if scrubber._pattern is None:
        return None
    literals = (*scrubber._by_variant, b"REDACTED-")
    hold = max(len(literal) for literal in literals) + 16
    by_variant = scrubber._by_variant
    return _Window(
        scrubber._pattern,
        lambda m: by_variant.get(m.group(0), m.group(0)),
        hold,
        literals,
    )


def _pattern_windows(redactor: Redactor, found: _Found) -> list[_Window]:
    windows = []
    for text_pattern in redactor.rules.patterns:
        pattern = re.compile(text_pattern.pattern.encode("utf-8", "surrogateescape"))

        def replace(match: re.Match[bytes], groups: int = pattern.groups) -> bytes:
            return _replace_secret_of(match, groups, found)

        windows.append(_Window(pattern, replace, PATTERN_LOOKAHEAD))
    return windows


def _replace_secret_of(match: re.Match[bytes], groups: int, found: _Found) -> bytes:
    """The match with its secret (group 1, or all of it) replaced by the placeholder."""
    group = 1 if groups else 0
    secret = match.group(group)
    if not secret or _PLACEHOLDER_BYTES.fullmatch(secret):
        return match.group(0)
    placeholder = found.add(secret.decode("utf-8", "surrogateescape")).encode()
    start, end = match.span(group)
    whole = match.group(0)
    offset = match.start(0)
    return whole[: start - offset] + placeholder + whole[end - offset :]


class _WindowedRedaction(StreamRedaction):
    """A body that is not events: echoes and patterns scrubbed through carry-over windows.

    ``stems`` (JSON and form bodies under field rules): the body is watched
    for the field names a rule redacts; if one shows up, the rule would have
    needed the whole body parsed, and the body is tagged instead.
    """

    def __init__(
        self,
        where: str,
        windows: list[_Window],
        stems: frozenset[bytes] = frozenset(),
        stem_reason: str = "",
        not_scrubbed: str | None = None,
    ) -> None:
        self.where = where
        self.not_scrubbed = not_scrubbed
        self._windows = windows
        self._stems = stems
        self._stem_reason = stem_reason
        self._stem_hold = max((len(s) for s in stems), default=1) - 1
        self._stem_tail = b""

    def _watch(self, data: bytes) -> None:
        if not self._stems or self.not_scrubbed is not None:
            return
        text = (self._stem_tail + data).lower()
        if any(stem in text for stem in self._stems):
            self.not_scrubbed = self._stem_reason
        self._stem_tail = text[-self._stem_hold :] if self._stem_hold else b""

    def feed(self, data: bytes) -> bytes:
        self._watch(data)
        for window in self._windows:
            data = window.feed(data)
        return data

    def finish(self) -> bytes:
        data = b""
        for window in self._windows:
            data = window.feed(data) + window.finish() if data else window.finish()
        self.changed = any(window.changed for window in self._windows)
        return data


class _EventRedaction(StreamRedaction):
    """Server-sent events: the recorded copy is held to each event's end, then redacted whole.

    JSON in the ``data:`` lines goes through the field and JSON-path rules (a
    value found becomes its placeholder, and is scrubbed from later events
    too); then echoes of every secret known and the user's patterns are
    scrubbed from the event.
    """

    def __init__(self, where: str, redactor: Redactor, found: _Found) -> None:
        self.where = where
        self._redactor = redactor
        self._found = found
        self._known = len(found.placeholders)
        self._scrubber = _Scrubber(found)
        self._buffer = b""
        self._overflow: _WindowedRedaction | None = None

    def feed(self, data: bytes) -> bytes:
        if self._overflow is not None:
            return self._feed_overflow(data)
        self._buffer += data
        out: list[bytes] = []
        start = 0
        event_start = 0
        for line in _SSE_LINE.finditer(self._buffer):
            start = line.end()
            if line.group(0) in (b"\n", b"\r\n", b"\r"):
                out.append(self._event(self._buffer[event_start:start]))
                event_start = start
        rest = self._buffer[event_start:]
        self._buffer = rest
        if len(rest) > SSE_EVENT_LIMIT:
            # An event this long is not held whole: scrub echoes as it passes.
            self.not_scrubbed = (
                f"an event longer than {SSE_EVENT_LIMIT} bytes: its JSON fields were not redacted"
            )
            self._overflow = _WindowedRedaction(self.where, self._windows())
            self._buffer = b""
            out.append(self._feed_overflow(rest))
        return b"".join(out)

    def _feed_overflow(self, data: bytes) -> bytes:
        assert self._overflow is not None
        # The overflow ends with the event: later events are redacted whole again.
        boundary = re.search(rb"(?:\r\n|\n|\r)(?:\r\n|\n|\r)", data)
        if boundary is None:
            return self._overflow.feed(data)
        head = self._overflow.feed(data[: boundary.end()]) + self._overflow.finish()
        self.changed = self.changed or self._overflow.changed
        self._overflow = None
        return head + self.feed(data[boundary.end() :])

    def finish(self) -> bytes:
        if self._overflow is not None:
            tail = self._overflow.finish()
            self.changed = self.changed or self._overflow.changed
            self._overflow = None
            return tail
        rest, self._buffer = self._buffer, b""
        return self._event(rest) if rest else b""

    def _windows(self) -> list[_Window]:
        echo = _echo_window(self._scrubber)
        return ([echo] if echo else []) + _pattern_windows(self._redactor, self._found)

    def _event(self, raw: bytes) -> bytes:
        new = self._event_fields(raw)
        for pattern in self._redactor.rules.patterns:
            text = new.decode("utf-8", "surrogateescape")
            for match in pattern.finditer(text):
                secret = match.group(1) if pattern.groups else match.group(0)
                if secret:
                    self._found.add(secret)
        if len(self._found.placeholders) != self._known:
            self._known = len(self._found.placeholders)
            self._scrubber = _Scrubber(self._found)
        new = self._scrubber.bytes(new)
        if new != raw:
            self.changed = True
        return new

    def _event_fields(self, raw: bytes) -> bytes:
        """The event with secret JSON fields of its data replaced (unchanged if it holds none)."""
        rules = self._redactor.rules
        if not (rules.fields or rules.json_paths):
            return raw
        lines = raw.splitlines(keepends=True)
        data_at = [n for n, line in enumerate(lines) if line.startswith(b"data:")]
        if not data_at:
            return raw
        values = []
        for n in data_at:
            value = lines[n][5:].rstrip(b"\r\n")
            values.append(value[1:] if value.startswith(b" ") else value)
        data = b"\n".join(values)
        if data.lstrip()[:1] not in (b"{", b"[") or not (
            rules.json_paths or _may_hold_field(data, rules.field_stems)
        ):
            return raw
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):
            return raw
        secrets: list[Any] = [
            value for key, value in _walk_json(document) if key and rules.field_is_secret(key)
        ]
        for path in rules.json_paths:
            secrets.extend(_select_json(document, path))
        targets = {
            json.dumps(v)
            for v in secrets
            if (isinstance(v, str) and v and not PLACEHOLDER_PATTERN.fullmatch(v))
            or (isinstance(v, int | float) and not isinstance(v, bool))
        }
        if not targets:
            return raw

        def visit(node: Any, key: str | None = None) -> Any:
            if isinstance(node, dict):
                return {k: visit(v, str(k)) for k, v in node.items()}
            if isinstance(node, list):
                return [visit(v) for v in node]
            if isinstance(node, str | int | float) and not isinstance(node, bool):
                text = json.dumps(node)
                if text in targets:
                    return self._found.add(node if isinstance(node, str) else text)
            return node

        compact = b": " not in data and b", " not in data
        rewritten = json.dumps(
            visit(document),
            ensure_ascii=False,
            separators=(",", ":") if compact else None,
        ).encode("utf-8")
        ending = lines[data_at[0]][len(lines[data_at[0]].rstrip(b"\r\n")) :] or b"\n"
        new_data = [b"data: " + line + ending for line in rewritten.split(b"\n")]
        kept = [line for n, line in enumerate(lines) if n not in set(data_at[1:])]
        first = kept.index(lines[data_at[0]])
        return b"".join(kept[:first] + new_data + kept[first + 1 :])


def stream_redaction(redactor: Redactor, interaction: Interaction, place: str) -> StreamRedaction:
    """How to redact the streamed body of ``place`` ("request" or "response") as it passes.

    ``interaction`` holds what is known when the stream starts: the request's
    headers, query and body (unless it is the stream), the response's headers.
    Its secrets (``secrets_found``) are what is scrubbed from every piece.
    """
    where = f"{place}.body"
    message = interaction.request if place == "request" else interaction.response
    if message is None:
        return _Passthrough(where)
    found = _Found(redactor)
    found.placeholders.update(secrets_found(redactor, interaction))
    scrubber = _Scrubber(found)
    rules = redactor.rules
    content_type = (header_values(message.headers, "content-type") or [""])[0].lower()
    media = content_type.split(";")[0].strip()
    codings = parse_codings(",".join(header_values(message.headers, "content-encoding")))
    body_rules = bool(rules.fields or rules.json_paths or rules.patterns)
    if codings:
        if scrubber._pattern is None and not body_rules:
            return _Passthrough(where)
        return _Passthrough(
            where,
            f"{', '.join(codings)}-encoded: a compressed stream is not scrubbed piece by piece",
        )
    if media == "text/event-stream":
        return _EventRedaction(where, redactor, found)
    windows = _pattern_windows(redactor, found)
    echo = _echo_window(scrubber)
    if echo is not None:
        windows.insert(0, echo)
    kind = "json" if "json" in media else "form" if media == _FORM_TYPE else "other"
    if kind == "json" and rules.json_paths:
        return _WindowedRedaction(
            where, windows, not_scrubbed=f"{media}: JSON path rules need the whole body parsed"
        )
    if kind != "other" and rules.fields:
        return _WindowedRedaction(
            where,
            windows,
            rules.field_stems,
            f"{media}: it names a field a rule redacts, which needs the whole body parsed",
        )
    if not windows:
        return _Passthrough(where)
    return _WindowedRedaction(where, windows)
