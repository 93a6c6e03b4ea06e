"""Cassette hygiene: prune what no run served, collapse repeats, expire old recordings.

Each is a choice of interactions to keep, applied by ``rewrite``: the kept
ones are copied through ``CassetteReader`` and ``CassetteWriter`` (a body
stored in the file streams across piece by piece, never read whole) into a
temporary file beside the target, which then replaces it with
``os.replace``. In place, the original is first copied to ``NAME.bak``
(``backup_path``, as ``--record-mode all`` and ``baton repair`` keep theirs);
an error at any point leaves the original as it was.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from baton.cassettes.compression import BodyCompression
from baton.cassettes.errors import CassetteError, CassetteLockedError
from baton.cassettes.model import Interaction
from baton.cassettes.reader import CassetteReader
from baton.cassettes.repair import backup_path
from baton.cassettes.writer import CassetteWriter
from baton.replay.matching import MatchConfig, match_key
from baton.replay.state import recorded_state

__all__ = [
    "RewriteReport",
    "dedupe_keep",
    "expire_keep",
    "parse_age",
    "prune_keep",
    "rewrite",
]

Keep = Callable[[Iterable[Interaction]], list[bool]]
"""Given the interactions in order, which to keep."""


@dataclass(frozen=True)
class RewriteReport:
    """What a rewrite kept and removed, and where the result and the backup are."""

    kept: int
    removed: list[Interaction]
    target: Path
    backup: Path | None = None


def _refuse_if_recording(path: Path) -> None:
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CassetteLockedError(
                    f"{path}: a recorder is still writing to it; stop it first"
                ) from exc
            raise


def rewrite(path: Path, keep: Keep, out: Path | None = None) -> RewriteReport:
    """Write the interactions ``keep`` chooses to ``out`` (default: ``path``, backed up first).

    Nothing is written when everything is kept and ``out`` is not given.
    """
    _refuse_if_recording(path)
    target = out or path
    with CassetteReader(path) as reader:
        meta = dict(reader.meta)
        interactions = list(reader)  # stored bodies stay in the file: only where they lie
    chosen = keep(interactions)
    removed = [i for i, kept in zip(interactions, chosen, strict=True) if not kept]
    if not removed and out is None:
        return RewriteReport(len(interactions), [], target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    os.close(handle)
    backup = None
    try:
        compression = BodyCompression.from_description(meta.get("body_compression"))
        writer = CassetteWriter(temporary, redactor=None, meta=meta, compression=compression)
        try:
            for interaction, kept in zip(interactions, chosen, strict=True):
                if kept:
                    writer.append(interaction)
        finally:
            writer.close()
        shutil.copymode(path, temporary)
        if out is None:
            backup = backup_path(path)
            shutil.copy2(path, backup)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise CassetteError(f"{target}: cannot rewrite: {exc.strerror or exc}") from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return RewriteReport(len(interactions) - len(removed), removed, target, backup)


def prune_keep(served: set[str]) -> Keep:
    """Keep the interactions a run served (their ids are in ``served``)."""
    return lambda interactions: [i.id in served for i in interactions]


_AGE = re.compile(r"(\d+)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``90d``, ``12h``, ``2w`` (also ``1w3d``) in seconds; ``ValueError`` otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = _AGE.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"older-than {text!r}: give an age such as 90d, 12h or 2w")
    return float(sum(int(n) * _SECONDS[u] for n, u in parts))


def expire_keep(age_seconds: float, now: float | None = None) -> Keep:
    """Keep interactions recorded less than ``age_seconds`` before ``now``."""
    cutoff = (time.time() if now is None else now) - age_seconds
    return lambda interactions: [i.recorded_at >= cutoff for i in interactions]


def _answer_digest(interaction: Interaction) -> str:
    """The answer, without the headers that change on every response (Date)."""
    response = interaction.response
    if response is None:
        return f"error:{interaction.error}"
    digest = hashlib.sha256()
    digest.update(str(response.status).encode())
    for name, value in response.headers:
        if name.lower() != "date":
            digest.update(f"\0{name.lower()}:{value}".encode("utf-8", "surrogateescape"))
    if response.stored is not None:
        digest.update(b"\0stored:" + response.stored.sha256.encode())
    else:
        digest.update(b"\0body:" + (response.body or b""))
    if interaction.websocket is not None:
        digest.update(repr(interaction.websocket).encode())
    return digest.hexdigest()


def dedupe_keep(interactions: Iterable[Interaction]) -> list[bool]:
    """Drop the trailing repeats of each (match key, state) queue: an interaction whose key,
    recorded state and answer equal the one before it in its queue, when nothing different
    follows it there.

    Only trailing repeats go: under ``repeat-last`` the last answer is given again anyway, so
    replay answers exactly as before. A repeat followed by another answer (a poll: pending,
    pending, done) stays, or the second poll would get "done".
    """
    items = list(interactions)
    config = MatchConfig()
    queues: dict[tuple[object, ...], list[int]] = {}
    for number, interaction in enumerate(items):
        state = recorded_state(interaction)
        slot = (match_key(interaction.request, config), None if state is None else state.writes)
        queues.setdefault(slot, []).append(number)
    keep = [True] * len(items)
    for numbers in queues.values():
        last = _answer_digest(items[numbers[-1]])
        position = len(numbers) - 2
        while position >= 0 and _answer_digest(items[numbers[position]]) == last:
            keep[numbers[position + 1]] = False
            position -= 1
    return keep
