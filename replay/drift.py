"""Drift: hold a new build (or a new recording) to what was recorded.

``diff_against_target`` re-sends the recorded requests to a candidate build —
concurrently, with the memory held to the requests in flight — and compares
each answer with the recorded one; ``diff_cassettes`` pairs two recordings by
the replay match key, with no network at all. Both produce a ``DriftReport``
whose gate decides the exit code CI sees.

Secrets: a recorded request carries placeholders where its credentials were.
They are never sent: a header is replaced by the value the user supplies
(``--header`` or ``BATON_HEADER_<NAME>``), and a request that would still
carry a placeholder is left out, with the reason in the report.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from baton.cassettes.model import Headers, Interaction, Request, Response
from baton.cassettes.redaction import PLACEHOLDER_PATTERN
from baton.replay.comparison import (
    Change,
    DriftClass,
    NoiseRules,
    compare_responses,
    endpoint_of,
    locations_that_differ,
)
from baton.replay.limits import AnswerLimits
from baton.replay.sharding import Shard, ShardInfo

# The re-sender (asyncio, ssl, httptools) is loaded by the functions that send: comparing
# two recordings (``diff_cassettes``) never needs it, and a run pays for what it uses; the
# replay index (and its dynamic values, state and time modules), only when pairing needs it.
if TYPE_CHECKING:
    from baton.replay.index import Index
    from baton.replay.resend import Outgoing, Resender

__all__ = [
    "DriftError",
    "DriftReport",
    "Outcome",
    "diff_against_target",
    "diff_cassettes",
    "gate_includes",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
    }
)
_SEVERITY = {
    DriftClass.BREAKING: 3,
    DriftClass.ADDITIVE: 2,
    DriftClass.VALUE: 1,
    DriftClass.NOISE: 0,
}


class DriftError(Exception):
    """The diff cannot run: the target is unreachable, or the input is unusable."""


def gate_includes(drift: DriftClass, fail_on: DriftClass) -> bool:
    """True when a change of class ``drift`` fails a gate set to ``fail_on``."""
    return drift is not DriftClass.NOISE and _SEVERITY[drift] >= _SEVERITY[fail_on]


@dataclass
class Outcome:
    """What happened to one recorded interaction."""

    number: int
    interaction_id: str
    method: str
    target: str
    endpoint: str
    outcome: str
    """``compared``, ``skipped``, ``only-in-old`` or ``only-in-new``."""
    recorded_status: int | None = None
    new_status: int | None = None
    changes: list[Change] = field(default_factory=list)
    note: str = ""


@dataclass
class DriftReport:
    """Every outcome, and the gate that turns them into an exit code."""

    source: str
    target: str
    fail_on: DriftClass = DriftClass.BREAKING
    outcomes: list[Outcome] = field(default_factory=list)
    learned_noise: NoiseRules | None = None
    insecure: bool = False
    """Certificates of the target (and reference) were not checked (``--insecure``)."""
    recorded: int = 0
    """Interactions the recording holds, compared or not."""
    shard: ShardInfo | None = None
    """For a run over one shard (``--shard i/n``): what merging shard reports needs."""

    def counts(self) -> dict[str, int]:
        out = {c.value: 0 for c in DriftClass}
        for outcome in self.outcomes:
            for change in outcome.changes:
                out[change.drift.value] += 1
        return out

    def outcome_counts(self) -> dict[str, int]:
        out = {"compared": 0, "skipped": 0, "only-in-old": 0, "only-in-new": 0}
        for outcome in self.outcomes:
            out[outcome.outcome] = out.get(outcome.outcome, 0) + 1
        return out

    def gated(self) -> list[tuple[Outcome, Change]]:
        """The changes that fail the gate."""
        found = [
            (outcome, change)
            for outcome in self.outcomes
            for change in outcome.changes
            if gate_includes(change.drift, self.fail_on)
        ]
        return found

    @property
    def exit_code(self) -> int:
        return 1 if self.gated() else 0

    def endpoints(self) -> dict[str, list[Outcome]]:
        grouped: dict[str, list[Outcome]] = {}
        for outcome in self.outcomes:
            grouped.setdefault(outcome.endpoint, []).append(outcome)
        return grouped


def _selected(interaction: Interaction, only: Iterable[str]) -> bool:
    if not only:
        return True
    patterns = list(only)
    request = interaction.request
    endpoint = endpoint_of(request.method, request.path)
    candidates = (endpoint, request.path, f"{request.method.upper()} {request.path}")
    return any(fnmatch.fnmatchcase(c, p) for p in patterns for c in candidates)


def _outcome(
    number: int, interaction: Interaction, outcome: str, endpoint: str = "", **kwargs: Any
) -> Outcome:
    request = interaction.request
    return Outcome(
        number=number,
        interaction_id=interaction.id,
        method=request.method,
        target=request.target,
        endpoint=endpoint or endpoint_of(request.method, request.path),
        outcome=outcome,
        recorded_status=interaction.response.status if interaction.response else None,
        **kwargs,
    )


# -- against a live target ----------------------------------------------------------


def supplied_headers(
    cli_headers: Iterable[str], environ: dict[str, str] | None = None
) -> dict[str, str]:
    """Header values that replace recorded ones: ``BATON_HEADER_X_API_KEY`` then ``--header``.

    Raises ``DriftError`` for a ``--header`` without a colon.
    """
    source: Mapping[str, str] = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for key, value in source.items():
        if key.startswith("BATON_HEADER_") and len(key) > len("BATON_HEADER_"):
            out[key[len("BATON_HEADER_") :].replace("_", "-").lower()] = value
    for item in cli_headers:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            raise DriftError(f"--header {item!r}: write it as NAME:VALUE")
        out[name.strip().lower()] = value.strip()
    return out


def outgoing_request(request: Request, supplied: dict[str, str]) -> tuple[Outgoing | None, str]:
    """The request to re-send, or None and why it cannot be sent safely; plus a note."""
    from baton.replay.resend import Outgoing

    given = tuple(supplied.items())
    try:
        headers, dropped = _forwarded_headers(request.headers, given)
    except TypeError:  # headers built as a list, not read from a cassette: not kept
        headers, dropped = _forwarded_headers.__wrapped__(request.headers, given)
    if request.query and any(PLACEHOLDER_PATTERN.search(v) for _, v in request.query):
        return None, "its query holds a redacted secret; nothing to send in its place"
    if request.stored is not None:
        return None, (
            f"its body ({request.stored.size} bytes) is stored in the cassette; "
            "re-sending a body that large is not supported"
        )
    if request.body and PLACEHOLDER_PATTERN.search(request.body.decode("latin-1")):
        return None, "its body holds a redacted secret; nothing to send in its place"
    target = request.path
    if request.query:
        target += "?" + urlencode(list(request.query))
    note = ""
    if dropped:
        note = (
            f"redacted header(s) {', '.join(dropped)} not sent; "
            "supply them with --header NAME:VALUE or BATON_HEADER_<NAME>"
        )
    return Outgoing(request.method, target, headers, request.body or b""), note


@functools.lru_cache(maxsize=1024)
def _forwarded_headers(
    recorded: Headers, supplied: tuple[tuple[str, str], ...]
) -> tuple[Headers, tuple[str, ...]]:
    """The headers to send in place of ``recorded``, and the redacted ones left out (sorted).

    Kept per recorded set: a recording repeats a handful of them (the same client
    sent them), and this was a tenth of the client's own work per request.
    """
    headers: list[tuple[str, str]] = []
    dropped = set()
    names = {name for name, _ in supplied}
    for name, value in recorded:
        lowered = name.lower()
        if lowered in _NOT_FORWARDED or lowered.startswith(":") or lowered in names:
            continue
        if PLACEHOLDER_PATTERN.search(value):
            dropped.add(lowered)
            continue
        headers.append((name, value))
    return (*headers, *supplied), tuple(sorted(dropped))


async def check_reachable(
    target: str, timeout: float, tls: ssl.SSLContext | None = None, *, role: str = "target"
) -> None:
    """Raise ``DriftError`` unless ``target`` accepts a connection (and, for HTTPS, a handshake).

    A certificate that fails the check is named here, once, with the fix —
    not as a ``no_response`` for every request.
    """
    import asyncio

    from baton.replay.resend import tls_context

    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DriftError(f"--{role} {target!r}: give a URL such as http://127.0.0.1:8000")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    secure = (tls or tls_context()) if parts.scheme == "https" else None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=secure), timeout
        )
    except ssl.SSLCertVerificationError as exc:
        raise DriftError(
            f"{role} {target}: certificate not trusted ({exc.verify_message}); "
            "trust its CA with --ca-cert PATH, or skip the check with --insecure"
        ) from exc
    except ssl.SSLError as exc:
        raise DriftError(
            f"{role} {target}: TLS handshake failed ({exc.reason or type(exc).__name__}); "
            "does it serve HTTPS? Else use an http:// URL"
        ) from exc
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise DriftError(
            f"{role} {target} is unreachable ({reason}); start the build to test, or fix --{role}"
        ) from exc
    writer.close()


async def diff_against_target(
    interactions: Iterable[Interaction],
    target: str,
    *,
    source: str = "",
    concurrency: int = 32,
    timeout: float = 10.0,
    supplied: dict[str, str] | None = None,
    only: Iterable[str] = (),
    allow_side_effects: bool = False,
    rules: NoiseRules | None = None,
    learn_noise: bool = False,
    reference: str | None = None,
    fail_on: DriftClass = DriftClass.BREAKING,
    progress: Callable[[int], None] | None = None,
    ca_cert: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    shard: Shard | None = None,
    answers: AnswerLimits | None = None,
) -> DriftReport:
    """Re-send each recorded request to ``target`` and compare the answers.

    With ``learn_noise`` each request also goes twice to ``reference`` (the
    target itself by default) and every location where those two answers
    differ becomes noise for its endpoint. HTTPS certificates of both are
    checked against the system store, or ``ca_cert``, unless ``insecure``.
    With ``shard``, only the interactions that shard holds are looked at;
    they keep their numbers in the whole recording. ``answers`` bounds what a
    target may send back; an answer past a limit is that interaction's error.
    """
    import asyncio

    from baton.replay.resend import Resender, TLSConfigError, tls_context

    tls = None
    # The system store takes ~0.2 s of CPU to load: only for an https:// URL (a --ca-cert
    # given is checked whatever the URL, so a wrong path is still one line, exit 2).
    if ca_cert is not None or any(
        urlsplit(url).scheme == "https" for url in (target, reference) if url
    ):
        try:
            tls = tls_context(ca_cert, insecure=insecure)
        except TLSConfigError as exc:
            raise DriftError(str(exc)) from exc
    await check_reachable(target, timeout, tls)
    if reference and reference != target:
        await check_reachable(reference, timeout, tls, role="reference")
    rules = rules or NoiseRules()
    supplied = supplied or {}
    only = list(only)
    report = DriftReport(
        source,
        target,
        fail_on,
        learned_noise=rules if learn_noise else None,
        insecure=insecure,
    )
    results: dict[int, Outcome] = {}
    to_target = Resender(target, connections=concurrency, timeout=timeout, tls=tls, answers=answers)
    to_reference = (
        Resender(reference, connections=concurrency, timeout=timeout, tls=tls, answers=answers)
        if reference and reference != target
        else to_target
    )

    # ``concurrency`` workers share one pass over the recording: each takes the next
    # interaction when its last answer is in, so as many requests are in flight and no
    # task is made per interaction. Taking the next one is synchronous: no two workers
    # are ever inside the reader at once.
    recording = enumerate(interactions, 1)

    async def worker() -> None:
        for number, interaction in recording:
            report.recorded = number
            if number % 256 == 0:
                await asyncio.sleep(0)  # a long run of skipped ones lets the answers in
            if not _selected(interaction, only) or (shard and not shard.holds(interaction)):
                continue
            if interaction.request.method.upper() not in SAFE_METHODS and not allow_side_effects:
                results[number] = _outcome(
                    number,
                    interaction,
                    "skipped",
                    note="not re-sent: it may change state (--allow-side-effects sends it)",
                )
            else:
                results[number] = await _compare_one(
                    number, interaction, to_target, to_reference, supplied, rules, learn_noise
                )
            if progress is not None:
                progress(1)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()  # after a failure, the others stop too (each has finished otherwise)
        await asyncio.gather(*workers, return_exceptions=True)
        await to_target.close()
        await to_reference.close()
    report.outcomes = [results[n] for n in sorted(results)]
    return report


async def _compare_one(
    number: int,
    interaction: Interaction,
    to_target: Resender,
    to_reference: Resender,
    supplied: dict[str, str],
    rules: NoiseRules,
    learn_noise: bool,
) -> Outcome:
    from baton.replay.resend import ResendError

    request = interaction.request
    endpoint = endpoint_of(request.method, request.path)
    outgoing, note = outgoing_request(request, supplied)
    if outgoing is None:
        return _outcome(number, interaction, "skipped", note=f"not re-sent: {note}")
    if interaction.websocket is not None:  # the client's side played, the server's compared
        from baton.replay.websocket_drift import compare_live

        live = await compare_live(
            interaction, outgoing, to_target, to_reference, rules, learn_noise
        )
        return _outcome(
            number,
            interaction,
            live.outcome,
            new_status=live.new_status,
            changes=live.changes,
            note="; ".join(n for n in (note, *live.notes) if n),
        )
    fresh: Response | None = None
    error = None
    # A recorded body too large to hold is compared by digest: the new one is not kept either.
    digest_only = interaction.response is not None and interaction.response.stored is not None
    try:
        if learn_noise:
            first = await to_reference.send(outgoing, digest_only=digest_only)
            second = await to_reference.send(outgoing, digest_only=digest_only)
            rules.learn(endpoint, locations_that_differ(first, second, rules.ignore_order))
            fresh = (
                second
                if to_reference is to_target
                else await to_target.send(outgoing, digest_only=digest_only)
            )
        else:
            fresh = await to_target.send(outgoing, digest_only=digest_only)
    except TimeoutError:
        error = "timed out"
    except ResendError as exc:
        error = str(exc)
    changes = compare_responses(interaction.response, fresh, endpoint, rules, error=error)
    return _outcome(
        number,
        interaction,
        "compared",
        endpoint,
        new_status=fresh.status if fresh else None,
        changes=changes,
        note=note,
    )


# -- two recordings -------------------------------------------------------------------


def _new_index(interactions: list[Interaction]) -> Index:
    """The replay index that pairs an old recording's requests with ``interactions``."""
    from baton.replay.index import Index
    from baton.replay.matching import MatchConfig

    return Index(interactions, MatchConfig.build(address=False), "strict")


