"""The replay index: match key -> the queue of interactions recorded under it.

Built once per set of cassettes; a lookup is a hash of the request's key, so
it costs the same for ten interactions or a hundred thousand. Identical
requests are answered in recorded order (a login, a 401, a retry), each
recorded answer once; when a queue runs dry the policy decides between
answering the last one again and treating the request as a miss.

Lookups are synchronous and must come from one thread (an event loop): two
concurrent identical requests then always get two distinct answers.
"""

from __future__ import annotations

import json
from bisect import insort
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.redaction import PLACEHOLDER_PATTERN
from baton.cassettes.wording import plural
from baton.replay.dynamic_values import (
    TRACE_HEADERS,
    DynamicRules,
    DynamicValue,
    Location,
    Templated,
    detect,
    substitute,
    template,
)
from baton.replay.matching import KeyPart, MatchConfig, Mismatch, explain, match_key
from baton.replay.state import (
    RecordedState,
    SessionBy,
    StateRules,
    pick_state,
    recorded_state,
)
from baton.replay.time_shift import TimeShift

__all__ = ["ExhaustedPolicy", "Hit", "Index", "Miss"]


class ExhaustedPolicy(StrEnum):
    """What to do when every recorded answer for a request has been served."""

    REPEAT_LAST = "repeat-last"
    STRICT = "strict"


def echo_trace_context(response: Response, request: Request) -> Response:
    """``response`` with recorded trace headers replaced by the ones the live request sent."""
    recorded = [name for name, _ in response.headers if name.lower() in TRACE_HEADERS]
    if not recorded:
        return response
    live = {name.lower(): value for name, value in request.headers if name.lower() in TRACE_HEADERS}
    headers = tuple((name, live.get(name.lower(), value)) for name, value in response.headers)
    return response if headers == response.headers else replace(response, headers=headers)


@dataclass(frozen=True)
class Hit:
    """A recorded interaction to answer with."""

    interaction: Interaction
    number: int
    """Position of the interaction in the index (0-based, in load order)."""
    repeated: bool = False
    """True when served again under ``repeat-last`` after its queue ran dry."""
    response: Response | None = None
    """The answer rewritten for this request (live values, shifted dates, trace context);
    None: the recorded response goes out as it is."""


@dataclass(frozen=True)
class Miss:
    """No recorded answer; ``near`` holds the closest recorded requests and what differed."""

    request: Request
    near: list[tuple[Request, list[Mismatch]]]
    reason: str = "no recorded interaction matches"

    def report(self) -> str:
        """A near-miss report for a person: the request, then the closest recorded ones."""
        lines = [self.headline()]
        if not self.near:
            lines.append("  the cassette holds no interactions")
        else:
            lines.append(
                "  closest recorded request:"
                if len(self.near) == 1
                else "  closest recorded requests:"
            )
        for number, (candidate, mismatches) in enumerate(self.near, 1):
            lines.append(f"  {number}. {candidate.method} {candidate.target}")
            if not mismatches:
                lines.append("     matches on every matcher (its recorded answers are used up)")
            for mismatch in mismatches:
                lines.append(
                    f"     {mismatch.matcher}: recorded {mismatch.expected} | got {mismatch.got}"
                )
        return "\n".join(lines)

    def headline(self) -> str:
        """The report's first line: what missed, e.g. ``baton: no recorded ... matches GET /x``."""
        return f"baton: {self.reason} {self.request.method} {self.request.target}"


