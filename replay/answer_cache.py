"""Answers that cannot change, found by the raw request line and Host: the fast path's shortcut.

Looking a request up in the ``Index`` (replay/index.py) builds a ``Request``,
templates it for dynamic values, computes its match key, finds its session
and walks its queue: most of the fast server's CPU per request, and all of it
spent to arrive at the same bytes as last time for the usual request of a
test suite (a GET recorded once, asked many times). This cache keeps, per
``(method, target, Host)`` as they arrived, the number and the bytes of such
an answer after the ``Index`` gave it once, and from then on counts the hit
in the ``Index`` (hits, served) without asking it again.

Only an answer that nothing could change is kept (``offer`` checks, the
``Index`` stays the authority for everything else): the request has no body;
its match key has exactly one recorded interaction and ``repeat-last`` serves
it again and again; neither it nor the recorded one is a write (stateful
replay counts writes per session); the cassettes hold no dynamic or generated
values (a session's live values would rewrite answers and change keys); no
``--shift-time``; no ``--match-header`` (headers other than Host would be in
the key); and the recorded response carries no trace header (echoed from
each request). An ``Index`` that grows (``new_episodes``) empties the cache
and checks again.
"""

from __future__ import annotations

import logging

from baton.cassettes.model import Request
from baton.replay.dynamic_values import TRACE_HEADERS
from baton.replay.index import ExhaustedPolicy, Hit, Index
from baton.replay.state import recorded_state

__all__ = ["AnswerCache", "CacheKey", "order_dependence"]

logger = logging.getLogger(__name__)

CacheKey = tuple[bytes, bytes, bytes | None]
"""(method, request target, Host header value), as the bytes arrived."""


class AnswerCache:
    """Pre-serialised answers by raw request line and Host, for requests the ``Index`` would
    answer the same way every time (see the module docstring for when that is)."""

    def __init__(self, index: Index, limit: int = 65_536) -> None:
        self.index = index
        self.limit = limit
        """Entries kept at most (``--ignore-query`` maps endless targets to one answer)."""
        self._entries: dict[CacheKey, tuple[int, bytes]] = {}
        self._size = -1
        self._usable = False

    def _check(self) -> None:
        """Whole-index conditions, looked at again whenever the ``Index`` grows."""
        index = self.index
        self._size = len(index.interactions)
        self._entries.clear()
        # The Index's own bookkeeping (which interactions hold dynamic or generated values,
        # each one's key, each key's queue): an Index without it is never bypassed.
        if not all(hasattr(index, name) for name in ("_captures", "_keys", "_queues", "_states")):
            self._usable = False
            return
        self._usable = (
            index.on_exhausted is ExhaustedPolicy.REPEAT_LAST
            and not index.dynamic_values
            and index.time_shift is None
            and not index.config.headers
            and not any(index._captures)
        )

    def answer(self, key: CacheKey) -> bytes | None:
        """The bytes for ``key``, counted as a hit in the ``Index``; None: ask the ``Index``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        index = self.index
        if len(index.interactions) != self._size:
            self._check()
            return None
        number, data = entry
        index.hits += 1
        index.served[number] += 1
        return data

    def offer(self, key: CacheKey, request: Request, hit: Hit, data: bytes) -> None:
        """Keep ``data`` as the answer to ``key`` if the ``Index`` would give it every time."""
        index = self.index
        if len(index.interactions) != self._size:
            self._check()
        if not self._usable or hit.response is not None or request.body:
            return
        interaction = hit.interaction
        if index.queue_length(index._keys[hit.number]) != 1:
            return  # several recorded answers: the queue decides which comes next
        if index.state:
            state = recorded_state(interaction)
            if state.write if state is not None else index.state_rules.is_write(request):
                return  # counted per session: every one must go through the Index
        response = interaction.response
        if response is not None and any(n.lower() in TRACE_HEADERS for n, _ in response.headers):
            return
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (hit.number, data)


def order_dependence(index: Index) -> str | None:
    """What makes an answer from ``index`` depend on the requests before it, or None.

    Separate processes (``baton replay --workers N``) each see only part of
    the requests, so each would keep its own place in a queue of recorded
    answers, its own count of writes and its own learned values: only an
    ``Index`` whose every request has one fixed answer can be served by several.
    """
    if not all(hasattr(index, name) for name in ("_captures", "_keys", "_queues", "_states")):
        return "this index cannot tell whether its answers depend on order"
    if index.on_exhausted is not ExhaustedPolicy.REPEAT_LAST:
        return "--on-exhausted strict counts the answers each request has had"
    if index.dynamic_values:
        return "the cassettes hold dynamic values, which each session learns as it goes"
    if any(index._captures):
        return "the cassettes hold generated values (ids, nonces), which each session learns"
    for queue in index._queues.values():
        if not isinstance(queue, int) and len(queue.numbers) > 1:
            request = index.interactions[queue.numbers[0]].request
            return (
                f"{request.method} {request.target} was recorded {len(queue.numbers)} times "
                "and is answered in recorded order"
            )
    if index.state:
        number = index.first_write()
        if number is not None:
            request = index.interactions[number].request
            return (
                f"stateful replay counts writes ({request.method} {request.target} is one); "
                "--no-state turns it off"
            )
    return None
