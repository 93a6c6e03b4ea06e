"""Shards: a recording cut into files by size and age, each a whole cassette readable alone.

``RotatingWriter`` stands where the Recorder's ``CassetteWriter`` stands (same
``append``, ``append_async``, ``open_stream``, ``close``), and hands every
closed shard to ``on_closed`` (the spool uploads it).

Why it is built this way:

* Each shard is a plain ``CassetteWriter`` with its own writer thread and
  lock: nothing about the format changes, and a shard is closed by the
  writer's normal ``close`` (fsync, release of the lock).
* Traffic never waits for a rotation. When the current shard is due (its
  size reached ``--rotate-size``, its age ``--rotate-interval``), the next
  shard is created and its header fsynced on a background thread while
  appends still go to the current one; then a pointer swap under a lock
  sends new interactions to the new shard. The old one is closed on that
  thread as soon as nothing is still being written into it.
* No interaction is lost or written twice: an append is counted into its
  shard before it starts and out when it is on disk; a shard is closed
  only at zero. Every interaction is written once, to one shard.
* Streams (format 2) stay with their interaction: part records of a stream
  go to the shard that was current when the stream opened, and so does the
  interaction that closes it, even after a rotation (the old shard stays
  open, "draining", until its last stream closes). So every shard is
  readable alone, with no part whose interaction is elsewhere. In the rare
  case that one interaction closes streams begun in two shards (a large
  upload answered by a streamed body, a rotation between the two), the
  older stream's parts are copied into the newer shard, where the
  interaction goes; the older shard then holds parts no interaction closes,
  which the reader skips with a warning.
* Shard names come from a pattern (``DEFAULT_PATTERN``) with the service
  name, host, process id, start time (UTC) and a sequence number, so a
  fleet's shards never collide and sort by time per recorder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baton.cassettes.codec import is_part, part_from_object
from baton.cassettes.compression import BodyCompression
from baton.cassettes.model import Interaction
from baton.cassettes.reader import CassetteReader
from baton.cassettes.redaction import Redactor
from baton.cassettes.writer import CassetteWriter, FsyncPolicy, PartStream

__all__ = [
    "DEFAULT_PATTERN",
    "RotatingWriter",
    "RotationPolicy",
    "ShardNamer",
    "parse_duration",
]

logger = logging.getLogger(__name__)

DEFAULT_PATTERN = "{name}.{host}.{pid}.{start:%Y%m%dT%H%M%SZ}.{seq:04d}.cassette"
"""Shard file names: ``orders-api.host1.4242.20261129T101500Z.0007.cassette``."""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``1h``, ``30m``, ``90s``, ``500ms``, ``1h30m``, ``2d`` or plain seconds, as seconds (> 0)."""
    cleaned = text.strip()
    position = 0
    total = 0.0
    for match in _DURATION.finditer(cleaned):
        if match.start() != position or (match.group(2) is None and match.end() != len(cleaned)):
            break
        unit = match.group(2).lower() if match.group(2) else None
        total += float(match.group(1)) * _SECONDS[unit]
        position = match.end()
    else:
        position = position if cleaned else -1
    if not cleaned or position != len(cleaned) or total <= 0:
        raise ValueError(
            f"{text!r} is not a duration; use e.g. 1h, 30m, 90s, 500ms or 1h30m (above zero)"
        )
    return total


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When a shard is closed and the next opened: at ``size`` bytes, after ``interval`` seconds."""

    size: int | None = None
    interval: float | None = None

    def due(self, size: int, age: float) -> bool:
        """True when a shard of ``size`` bytes opened ``age`` seconds ago should be closed."""
        return (self.size is not None and size >= self.size) or (
            self.interval is not None and age >= self.interval
        )


@dataclass(frozen=True, slots=True)
class ShardNamer:
    """Shard file names from a pattern: ``{name}``, ``{host}``, ``{pid}``, ``{start:...}``, ``{seq}``."""

    pattern: str = DEFAULT_PATTERN
    name: str = "baton"
    host: str = field(default_factory=lambda: _safe(socket.gethostname().split(".")[0]) or "host")
    """The short host name (no dots, so a shard name splits on them)."""
    pid: int = field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        if "{seq" not in self.pattern:
            raise ValueError(
                f"shard pattern {self.pattern!r} has no {{seq}}: two shards would share a name"
            )
        sample = self.format(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 7)
        if "/" in sample or sample in ("", ".", ".."):
            raise ValueError(f"shard pattern {self.pattern!r} must name a file, not a path")

    def format(self, start: datetime, seq: int) -> str:
        """The file name of shard ``seq`` opened at ``start``."""
        try:
            return self.pattern.format(
                name=self.name, host=self.host, pid=self.pid, start=start, seq=seq
            )
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"shard pattern {self.pattern!r}: {exc!r}; fields are name, host, pid, "
                "start (a UTC datetime: {start:%Y%m%dT%H%M%SZ}) and seq ({seq:04d})"
            ) from exc


def _safe(text: str) -> str:
    """A host or service name fit for a file name: no slashes, no spaces."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(".-")


