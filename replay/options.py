"""The user's replay choices, in one value shared by the CLI, the pytest plugin and the addon."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.cassettes.model import Interaction, Request
from baton.cassettes.reader import InteractionTable, load_indexed
from baton.cassettes.redaction import RedactionRules, Redactor, load_or_create_key
from baton.cassettes.trailing_index import PLAIN
from baton.replay.dynamic_values import DynamicRules
from baton.replay.index import ExhaustedPolicy, Index
from baton.replay.matching import MatchConfig, SecretPolicy
from baton.replay.record_mode import RecordMode
from baton.replay.state import SessionBy
from baton.replay.time_shift import parse_target

__all__ = ["ReplayOptions", "recorded_origins"]


@dataclass(frozen=True)
class ReplayOptions:
    """How requests are matched and what a miss or a used-up queue does."""

    match_on: Sequence[str] | None = None
    match_headers: Sequence[str] = ()
    ignore_query: Sequence[str] = ()
    ignore_fields: Sequence[str] = ()
    match_secrets: bool = False
    on_exhausted: str = ExhaustedPolicy.REPEAT_LAST.value
    miss_status: int = 502
    record_mode: str = RecordMode.NONE.value
    redaction: dict[str, Any] = field(default_factory=dict)
    """``baton_redact_*`` options for what ``new_episodes`` and ``all`` record (empty: defaults)."""
    state: bool = True
    """Answer reads from the recording made in the same state (replay/state.py)."""
    session_by: str = "none"
    dynamic: Sequence[str] = ()
    """Declared dynamic and generated value rules (replay/dynamic_values.py)."""
    detect_dynamic: bool = True
    """Find dynamic values in the recording and generated ones by shape; off: declared only."""
    shift_time: str | None = None
    """``now`` or an ISO time to move answers' dates to (replay/time_shift.py); None: as recorded."""
    time_fields: Sequence[str] = ()
    run_log: str | None = None
    """Where to write what was served when the replay stops (replay/run_log.py)."""
    fail_on_unused: bool = False
    compress: str = "none"
    """How ``new_episodes`` and ``all`` store bodies: ``zstd[:LEVEL]`` or ``none`` (--compress)."""

    def match_config(self, *, address: bool) -> MatchConfig:
        """The ``MatchConfig``; ``address=False`` in reverse mode. Raises ``ValueError``."""
        placeholder = None
        if self.match_secrets:
            placeholder = Redactor(RedactionRules.build(), load_or_create_key()).placeholder
        return MatchConfig.build(
            match_on=list(self.match_on) if self.match_on else None,
            headers=self.match_headers,
            ignore_query=self.ignore_query,
            ignore_fields=self.ignore_fields,
            secrets=SecretPolicy(placeholder=placeholder),
            address=address,
        )

    def index(self, interactions: Iterable[Interaction], *, address: bool) -> Index:
        """An ``Index`` over ``interactions`` under these options. Raises ``ValueError``."""
        return Index(
            interactions,
            self.match_config(address=address),
            self.on_exhausted,
            state=self.state,
            session_by=SessionBy.parse(self.session_by),
            dynamic=DynamicRules.parse(
                self.dynamic, detect=self.detect_dynamic, generated=self.detect_dynamic
            ),
            shift_time=None if self.shift_time is None else parse_target(self.shift_time),
            time_fields=self.time_fields,
        )

    def load(self, cassettes: Iterable[Path], *, address: bool) -> Index:
        """Read the cassettes that exist and index them, in the order given.

        Answers stay in the files until served, and a cassette with a trailing
        index record opens from its columns (``load_indexed``): an interaction is
        built when it is first asked for.
        """
        with collector_paused():
            tables = [load_indexed(path) for path in cassettes if path.exists()]
            return self.index(InteractionTable.joined(tables), address=address)

    def addon_options(self, cassettes: Iterable[Path], *, address: bool) -> dict[str, Any]:
        """The ``baton_*`` options of the mitmproxy ``Replayer`` for these choices."""
        return {
            "baton_record_mode": self.record_mode,
            "baton_match_on": list(self.match_on or []),
            "baton_match_headers": list(self.match_headers),
            "baton_ignore_query": list(self.ignore_query),
            "baton_ignore_fields": list(self.ignore_fields),
            "baton_match_secrets": self.match_secrets,
            "baton_on_exhausted": self.on_exhausted,
            "baton_miss_status": self.miss_status,
            "baton_replay_address": address,
            "baton_replay": [str(p) for p in cassettes],
            "baton_state": self.state,
            "baton_session_by": self.session_by,
            "baton_dynamic": list(self.dynamic),
            "baton_detect_dynamic": self.detect_dynamic,
            "baton_shift_time": self.shift_time,
            "baton_time_fields": list(self.time_fields),
            "baton_run_log": self.run_log,
            "baton_compress": self.compress,
            **self.redaction,
        }


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk load, then restore it.

    Loading 100k interactions allocates millions of small objects, and the
    collector kept scanning them: pausing it takes the load from 2.8 s to
    1.8 s here. Interactions are acyclic values (frozen dataclasses, tuples,
    bytes), so the pause leaves nothing for the collector to find later;
    reference counting frees everything as usual meanwhile. Everything the
    collector tracks then moves to its oldest generation (``gc.freeze`` then
    ``gc.unfreeze``, no walk): otherwise the first young collection after the
    pause walks every object the load made.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # What was made is kept (an index lives as long as its replay): handed to the oldest
        # generation at once, not walked by the young one's first collection (0.2-0.3 s at 1M).
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def recorded_origins(cassettes: Iterable[Path]) -> set[str]:
    """``scheme://host[:port]`` of every request in the cassettes that exist."""
    origins = set()
    for path in cassettes:
        if not path.exists():
            continue
        table = load_indexed(path)
        for number in range(len(table)):
            if table.facts[number] & PLAIN and not table.built(number):
                _, scheme, host, port = table.kinds[number]
                request = Request("GET", scheme, host, port, "/")
            else:
                request = table[number].request
            origins.add(f"{request.scheme}://{request.authority}")
    return origins
