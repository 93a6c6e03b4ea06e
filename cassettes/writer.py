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
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from baton.cassettes.codec import interaction_to_object, make_header, pack
from baton.cassettes.errors import CassetteError, CassetteLockedError, CassetteTornError
from baton.cassettes.model import Interaction
from baton.cassettes.reader import CassetteReader
from baton.cassettes.redaction import Redactor

__all__ = ["CassetteWriter", "FsyncPolicy"]


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
    ) -> None:
        """Open ``path`` for appending, creating it with a header if it is new or empty.

        ``redactor`` is required as an argument so that writing without
        redaction is a visible decision (``redactor=None``), never a default.
        ``discard_if_empty``: ``close`` removes the file again if this writer
        created it and appended nothing (a file that existed is never removed).
        """
        self.path = Path(path)
        self.fsync = FsyncPolicy(fsync)
        self._redactor = redactor
        self._discard_if_empty = discard_if_empty
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Interaction, asyncio.Future[Interaction]]] = []
        self._flusher: asyncio.Task[None] | None = None
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
                self._check_tail()
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

    def _check_tail(self) -> None:
        # Reading to the end also validates the header and every object, so a
        # foreign or damaged file is refused before anything is added to it.
        with CassetteReader(self.path, warn_torn=False) as reader:
            for _ in reader.objects():
                pass
            if reader.torn_at is not None:
                raise CassetteTornError(
                    f"{self.path}: ends in a torn object at byte {reader.torn_at}; "
                    f"run `baton repair {self.path}` before recording into it"
                )

    def _write_all(self, data: bytes) -> None:
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

    def append(self, interaction: Interaction) -> Interaction:
        """Redact, pack and write one interaction; return what was stored.

        Thread-safe. When it returns, the bytes are with the OS.
        """
        stored = self._redactor.redact(interaction) if self._redactor else interaction
        data = pack(interaction_to_object(stored))
        with self._lock:
            if self._fd < 0:
                raise CassetteError(f"{self.path}: writer is closed")
            self._write_all(data)
            self.count += 1
        return stored

    async def append_async(self, interaction: Interaction) -> Interaction:
        """``append`` on the writer thread, awaited without blocking the event loop.

        Interactions are written in the order their calls were made. Calls that
        arrive while a write is under way are handed to the writer thread
        together (group commit): one thread hop per batch instead of one per
        interaction, still one ``write`` and one outcome per interaction.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Interaction] = loop.create_future()
        self._pending.append((interaction, future))
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
                self._executor, self._append_batch, [item for item, _ in batch]
            )
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller was cancelled meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _append_batch(self, items: list[Interaction]) -> list[Interaction | BaseException]:
        outcomes: list[Interaction | BaseException] = []
        for item in items:
            try:
                outcomes.append(self.append(item))
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
                elif self.fsync is not FsyncPolicy.NEVER:
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> CassetteWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
