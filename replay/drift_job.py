"""A drift run as plain values: what ``baton diff`` runs in its own process, or ships to a worker.

``baton diff`` builds one ``DiffJob`` from its options and runs it whole,
one shard of it (``--shard i/n``), or every shard on a Dask cluster, where
each worker gets the job (it pickles: strings, numbers, tuples and dicts)
and calls ``run_shard_json``. The same function, the same reading of the
cassettes, the same comparison: a merged report is the unsharded one
because nothing but the choice of interactions differs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from baton.cassettes.locations import resolve_cassettes
from baton.cassettes.merge import interleaved
from baton.cassettes.model import Interaction
from baton.cassettes.reader import CassetteReader
from baton.replay.comparison import DriftClass, NoiseRules
from baton.replay.drift import DriftReport, diff_against_target, diff_cassettes
from baton.replay.limits import AnswerLimits
from baton.replay.sharding import Shard, ShardInfo, cassette_fingerprint

__all__ = ["DiffJob", "run_event_loop", "run_shard_json"]

T = TypeVar("T")


@dataclass(frozen=True)
class DiffJob:
    """Everything one drift run needs, with no open files, sockets or objects of baton's."""

    cassette: str
    """A path, glob, directory or fsspec URL: each worker resolves it itself. Several
    cassettes are read as one, interleaved by recorded time as ``baton merge`` writes them."""
    new_cassette: str | None = None
    target: str | None = None
    concurrency: int = 32
    timeout: float = 10.0
    supplied: dict[str, str] = field(default_factory=dict)
    """Header values to send in place of redacted ones (held in memory only)."""
    only: tuple[str, ...] = ()
    allow_side_effects: bool = False
    ignore: tuple[str, ...] = ()
    ignore_regex: tuple[str, ...] = ()
    per_endpoint: dict[str, list[str]] = field(default_factory=dict)
    ignore_order: bool = False
    noise: dict[str, list[str]] = field(default_factory=dict)
    """Noise saved by an earlier run (``--noise``), by endpoint."""
    learn_noise: bool = False
    reference: str | None = None
    fail_on: str = DriftClass.BREAKING.value
    ca_cert: str | None = None
    insecure: bool = False
    answers: AnswerLimits = field(default_factory=AnswerLimits)
    """What a target may send back (``--max-answer-size``, ``--follow-redirects``...)."""

    def shard(self, index: int, count: int) -> Shard:
        """Shard ``index`` of ``count``, keyed as this job's noise learning needs."""
        return Shard(index, count, by_endpoint=self.learn_noise)

    def rules(self) -> NoiseRules:
        """Fresh noise rules: the user's, plus the noise loaded from a file."""
        rules = NoiseRules(
            paths=list(self.ignore),
            regexes=list(self.ignore_regex),
            per_endpoint={k: list(v) for k, v in self.per_endpoint.items()},
            ignore_order=self.ignore_order,
        )
        for endpoint, locations in self.noise.items():
            rules.learn(endpoint, locations)
        return rules

    def run(
        self,
        shard: Shard | None = None,
        rules: NoiseRules | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> DriftReport:
        """Run the diff (of one shard); ``DriftError`` or ``CassetteError`` on unusable input.

        ``rules`` are updated with what is learned (pass them to save it).
        """
        rules = rules if rules is not None else self.rules()
        gate = DriftClass(self.fail_on)
        fingerprints: list[dict[str, Any]] = []
        # The recording is streamed: memory holds only the requests in flight.
        with contextlib.ExitStack() as files:
            old = _open(self.cassette, files, fingerprints)
            if self.new_cassette is not None:
                new = list(_open(self.new_cassette, files, fingerprints))
                report = diff_cassettes(
                    old,
                    new,
                    source=self.cassette,
                    target=self.new_cassette,
                    only=self.only,
                    rules=rules,
                    fail_on=gate,
                    shard=shard,
                )
            else:
                assert self.target is not None
                report = run_event_loop(
                    diff_against_target(
                        old,
                        self.target,
                        source=self.cassette,
                        concurrency=self.concurrency,
                        timeout=self.timeout,
                        supplied=dict(self.supplied),
                        only=self.only,
                        allow_side_effects=self.allow_side_effects,
                        rules=rules,
                        learn_noise=self.learn_noise,
                        reference=self.reference,
                        fail_on=gate,
                        progress=progress,
                        ca_cert=self.ca_cert,
                        insecure=self.insecure,
                        shard=shard,
                        answers=self.answers,
                    )
                )
        if shard is not None:
            report.shard = ShardInfo(
                shard,
                cassettes=fingerprints,
                recorded=report.recorded,
                learn_noise=self.learn_noise,
                learned={k: sorted(v) for k, v in sorted(rules.learned.items())},
            )
        return report


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a fresh event loop: uvloop's where installed (not on Windows).

    Re-sending is a client in one process: the event loop's own work per
    request (scheduling, transports) is a large part of its CPU time, and
    uvloop does it in C.
    """
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.run(_boxed(main)).value
    return uvloop.run(_boxed(main)).value


class _Box(Generic[T]):
    """A result with a short repr: on its way out, asyncio's runner formats the main task
    (``signal.getsignal`` turns the SIGINT handler, which holds it, into an error message
    on Python 3.11), result included: the whole report, every outcome and change."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<result>"


async def _boxed(main: Coroutine[Any, Any, T]) -> _Box[T]:
    return _Box(await main)


def _open(
    location: str, files: contextlib.ExitStack, fingerprints: list[dict[str, Any]]
) -> Iterable[Interaction]:
    """The interactions of every cassette ``location`` names, as one stream; fingerprints noted."""
    readers = [
        files.enter_context(CassetteReader(path, warn_torn=False))
        for path in resolve_cassettes([location])
    ]
    fingerprints += [cassette_fingerprint(r.path, r.header_end) for r in readers]
    return readers[0] if len(readers) == 1 else interleaved(readers)


def run_shard_json(job: DiffJob, index: int, count: int) -> dict[str, Any]:
    """Run shard ``index`` of ``count`` of ``job`` and return its JSON report (for a worker)."""
    from baton.replay.report import report_json

    return report_json(job.run(job.shard(index, count)))
