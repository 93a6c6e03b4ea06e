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
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from baton.cassettes.model import Interaction, Request
from baton.cassettes.redaction import PLACEHOLDER_PATTERN
from baton.cassettes.wording import plural
from baton.replay.matching import KeyPart, MatchConfig, Mismatch, explain, match_key

__all__ = ["ExhaustedPolicy", "Hit", "Index", "Miss"]


class ExhaustedPolicy(StrEnum):
    """What to do when every recorded answer for a request has been served."""

    REPEAT_LAST = "repeat-last"
    STRICT = "strict"


@dataclass(frozen=True)
class Hit:
    """A recorded interaction to answer with."""

    interaction: Interaction
    number: int
    """Position of the interaction in the index (0-based, in load order)."""
    repeated: bool = False
    """True when served again under ``repeat-last`` after its queue ran dry."""


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


@dataclass
class _Queue:
    numbers: list[int] = field(default_factory=list)
    cursor: int = 0


class Index:
    """Answers requests from recorded interactions; counts hits, misses and what went unused."""

    def __init__(
        self,
        interactions: Iterable[Interaction],
        config: MatchConfig | None = None,
        on_exhausted: ExhaustedPolicy | str = ExhaustedPolicy.REPEAT_LAST,
    ) -> None:
        self.interactions: list[Interaction] = list(interactions)
        base = config or MatchConfig()
        learned = learned_secret_fields(self.interactions)
        self.config = base.with_secrets(
            type(base.secrets)(
                rules=base.secrets.rules,
                placeholder=base.secrets.placeholder,
                learned_fields=base.secrets.learned_fields | learned,
            )
        )
        self.on_exhausted = ExhaustedPolicy(on_exhausted)
        self._queues: dict[tuple[KeyPart, ...], _Queue] = {}
        self._keys: list[tuple[KeyPart, ...]] = []
        self.served = [0] * len(self.interactions)
        self._asked: set[tuple[KeyPart, ...]] = set()
        self._matched = 0  # interactions whose key was asked for, kept as it changes
        self.hits = 0
        self.misses: list[Miss] = []
        for number, interaction in enumerate(self.interactions):
            self._enqueue(number, interaction)

    def _enqueue(self, number: int, interaction: Interaction) -> None:
        key = match_key(interaction.request, self.config)
        self._keys.append(key)
        self._queues.setdefault(key, _Queue()).numbers.append(number)
        if key in self._asked:
            self._matched += 1

    def add(self, interaction: Interaction) -> None:
        """Add a newly recorded interaction (``new_episodes``); it is served from now on."""
        self.interactions.append(interaction)
        self.served.append(0)
        self._enqueue(len(self.interactions) - 1, interaction)

    def __len__(self) -> int:
        return len(self.interactions)

    def lookup(self, request: Request, *, forwarding: bool = False) -> Hit | Miss:
        """Return the next recorded answer for ``request``, or a ``Miss`` that explains itself.

        ``forwarding``: the caller sends misses upstream (``new_episodes``), so
        a miss is neither explained nor counted.
        """
        key = match_key(request, self.config)
        queue = self._queues.get(key)
        if key not in self._asked:
            self._asked.add(key)
            self._matched += len(queue.numbers) if queue is not None else 0
        if queue is not None and queue.cursor < len(queue.numbers):
            number = queue.numbers[queue.cursor]
            queue.cursor += 1
            return self._hit(number, repeated=False)
        if queue is not None and self.on_exhausted is ExhaustedPolicy.REPEAT_LAST:
            return self._hit(queue.numbers[-1], repeated=True)
        if forwarding:
            return Miss(request, [])
        reason = "no recorded interaction matches"
        if queue is not None:
            answers = plural(len(queue.numbers), "recorded answer")
            reason = (
                f"all {answers} {'was' if len(queue.numbers) == 1 else 'were'} used (strict) for"
            )
        miss = Miss(request, self.explain(request), reason)
        self.misses.append(miss)
        return miss

    def peek_duration(self, request: Request) -> float | None:
        """The recorded ``duration_ms`` of the answer ``lookup`` would give next, without using it."""
        upcoming = self.peek(request)
        return None if upcoming is None else upcoming.duration_ms

    def peek(self, request: Request) -> Interaction | None:
        """The interaction ``lookup`` would answer with next, without using it (None: no queue)."""
        queue = self._queues.get(match_key(request, self.config))
        if queue is None:
            return None
        position = min(queue.cursor, len(queue.numbers) - 1)
        return self.interactions[queue.numbers[position]]

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