def _pairs_in_order(new: list[Interaction]) -> bool:
    """True when the index over ``new`` pairs the i-th of a run of identical requests with
    the i-th of ``new``, so pairing by position gives what it gives.

    Why: identical requests template to identical match keys (no live value has been
    learned: each pair's captured values are equal), and a key's queue answers in recorded
    order; by induction each lookup takes the next of its queue, which is the request's own
    place. Only the recorded state can send a lookup elsewhere (another write count's
    bucket), so every interaction of ``new`` must carry no state, or all the state of a
    recording that wrote nothing (``writes`` 0, not a write).
    """
    from baton.replay.state import recorded_state

    states = [recorded_state(interaction) for interaction in new]
    if all(state is None for state in states):
        return True
    return all(state is not None and state.writes == 0 and not state.write for state in states)


def _index_after(new: list[Interaction], paired: list[Request]) -> Index:
    """The index over ``new`` in the state it would be in after pairing ``paired``, which
    were paired by position (``_pairs_in_order``): each is looked up again, and must land
    in its own place."""
    from baton.replay.index import Hit

    index = _new_index(new)
    for place, request in enumerate(paired):
        result = index.lookup(request, forwarding=True)
        if not isinstance(result, Hit) or result.number != place:
            raise RuntimeError(  # _pairs_in_order is wrong: a bug in baton, not in the input
                f"pairing by position disagrees with the replay index at interaction {place + 1}"
            )
    return index


