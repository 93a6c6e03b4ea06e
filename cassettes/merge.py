"""Merge cassettes into one, streaming: a week of rotated shards becomes one file to replay or diff.

Why it is built this way:

* A streaming copy. Each input is read with ``CassetteReader`` and each kept
  interaction written with ``CassetteWriter``: a body too large to hold stays
  a ``StoredBody`` that names where its pieces lie in the input, and the
  writer copies them across one piece at a time. Memory is one interaction
  per input (bodies held in memory are bounded by the reader's
  ``max_held_stream_bytes``), whatever the size of the files.
* Interleaved by recorded time. Shards of several recorders overlap in time;
  the output takes the earliest next interaction of all inputs (a k-way
  merge), so identical requests keep the order they were recorded in, which
  is the order replay answers them in. Each input's own order is kept as is.
* Atomic. The output is written to a temporary file beside it and renamed
  over it only when everything was read and written, so a corrupt input, a
  full disk or a crash leaves the old output as it was. That also makes the
  output safe to name among the inputs (``merge all.cassette all.cassette
  new.cassette``): the inputs are read to the end before the rename.
* Deduplication by content. Two interactions are duplicates when their
  requests have the same method, URL (query order aside) and body, and their
  answers the same status, headers (``Date`` aside), body, error and
  WebSocket messages; ids, times, tags and request headers do not count
  (``interaction_digest``). The first is kept. Only a 16-byte digest per
  distinct interaction stays in memory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import hashlib
import heapq
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from baton.cassettes.codec import pack
from baton.cassettes.compression import BodyCompression
from baton.cassettes.errors import CassetteError, CassetteLockedError
from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.reader import CassetteReader
from baton.cassettes.writer import CassetteWriter

__all__ = ["MergeFilter", "MergeReport", "interaction_digest", "interleaved", "merge_cassettes"]

_VOLATILE_RESPONSE_HEADERS = frozenset({"date"})


@dataclass(frozen=True, slots=True)
class MergeFilter:
    """Which interactions to keep: a window of recorded time, hosts and paths (globs)."""

    since: float | None = None
    """Keep interactions recorded at or after this time (seconds since the epoch)."""
    until: float | None = None
    """Keep interactions recorded before this time."""
    hosts: tuple[str, ...] = ()
    """Globs the request's host must match one of (case-insensitive); empty keeps all."""
    paths: tuple[str, ...] = ()
    """Globs the request's path must match one of; empty keeps all."""

    def in_window(self, interaction: Interaction) -> bool:
        at = interaction.recorded_at
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)

    def selects(self, request: Request) -> bool:
        host = request.host.lower()
        if self.hosts and not any(fnmatch.fnmatchcase(host, h.lower()) for h in self.hosts):
            return False
        return not self.paths or any(fnmatch.fnmatchcase(request.path, p) for p in self.paths)

    def describe(self) -> dict[str, Any]:
        """The filter as header metadata (only what was set)."""
        out: dict[str, Any] = {}
        for name in ("since", "until"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.hosts:
            out["hosts"] = list(self.hosts)
        if self.paths:
            out["paths"] = list(self.paths)
        return out


@dataclass
class MergeReport:
    """What a merge read, kept and left out, per reason."""

    output: Path
    inputs: int = 0
    read: int = 0
    written: int = 0
    duplicates: int = 0
    outside_window: int = 0
    filtered_out: int = 0
    torn: list[str] = field(default_factory=list)
    """Inputs that ended in a torn object (skipped: a recorder was killed mid-write)."""
    orphan_parts: int = 0
    """Parts of streams no interaction closed, skipped."""


def _body_digest(message: Request | Response) -> str:
    if message.stored is not None:
        return message.stored.sha256  # the reader hashed it while gathering its parts
    if message.body is None:
        return "not-captured"
    return hashlib.sha256(message.body).hexdigest()


def interaction_digest(interaction: Interaction) -> bytes:
    """16 bytes that are equal for two interactions exactly when a merge calls them duplicates.

    The request counts by method, scheme, host, port, path, query (as a
    multiset) and body; the answer by status, reason, headers without
    ``Date`` (their order kept), trailers, body, error and the WebSocket
    messages and close. Ids, recorded times, durations, piece times, tags and
    request headers are left out: they differ between two recordings of the
    same exchange.
    """
    request = interaction.request
    response = interaction.response
    answer: Any = None
    if response is not None:
        answer = [
            response.status,
            response.reason,
            [
                [n.lower(), v]
                for n, v in response.headers
                if n.lower() not in _VOLATILE_RESPONSE_HEADERS
            ],
            None if response.trailers is None else [list(p) for p in response.trailers],
            _body_digest(response),
        ]
    websocket: Any = None
    if interaction.websocket is not None:
        conversation = interaction.websocket
        websocket = [
            [[m.from_client, m.is_text, m.data] for m in conversation.messages],
            conversation.close_code,
            conversation.close_reason,
            conversation.closed_by_client,
        ]
    key = [
        request.method.upper(),
        request.scheme,
        request.host.lower(),
        request.port,
        request.path,
        sorted(list(pair) for pair in request.query),
        _body_digest(request),
        answer,
        interaction.error,
        websocket,
    ]
    return hashlib.sha256(pack(key)).digest()[:16]


def _refuse_if_recording(path: Path) -> None:
    """A recorder appending to ``path`` would lose what it writes after the rename: refuse."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CassetteError(f"{path}: cannot open: {exc.strerror}") from exc
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CassetteLockedError(
                    f"{path}: a recorder is still writing to it; stop it, or merge into "
                    "another file"
                ) from exc
            raise


def _common_meta(readers: Sequence[CassetteReader]) -> dict[str, Any]:
    """Header entries every input agrees on (the sampling a fleet recorded with, say)."""
    if not readers:
        return {}
    common = readers[0].meta
    for reader in readers[1:]:
        other = reader.meta
        common = {k: v for k, v in common.items() if k in other and other[k] == v}
    common.pop("merged", None)
    return common


def interleaved(readers: Sequence[CassetteReader]) -> Iterator[Interaction]:
    """Every input's interactions, earliest recorded first across inputs, each input's order kept.

    What ``baton merge`` writes, and the order ``baton diff`` reads several cassettes in.
    """
    streams = [iter(reader) for reader in readers]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda interaction: interaction.recorded_at)


def merge_cassettes(
    output: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    *,
    dedupe: bool = False,
    selection: MergeFilter | None = None,
    names: Sequence[str] | None = None,
    compression: BodyCompression | Literal["keep"] | None = "keep",
) -> MergeReport:
    """Write the interactions of ``inputs`` that ``selection`` keeps into ``output``.

    ``names``: what the header lists as the inputs (the URLs a cache copy came
    from, say); the paths themselves by default. ``compression``: how the
    output stores bodies; ``"keep"`` compresses it when every input was.

    Raises ``CassetteError`` (``output`` untouched) for an input that cannot
    be read, an input named twice, or an output a recorder is writing to.
    """
    output = Path(output)
    selection = selection or MergeFilter()
    paths = [Path(p) for p in inputs]
    seen: dict[Path, Path] = {}
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            raise CassetteError(f"{path}: named twice among the inputs; name each cassette once")
        seen[resolved] = path
    if output.is_dir():
        raise CassetteError(f"{output}: is a directory; name the merged cassette file")
    _refuse_if_recording(output)
    report = MergeReport(output, inputs=len(paths))
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(CassetteReader(p, warn_torn=False)) for p in paths]
        meta = _common_meta(readers)
        meta["merged"] = {
            "inputs": list(names) if names is not None else [str(p) for p in paths],
            "dedupe": dedupe,
            **selection.describe(),
        }
        directory = output.parent if str(output.parent) else Path(".")
        try:
            fd, temp_name = tempfile.mkstemp(
                dir=directory, prefix=f".{output.name}.", suffix=".merge"
            )
        except OSError as exc:
            raise CassetteError(f"{output}: cannot write beside it: {exc.strerror}") from exc
        os.close(fd)
        temp = Path(temp_name)
        try:
            _copy(readers, temp, meta, dedupe, selection, report, compression)
            for reader in readers:
                if reader.torn_at is not None:
                    report.torn.append(str(reader.path))
                report.orphan_parts += reader.orphan_parts
            _set_mode(temp, output)
            os.replace(temp, output)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    return report


def _copy(
    readers: Sequence[CassetteReader],
    temp: Path,
    meta: dict[str, Any],
    dedupe: bool,
    selection: MergeFilter,
    report: MergeReport,
    compression: BodyCompression | Literal["keep"] | None,
) -> None:
    seen: set[bytes] = set()
    # Already redacted when recorded: the copy is byte-for-byte what the inputs hold.
    if compression == "keep":
        # Inputs that were all written compressed give a compressed output (meta: common keys).
        compression = BodyCompression.from_description(meta.get("body_compression"))
    if compression is None:
        meta.pop("body_compression", None)
    with CassetteWriter(temp, redactor=None, meta=meta, compression=compression) as writer:
        for interaction in interleaved(readers):
            report.read += 1
            if not selection.in_window(interaction):
                report.outside_window += 1
                continue
            if not selection.selects(interaction.request):
                report.filtered_out += 1
                continue
            if dedupe:
                digest = interaction_digest(interaction)
                if digest in seen:
                    report.duplicates += 1
                    continue
                seen.add(digest)
            writer.append(interaction)
            report.written += 1


def _set_mode(temp: Path, output: Path) -> None:
    """The output keeps the mode of the file it replaces; a new one gets a cassette's usual."""
    try:
        mode = output.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o644 & ~umask
    os.chmod(temp, mode)
