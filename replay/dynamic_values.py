"""Dynamic values: ids, tokens and ETags a service made up, and values a client generated.

Two kinds of value differ between a recording and a replay without meaning a
different request:

* **dynamic values** the service generated and the client sends back later:
  an order id in ``POST /orders``'s answer and then in ``GET /orders/ID``, a
  login token in later ``Authorization`` headers, an ``ETag`` in
  ``If-Match``. They are found in the recording (a response value that
  reappears in a later request; ``detect``) or declared
  (``dynamic = ["$.id", "header:ETag", "cookie:session"]``).
* **generated values** the client made up: UUIDs, timestamps (by shape) and
  declared fields (``request:$.nonce``, ``request:header:X-Request-Id``).

In a request's match key both become placeholders (``template``), so a
live request that carries another value in the same place still matches.
Where a live value differs from the recorded one, the session learns the
pair and answers carry the live value wherever the recording had the
recorded one (``substitute``): the id a test generated comes back in the
answer, as the real service would have echoed it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from baton.cassettes.model import Headers, Interaction, Request, Response, header_values
from baton.cassettes.redaction import PLACEHOLDER_PATTERN, parse_json_path
from baton.cassettes.trailing_index import TRACE_HEADERS, VALUE_FREE_HEADERS

__all__ = [
    "DYNAMIC",
    "GENERATED",
    "TRACE_HEADERS",
    "DynamicRules",
    "DynamicValue",
    "Templated",
    "detect",
    "nothing_sent_back",
    "paths_with_shapes",
    "substitute",
    "template",
]

DYNAMIC = "{baton:dynamic}"
GENERATED = "{baton:generated}"

# Trace context (never part of a match key, echoed back as the live request sent it) and the
# headers about the connection or the framing, never an id sent back: defined with the index
# record, whose PLAIN fact says a request holds no other header.
_PLAIN_HEADERS = VALUE_FREE_HEADERS

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_EPOCH_SECONDS = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01
_NONCE_NAME = re.compile(r"nonce|request[-_]?id|idempotency|correlation", re.IGNORECASE)
_HEADER_TOKEN = re.compile(r'[^\s,;="]+')
_JSON_LIMIT = 1 << 20
"""Bodies larger than this are not searched for values (they count by their digest)."""


def is_generated_shape(value: str, *, in_path: bool = False) -> bool:
    """True for a UUID, and (outside the path) an ISO-8601 time or an epoch time in 2000-2100."""
    # Cheap tests of length and a character or two first: this runs for every value of
    # every request replayed, and almost none is generated.
    size = len(value)
    if size == 36 and value[8] == "-" and UUID.fullmatch(value):
        return True
    if in_path:
        return False
    if size >= 16 and value[4:5] == "-" and value[:4].isdigit() and ISO_TIME.fullmatch(value):
        return True
    if (size == 10 or size == 13) and value.isdigit():
        seconds = int(value) // (1000 if len(value) == 13 else 1)
        return _EPOCH_SECONDS[0] <= seconds <= _EPOCH_SECONDS[1]
    return False


def _looks_generated_by_server(value: str) -> bool:
    """Worth noticing when it comes back: long enough, or id-like (letters and digits)."""
    if len(value) > 512 or PLACEHOLDER_PATTERN.fullmatch(value) or value.startswith("{baton:"):
        return False
    if len(value) >= 8 and not value.isalpha():
        return True
    return len(value) >= 4 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


@dataclass(frozen=True)
class DynamicRules:
    """Declared dynamic values, declared generated ones, and whether to detect more."""

    response_paths: tuple[tuple[str | int, ...], ...] = ()
    response_headers: frozenset[str] = frozenset()
    cookies: frozenset[str] = frozenset()
    request_paths: tuple[tuple[str | int, ...], ...] = ()
    request_headers: frozenset[str] = frozenset()
    request_query: frozenset[str] = frozenset()
    detect: bool = True
    """Find dynamic values in the recording (a response value that reappears in a later request)."""
    generated: bool = True
    """Treat UUIDs and timestamps in requests as generated (by shape)."""

    @classmethod
    def parse(
        cls, specs: Iterable[str], *, detect: bool = True, generated: bool = True
    ) -> DynamicRules:
        """Rules from ``$.path``, ``header:NAME``, ``cookie:NAME``, ``request:$.path``,
        ``request:header:NAME``, ``request:query:NAME``; ``ValueError`` names a bad one."""
        paths: list[tuple[str | int, ...]] = []
        headers: set[str] = set()
        cookies: set[str] = set()
        request_paths: list[tuple[str | int, ...]] = []
        request_headers: set[str] = set()
        request_query: set[str] = set()
        for raw in specs:
            spec = raw.strip()
            request_side = spec.startswith("request:")
            rest = spec.removeprefix("request:")
            try:
                if rest.startswith("header:") and rest[7:].strip():
                    (request_headers if request_side else headers).add(rest[7:].strip().lower())
                elif rest.startswith("cookie:") and rest[7:].strip() and not request_side:
                    cookies.add(rest[7:].strip())
                elif rest.startswith("query:") and rest[6:].strip() and request_side:
                    request_query.add(rest[6:].strip())
                elif rest.startswith("$"):
                    (request_paths if request_side else paths).append(parse_json_path(rest))
                else:
                    raise ValueError("unknown form")
            except ValueError as exc:
                raise ValueError(
                    f"dynamic value rule {spec!r}: use $.path, header:NAME, cookie:NAME, "
                    f"request:$.path, request:header:NAME or request:query:NAME ({exc})"
                ) from exc
        return cls(
            tuple(paths),
            frozenset(headers),
            frozenset(cookies),
            tuple(request_paths),
            frozenset(request_headers),
            frozenset(request_query),
            detect,
            generated,
        )


@dataclass(frozen=True)
class DynamicValue:
    """A value the service generated and a later request sent back."""

    value: str
    origin: str
    """Where it came from: ``$.id of POST /orders (#3)``."""
    uses: tuple[str, ...] = ()
    """Where it came back: ``path of GET /orders/ord-1 (#4)``."""


# -- values in a response --------------------------------------------------------------------


def _json_document(body: bytes | None, headers: Headers) -> Any:
    if not body or len(body) > _JSON_LIMIT:
        return None
    encoding = header_values(headers, "content-encoding")
    if encoding and encoding[0].lower() not in ("identity", ""):
        return None
    if body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _scalars(node: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """(JSON path, value as text) of every string and integer in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _scalars(value, f"{where}.{key}")
    elif isinstance(node, list):
        for number, value in enumerate(node):
            yield from _scalars(value, f"{where}[{number}]")
    elif isinstance(node, str):
        yield where, node
    elif isinstance(node, int) and not isinstance(node, bool):
        yield where, str(node)


def _path_matches(where: str, rule: tuple[str | int, ...]) -> bool:
    try:
        concrete = parse_json_path(where)
    except ValueError:
        return False
    if len(concrete) != len(rule):
        return False
    return all(r == "*" or r == c for r, c in zip(rule, concrete, strict=True))


def response_values(response: Response, rules: DynamicRules) -> Iterator[tuple[str, str, bool]]:
    """(value, where, declared) of the values in ``response`` that a client might send back."""
    document = _json_document(response.body, response.headers)
    if document is not None:
        for where, value in _scalars(document):
            declared = any(_path_matches(where, rule) for rule in rules.response_paths)
            if declared or _looks_generated_by_server(value):
                yield value, where, declared
    yield from _header_values_offered(response, rules)


def _header_values_offered(
    response: Response, rules: DynamicRules
) -> Iterator[tuple[str, str, bool]]:
    """(value, where, declared) of the headers a client might send back: ETag, Location,
    cookies, declared headers."""
    for name, value in response.headers:
        lower = name.lower()
        if lower == "etag":
            yield (
                value.removeprefix("W/").strip('"'),
                "header:ETag",
                lower in rules.response_headers,
            )
        elif lower == "location":
            path = urlsplit(value).path
            last = path.rstrip("/").rsplit("/", 1)[-1]
            if last and (_looks_generated_by_server(last) or last.isdigit()):
                yield unquote(last), "header:Location", lower in rules.response_headers
        elif lower == "set-cookie":
            cookie_name, _, rest = value.partition("=")
            cookie_value = rest.split(";", 1)[0].strip()
            declared = cookie_name.strip() in rules.cookies
            if cookie_value and (declared or _looks_generated_by_server(cookie_value)):
                yield cookie_value, f"cookie:{cookie_name.strip()}", declared
        elif lower in rules.response_headers:
            yield value.strip(), f"header:{name}", True


# -- values in a request ---------------------------------------------------------------------

Location = tuple[Any, ...]
"""Where in a request a value sits: ("path", 2), ("query", "id", 0), ("body", "$.x"), ..."""


@functools.lru_cache(maxsize=1024)
def _header_worth_reading(name: str) -> str | None:
    """The lower-case name of a header that may carry an id, a token or a nonce; None else."""
    lower = name.lower()
    if lower in _PLAIN_HEADERS or lower in TRACE_HEADERS or lower.startswith("sec-"):
        return None
    return lower


@functools.lru_cache(maxsize=4096)
def _nonce_like(name: str) -> bool:
    return bool(_NONCE_NAME.search(name))


def request_tokens(request: Request) -> Iterator[tuple[Location, str]]:
    """Every value of ``request`` a dynamic or generated value could be, with its place."""
    for number, segment in enumerate(request.path.split("/")):
        if segment:
            yield ("path", number), unquote(segment)
    seen: dict[str, int] = {}
    for name, value in request.query:
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        yield ("query", name, occurrence), value
    document = _json_document(request.body, request.headers)
    if document is not None:
        for where, value in _scalars(document):
            yield ("body", where), value
    for number, (name, value) in enumerate(request.headers):
        lower = _header_worth_reading(name)
        if lower is None:
            continue
        for token_number, token in enumerate(_HEADER_TOKEN.findall(value)):
            yield ("header", lower, number, token_number), token.removeprefix("W/")


_JSON_STRING = re.compile(rb'"([^"\\\x00-\x1f]{4,512})"')
"""A JSON string without escapes, 4 to 512 bytes: where ids and tokens sit in a body."""


def _quick_request_tokens(request: Request) -> Iterator[str]:
    """The values of ``request`` that could be dynamic, found without parsing its body.

    Loading a cassette tries every request against every value offered before it;
    a walk through each parsed body tripled the load time, and almost no request
    sends a value back. Only a request that does is walked (``request_tokens``).
    """
    for segment in request.path.split("/"):
        if segment:
            yield unquote(segment) if "%" in segment else segment
    for _, value in request.query:
        yield value
    body = request.body
    if body and len(body) <= _JSON_LIMIT:
        for match in _JSON_STRING.finditer(body):
            yield match.group(1).decode("utf-8", "surrogateescape")
        if body.lstrip()[:1] in (b"{", b"["):
            for match in _JSON_NUMBER_VALUE.finditer(body):
                yield match.group(1).decode("ascii")
    for name, value in request.headers:
        if _header_worth_reading(name) is not None:
            for token in _HEADER_TOKEN.findall(value):
                yield token.removeprefix("W/")


_JSON_NUMBER_VALUE = re.compile(rb":\s*(-?\d{1,19})\s*[,}\]]")


def _quick_response_values(
    response: Response, rules: DynamicRules, wanted: Container[bytes] | None = None
) -> Iterator[str]:
    """Values of ``response`` a client might send back, found without parsing its body
    unless a declared rule names a path in it. With ``wanted`` (values as UTF-8 bytes),
    the body's strings are only those it holds; headers and declared paths are few.
    An empty ``wanted`` and no declared path: the body is not even read (a body left
    in the cassette file, cassettes.model.LazyResponse, stays there)."""
    reads_body = bool(rules.response_paths) or (rules.detect and (wanted is None or bool(wanted)))
    body = response.body if reads_body else None
    encoding = header_values(response.headers, "content-encoding")
    plain = not encoding or encoding[0].lower() in ("identity", "")
    if body and plain and len(body) <= _JSON_LIMIT and body.lstrip()[:1] in (b"{", b"["):
        if rules.detect:
            for raw in _JSON_STRING.findall(body):
                if wanted is not None and raw not in wanted:
                    continue
                value = raw.decode("utf-8", "surrogateescape")
                if _looks_generated_by_server(value):
                    yield value
        if rules.response_paths:
            document = _json_document(body, response.headers)
            for where, value in _scalars(document):
                if any(_path_matches(where, rule) for rule in rules.response_paths):
                    yield value
    for value, _, declared in _header_values_offered(response, rules):
        if declared or rules.detect:
            yield value


def detect(interactions: Sequence[Interaction], rules: DynamicRules) -> dict[str, DynamicValue]:
    """Values a response carried and a later request sent back (declared ones too), by value,
    each with where it came from and where it went back."""
    offered: dict[str, int] = {}
    found: dict[str, DynamicValue] = {}
    looking = rules.detect or rules.response_paths or rules.response_headers or rules.cookies
    # A value no request holds is never looked up, so only those are offered: checking every
    # string of every answer for an id's shape was most of the cost of loading (and of
    # `baton diff OLD NEW`), and a set of the requests' values is cheap to build first.
    sent = _sent_tokens(interactions) if looking else set()
    # A body offers only values that look made up by a server: only those are looked for in it.
    sent_bytes = _as_bytes(value for value in sent if _looks_generated_by_server(value))
    for number, interaction in enumerate(interactions):
        request = interaction.request
        if offered and any(token in offered for token in _quick_request_tokens(request)):
            for location, token in request_tokens(request):
                source = offered.get(token)
                if source is None:
                    continue
                use = f"{_place(location)} of {request.method} {request.path} (#{number + 1})"
                known = found.get(token)
                if known is None:
                    origin = _origin(token, interactions[source], source, rules)
                    found[token] = DynamicValue(token, origin, (use,))
                elif len(known.uses) < 20:
                    found[token] = replace(known, uses=(*known.uses, use))
        response = interaction.response
        if (
            not looking
            or response is None
            or response.chunks is not None
            or response.stored is not None
        ):
            continue
        for value in _quick_response_values(response, rules, sent_bytes):
            if value in sent:
                offered.setdefault(value, number)
    return found


def _sent_tokens(interactions: Iterable[Interaction]) -> set[str]:
    """Every value any request sends: what ``detect`` looks a value up with, found both ways
    (the quick search and the parsed walk) so that nothing it could look up is missed."""
    sent: set[str] = set()
    for interaction in interactions:
        request = interaction.request
        sent.update(_quick_request_tokens(request))
        if request.body:  # without a body the walk finds what the quick search found
            sent.update(token for _, token in request_tokens(request))
    return sent


def _as_bytes(values: Iterable[str]) -> set[bytes]:
    """``values`` as a body holds them: decoding with surrogateescape inverts this, so a
    body's string equals a value exactly when their bytes are equal."""
    out: set[bytes] = set()
    for value in values:
        try:
            out.add(value.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            continue  # a lone surrogate no decoded body can hold
    return out


_MAY_LOOK_GENERATED = re.compile(r"(?m)^(?![A-Za-z]*$)(?![0-9]{0,7}$).{4,}$")
"""Lines that ``_looks_generated_by_server`` might accept: at least 4 characters, not only
ASCII letters, not only ASCII digits under 8 (a superset: each match is asked again)."""


_SEGMENT_CLASSES = bytes(
    ord("a")
    if chr(b).isascii() and chr(b).isalpha()
    else ord("0")
    if chr(b).isascii() and chr(b).isdigit()
    else b
    if b == ord("/")
    else ord("#")
    for b in range(256)
)


def _may_hold_made_up_segments(joined: str) -> bool:
    """False when no segment of the ``/``-joined paths can pass ``_looks_generated_by_server``:
    each is then only ASCII letters, or under 8 ASCII digits (a plain substring search over
    the text with letters, digits and everything else written alike tells)."""
    classes = joined.encode("utf-8", "surrogatepass").translate(_SEGMENT_CLASSES)
    return b"#" in classes or b"a0" in classes or b"0a" in classes or b"00000000" in classes


def nothing_sent_back(
    plain_paths: Iterable[str],
    others: Iterable[Interaction],
    offering: Iterable[Response],
    rules: DynamicRules,
) -> bool:
    """True when ``detect`` surely finds nothing, told without reading a body.

    ``plain_paths``: the paths of requests with no query, no body and no header a value
    could sit in (their only values are path segments); ``others``: every other
    interaction; ``offering``: the responses of plain ones with an ETag, Location or
    Set-Cookie header. With no declared response rule, a response offers a body value
    only if some request sends a value that looks made up by a server; else it offers
    header values only, and nothing is found when no request sends one of those.
    """
    if rules.response_paths or rules.response_headers or rules.cookies:
        return False
    if not rules.detect:
        return True
    joined = "/".join(plain_paths)
    segments: set[str] | None = None
    if _may_hold_made_up_segments(joined):
        segments = set(joined.split("/"))
        segments.discard("")
        if "%" in joined:
            segments = {unquote(s) if "%" in s else s for s in segments}
        listed = "\n".join(segments)
        candidates = (
            segments
            if "\n" in joined
            else (m.group(0) for m in _MAY_LOOK_GENERATED.finditer(listed))
        )
        if any(map(_looks_generated_by_server, candidates)):
            return False
    built = list(others)
    sent = _sent_tokens(built)
    if any(map(_looks_generated_by_server, sent)):
        return False
    responses = [i.response for i in built if i.response is not None]
    offered = [*responses, *offering]
    if not offered:
        return True
    if segments is None:
        segments = set(joined.split("/"))
        segments.discard("")
        if "%" in joined:
            segments = {unquote(s) if "%" in s else s for s in segments}
    sent |= segments
    for response in offered:
        if response.chunks is not None or response.stored is not None:
            continue
        for value in _quick_response_values(response, rules, set()):
            if value in sent:
                return False
    return True


_DIGITS_ALIKE = bytes(ord("0") if chr(b).isdigit() and b < 128 else b for b in range(256))
_HEX_ALIKE = bytes(ord("x") if chr(b) in "0123456789abcdefABCDEF" else b for b in range(256))


def paths_with_shapes(paths: Sequence[str], rules: DynamicRules) -> list[int]:
    """Positions of the paths in which ``template`` would look for generated values (a
    UUID, a time) when their requests hold nothing else (no query, body or header)."""
    if not rules.generated:
        return []
    encoded = "\n".join(paths).encode("utf-8", "surrogateescape")
    # A search for three shapes at every byte is slow; each needs a run that, with every
    # digit (or hex digit) written alike, a plain substring search finds.
    digits = encoded.translate(_DIGITS_ALIKE)
    if (
        b"0000000000" not in digits
        and b"0000-00-00" not in digits
        and b"xxxxxxxx-xxxx-" not in encoded.translate(_HEX_ALIKE)
    ):
        return []
    return [
        number
        for number, path in enumerate(paths)
        if _SHAPE_IN_TEXT.search(path.encode("utf-8", "surrogateescape"))
    ]


def _origin(value: str, interaction: Interaction, number: int, rules: DynamicRules) -> str:
    """``$.id of POST /orders (#3)``: where in which answer a dynamic value came from."""
    where = "body"
    if interaction.response is not None:
        for candidate, place, _ in response_values(interaction.response, rules):
            if candidate == value:
                where = place
                break
    request = interaction.request
    return f"{where} of {request.method} {request.path} (#{number + 1})"


def _place(location: Location) -> str:
    kind = location[0]
    if kind == "path":
        return f"path segment {location[1]}"
    if kind == "query":
        return f"query {location[1]}"
    if kind == "body":
        return f"body {location[1]}"
    return f"header {location[1]}"


# -- match keys with placeholders ------------------------------------------------------------


@dataclass(frozen=True)
class Templated:
    """A request with its dynamic and generated values replaced by placeholders."""

    request: Request
    dynamic: Mapping[Location, str] = field(default_factory=dict)
    generated: Mapping[Location, str] = field(default_factory=dict)


def _is_declared_generated(location: Location, rules: DynamicRules) -> bool:
    kind = location[0]
    if kind == "query":
        return location[1] in rules.request_query or _nonce_like(str(location[1]))
    if kind == "header":
        return location[1] in rules.request_headers or _nonce_like(location[1])
    if kind == "body":
        if rules.request_paths and any(
            _path_matches(location[1], rule) for rule in rules.request_paths
        ):
            return True
        return _nonce_like(location[1].rsplit(".", 1)[-1])
    return False


def template(
    request: Request,
    dynamic: Container[str],
    rules: DynamicRules,
    force: Container[Location] = (),
) -> Templated:
    """``request`` with placeholders for its dynamic and generated values (itself if none).

    ``force``: places taken as dynamic whatever they hold, to try a request
    that carries a value never seen against a recorded request's shape.
    """
    if not force and not _may_hold_values(request, dynamic, rules):
        return Templated(request)
    dynamic_found: dict[Location, str] = {}
    generated_found: dict[Location, str] = {}
    for location, token in request_tokens(request):
        if token in dynamic or location in force:
            dynamic_found[location] = token
        elif _is_declared_generated(location, rules) or (
            rules.generated and is_generated_shape(token, in_path=location[0] == "path")
        ):
            generated_found[location] = token
    if not dynamic_found and not generated_found:
        return Templated(request)
    marks = {loc: DYNAMIC for loc in dynamic_found} | {loc: GENERATED for loc in generated_found}
    return Templated(_with_marks(request, marks), dynamic_found, generated_found)


_SHAPE_IN_TEXT = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-|\d{4}-\d{2}-\d{2}[T ]\d{2}:|(?<!\d)\d{10}(?:\d{3})?(?!\d)"
)
_NONCE_IN_TEXT = re.compile(rb"(?i)nonce|request[-_]?id|idempotency|correlation")


def _may_hold_values(request: Request, dynamic: Container[str], rules: DynamicRules) -> bool:
    """False when ``request`` surely holds no dynamic or generated value: the common case,
    told by a few searches instead of a walk through every value."""
    if rules.request_paths or rules.request_headers or rules.request_query:
        return True
    if bool(dynamic):  # values to look for: only the walk can tell
        return True
    if not rules.generated:
        return False
    if _SHAPE_IN_TEXT.search(request.path.encode("utf-8", "surrogateescape")):
        return True
    for name, value in request.query:
        if _nonce_like(name) or _SHAPE_IN_TEXT.search(value.encode("utf-8", "surrogateescape")):
            return True
    for name, value in request.headers:
        lower = _header_worth_reading(name)
        if lower is not None and (
            _nonce_like(lower) or _SHAPE_IN_TEXT.search(value.encode("utf-8", "surrogateescape"))
        ):
            return True
    body = request.body
    if not body:
        return False
    head = body[:_JSON_LIMIT]
    return _SHAPE_IN_TEXT.search(head) is not None or _NONCE_IN_TEXT.search(head) is not None


def _with_marks(request: Request, marks: Mapping[Location, str]) -> Request:
    segments = request.path.split("/")
    for location, mark in marks.items():
        if location[0] == "path":
            segments[location[1]] = quote(mark)
    query = []
    seen: dict[str, int] = {}
    for name, value in request.query:
        occurrence = seen.get(name, 0)
        seen[name] = occurrence + 1
        query.append((name, marks.get(("query", name, occurrence), value)))
    body = request.body
    body_marks = {loc[1]: mark for loc, mark in marks.items() if loc[0] == "body"}
    if body_marks:
        document = _json_document(body, request.headers)
        body = json.dumps(_mark_json(document, "$", body_marks), sort_keys=True).encode()
    headers = []
    for number, (name, value) in enumerate(request.headers):
        lower = name.lower()
        if lower in TRACE_HEADERS:
            continue  # never part of a key
        token_marks = {
            loc[3]: mark
            for loc, mark in marks.items()
            if loc[0] == "header" and loc[1] == lower and loc[2] == number
        }
        if token_marks:
            value = _mark_tokens(value, token_marks)
        headers.append((name, value))
    return replace(
        request,
        path="/".join(segments),
        query=tuple(query),
        body=body,
        headers=tuple(headers),
    )


def _mark_tokens(value: str, marks: Mapping[int, str]) -> str:
    """``value`` with its Nth header token replaced by ``marks[N]``."""
    pieces = []
    end = 0
    for number, match in enumerate(_HEADER_TOKEN.finditer(value)):
        pieces.append(value[end : match.start()])
        pieces.append(marks.get(number, match.group(0)))
        end = match.end()
    pieces.append(value[end:])
    return "".join(pieces)


def _mark_json(node: Any, where: str, marks: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _mark_json(value, f"{where}.{key}", marks) for key, value in node.items()}
    if isinstance(node, list):
        return [_mark_json(value, f"{where}[{n}]", marks) for n, value in enumerate(node)]
    return marks.get(where, node)


def without_trace_headers(request: Request) -> Request:
    """``request`` without trace context headers (they never take part in matching)."""
    if not any(name.lower() in TRACE_HEADERS for name, _ in request.headers):
        return request
    kept = tuple((n, v) for n, v in request.headers if n.lower() not in TRACE_HEADERS)
    return replace(request, headers=kept)


# -- answers carrying the live values ----------------------------------------------------------


def _value_pattern(values: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted(values, key=len, reverse=True)  # the longest first: ord-12 before ord-1
    alternatives = "|".join(re.escape(v) for v in ordered)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


def substitute(response: Response, values: Mapping[str, str]) -> Response:
    """``response`` with each recorded value in ``values`` replaced by its live one.

    Bodies that are not plain text on the wire (compressed) and streamed ones
    are left as they are; a ``Content-Length`` follows the new body.
    """
    if not values:
        return response
    pattern = _value_pattern(values)

    def swap(match: re.Match[str]) -> str:
        return values[match.group(0)]

    headers = tuple(
        (name, pattern.sub(swap, value) if name.lower() != "content-length" else value)
        for name, value in response.headers
    )
    body = response.body
    encoding = header_values(response.headers, "content-encoding")
    if (
        body
        and response.chunks is None
        and response.stored is None
        and (not encoding or encoding[0].lower() == "identity")
    ):
        text = body.decode("utf-8", "surrogateescape")
        changed = pattern.sub(swap, text)
        if changed != text:
            body = changed.encode("utf-8", "surrogateescape")
            headers = tuple(
                (name, str(len(body)) if name.lower() == "content-length" else value)
                for name, value in headers
            )
    if body is response.body and headers == response.headers:
        return response
    return replace(response, headers=headers, body=body)
