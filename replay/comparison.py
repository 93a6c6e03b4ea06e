"""Compare a recorded response with a fresh one and classify every difference.

The question a drift report answers is "will this break my consumers?", so
every difference gets a class:

* ``breaking``: the status class changed (2xx -> 4xx/5xx), a field was
  removed, a type changed (``null`` <-> value and number <-> string
  included), the content type changed, a required header is gone, or no
  answer came at all;
* ``additive``: a field or a header was added;
* ``value``: same shape, different value;
* ``noise``: it matched an ignore rule, or was learned to change by itself.

JSON bodies go through deepdiff (the only module that imports it, when first needed); text
bodies are compared by lines, binary ones by size and digest; headers by
name, case-folded and order-free, minus a default list of headers that
change on every answer.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from baton.cassettes.content_coding import decode_body
from baton.cassettes.errors import ContentCodingError
from baton.cassettes.model import Headers, Response, header_values
from baton.cassettes.sse import is_event_stream
from baton.replay.graphql import error_changes, is_graphql_answer

if TYPE_CHECKING:
    from deepdiff import DeepDiff

__all__ = [
    "NOISY_HEADERS",
    "Change",
    "DriftClass",
    "NoiseRules",
    "compare_responses",
    "decoded_body",
    "endpoint_of",
    "locations_that_differ",
]


class DriftClass(StrEnum):
    """How much a difference matters to a consumer, most first."""

    BREAKING = "breaking"
    ADDITIVE = "additive"
    VALUE = "value"
    NOISE = "noise"


NOISY_HEADERS = frozenset(
    {
        "date",
        "server",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "etag",
        "last-modified",
        "expires",
        "age",
        "x-request-id",
        "x-correlation-id",
        "traceparent",
        "tracestate",
        "x-amzn-trace-id",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-cloud-trace-context",
        "cf-ray",
        "x-runtime",
        "x-response-time",
        "server-timing",
        "via",
        "alt-svc",
        "nel",
        "report-to",
        "vary",
        "accept-ranges",
        "set-cookie",
        # Made for each WebSocket connection: the key's token, the extensions the client offered.
        "sec-websocket-accept",
        "sec-websocket-extensions",
    }
)
"""Headers that differ between two answers of the same build; never drift."""

REQUIRED_HEADERS = frozenset({"content-type", "location", "content-encoding", "www-authenticate"})
"""Headers whose disappearance breaks a consumer."""


@dataclass(frozen=True)
class Change:
    """One difference between the recorded answer and the new one."""

    drift: DriftClass
    kind: str
    location: str
    old: Any = None
    new: Any = None
    rule: str | None = None
    """For noise: the rule that made it noise (``ignore: body.ts``, ``learned``)."""

    def to_json(self) -> dict[str, Any]:
        out = {
            "class": self.drift.value,
            "kind": self.kind,
            "location": self.location,
            "old": _jsonable(self.old),
            "new": _jsonable(self.new),
        }
        if self.rule:
            out["rule"] = self.rule
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


# -- noise rules -----------------------------------------------------------------


def _path_pattern(rule: str) -> re.Pattern[str]:
    """``body.items[*].updated_at``, ``$.meta.ts`` or ``root['a'][0]`` as a location regex."""
    text = rule.strip()
    if text.startswith("root"):
        text = "body" + re.sub(r"\['([^']*)'\]", r".\1", text[4:])
    elif text.startswith("$"):
        text = "body" + text[1:]
    elif not text.startswith(("body", "header.", "status")):
        text = "body." + text
    parts = []
    for token in re.split(r"(\[\*\]|\*\*|\*)", text):
        if token == "[*]":
            parts.append(r"\[\d+\]")
        elif token == "**":
            parts.append(r".*")
        elif token == "*":
            parts.append(r"[^.\[]+")
        else:
            parts.append(re.escape(token))
    # A rule also covers everything below the location it names.
    return re.compile("^" + "".join(parts) + r"(?:$|[.\[])")


@dataclass
class NoiseRules:
    """Locations to treat as noise: user rules (global or per endpoint) and learned ones."""

    paths: list[str] = field(default_factory=list)
    regexes: list[str] = field(default_factory=list)
    per_endpoint: dict[str, list[str]] = field(default_factory=dict)
    learned: dict[str, set[str]] = field(default_factory=dict)
    ignore_order: bool = False

    def __post_init__(self) -> None:
        self._paths = [(p, _path_pattern(p)) for p in self.paths]
        self._regexes = [(r, re.compile(r)) for r in self.regexes]
        self._endpoint = [
            (glob, [(p, _path_pattern(p)) for p in rules])
            for glob, rules in self.per_endpoint.items()
        ]

    def rule_for(self, endpoint: str, location: str) -> str | None:
        """The rule that makes ``location`` noise at ``endpoint``, or None."""
        for text, pattern in self._paths:
            if pattern.match(location):
                return f"ignore {text}"
        for text, regex in self._regexes:
            if regex.search(location):
                return f"ignore-regex {text}"
        for glob, rules in self._endpoint:
            if fnmatch.fnmatchcase(endpoint, glob):
                for text, pattern in rules:
                    if pattern.match(location):
                        return f"ignore {text} ({glob})"
        learned = self.learned.get(endpoint)
        if learned and _covered(location, learned):
            return "learned"
        return None

    def learn(self, endpoint: str, locations: Iterable[str]) -> None:
        self.learned.setdefault(endpoint, set()).update(locations)

    def learned_json(self) -> dict[str, Any]:
        return {"version": 1, "learned": {k: sorted(v) for k, v in sorted(self.learned.items())}}


def _covered(location: str, learned: set[str]) -> bool:
    if location in learned:
        return True
    # body.items[3].ts is covered by a learned body.items[0].ts: lists vary in length.
    folded = re.sub(r"\[\d+\]", "[*]", location)
    return any(re.sub(r"\[\d+\]", "[*]", known) == folded for known in learned)


# -- endpoints -------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ID = re.compile(r"^(\d+|[0-9a-fA-F]{16,}|[0-9A-Za-z_-]{20,})$")


def endpoint_of(method: str, path: str) -> str:
    """``GET /products/{id}``: numeric, hex and UUID segments folded so one endpoint is one line."""
    # isdecimal() first: the common id, and true where _ID's \d+ matches (but for a final
    # newline, which ``$`` allows); its other forms and a UUID are 16 characters or more,
    # so a shorter segment needs no regex.
    segments = [
        "{id}"
        if s.isdecimal()
        or ((len(s) >= 16 or s.endswith("\n")) and (_UUID.match(s) or _ID.match(s)))
        else s
        for s in path.split("/")
    ]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


# -- bodies ----------------------------------------------------------------------


def _media_type(headers: Headers) -> str:
    values = header_values(headers, "content-type")
    return values[0].split(";")[0].strip().lower() if values else ""


def _decoded(response: Response) -> bytes:
    body = response.body or b""
    encoding = header_values(response.headers, "content-encoding")
    if body and encoding:
        try:
            return decode_body(body, encoding[0])
        except ContentCodingError:
            return body
    return body


def decoded_body(response: Response) -> bytes:
    """The body with its content-encoding undone (as recorded if it does not decode)."""
    return _decoded(response)


def _readable_path(deepdiff_path: str) -> str:
    # root['items'][0]['price'] -> body.items[0].price
    text = deepdiff_path[4:] if deepdiff_path.startswith("root") else deepdiff_path
    text = re.sub(r"\['((?:[^'\\]|\\.)*)'\]", r".\1", text)
    text = re.sub(r'\["((?:[^"\\]|\\.)*)"\]', r".\1", text)
    return "body" + text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@functools.cache
def _deepdiff() -> type[DeepDiff]:
    """deepdiff, loaded when two JSON bodies first differ (~0.15 s: most runs never need it).

    deepdiff imports pydantic whenever it is installed (to diff pydantic models; baton
    compares JSON). baton contract's openapi-core brings pydantic in, and loading it would
    cost every `baton diff` ~7 MB: deepdiff is shown none while it loads, unless something
    loaded it first.
    """
    hide_pydantic = "pydantic" not in sys.modules
    if hide_pydantic:
        sys.modules["pydantic"] = None  # type: ignore[assignment]
    try:
        from deepdiff import DeepDiff
    finally:
        if hide_pydantic:
            del sys.modules["pydantic"]
    return DeepDiff


def _compare_json(
    old: Any, new: Any, ignore_order: bool
) -> list[tuple[DriftClass, str, str, Any, Any]]:
    diff = _deepdiff()(
        old,
        new,
        ignore_order=ignore_order,
        report_repetition=ignore_order,
        threshold_to_diff_deeper=0,
        ignore_private_variables=False,
        verbose_level=2,
    )
    out: list[tuple[DriftClass, str, str, Any, Any]] = []
    for path, value in diff.get("dictionary_item_removed", {}).items():
        out.append((DriftClass.BREAKING, "field_removed", _readable_path(path), value, None))
    for path, value in diff.get("dictionary_item_added", {}).items():
        out.append((DriftClass.ADDITIVE, "field_added", _readable_path(path), None, value))
    for path, change in diff.get("type_changes", {}).items():
        old_value, new_value = change.get("old_value"), change.get("new_value")
        if _json_type(old_value) == _json_type(new_value):  # int <-> float: both numbers
            out.append(
                (DriftClass.VALUE, "value_changed", _readable_path(path), old_value, new_value)
            )
        else:
            kind = f"type_changed ({_json_type(old_value)} -> {_json_type(new_value)})"
            out.append((DriftClass.BREAKING, kind, _readable_path(path), old_value, new_value))
    for path, change in diff.get("values_changed", {}).items():
        out.append(
            (
                DriftClass.VALUE,
                "value_changed",
                _readable_path(path),
                change["old_value"],
                change["new_value"],
            )
        )
    for path, value in diff.get("iterable_item_added", {}).items():
        out.append((DriftClass.VALUE, "item_added", _readable_path(path), None, value))
    for path, value in diff.get("iterable_item_removed", {}).items():
        out.append((DriftClass.VALUE, "item_removed", _readable_path(path), value, None))
    for path, change in diff.get("repetition_change", {}).items():
        out.append(
            (
                DriftClass.VALUE,
                "repetition_changed",
                _readable_path(path),
                change.get("old_repeat"),
                change.get("new_repeat"),
            )
        )
    return out


def _compare_bodies(
    old: Response, new: Response, ignore_order: bool
) -> list[tuple[DriftClass, str, str, Any, Any]]:
    if old.stored is not None or new.stored is not None:
        return _compare_digests(old, new)
    if old.body is None:
        return []  # not captured at recording time: nothing to compare against
    old_body, new_body = _decoded(old), _decoded(new)
    if old_body == new_body:
        return []
    media = _media_type(old.headers) or _media_type(new.headers)
    if "json" in media or (
        old_body.lstrip()[:1] in (b"{", b"[") and new_body.lstrip()[:1] in (b"{", b"[")
    ):
        try:
            old_json, new_json = json.loads(old_body), json.loads(new_body)
        except ValueError:
            pass
        else:
            if is_graphql_answer(old_json) and is_graphql_answer(new_json):
                return _compare_graphql(old_json, new_json, ignore_order)
            return _compare_json(old_json, new_json, ignore_order)
    if "x-www-form-urlencoded" in media:
        from urllib.parse import parse_qs

        old_form = {
            k: v
            for k, v in parse_qs(
                old_body.decode("utf-8", "replace"), keep_blank_values=True
            ).items()
        }
        new_form = {
            k: v
            for k, v in parse_qs(
                new_body.decode("utf-8", "replace"), keep_blank_values=True
            ).items()
        }
        return _compare_json(old_form, new_form, ignore_order)
    try:
        old_text, new_text = old_body.decode("utf-8"), new_body.decode("utf-8")
    except UnicodeDecodeError:
        return [
            (
                DriftClass.VALUE,
                "binary_changed",
                "body",
                f"{len(old_body)} bytes, sha256 {hashlib.sha256(old_body).hexdigest()[:12]}",
                f"{len(new_body)} bytes, sha256 {hashlib.sha256(new_body).hexdigest()[:12]}",
            )
        ]
    return _compare_lines(old_text.splitlines(), new_text.splitlines())


def _compare_graphql(
    old: dict[str, Any], new: dict[str, Any], ignore_order: bool
) -> list[tuple[DriftClass, str, str, Any, Any]]:
    """A GraphQL answer: ``errors[]`` as its own class (a new error is breaking), the rest
    (``data``, ``extensions``) field by field."""
    out: list[tuple[DriftClass, str, str, Any, Any]] = []
    for kind, location, before, after in error_changes(old, new):
        drift = DriftClass.BREAKING if kind == "graphql_error_added" else DriftClass.VALUE
        out.append((drift, kind, location, before, after))
    rest_old = {k: v for k, v in old.items() if k != "errors"}
    rest_new = {k: v for k, v in new.items() if k != "errors"}
    return out + _compare_json(rest_old, rest_new, ignore_order)


def _digest(response: Response) -> tuple[int, str]:
    if response.stored is not None:
        return response.stored.size, response.stored.sha256
    body = response.body or b""
    return len(body), hashlib.sha256(body).hexdigest()


def _compare_digests(old: Response, new: Response) -> list[tuple[DriftClass, str, str, Any, Any]]:
    """A body too large to hold (stored in its cassette) is compared by size and SHA-256 only."""
    before, after = _digest(old), _digest(new)
    if before == after:
        return []
    return [
        (
            DriftClass.VALUE,
            "binary_changed",
            "body",
            f"{before[0]} bytes, sha256 {before[1][:12]}",
            f"{after[0]} bytes, sha256 {after[1][:12]}",
        )
    ]


def _event_changes(
    old: Response, new: Response, endpoint: str, rules: NoiseRules
) -> list[Change] | None:
    """Server-sent events compared event by event (replay/sse.py); None unless both are events."""
    from baton.replay.sse import compare_event_streams

    return compare_event_streams(old, new, endpoint, rules)


def _compare_lines(old: list[str], new: list[str]) -> list[tuple[DriftClass, str, str, Any, Any]]:
    """One change per changed run of lines, located by its first recorded line.

    A location per line lets ``--learn-noise`` mark the line with a timestamp
    as noise without hiding a real change two lines further down.
    """
    out: list[tuple[DriftClass, str, str, Any, Any]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            # Line for line: one change each, so one noisy line hides nothing else.
            out += [
                (DriftClass.VALUE, "text_changed", f"body:line {i + 1}", old[i], new[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
                if old[i] != new[j]
            ]
            continue
        out.append(
            (
                DriftClass.VALUE,
                "text_changed",
                f"body:line {i1 + 1}",
                "\n".join(old[i1:i2]),
                "\n".join(new[j1:j2]),
            )
        )
        if len(out) >= 20:
            out.append((DriftClass.VALUE, "text_changed", "body:more", None, "more changed lines"))
            break
    return out


def _compared_headers(headers: Headers) -> dict[str, list[str]]:
    """The headers that are compared, by lowered name, values in order."""
    out: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered not in NOISY_HEADERS:  # never compared: left out at once
            out.setdefault(lowered, []).append(value)
    return out


def _compare_headers(old: Headers, new: Headers) -> list[tuple[DriftClass, str, str, Any, Any]]:
    before, after = _compared_headers(old), _compared_headers(new)
    changes: list[tuple[DriftClass, str, str, Any, Any]] = []
    for name in sorted(before.keys() | after.keys()):
        location = f"header.{name}"
        if name not in after:
            drift = DriftClass.BREAKING if name in REQUIRED_HEADERS else DriftClass.VALUE
            changes.append((drift, "header_removed", location, before[name], None))
        elif name not in before:
            changes.append((DriftClass.ADDITIVE, "header_added", location, None, after[name]))
        elif name == "content-type":
            old_type = before[name][0].split(";")[0].strip().lower()
            new_type = after[name][0].split(";")[0].strip().lower()
            if old_type != new_type:
                changes.append(
                    (
                        DriftClass.BREAKING,
                        "content_type_changed",
                        location,
                        before[name][0],
                        after[name][0],
                    )
                )
            elif before[name] != after[name]:
                changes.append(
                    (DriftClass.VALUE, "header_changed", location, before[name][0], after[name][0])
                )
        elif sorted(before[name]) != sorted(after[name]):
            changes.append(
                (DriftClass.VALUE, "header_changed", location, before[name], after[name])
            )
    return changes


def _compare_status(old: int, new: int) -> list[tuple[DriftClass, str, str, Any, Any]]:
    if old == new:
        return []
    if old // 100 != new // 100 and (new >= 400 or old >= 400 or old // 100 == 2):
        return [(DriftClass.BREAKING, "status_class_changed", "status", old, new)]
    return [(DriftClass.VALUE, "status_changed", "status", old, new)]


def locations_that_differ(
    first: Response, second: Response, ignore_order: bool = False
) -> set[str]:
    """Every location where two answers differ: what ``--learn-noise`` marks as noise."""
    raw = _compare_status(first.status, second.status)
    raw += _compare_headers(first.headers, second.headers)
    events = _event_changes(first, second, "", NoiseRules(ignore_order=ignore_order))
    if events is None:
        raw += _compare_bodies(first, second, ignore_order)
    return {location for _, _, location, _, _ in raw} | {c.location for c in events or ()}


def compare_responses(
    recorded: Response | None,
    fresh: Response | None,
    endpoint: str,
    rules: NoiseRules | None = None,
    *,
    error: str | None = None,
) -> list[Change]:
    """Classify every difference between the recorded answer and the fresh one.

    ``fresh`` is None when the target gave no answer; ``error`` says why.
    """
    rules = rules or NoiseRules()
    if recorded is None:
        return []  # recorded without a response: nothing to hold the new build to
    if fresh is None:
        return [
            Change(
                DriftClass.BREAKING,
                "no_response",
                "status",
                recorded.status,
                error or "no response",
            )
        ]
    if (
        recorded.status == fresh.status
        and recorded.body == fresh.body
        and recorded.stored == fresh.stored
        and (
            recorded.headers == fresh.headers
            or _compared_headers(recorded.headers) == _compared_headers(fresh.headers)
        )
        and not is_event_stream(recorded.headers)
    ):
        # The same answer but for headers never compared (Date, Server...): every comparison
        # below finds nothing in it, and most answers are. Event streams are left to their
        # own comparison, which reads their pieces (equal compared headers: both are or
        # neither is one).
        return []
    return _compare_in_full(recorded, fresh, endpoint, rules)


def _compare_in_full(
    recorded: Response, fresh: Response, endpoint: str, rules: NoiseRules
) -> list[Change]:
    """Every difference, part by part: what ``compare_responses`` finds in two answers."""
    raw = _compare_status(recorded.status, fresh.status)
    raw += _compare_headers(recorded.headers, fresh.headers)
    events: list[Change] = []
    if not any(kind == "content_type_changed" for _, kind, _, _, _ in raw):
        found = _event_changes(recorded, fresh, endpoint, rules)
        if found is None:
            raw += _compare_bodies(recorded, fresh, rules.ignore_order)
        else:
            events = found
    changes = []
    for drift, kind, location, old, new in raw:
        rule = rules.rule_for(endpoint, location)
        changes.append(Change(DriftClass.NOISE if rule else drift, kind, location, old, new, rule))
    return changes + events
