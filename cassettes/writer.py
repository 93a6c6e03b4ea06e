"""Append interactions to a cassette, safely, from many producers.

Why it is built this way:

* One object per ``write``: each interaction is packed whole and handed to the
  OS before ``append`` returns, so a process killed the next instant leaves
  every acknowledged interaction readable, and at most one torn object.
* A failed write (disk full, file-size limit) is cut back off the file with
  ``ftruncate``, so the next append does not land after half an object and
  turn a full disk into a corrupt cassette.
* One lock and one writer thread: interactions from hundreds of connections
  arrive whole and in the order they were handed over; ``append_async`` lets
  an event loop wait for the write without blocking on it, and batches the
  interactions that arrive while a write is under way (group commit).
* An exclusive ``flock`` stops a second process from appending to the same
  file, and a file that already ends in a torn object is refused (repair it
  first) rather than appended to.
* Redaction runs inside ``append``: nothing unredacted reaches the file.
* Streams (format 2): a streamed body or a WebSocket conversation is written
  as part records while it passes (``open_stream``), never held whole, and
  the interaction that closes the stream is appended last and names it. An
  interaction that arrives whole with ``chunks``, a ``StoredBody`` or
  WebSocket messages is written the same way. Parts and interactions share
  one ordered queue, so a part is always on disk before what names it.
* ``discard_if_empty``: a recorder stopped before any traffic should leave no
  cassette behind. The file is still created with its header at once, so the
  lock refuses a second recorder from the start and a recorder killed before
  any traffic leaves a valid (empty) cassette; ``close`` then removes it, but
  only a file this writer created and never appended to, and only while it
  still holds the lock. A writer that finds its path gone or replaced after
  taking the lock (that removal, between its ``open`` and its ``flock``)
  opens the path again instead of appending to an unlinked file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from baton.cassettes.codec import (
    FORMAT_VERSION,
    Part,
    StreamRef,
    interaction_to_object,
    make_header,
    pack,
    part_to_object,
)
from baton.cassettes.compression import BodyCompression
from baton.cassettes.errors import CassetteError, CassetteLockedError, CassetteTornError
from baton.cassettes.model import Chunk, Interaction, Request, Response
from baton.cassettes.reader import CassetteReader
from baton.cassettes.redaction import Redactor
from baton.cassettes.trailing_index import IndexBuilder, entry_for, is_index_record, stream_ids

__all__ = ["CassetteWriter", "FsyncPolicy", "PartStream"]

logger = logging.getLogger(__name__)


class FsyncPolicy(StrEnum):
    """When the writer asks the OS to put the file on stable storage.

    Every interaction is written to the OS before ``append`` returns whatever
    the policy, which is what survives a killed process. fsync adds survival
    of a power loss or kernel crash, at a cost per call.
    """

    EVERY = "every"
    CLOSE = "close"
    NEVER = "never"


def _baton_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("baton-replay")
    except PackageNotFoundError:
        return "unknown"


class PartStream:
    """One stream being written as part records: a body passing through, or WebSocket messages.

    Made by ``CassetteWriter.open_stream``. ``write`` (or ``write_async``)
    appends one part; ``ref`` is what the closing interaction names. A
    ``transform`` (a redactor's scrubber) sees each piece before it is
    counted and written.
    """

    def __init__(
        self, writer: CassetteWriter, transform: Callable[[bytes], bytes] | None = None
    ) -> None:
        self.id = uuid.uuid4().hex
        self._writer = writer
        self._transform = transform
        self._digest = hashlib.sha256()
        self.count = 0
        self.size = 0

    def _part(
        self, data: bytes, offset_ms: float, from_client: bool | None, is_text: bool | None
    ) -> bytes:
        if self._transform is not None:
            data = self._transform(data)
        part = Part(self.id, self.count, offset_ms, data, from_client, is_text)
        self.count += 1
        self.size += len(data)
        self._digest.update(data)
        return pack(part_to_object(part))

    def write(
        self,
        data: bytes,
        offset_ms: float,
        *,
        from_client: bool | None = None,
        is_text: bool | None = None,
    ) -> None:
        """Append one piece now (thread-safe); ``from_client``/``is_text`` for WebSocket only."""
        with self._writer._lock:
            self._writer._write_part(self._part(data, offset_ms, from_client, is_text), self.id)

    async def write_async(
        self,
        data: bytes,
        offset_ms: float,
        *,
        from_client: bool | None = None,
        is_text: bool | None = None,
    ) -> None:
        """``write`` on the writer thread, in order with every other append."""
        await self._writer._submit(
            lambda: self.write(data, offset_ms, from_client=from_client, is_text=is_text)
        )

    @property
    def ref(self) -> StreamRef:
        """What the interaction closing this stream says of it."""
        return StreamRef(self.id, self.count, self.size, self._digest.hexdigest())


class CassetteWriter:
    """Append-only writer of one cassette file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        redactor: Redactor | None,
        fsync: FsyncPolicy | str = FsyncPolicy.CLOSE,
        meta: Mapping[str, Any] | None = None,
        discard_if_empty: bool = False,
        compression: BodyCompression | None = None,
    ) -> None:
        """Open ``path`` for appending, creating it with a header if it is new or empty.

        ``redactor`` is required as an argument so that writing without
        redaction is a visible decision (``redactor=None``), never a default.
        ``discard_if_empty``: ``close`` removes the file again if this writer
        created it and appended nothing (a file that existed is never removed).
        ``compression``: store bodies held whole compressed where it pays
        (cassettes/compression.py); a new file's header records the settings.
        """
        self.path = Path(path)
        self.fsync = FsyncPolicy(fsync)
        self._redactor = redactor
        self._discard_if_empty = discard_if_empty
        self.compression = compression
        if compression is not None:
            meta = {**(meta or {}), "body_compression": compression.describe()}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._version = FORMAT_VERSION
        """The version the file's header names (an older file is upgraded at its first part)."""
        self._flusher: asyncio.Task[None] | None = None
        self._index = IndexBuilder()
        """The trailing index record's entries so far (cassettes/trailing_index.py)."""
        self._part_spans: dict[str, list[list[int]]] = {}
        """[offset, length] of the parts written for streams no interaction has closed yet."""
        self._trailing_index_at: int | None = None
        """Where the index record an earlier writer left at the end lies; cut at the first write."""
        self._changed = False
        self.count = 0
        """Interactions appended by this writer."""
        self.created = False
        """True when this writer created the file (it did not exist before)."""
        self.discarded = False
        """True once ``close`` removed the file it created and never appended to."""
        for _attempt in range(10):
            self._fd, self.created = self._open()
            try:
                if self._claim():
                    break
            except BaseException:
                os.close(self._fd)
                raise
            os.close(self._fd)
        else:
            raise CassetteError(f"{self.path}: keeps being replaced while opening; try again")
        try:
            if os.fstat(self._fd).st_size == 0:
                self._write_all(pack(make_header(meta, _baton_version())))
                os.fsync(self._fd)
            else:
                self._version = self._check_tail()
        except BaseException:
            if self.created and os.fstat(self._fd).st_size == 0:
                os.unlink(self.path)  # ours, and not even a header made it (disk full)
            os.close(self._fd)
            raise

    def _open(self) -> tuple[int, bool]:
        """A descriptor for appending, and whether the file was created by this call."""
        flags = os.O_WRONLY | os.O_APPEND
        try:
            for _attempt in range(3):
                try:
                    return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
                except FileExistsError:
                    pass
                try:
                    return os.open(self.path, flags), False
                except FileNotFoundError:
                    continue  # removed in between: create it after all
            # A dangling symlink exists and does not: create its target, as before.
            return os.open(self.path, flags | os.O_CREAT, 0o644), False
        except IsADirectoryError as exc:
            raise CassetteError(f"{self.path}: is a directory; name a cassette file") from exc
        except OSError as exc:
            raise CassetteError(f"{self.path}: cannot open for writing: {exc.strerror}") from exc

    def _claim(self) -> bool:
        """Take the exclusive lock; False if the path no longer names the file that was opened."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CassetteLockedError(
                    f"{self.path}: another baton process is recording into this cassette; "
                    "stop it or choose another file"
                ) from exc
            raise
        return self._names_our_file()

    def _names_our_file(self) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        ours = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino)

    def _check_tail(self) -> int:
        """Validate the existing file to its end; return its header's version."""
        # Reading to the end also validates the header and every object, so a
        # foreign or damaged file is refused before anything is added to it.
        # The same walk lists what is already there for the index record written at close.
        with CassetteReader(self.path, warn_torn=False) as reader:
            for raw in reader.objects():
                self._indexed(raw.value, raw.offset, raw.end - raw.offset)
            if reader.torn_at is not None:
                raise CassetteTornError(
                    f"{self.path}: ends in a torn object at byte {reader.torn_at}; "
                    f"run `baton repair {self.path}` before recording into it"
                )
            self._trailing_index_at = reader.trailing_index_at
            return reader.version

    def _indexed(self, obj: Any, offset: int, length: int) -> None:
        """Note one object written at ``offset`` for the index record."""
        if type(obj) is not dict or is_index_record(obj):
            return
        if "part" in obj:
            self._part_spans.setdefault(str(obj["part"]), []).append([offset, length])
            return
        parts = [span for sid in stream_ids(obj) for span in self._part_spans.pop(sid, ())]
        self._index.add(entry_for(obj, offset, length, parts))

    def _upgrade_header(self, to: int = FORMAT_VERSION) -> None:
        """Make an older file's header name this format before the first part goes in.

        A format-1 reader would stop at a part record with a message about a
        missing field; with the header naming version 2 it says instead that a
        newer baton wrote the file. The version is one msgpack byte (a
        positive fixint), so it is patched in place with one ``pwrite``.
        """
        if self._version >= to:
            return
        with open(self.path, "rb") as handle:
            head = handle.read(4096)
        marker = pack("version")
        at = head.find(marker)
        if at < 0 or head[at + len(marker)] != self._version:
            raise CassetteError(f"{self.path}: cannot find the header's version to upgrade it")
        # Not through self._fd: with O_APPEND, Linux's pwrite appends whatever the offset.
        patch = os.open(self.path, os.O_WRONLY)
        try:
            if (os.fstat(patch).st_ino, os.fstat(patch).st_dev) != (
                os.fstat(self._fd).st_ino,
                os.fstat(self._fd).st_dev,
            ):
                raise CassetteError(f"{self.path}: was replaced while being written")
            os.pwrite(patch, bytes([to]), at + len(marker))
            if self.fsync is not FsyncPolicy.NEVER:
                os.fsync(patch)
        finally:
            os.close(patch)
        self._version = to

    def _write_part(self, data: bytes, stream: str) -> None:
        """Write one packed part record of ``stream``; the caller holds the lock."""
        if self._fd < 0:
            raise CassetteError(f"{self.path}: writer is closed")
        self._upgrade_header(2)  # parts came with format 2
        start = self._write_all(data)
        self._part_spans.setdefault(stream, []).append([start, len(data)])

    def open_stream(self, transform: Callable[[bytes], bytes] | None = None) -> PartStream:
        """A new stream to write as parts; name its ``ref`` in the interaction that closes it."""
        return PartStream(self, transform)

    def _write_all(self, data: bytes) -> int:
        """Append ``data`` whole; return the byte offset it starts at."""
        if self._trailing_index_at is not None:
            # An earlier writer's index record would go stale in the middle of the file:
            # cut it (the file stays a valid stream); close writes a new one.
            try:
                os.ftruncate(self._fd, self._trailing_index_at)
            except OSError as exc:
                raise CassetteError(f"{self.path}: cannot append: {exc.strerror}") from exc
            self._trailing_index_at = None
        self._changed = True
        start = os.lseek(self._fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync is FsyncPolicy.EVERY:
                os.fsync(self._fd)
        except OSError as exc:
            # Take back the partial object so the file stays a valid stream.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise CassetteError(f"{self.path}: cannot append: {exc.strerror or exc}") from exc
        return start

    def append(
        self, interaction: Interaction, streams: Mapping[str, PartStream] | None = None
    ) -> Interaction:
        """Redact, pack and write one interaction; return what was stored.

        ``streams``: the streams already written for it, by place
        (``"request"``, ``"response"``, ``"websocket"``). Whatever it holds in
        memory as chunks, a stored body or WebSocket messages is written as
        parts here first. Thread-safe; when it returns, the bytes are with the OS.
        """
        stored = self._redactor.redact(interaction) if self._redactor else interaction
        stored = _chunks_follow_redaction(interaction, stored)
        refs = {place: stream.ref for place, stream in (streams or {}).items()}
        with self._lock:
            if self._fd < 0:
                raise CassetteError(f"{self.path}: writer is closed")
            for place, pieces in _held_streams(stored, refs):
                stream = PartStream(self)
                for piece in pieces:
                    self._write_part(stream._part(*piece), stream.id)
                refs[place] = stream.ref
            if self.compression is not None:
                self._upgrade_header()  # an older reader says "upgrade" instead of misreading
            obj = interaction_to_object(stored, refs, self.compression)
            data = pack(obj)
            start = self._write_all(data)
            self._indexed(obj, start, len(data))
            self.count += 1
        return stored

    INLINE_BODY_LIMIT = 256 << 10
    """Interactions whose bodies together are this small may be appended on the event loop."""
    SLOW_INLINE = 0.02
    """An inline append slower than this (seconds) sends appends to the thread for a while.

    Wall time: on a busy machine a preempted loop looks slow too (at 5 ms the writer kept
    falling back to the thread under a load average of 12), so the bound is where disks stall.
    """
    _threaded_until = 0.0
    """Loop time before which every ``append_async`` goes to the writer thread."""

    async def append_async(
        self, interaction: Interaction, streams: Mapping[str, PartStream] | None = None
    ) -> Interaction:
        """``append`` awaited without holding the event loop on the disk.

        Interactions are written in the order their calls were made. Calls that
        arrive while a write is under way are handed to the writer thread
        together (group commit): one thread hop per batch instead of one per
        interaction, still one ``write`` and one outcome per interaction.

        A small interaction (no streams, bodies up to ``INLINE_BODY_LIMIT``)
        that finds the writer idle is appended right here instead: redaction
        and packing hold the GIL on whichever thread they run, the write to the
        page cache takes microseconds, and the hop to the thread and back (an
        executor item, two wake-ups) cost the recorder more CPU than all of
        them (issue 17). Its bytes are with the OS before this returns, as on
        the thread. An inline append slower than ``SLOW_INLINE`` (a stalled
        disk) sends appends to the thread for the next 10 s, so a slow disk
        holds the event loop once, not per request; ``fsync=every`` always
        uses the thread.
        """
        if self._may_append_inline(interaction, streams):
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                return self.append(interaction)
            finally:
                if loop.time() - started > self.SLOW_INLINE:
                    self._threaded_until = loop.time() + 10.0
        result: Interaction = await self._submit(lambda: self.append(interaction, streams))
        return result

    def _may_append_inline(
        self, interaction: Interaction, streams: Mapping[str, PartStream] | None
    ) -> bool:
        """True when appending on the caller's loop is cheap and keeps the order of appends."""
        if streams or self.fsync is FsyncPolicy.EVERY or self._pending or self._lock.locked():
            return False
        if self._flusher is not None and not self._flusher.done():
            return False  # a batch is on the writer thread: this one comes after it
        if asyncio.get_running_loop().time() < self._threaded_until:
            return False
        if interaction.websocket is not None or interaction.grpc is not None:
            return False
        size = 0
        for message in (interaction.request, interaction.response):
            if message is None:
                continue
            if message.chunks is not None or message.stored is not None:
                return False
            size += len(message.body or b"")
        return size <= self.INLINE_BODY_LIMIT

    async def _submit(self, work: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_pending())
        return await future

    async def _flush_pending(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="baton-writer")
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            outcomes = await loop.run_in_executor(
                self._executor, self._run_batch, [work for work, _ in batch]
            )
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller was cancelled meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _run_batch(self, items: list[Callable[[], Any]]) -> list[Any]:
        outcomes: list[Any] = []
        for work in items:
            try:
                outcomes.append(work())
            except Exception as exc:  # one failure must not sink the rest of the batch
                outcomes.append(exc)
        return outcomes

    def close(self) -> None:
        """Flush to stable storage (unless the policy is ``never``) and release the file.

        With ``discard_if_empty``, a file this writer created and never
        appended to is removed instead, while the lock is still held.
        """
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._run_left_over()
        with self._lock:
            if self._fd < 0:
                return
            try:
                if (
                    self._discard_if_empty
                    and self.created
                    and self.count == 0
                    and self._names_our_file()
                ):
                    os.unlink(self.path)
                    self.discarded = True
                else:
                    if self._changed:
                        self._write_index()
                    if self.fsync is not FsyncPolicy.NEVER:
                        os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1

    def _write_index(self) -> None:
        """Append the trailing index record (format 3 files only); the caller holds the lock.

        It is an optimisation, so failing to write it (a full disk) costs
        readers a scan, never the recording: the failure is logged.
        """
        if self._version < 3:
            return  # an older file stays readable by the baton that wrote it: no index, no upgrade
        try:
            self._write_all(self._index.record(os.lseek(self._fd, 0, os.SEEK_END)))
        except (CassetteError, OSError) as exc:
            logger.warning("%s: index record not written (%s); readers will scan", self.path, exc)

    def _run_left_over(self) -> None:
        """Write what ``append_async`` accepted but whose turn had not come when the loop stopped.

        A WebSocket's interaction is appended after its close already
        reached the client, so a proxy stopped right then may close the
        writer before the event loop hands that append to the writer
        thread; it is written here rather than dropped.
        """
        pending, self._pending = self._pending, []
        if not pending or self._fd < 0:
            return
        outcomes = self._run_batch([work for work, _ in pending])
        for (_, future), outcome in zip(pending, outcomes, strict=True):
            if future.done() or future.get_loop().is_closed():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def __enter__(self) -> CassetteWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_Piece = tuple[bytes, float, bool | None, bool | None]


def _held_streams(
    interaction: Interaction, written: Mapping[str, StreamRef]
) -> list[tuple[str, Iterable[_Piece]]]:
    """The streams ``interaction`` holds in memory (or in another file) that still need parts."""
    found: list[tuple[str, Iterable[_Piece]]] = []
    for place, message in (("request", interaction.request), ("response", interaction.response)):
        if message is None or place in written:
            continue
        if message.stored is not None:
            found.append(
                (place, ((c.data, c.offset_ms, None, None) for c in message.stored.chunks()))
            )
        elif message.chunks is not None:
            found.append((place, [(c.data, c.offset_ms, None, None) for c in message.chunks]))
    websocket = interaction.websocket
    if websocket is not None and "websocket" not in written:
        found.append(
            (
                "websocket",
                [(m.data, m.offset_ms, m.from_client, m.is_text) for m in websocket.messages],
            )
        )
    return found


def _chunks_follow_redaction(original: Interaction, redacted: Interaction) -> Interaction:
    """Keep ``chunks`` true to a body redaction changed.

    The redactor rewrites ``body``; chunk boundaries of a rewritten body are
    not known, so the pieces become one, at the time of the first. (Streams
    recorded live are scrubbed piece by piece instead, through
    ``open_stream(transform=...)``, and keep their boundaries.)
    """

    def follow(before: Request | Response | None, after: Request | Response | None) -> Any:
        if after is None or after.chunks is None or before is None or after.body == before.body:
            return after
        first = after.chunks[0].offset_ms if after.chunks else 0.0
        return replace(after, chunks=(Chunk(first, after.body or b""),))

    if redacted is original:
        return redacted
    return replace(
        redacted,
        request=follow(original.request, redacted.request),
        response=follow(original.response, redacted.response),
    )