@dataclass(eq=False)
class _Shard:
    writer: CassetteWriter
    seq: int
    started: float
    """time.monotonic() when opened (the age that --rotate-interval measures)."""
    open_streams: int = 0
    inflight: int = 0
    draining: bool = False
    retiring: bool = False

    @property
    def path(self) -> Path:
        return self.writer.path


class RotatingWriter:
    """Append interactions to a sequence of shards in ``directory``, rotating by size and age."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        redactor: Redactor | None,
        namer: ShardNamer,
        policy: RotationPolicy,
        fsync: FsyncPolicy | str = FsyncPolicy.CLOSE,
        meta: Mapping[str, Any] | None = None,
        on_closed: Callable[[Path], None] | None = None,
        on_rotate: Callable[[], None] | None = None,
        compression: BodyCompression | None = None,
    ) -> None:
        """Open the first shard now (so a bad directory fails at start)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._redactor = redactor
        self._namer = namer
        self.policy = policy
        self._fsync = FsyncPolicy(fsync)
        self._meta = dict(meta or {})
        self._compression = compression
        self._on_closed = on_closed
        self._on_rotate = on_rotate
        self._lock = threading.Lock()
        self._seq = 0
        self._shards_of_streams: dict[str, _Shard] = {}
        self._draining: list[_Shard] = []
        self._rotating = False
        self._retry_after = 0.0
        self._closed_count = 0
        self._closed_interactions = 0
        self.rotations = 0
        """Shards closed because they were due (not counting the last, closed at the end)."""
        self.failures = 0
        """Shards that could not be opened (recording went on in the current one)."""
        self.discarded = False
        """True once ``close`` found nothing was recorded into any shard."""
        self._background = ThreadPoolExecutor(1, thread_name_prefix="baton-rotation")
        self._current = self._open_shard()

    @property
    def path(self) -> Path:
        """The shard being written now."""
        return self._current.path

    @property
    def count(self) -> int:
        """Interactions appended, over every shard."""
        with self._lock:
            live = [self._current, *self._draining]
            return self._closed_interactions + sum(s.writer.count for s in live)

    @property
    def queue_depth(self) -> int:
        """Appends handed over and not yet on disk, over every shard."""
        with self._lock:
            return sum(s.inflight for s in (self._current, *self._draining))

    def _open_shard(self) -> _Shard:
        start = datetime.now(UTC)
        while True:
            seq = self._seq
            self._seq += 1
            path = self.directory / self._namer.format(start, seq)
            if not path.exists():
                break
        meta = {
            **self._meta,
            "shard": {
                "seq": seq,
                "host": self._namer.host,
                "pid": self._namer.pid,
                "started": start.isoformat().replace("+00:00", "Z"),
            },
        }
        writer = CassetteWriter(
            path,
            redactor=self._redactor,
            fsync=self._fsync,
            meta=meta,
            discard_if_empty=True,
            compression=self._compression,
        )
        return _Shard(writer, seq, time.monotonic())

    # -- the writer's interface, as the Recorder uses it ---------------------------------

    def open_stream(self, transform: Callable[[bytes], bytes] | None = None) -> PartStream:
        """A stream whose parts, and the interaction closing it, go to the current shard."""
        with self._lock:
            shard = self._current
            shard.open_streams += 1
            stream = shard.writer.open_stream(transform)
            self._shards_of_streams[stream.id] = shard
        return stream

    def append(
        self, interaction: Interaction, streams: Mapping[str, PartStream] | None = None
    ) -> Interaction:
        """``CassetteWriter.append`` into the right shard (thread-safe)."""
        shard = self._enter(streams)
        try:
            return shard.writer.append(interaction, streams)
        finally:
            self._leave(shard, streams)

    async def append_async(
        self, interaction: Interaction, streams: Mapping[str, PartStream] | None = None
    ) -> Interaction:
        """``CassetteWriter.append_async`` into the right shard."""
        shard = self._enter(streams)
        try:
            return await shard.writer.append_async(interaction, streams)
        finally:
            self._leave(shard, streams)

    def tick(self) -> None:
        """Rotate a shard whose age is due though no traffic came (called a few times a second)."""
        with self._lock:
            shard = self._current
            if shard.writer.count and self._is_due(shard):
                self._start_rotation()

    def close(self) -> None:
        """Close every shard (the writer's normal close) and hand each to ``on_closed``."""
        self._background.shutdown(wait=True)
        with self._lock:
            shards = [*self._draining, self._current]
            self._draining = []
        for shard in shards:
            self._retire(shard)
        self.discarded = self._closed_interactions == 0

    # -- bookkeeping ----------------------------------------------------------------------

    def _enter(self, streams: Mapping[str, PartStream] | None) -> _Shard:
        """The shard an interaction goes to, counted in (streams' shard, else the current one)."""
        carry: list[tuple[PartStream, _Shard]] = []
        with self._lock:
            owners = [
                (stream, self._shards_of_streams.get(stream.id))
                for stream in (streams or {}).values()
            ]
            known = [(stream, shard) for stream, shard in owners if shard is not None]
            if not known:
                shard = self._current
            else:
                shard = max((s for _, s in known), key=lambda s: s.seq)
                carry = [(stream, owner) for stream, owner in known if owner is not shard]
            shard.inflight += 1
        for stream, owner in carry:
            self._carry(stream, owner, shard)
        return shard

    def _carry(self, stream: PartStream, owner: _Shard, target: _Shard) -> None:
        """Copy a stream's parts from the shard it began in to the one its interaction goes to."""
        copy = PartStream(target.writer)
        copy.id = stream.id
        with CassetteReader(owner.path, warn_torn=False) as reader:
            for raw in reader.objects():
                if not is_part(raw.value) or raw.value.get("part") != stream.id:
                    continue
                part = part_from_object(raw.value, f"{owner.path}: byte {raw.offset}")
                copy.write(
                    part.data, part.offset_ms, from_client=part.from_client, is_text=part.is_text
                )
        logger.warning(
            "baton: a stream begun in %s closes in %s; its parts were copied there",
            owner.path.name,
            target.path.name,
        )
        with self._lock:
            owner.open_streams -= 1
            target.open_streams += 1
            self._shards_of_streams[stream.id] = target
            retire = self._idle_and_draining(owner)
        if retire:
            self._background_retire(owner)

    def _leave(self, shard: _Shard, streams: Mapping[str, PartStream] | None) -> None:
        with self._lock:
            shard.inflight -= 1
            for stream in (streams or {}).values():
                if self._shards_of_streams.pop(stream.id, None) is shard:
                    shard.open_streams -= 1
            retire = self._idle_and_draining(shard)
            if shard is self._current and self._is_due(shard):
                self._start_rotation()
        if retire:
            self._background_retire(shard)

    def _is_due(self, shard: _Shard) -> bool:
        if self._rotating or time.monotonic() < self._retry_after:
            return False
        size = 0
        if self.policy.size is not None:
            try:
                size = os.stat(shard.path).st_size
            except OSError:
                size = 0
        return self.policy.due(size, time.monotonic() - shard.started)

    def _idle_and_draining(self, shard: _Shard) -> bool:
        """True (once) when a draining shard has nothing left in flight; the caller retires it."""
        idle = shard.inflight == 0 and shard.open_streams <= 0
        if shard.draining and not shard.retiring and idle:
            shard.retiring = True
            return True
        return False

    def _start_rotation(self) -> None:
        """Open the next shard on the background thread; the caller holds the lock."""
        self._rotating = True
        try:
            self._background.submit(self._rotate)
        except RuntimeError:  # closing: the last shard is closed by close()
            self._rotating = False

    def _rotate(self) -> None:
        try:
            fresh = self._open_shard()
        except Exception as exc:  # a full disk, a removed directory: keep the current shard
            self.failures += 1
            logger.error("baton: cannot open the next shard (recording goes on): %s", exc)
            with self._lock:
                self._rotating = False
                self._retry_after = time.monotonic() + 5.0
            return
        with self._lock:
            old, self._current = self._current, fresh
            old.draining = True
            self._draining.append(old)
            self._rotating = False
            self.rotations += 1
            retire = self._idle_and_draining(old)
        if self._on_rotate is not None:
            try:
                self._on_rotate()
            except Exception:
                logger.exception("baton: rotation callback")
        if retire:
            self._retire(old)

    def _background_retire(self, shard: _Shard) -> None:
        # Shutting down (RuntimeError): close() retires every shard itself.
        with contextlib.suppress(RuntimeError):
            self._background.submit(self._retire, shard)

    def _retire(self, shard: _Shard) -> None:
        """Close a shard with the writer's own close and hand it on (unless it stayed empty)."""
        with self._lock:
            if shard in self._draining:
                self._draining.remove(shard)
        try:
            shard.writer.close()
        except Exception as exc:
            logger.error("baton: closing shard %s failed: %s", shard.path, exc)
        with self._lock:
            self._closed_interactions += shard.writer.count
            self._closed_count += 1
        if shard.writer.discarded or self._on_closed is None:
            return
        try:
            self._on_closed(shard.path)
        except Exception:
            logger.exception("baton: shard closed callback")
