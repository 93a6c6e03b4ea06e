"""Rewrite a damaged cassette so that it holds only its sound objects.

The common damage is a torn last object, left by a recorder that was killed
mid-write. A recorder killed in the middle of a stream also leaves the parts
of that stream with no interaction to close it. Rarer is an object that is
valid msgpack but not a valid interaction, or bytes in the middle that are
not msgpack at all (after which nothing can be trusted to line up). ``repair`` keeps every sound object,
drops the rest, keeps the original as a backup, and reports what it dropped;
the rewrite goes through a temporary file and ``os.replace``, so a crash
during repair leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from baton.cassettes.codec import (
    StreamRef,
    interaction_from_object,
    is_part,
    part_from_object,
)
from baton.cassettes.errors import CassetteError, CassetteFormatError, CassetteLockedError
from baton.cassettes.reader import CassetteReader

__all__ = ["RepairReport", "backup_path", "repair"]


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What ``repair`` kept and dropped."""

    path: Path
    kept: int
    dropped: list[str] = field(default_factory=list)
    dropped_bytes: int = 0
    backup: Path | None = None

    @property
    def changed(self) -> bool:
        """True when the file was rewritten."""
        return self.backup is not None


def backup_path(path: Path) -> Path:
    """A free ``NAME.bak`` (or ``NAME.bak.N``) beside ``path``."""
    candidate = path.with_name(path.name + ".bak")
    number = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak.{number}")
        number += 1
    return candidate


def _refuse_if_recording(path: Path) -> None:
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CassetteLockedError(
                    f"{path}: a recorder is still writing to it; stop it before repairing"
                ) from exc
            raise


def repair(path: str | os.PathLike[str]) -> RepairReport:
    """Drop torn and invalid objects from the cassette at ``path``; keep a backup if it changes."""
    path = Path(path)
    _refuse_if_recording(path)
    dropped: list[str] = []
    kept = 0
    # Every object's span and whether it stays; parts wait for their interaction.
    spans: list[list[int]] = []  # [offset, end, keep]
    open_parts: dict[str, list[int]] = {}  # stream id -> indexes into spans
    with CassetteReader(path, warn_torn=False) as reader:
        spans.append([0, reader.header_end, 1])
        objects = reader.objects()
        while True:
            try:
                raw = next(objects)
            except StopIteration:
                if reader.torn_at is not None:
                    dropped.append(
                        f"torn object at byte {reader.torn_at} ({reader.file_size - reader.torn_at} bytes)"
                    )
                break
            except CassetteFormatError as exc:
                offset = reader.position
                dropped.append(f"unreadable bytes from byte {offset} to the end: {exc}")
                break
            where = f"object {raw.number}"
            try:
                if is_part(raw.value):
                    part = part_from_object(raw.value, where)
                    open_parts.setdefault(part.stream, []).append(len(spans))
                    spans.append([raw.offset, raw.end, 0])  # kept once its interaction comes
                    continue
                interaction_from_object(raw.value, where, reader.version)
            except CassetteFormatError as exc:
                dropped.append(f"invalid object at byte {raw.offset}: {exc}")
                continue
            for ref in _refs(raw.value):
                for index in open_parts.pop(ref.id, []):
                    spans[index][2] = 1
            kept += 1
            spans.append([raw.offset, raw.end, 1])
        size = reader.file_size
    orphans = sum(len(indexes) for indexes in open_parts.values())
    if orphans:
        dropped.append(f"{orphans} parts of unfinished streams (a recorder stopped mid-stream)")
    ranges: list[tuple[int, int]] = []
    for start, end, keep in spans:
        if not keep:
            continue
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    if not dropped:
        return RepairReport(path, kept)
    kept_bytes = sum(end - start for start, end in ranges)
    backup = backup_path(path)
    shutil.copy2(path, backup)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".repair")
    try:
        with open(path, "rb") as source, os.fdopen(fd, "wb") as target:
            for start, end in ranges:
                source.seek(start)
                target.write(source.read(end - start))
            target.flush()
            os.fsync(target.fileno())
        shutil.copymode(backup, temp_name)
        os.replace(temp_name, path)
    except OSError as exc:
        Path(temp_name).unlink(missing_ok=True)
        raise CassetteError(f"{path}: cannot rewrite: {exc.strerror or exc}") from exc
    return RepairReport(path, kept, dropped, size - kept_bytes, backup)


def _refs(obj: dict[str, object]) -> list[StreamRef]:
    """The streams an interaction object names (already validated)."""
    found = []
    for place in ("request", "response", "websocket"):
        holder = obj.get(place)
        stream = holder.get("stream") if isinstance(holder, dict) else None
        if isinstance(stream, dict) and isinstance(stream.get("id"), str):
            found.append(StreamRef(str(stream["id"]), 0, 0))
    return found
