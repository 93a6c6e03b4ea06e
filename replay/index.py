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
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from itertools import compress, islice, repeat
from operator import and_, itemgetter, not_
from typing import Any
from urllib.parse import unquote

from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.reader import InteractionTable
from baton.cassettes.redaction import PLACEHOLDER_PATTERN
from baton.cassettes.trailing_index import OFFERS, PLAIN
from baton.cassettes.wording import plural
from baton.replay.dynamic_values import (
    TRACE_HEADERS,
    DynamicRules,
    DynamicValue,
    Location,
    Templated,
    detect,
    nothing_sent_back,
    paths_with_shapes,
    substitute,
    template,
)
from baton.replay.matching import KeyPart, MatchConfig, Mismatch, closest, match_key
from baton.replay.state import (
    WRITE_METHODS,
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


class _StateColumn:
    """``RecordedState`` per interaction, decoded when asked for from the codes an index
    record keeps (cassettes/trailing_index.py ``_state_code``), or given."""

    __slots__ = ("_codes", "_given")

    def __init__(self, codes: list[Any], given: dict[int, RecordedState | None]) -> None:
        self._codes = codes
        self._given = given

    def __getitem__(self, number: int) -> RecordedState | None:
        if number in self._given:
            return self._given[number]
        code = self._codes[number]
        if type(code) is int:
            return RecordedState(code >> 1, bool(code & 1)) if code >= 0 else None
        if (
            type(code) is list
            and len(code) == 3
            and type(code[0]) is int
            and code[0] >= 0
            and type(code[2]) is str
        ):
            return RecordedState(code[0], bool(code[1]), code[2])
        return None

    def __len__(self) -> int:
        return len(self._codes) + sum(1 for n in self._given if n >= len(self._codes))

    def append(self, state: RecordedState | None) -> None:
        self._given[len(self)] = state


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
        base = config or MatchConfig()
        if any(name in TRACE_HEADERS for name in base.headers):
            # Trace context never takes part in matching, even when named with --match-header.
            base = replace(base, headers=tuple(h for h in base.headers if h not in TRACE_HEADERS))
        self.on_exhausted = ExhaustedPolicy(on_exhausted)
        self.state = state
        self.state_rules = state_rules or StateRules()
        self.session_by = session_by or SessionBy()
        self.dynamic_rules = dynamic if dynamic is not None else DynamicRules()
        rules = self.dynamic_rules
        table = interactions if isinstance(interactions, InteractionTable) else None
        if table is not None and (
            base.headers
            or rules.request_paths
            or rules.request_headers
            or rules.request_query
            or (shift_time is not None and table.earliest is None)
        ):
            table = None  # every request is looked at: build them all
        self.interactions: list[Interaction] | InteractionTable
        others: list[int] = []
        if table is not None:
            self.interactions = table
            count = len(table)
            plain = list(map(and_, table.facts, repeat(PLAIN)))
            others = list(compress(range(count), map(not_, plain)))
            learned = learned_secret_fields(table[n] for n in others)
        else:
            self.interactions = list(interactions)
            learned = learned_secret_fields(self.interactions)
        self.config = base.with_secrets(
            type(base.secrets)(
                rules=base.secrets.rules,
                placeholder=base.secrets.placeholder,
                learned_fields=base.secrets.learned_fields | learned,
            )
        )
        if table is not None:
            offering = compress(range(count), map(and_, table.facts, repeat(OFFERS)))
            if not nothing_sent_back(
                compress(table.paths, plain),
                (table[n] for n in others),
                (
                    response
                    for n in offering
                    if table.facts[n] & PLAIN and (response := table[n].response) is not None
                ),
                rules,
            ):
                table = None
                self.interactions = list(self.interactions)
        self.dynamic_values: dict[str, DynamicValue] = (
            {} if table is not None else detect(self.interactions, rules)
        )
        self.time_shift: TimeShift | None = None
        if shift_time is not None and self.interactions:
            if table is not None and table.earliest is not None:
                first = table.earliest
            else:
                first = min(i.recorded_at for i in self.interactions)
            self.time_shift = TimeShift.between(first, shift_time, time_fields)
        self._queues: dict[tuple[KeyPart, ...], _Queue | int] = {}
        """Match key -> its queue; a key recorded once holds its interaction's number
        until asked for (``_queue`` makes the queue then)."""
        self._keys: list[tuple[KeyPart, ...]] = []
        self._states: list[RecordedState | None] | _StateColumn = []
        self._captures: list[dict[Location, str] | None] = []
        self._shapes: dict[frozenset[Location], None] = {}
        """The places recorded requests hold dynamic values in (few: one per kind of request)."""
        self._sessions: dict[str, _Session] = {}
        self.served = [0] * len(self.interactions)
        self._asked: set[tuple[KeyPart, ...]] = set()
        self._matched = 0  # interactions whose key was asked for, kept as it changes
        self.hits = 0
        self.misses: list[Miss] = []
        if table is not None:
            self._place_in_bulk(table, others)
            return
        for number, interaction in enumerate(self.interactions):
            self._enqueue(number, interaction)

    def _place_in_bulk(self, table: InteractionTable, others: list[int]) -> None:
        """Keys, states and queues of a table's interactions, from its columns where its
        facts allow (``PLAIN`` and no generated value in the path), else one by one.

        Exactly what ``_enqueue`` gives each one: a plain request's key is its method,
        scheme, host, port and path as the matchers normalise them, an empty query and an
        empty body; it holds no dynamic value (none was found) and no generated one.
        """
        count = len(table)
        config = self.config
        paths = table.paths
        joined = "\n".join(paths)
        if "%" in joined or (
            config.secrets.placeholder is None and PLACEHOLDER_PATTERN.search(joined)
        ):
            in_text = config.secrets.in_text
            paths = [in_text(unquote(path)) for path in paths]
        kinds = table.kinds
        columns: dict[str, Iterable[Any]] = {
            "method": map(str.upper, map(itemgetter(0), kinds)),
            "scheme": map(str.lower, map(itemgetter(1), kinds)),
            "host": map(str.rstrip, map(str.lower, map(itemgetter(2), kinds)), repeat(".")),
            "port": map(itemgetter(3), kinds),
            "path": paths,
            "query": repeat(()),
            "body": repeat(("empty",)),
        }
        keys = self._keys = list(
            islice(zip(*(columns[name] for name in config.matchers), strict=False), count)
        )
        if len(keys) != count:  # no matcher at all: every key is the empty one
            keys = self._keys = [()] * count
        self._captures = [None] * count
        one_by_one = sorted({*others, *paths_with_shapes(table.paths, self.dynamic_rules)})
        given: dict[int, RecordedState | None] = {}
        for number in one_by_one:
            interaction = table[number]
            templated = self._template(interaction.request, self.dynamic_values)
            keys[number] = match_key(templated.request, config)
            captures = {**templated.dynamic, **templated.generated}
            self._captures[number] = captures or None
            given[number] = recorded_state(interaction)
        self._states = _StateColumn(table.states if self.state else [None] * count, given)
        if not self.state:
            given.clear()
        queues: dict[tuple[KeyPart, ...], _Queue | int] = dict(zip(keys, range(count), strict=True))
        self._queues = queues
        if len(queues) != count:
            repeated = {key for key, times in Counter(keys).items() if times > 1}
            for key in repeated:
                queues[key] = _Queue()
            for number, key in enumerate(keys):
                if key in repeated:
                    queue = queues[key]
                    assert isinstance(queue, _Queue)
                    self._add_to_queue(queue, number)

    def _queue(self, key: tuple[KeyPart, ...]) -> _Queue | None:
        """The queue of ``key`` (made now for a key recorded once), or None."""
        found = self._queues.get(key)
        if found is None or isinstance(found, _Queue):
            return found
        queue = self._queues[key] = _Queue()
        self._add_to_queue(queue, found)
        return queue

    def queue_length(self, key: tuple[KeyPart, ...]) -> int:
        """How many interactions were recorded under ``key``."""
        found = self._queues.get(key)
        if found is None:
            return 0
        return 1 if type(found) is int else len(found.numbers)  # type: ignore[union-attr]

    def first_write(self) -> int | None:
        """The number of the first interaction that changes state: recorded as a write, or
        (recorded without a state tag) its request is one under ``state_rules``; None.

        A plain request of an opened table is judged by its method without being built
        when no route rule is set (its body is empty, so it is no GraphQL query)."""
        table, states, rules = self.interactions, self._states, self.state_rules
        by_method = (
            isinstance(table, InteractionTable)
            and isinstance(states, _StateColumn)
            and not rules.reads
            and not rules.writes
        )
        for number in range(len(table)):
            state = states[number]
            if state is not None:
                if state.write:
                    return number
                continue
            if (
                by_method
                and isinstance(table, InteractionTable)
                and number < len(table.facts)
                and table.facts[number] & PLAIN
                and not table.built(number)
            ):
                if table.kinds[number][0].upper() in WRITE_METHODS:
                    return number
                continue
            if rules.is_write(self.method_and_path(number)):
                return number
        return None

    def method_and_path(self, number: int) -> Request:
        """Interaction ``number``'s request, or as much of it as decides whether it writes
        (method, address, path; no query, body or headers) when its record says that is all
        there is to it and it has not been built yet."""
        table = self.interactions
        if (
            isinstance(table, InteractionTable)
            and not table.built(number)
            and table.facts[number] & PLAIN
        ):
            method, scheme, host, port = table.kinds[number]
            return Request(method, scheme, host, port, table.paths[number])
        return table[number].request

    def _add_to_queue(self, queue: _Queue, number: int) -> None:
        queue.numbers.append(number)
        recorded = self._states[number]
        if recorded is None:
            queue.untagged.append(number)
        else:
            bucket = queue.by_state.get(recorded.writes)
            if bucket is None:
                queue.by_state[recorded.writes] = [number]
                insort(queue.states, recorded.writes)
            else:
                bucket.append(number)

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
        self._states.append(recorded_state(interaction) if self.state else None)
        queue = self._queue(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        self._add_to_queue(queue, number)
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
        queue = self._queue(key)
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
            queue = self._queue(candidate_key)
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
        queue = self._queue(key)
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
        keyed = list(self._queues.items())
        found = closest(request, [key for key, _ in keyed], self.config, limit)
        out = []
        for position, mismatches in found:
            queue = keyed[position][1]
            first = queue if isinstance(queue, int) else queue.numbers[0]
            out.append((self.interactions[first].request, mismatches))
        return out

    def unused(self) -> list[Interaction]:
        """Recorded interactions never served, one by one.

        Includes the later copies of a request recorded more often than it
        was asked for; ``unmatched`` leaves those out.
        """
        interactions = self.interactions
        return [interactions[n] for n, count in enumerate(self.served) if count == 0]

    def unmatched(self) -> list[Interaction]:
        """Recorded interactions whose request nobody made: no request had their match key.

        What a person means by "unused": a request polled fifty times while
        recording and three times in the test is used, though 47 of its
        recorded answers were never served. An interaction recorded by
        forwarding a miss (``new_episodes``) answered that request, so it is
        matched too.
        """
        interactions, asked = self.interactions, self._asked
        return [interactions[n] for n, key in enumerate(self._keys) if key not in asked]

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
