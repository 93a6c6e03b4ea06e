"""Stateful replay: which recorded answer belongs to the state a session is in.

A service answers ``GET /cart`` differently before and after ``POST
/cart/items``. Recording counts, per session, the state-changing requests
(writes) seen before each interaction and keeps the count in the
interaction's ``state`` tag. Replay counts the writes each live session has
made and answers a request from the recordings made at the same count, so
reads may be repeated or reordered between writes and still get the answer
of their state. docs/replay.md#state describes the algorithm and where it
stops.

A session is what ``--session-by`` names: one header's value, one cookie's,
the client's connection, or (the default) everything at once. Each session
has its own write count and its own place in every queue, so two tests
replaying one cassette side by side never take each other's answers.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from baton.cassettes.model import Interaction, Request, header_values

__all__ = [
    "STATE_TAG",
    "WRITE_METHODS",
    "RecordedState",
    "SessionBy",
    "StateCounter",
    "StateRules",
    "pick_state",
    "recorded_state",
]

STATE_TAG = "state"
"""The interaction tag holding ``{"writes": N, "write": bool[, "session": S]}``."""

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class SessionBy:
    """How a request names its session: ``none``, ``client``, ``header:NAME`` or ``cookie:NAME``."""

    kind: str = "none"
    name: str = ""

    @classmethod
    def parse(cls, spec: str | None) -> SessionBy:
        """``ValueError`` naming the spec and the accepted forms for anything else."""
        text = (spec or "none").strip()
        if text in ("none", "client"):
            return cls(text)
        kind, _, name = text.partition(":")
        if kind in ("header", "cookie") and name.strip():
            return cls(kind, name.strip())
        raise ValueError(f"session-by {text!r}: use header:NAME, cookie:NAME, client or none")

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    def session_of(self, request: Request, client: str | None = None) -> str:
        """The session ``request`` belongs to ("" when it names none)."""
        if self.kind == "header":
            values = header_values(request.headers, self.name)
            return values[0] if values else ""
        if self.kind == "cookie":
            # Imported here: only --session-by cookie needs it, and it costs every start-up.
            from http.cookies import CookieError, SimpleCookie

            for raw in header_values(request.headers, "cookie"):
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(raw)
                except CookieError:
                    continue
                if self.name in jar:
                    return jar[self.name].value
            return ""
        if self.kind == "client":
            return client or ""
        return ""


@dataclass(frozen=True)
class StateRules:
    """Which requests change state: POST/PUT/PATCH/DELETE, less GraphQL queries, per route.

    ``reads`` and ``writes`` are routes ``"METHOD /path-glob"`` (``*`` for any
    method) that override the method's rule: a ``POST /search`` that changes
    nothing, a ``GET /logout`` that does.
    """

    reads: tuple[tuple[str, str], ...] = ()
    writes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(cls, reads: Iterable[str] = (), writes: Iterable[str] = ()) -> StateRules:
        """``ValueError`` naming a route that is not ``METHOD /path``."""
        return cls(tuple(_route(r) for r in reads), tuple(_route(w) for w in writes))

    def is_write(self, request: Request) -> bool:
        """True when ``request`` changes the service's state."""
        method = request.method.upper()
        if not self.writes and not self.reads:
            return method in WRITE_METHODS and not _graphql_read(request)
        if any(_route_matches(route, method, request.path) for route in self.writes):
            return True
        if any(_route_matches(route, method, request.path) for route in self.reads):
            return False
        if method not in WRITE_METHODS:
            return False
        return not _graphql_read(request)


def _route(spec: str) -> tuple[str, str]:
    method, _, path = spec.strip().partition(" ")
    if not method or not path.strip().startswith("/"):
        raise ValueError(f"route {spec!r}: write it as METHOD /path (globs allowed, * any method)")
    return method.upper(), path.strip()


def _route_matches(route: tuple[str, str], method: str, path: str) -> bool:
    return route[0] in ("*", method) and fnmatch.fnmatchcase(path, route[1])


def _graphql_read(request: Request) -> bool:
    """A GraphQL query (not a mutation) sent by POST reads; it does not change state."""
    body = request.body
    if not body or body.lstrip()[:1] != b"{" or b'"query"' not in body:
        return False
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return False
    query = document.get("query") if isinstance(document, dict) else None
    if not isinstance(query, str):
        return False
    from baton.replay.graphql import operation_type

    return operation_type(query, document.get("operationName")) in ("query", "subscription")


@dataclass(frozen=True)
class RecordedState:
    """What recording noted about one interaction's state."""

    writes: int
    """State-changing requests its session had made before it."""
    write: bool
    """True when this request itself changed state."""
    session: str = ""


def recorded_state(interaction: Interaction) -> RecordedState | None:
    """The interaction's ``state`` tag, or None (recorded before stateful replay, or mangled)."""
    tag = interaction.tags.get(STATE_TAG)
    if not isinstance(tag, Mapping):
        return None
    writes = tag.get("writes")
    if not isinstance(writes, int) or isinstance(writes, bool) or writes < 0:
        return None
    session = tag.get("session", "")
    return RecordedState(
        writes, bool(tag.get("write")), session if isinstance(session, str) else ""
    )


class StateCounter:
    """Counts writes per session as requests start, for the recorder's ``state`` tags."""

    def __init__(self, rules: StateRules | None = None, session_by: SessionBy | None = None):
        self.rules = rules or StateRules()
        self.session_by = session_by or SessionBy()
        self._writes: dict[str, int] = {}

    def stamp(self, request: Request, client: str | None = None) -> dict[str, Any]:
        """The ``state`` tag for a request starting now; counts it if it writes."""
        session = self.session_by.session_of(request, client)
        before = self._writes.get(session, 0)
        write = self.rules.is_write(request)
        if write:
            self._writes[session] = before + 1
        tag: dict[str, Any] = {"writes": before, "write": write}
        if session:
            # A digest, never the value: a session cookie or header may be a credential.
            tag["session"] = hashlib.sha256(session.encode("utf-8", "surrogateescape")).hexdigest()[
                :16
            ]
        return tag


def pick_state(states: Sequence[int], writes: int) -> int | None:
    """The recorded state to answer from when the session has made ``writes`` writes.

    ``states`` are the distinct counts under which the request was recorded,
    ascending. The same count if it was recorded then; else the latest one
    before (nothing recorded since changed this answer, as far as the
    recording knows); else the earliest after (the test made fewer writes
    than the recording: the best guess there is). None when ``states`` is empty.
    """
    if not states:
        return None
    best: int | None = None
    for state in states:
        if state == writes:
            return state
        if state < writes:
            best = state
    return best if best is not None else states[0]