def learned_secret_fields(interactions: Iterable[Interaction]) -> frozenset[str]:
    """Names of query, form and JSON fields that hold a redaction placeholder in the cassette.

    A field redacted by a user rule at recording time must be blanked in live
    requests too, or no live request would ever match it.
    """
    names: set[str] = set()
    for interaction in interactions:
        request = interaction.request
        for name, value in request.query:
            if PLACEHOLDER_PATTERN.fullmatch(value):
                names.add(name)
        body = request.body or b""
        if b"REDACTED-" not in body:
            continue
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            for part in body.split(b"&"):
                raw_name, _, raw_value = part.partition(b"=")
                if PLACEHOLDER_PATTERN.fullmatch(raw_value.decode("latin-1")):
                    names.add(raw_name.decode("latin-1"))
            continue
        stack: list[Any] = [document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key, value in node.items():
                    if isinstance(value, str) and PLACEHOLDER_PATTERN.fullmatch(value):
                        names.add(str(key))
                    else:
                        stack.append(value)
            elif isinstance(node, list):
                stack.extend(node)
    return frozenset(names)


_SESSION_LIMIT = 10_000
"""Sessions kept at once; beyond, the one started first is forgotten."""

_SCAN_LIMIT = 256
"""Recorded answers looked through for the one a request's dynamic values point at."""


@dataclass
class _Queue:
    """The interactions recorded under one match key, split by the state they were recorded in."""

    numbers: list[int] = field(default_factory=list)
    by_state: dict[int, list[int]] = field(default_factory=dict)
    untagged: list[int] = field(default_factory=list)
    states: list[int] = field(default_factory=list)
    """The distinct recorded write counts, ascending."""


@dataclass
class _Session:
    """One session's writes so far, its place in each queue, and the live values it has sent."""

    writes: int = 0
    cursors: dict[tuple[Any, int | None], int] = field(default_factory=dict)
    used: dict[tuple[Any, int | None], set[int]] = field(default_factory=dict)
    """Answers taken out of recorded order (a dynamic value pointed at them)."""
    live: dict[str, str] = field(default_factory=dict)
    """Recorded value -> the live value this session sends in its place."""
    recorded: dict[str, str] = field(default_factory=dict)
    """Live value -> the recorded value it stands for."""


class _EitherSet:
    """Membership in either of two containers, without building their union per request."""

    __slots__ = ("first", "second")

    def __init__(self, first: Mapping[str, Any], second: Mapping[str, Any]) -> None:
        self.first = first
        self.second = second

    def __contains__(self, value: object) -> bool:
        return value in self.first or value in self.second

    def __bool__(self) -> bool:
        return bool(self.first) or bool(self.second)


class Index:
    """Answers requests from recorded interactions; counts hits, misses and what went unused.

    On top of the match key (replay/matching.py) it keeps, per session
    (``session_by``): the writes the session has made, to answer from the
    recording made in the same state (replay/state.py; ``state=False`` turns
    it off); its place in every queue; and the live values it sent where the
    recording had others (replay/dynamic_values.py), which its answers then
    carry. ``time_shift`` moves the dates in answers (replay/time_shift.py).
    """

    def __init__(
        self,
        interactions: Iterable[Interaction],
        config: MatchConfig | None = None,
        on_exhausted: ExhaustedPolicy | str = ExhaustedPolicy.REPEAT_LAST,
        *,
        state: bool = True,
        state_rules: StateRules | None = None,
        session_by: SessionBy | None = None,
        dynamic: DynamicRules | None = None,
        shift_time: datetime | None = None,
        time_fields: Iterable[str] = (),
    ) -> None:
        self.interactions: list[Interaction] = list(interactions)
        base = config or MatchConfig()
        learned = learned_secret_fields(self.interactions)
        if any(name in TRACE_HEADERS for name in base.headers):
            # Trace context never takes part in matching, even when named with --match-header.
            base = replace(base, headers=tuple(h for h in base.headers if h not in TRACE_HEADERS))
        self.config = base.with_secrets(
            type(base.secrets)(
                rules=base.secrets.rules,
                placeholder=base.secrets.placeholder,
                learned_fields=base.secrets.learned_fields | learned,
            )
        )
        self.on_exhausted = ExhaustedPolicy(on_exhausted)
        self.state = state
        self.state_rules = state_rules or StateRules()
        self.session_by = session_by or SessionBy()
        self.dynamic_rules = dynamic if dynamic is not None else DynamicRules()
        self.dynamic_values: dict[str, DynamicValue] = detect(self.interactions, self.dynamic_rules)
        self.time_shift: TimeShift | None = None
        if shift_time is not None and self.interactions:
            first = min(i.recorded_at for i in self.interactions)
            self.time_shift = TimeShift.between(first, shift_time, time_fields)
        self._queues: dict[tuple[KeyPart, ...], _Queue] = {}
        self._keys: list[tuple[KeyPart, ...]] = []
        self._states: list[RecordedState | None] = []
        self._captures: list[dict[Location, str] | None] = []
        self._shapes: dict[frozenset[Location], None] = {}
        """The places recorded requests hold dynamic values in (few: one per kind of request)."""
        self._sessions: dict[str, _Session] = {}
        self.served = [0] * len(self.interactions)
        self._asked: set[tuple[KeyPart, ...]] = set()
        self._matched = 0  # interactions whose key was asked for, kept as it changes
        self.hits = 0
        self.misses: list[Miss] = []
        for number, interaction in enumerate(self.interactions):
            self._enqueue(number, interaction)

    def _template(self, request: Request, live: Container[str]) -> Templated:
        return template(request, live, self.dynamic_rules)

    def _enqueue(self, number: int, interaction: Interaction) -> None:
        templated = self._template(interaction.request, self.dynamic_values)
        key = match_key(templated.request, self.config)
        self._keys.append(key)
        captures = {**templated.dynamic, **templated.generated}
        self._captures.append(captures or None)
        if templated.dynamic:
            self._shapes.setdefault(frozenset(templated.dynamic), None)
        recorded = recorded_state(interaction) if self.state else None
        self._states.append(recorded)
        queue = self._queues.setdefault(key, _Queue())
        queue.numbers.append(number)
        if recorded is None:
            queue.untagged.append(number)
        else:
            bucket = queue.by_state.get(recorded.writes)
            if bucket is None:
                queue.by_state[recorded.writes] = [number]
                insort(queue.states, recorded.writes)
            else:
                bucket.append(number)
        if key in self._asked:
            self._matched += 1

    def add(self, interaction: Interaction) -> None:
        """Add a newly recorded interaction (``new_episodes``); it is served from now on."""
        self.interactions.append(interaction)
        self.served.append(0)
        self._enqueue(len(self.interactions) - 1, interaction)

    def __len__(self) -> int:
        return len(self.interactions)

    def session(self, request: Request, client: str | None = None) -> str:
        """The name of the session ``request`` belongs to under ``session_by``."""
        return self.session_by.session_of(request, client)

    def _session(self, request: Request, client: str | None) -> _Session:
        name = self.session_by.session_of(request, client)
        found = self._sessions.get(name)
        if found is None:
            if len(self._sessions) >= _SESSION_LIMIT:
                # The oldest goes (--session-by client on a server that runs for days).
                del self._sessions[next(iter(self._sessions))]
            found = self._sessions[name] = _Session()
        return found

    def _bucket(self, queue: _Queue, session: _Session) -> tuple[int | None, list[int]]:
        """Which of the queue's interactions answer a session that has made its writes."""
        if not queue.states:
            return None, queue.numbers
        chosen = pick_state(queue.states, session.writes)
        if chosen != session.writes and queue.untagged:
            return None, queue.untagged  # recorded without state (new_episodes): any state
        assert chosen is not None
        return chosen, queue.by_state[chosen]

    def _fit(self, number: int, captures: Mapping[Location, str], session: _Session) -> int:
        """2: its recorded values are the ones this session stands for; 1: none is another's; 0."""
        recorded = self._captures[number]
        if not recorded:
            return 1
        fit = 2
        for location, live in captures.items():
            value = recorded.get(location)
            if value is None or value == live or session.recorded.get(live) == value:
                continue
            fit = 1
            if value in session.live or live in session.recorded:
                return 0  # that recorded value stands for another live one, or this live one for another
        return fit

    def _choose(
        self,
        key: tuple[KeyPart, ...],
        queue: _Queue,
        captures: Mapping[Location, str],
        session: _Session,
        *,
        commit: bool,
    ) -> tuple[int, bool] | None:
        """(number, repeated) of the answer for this session, or None when used up (strict)."""
        bucket_id, numbers = self._bucket(queue, session)
        slot = (key, bucket_id)
        cursor = session.cursors.get(slot, 0)
        used = session.used.get(slot)
        while cursor < len(numbers) and used is not None and numbers[cursor] in used:
            cursor += 1
        if cursor >= len(numbers):
            if self.on_exhausted is not ExhaustedPolicy.REPEAT_LAST:
                return None
            if captures:
                for number in reversed(numbers[-_SCAN_LIMIT:]):
                    if self._fit(number, captures, session) == 2:
                        return number, True
            return numbers[-1], True
        position = cursor
        if captures and len(numbers) - cursor > 1:
            best = -1
            # The next few hundred are enough to find "its own" recording; a poll recorded
            # ten thousand times with a fresh UUID each must not cost a scan per request.
            for candidate in range(cursor, min(len(numbers), cursor + _SCAN_LIMIT)):
                number = numbers[candidate]
                if used is not None and number in used:
                    continue
                fit = self._fit(number, captures, session)
                if fit > best:
                    best, position = fit, candidate
                if fit == 2:
                    break
        number = numbers[position]
        if commit:
            if position == cursor:
                cursor += 1
                while cursor < len(numbers) and used is not None and numbers[cursor] in used:
                    cursor += 1
            else:
                session.used.setdefault(slot, set()).add(number)
            session.cursors[slot] = cursor
        return number, False

    def lookup(
        self, request: Request, *, forwarding: bool = False, client: str | None = None
    ) -> Hit | Miss:
        """Return the next recorded answer for ``request``, or a ``Miss`` that explains itself.

        ``forwarding``: the caller sends misses upstream (``new_episodes``), so
        a miss is neither explained nor counted. ``client``: the client's
        address, for ``--session-by client``.
        """
        session = self._session(request, client)
        templated = self._template(request, _EitherSet(self.dynamic_values, session.recorded))
        key = match_key(templated.request, self.config)
        queue = self._queues.get(key)
        if queue is None and self._shapes:
            templated, key, queue = self._by_shape(request, session, templated, key)
        if key not in self._asked:
            self._asked.add(key)
            self._matched += len(queue.numbers) if queue is not None else 0
        captures = {**templated.dynamic, **templated.generated}
        chosen = None if queue is None else self._choose(key, queue, captures, session, commit=True)
        if chosen is None:
            if self.state and self.state_rules.is_write(request):
                session.writes += 1
            if forwarding:
                return Miss(request, [])
            reason = "no recorded interaction matches"
            if queue is not None:
                answers = plural(len(queue.numbers), "recorded answer")
                reason = (
                    f"all {answers} {'was' if len(queue.numbers) == 1 else 'were'} used "
                    "(strict) for"
                )
            miss = Miss(request, self.explain(templated.request), reason)
            self.misses.append(miss)
            return miss
        number, repeated = chosen
        recorded_state_ = self._states[number]
        if self.state and (
            recorded_state_.write
            if recorded_state_ is not None
            else self.state_rules.is_write(request)
        ):
            session.writes += 1
        recorded_values = self._captures[number]
        if recorded_values:
            for location, live in captures.items():
                value = recorded_values.get(location)
                if value is not None and value != live:
                    session.live[value] = live
                    session.recorded[live] = value
        hit = self._hit(number, repeated=repeated)
        response = self._answer(hit.interaction, request, session)
        if response is not None:
            return Hit(hit.interaction, hit.number, hit.repeated, response)
        return hit

    def _by_shape(
        self,
        request: Request,
        session: _Session,
        templated: Templated,
        key: tuple[KeyPart, ...],
    ) -> tuple[Templated, tuple[KeyPart, ...], _Queue | None]:
        """A request carrying a value never seen (the test's own id, say), tried against the
        places recorded requests hold dynamic values in; unchanged when no shape fits."""
        live = _EitherSet(self.dynamic_values, session.recorded)
        for shape in self._shapes:
            candidate = template(request, live, self.dynamic_rules, shape)
            if not candidate.dynamic:
                continue
            candidate_key = match_key(candidate.request, self.config)
            queue = self._queues.get(candidate_key)
            if queue is not None:
                return candidate, candidate_key, queue
        return templated, key, None

    def _answer(
        self, interaction: Interaction, request: Request, session: _Session
    ) -> Response | None:
        """The recorded response rewritten for this request, or None when it goes out as recorded."""
        response = interaction.response
        if response is None or response.chunks is not None or response.stored is not None:
            return None
        rewritten = substitute(response, session.live)
        if self.time_shift is not None:
            rewritten = self.time_shift.apply(rewritten)
        rewritten = echo_trace_context(rewritten, request)
        return None if rewritten is response else rewritten

    def peek_duration(self, request: Request, client: str | None = None) -> float | None:
        """The recorded ``duration_ms`` of the answer ``lookup`` would give next, without using it."""
        upcoming = self.peek(request, client)
        return None if upcoming is None else upcoming.duration_ms

    def peek(self, request: Request, client: str | None = None) -> Interaction | None:
        """The interaction ``lookup`` would answer with next, without using it (None: no queue)."""
        session = self._sessions.get(self.session_by.session_of(request, client)) or _Session()
        templated = self._template(request, _EitherSet(self.dynamic_values, session.recorded))
        key = match_key(templated.request, self.config)
        queue = self._queues.get(key)
        if queue is None and self._shapes:
            templated, key, queue = self._by_shape(request, session, templated, key)
        if queue is None:
            return None
        captures = {**templated.dynamic, **templated.generated}
        chosen = self._choose(key, queue, captures, session, commit=False)
        if chosen is None:
            return self.interactions[queue.numbers[-1]]
        return self.interactions[chosen[0]]

    def _hit(self, number: int, *, repeated: bool) -> Hit:
        self.hits += 1
        self.served[number] += 1
        return Hit(self.interactions[number], number, repeated)

    def explain(self, request: Request, limit: int = 3) -> list[tuple[Request, list[Mismatch]]]:
        """The closest recorded requests to ``request`` and what differed, matcher by matcher.

        One candidate per match key: a request recorded many times (a health
        check, a poll) is one candidate, not ``limit`` copies of itself.
        """
        pairs = (
            (self.interactions[queue.numbers[0]].request, key)
            for key, queue in self._queues.items()
        )
        return explain(request, pairs, self.config, limit)

    def unused(self) -> list[Interaction]:
        """Recorded interactions never served, one by one.

        Includes the later copies of a request recorded more often than it
        was asked for; ``unmatched`` leaves those out.
        """
        return [i for i, count in zip(self.interactions, self.served, strict=True) if count == 0]

    def unmatched(self) -> list[Interaction]:
        """Recorded interactions whose request nobody made: no request had their match key.

        What a person means by "unused": a request polled fifty times while
        recording and three times in the test is used, though 47 of its
        recorded answers were never served. An interaction recorded by
        forwarding a miss (``new_episodes``) answered that request, so it is
        matched too.
        """
        return [
            i
            for i, key in zip(self.interactions, self._keys, strict=True)
            if key not in self._asked
        ]

    def unmatched_count(self) -> int:
        """``len(self.unmatched())``, without walking the interactions (a live status asks often)."""
        return len(self.interactions) - self._matched

    def summary(self) -> str:
        """One line: hits, misses, and the recorded interactions no request matched."""
        return (
            f"{plural(self.hits, 'hit')}, {plural(len(self.misses), 'miss')}, "
            f"{self.unmatched_count()} of "
            f"{plural(len(self.interactions), 'recorded interaction')} unused"
        )