def diff_cassettes(
    old: Iterable[Interaction],
    new: Iterable[Interaction],
    *,
    source: str = "",
    target: str = "",
    only: Iterable[str] = (),
    rules: NoiseRules | None = None,
    fail_on: DriftClass = DriftClass.BREAKING,
    shard: Shard | None = None,
) -> DriftReport:
    """Compare two recordings, pairing interactions by the replay match key in recorded order.

    With ``shard``, only the interactions (of both) that shard holds; what
    only the new recording has is then numbered by its place in that
    recording, after the old one's, for ``baton report merge`` to renumber.
    """
    rules = rules or NoiseRules()
    only = list(only)
    places: dict[int, int] = {}

    def wanted_new() -> Iterable[Interaction]:
        for place, interaction in enumerate(new, 1):
            if _selected(interaction, only) and (shard is None or shard.holds(interaction)):
                places[id(interaction)] = place
                yield interaction

    wanted = list(wanted_new())
    # Two recordings of the same test hold the same requests in the same order. While they
    # do, the i-th pairs with the i-th: what the replay index would pair them with (see
    # ``_pairs_in_order``), without building it. At the first request that differs the
    # index is built, told of the pairs made so far, and pairs the rest.
    in_order = _pairs_in_order(wanted)
    paired: list[Request] = []
    index: Index | None = None
    report = DriftReport(source, target, fail_on)
    number = 0
    for number, interaction in enumerate(old, 1):
        if not _selected(interaction, only) or (shard and not shard.holds(interaction)):
            continue
        request = interaction.request
        if index is None:
            place = len(paired)
            if in_order and place < len(wanted) and wanted[place].request == request:
                paired.append(request)
                fresh = wanted[place]
            else:
                index = _index_after(wanted, paired)
        if index is not None:
            from baton.replay.index import Hit  # loaded with the index (_new_index)

            result = index.lookup(request, forwarding=True)
            if not isinstance(result, Hit):
                report.outcomes.append(
                    _outcome(
                        number,
                        interaction,
                        "only-in-old",
                        note="no interaction in the new recording pairs with it",
                    )
                )
                continue
            fresh = result.interaction
        endpoint = endpoint_of(request.method, request.path)
        changes = compare_responses(
            interaction.response,
            fresh.response,
            endpoint,
            rules,
            error=fresh.error,
        )
        if interaction.websocket is not None and fresh.websocket is not None:
            from baton.replay.websocket_drift import compare_conversations

            changes += compare_conversations(
                interaction.websocket, fresh.websocket, endpoint, rules
            )
        report.outcomes.append(
            _outcome(
                number,
                interaction,
                "compared",
                endpoint,
                new_status=fresh.response.status if fresh.response else None,
                changes=changes,
            )
        )
    report.recorded = recorded = number
    for extra in wanted[len(paired) :] if index is None else index.unused():
        number = recorded + places[id(extra)] if shard else number + 1
        report.outcomes.append(
            _outcome(number, extra, "only-in-new", note="recorded only in the new recording")
        )
    return report
