"""The spool: closed shards waiting on local disk until object storage has them.

``-o s3://bucket/prefix/`` records into shards in a local spool directory;
each closed shard is handed to ``Spool.add`` and uploaded by one background
thread with fsspec. Why it is built this way:

* Traffic never waits on storage: the proxy only ever writes local files,
  and an upload is a queue entry for another thread.
* A failed upload is retried with exponential backoff (0.5 s doubling to
  ``backoff_max``), for as long as the recorder runs: a store that is down
  for an hour gets every shard once it is back. Each failed attempt is
  counted (``baton_upload_failures_total``); the shard stays in the spool.
* The spool is the record of what is not yet stored: a shard is deleted
  only after its upload returned, so a recorder killed mid-upload, or
  stopped while the store is down, leaves its shards there, and the next
  recorder started on the same spool uploads them first (``scan``).
  A shard still locked by a live recorder (the writer's ``flock``) is left
  alone: it is not closed yet.
* A shard is put under its final name: an S3 put is atomic, so a reader
  listing the prefix sees a shard whole or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Spool", "SpoolStats", "check_destination", "default_spool_dir"]

logger = logging.getLogger(__name__)


def default_spool_dir(destination: str) -> Path:
    """A spool directory of this destination's own under the user cache dir."""
    import hashlib

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(destination.encode()).hexdigest()[:16]
    return Path(base) / "baton" / "spool" / digest


def check_destination(destination: str, storage_options: Mapping[str, Any]) -> str | None:
    """Why ``destination`` cannot be written to, in one line; None when the store answers.

    Run once at start, so a misspelled bucket or missing credentials stop the
    recorder before it listens (exit 2) instead of filling the spool silently.
    """
    from baton.cassettes.locations import LocationError, filesystem_for

    try:
        fs, path = filesystem_for(destination, {**_fail_fast(destination), **storage_options})
    except LocationError as exc:
        return str(exc)
    root = path.strip("/").split("/", 1)[0]
    try:
        fs.info(root)  # the bucket itself: one request, however much it holds
    except FileNotFoundError:
        return f"{destination}: the bucket {root!r} does not exist or is not visible"
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return f"{destination}: cannot reach the store: {message}"
    return None


@dataclass
class SpoolStats:
    """What the spool did so far (read by the metrics and the summary)."""

    uploaded: int = 0
    uploaded_bytes: int = 0
    failures: int = 0
    """Failed upload attempts (each retry counts)."""
    waiting: int = 0
    waiting_bytes: int = 0


class Spool:
    """Upload closed shards from ``directory`` to ``destination`` (a prefix URL), in order."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        destination: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        backoff_max: float = 30.0,
        on_uploaded: Callable[[Path, str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.destination = destination if destination.endswith("/") else destination + "/"
        self.storage_options = dict(storage_options or {})
        self.backoff_max = backoff_max
        self.stats = SpoolStats()
        self._on_uploaded = on_uploaded
        self._queue: list[Path] = []
        self._sizes: dict[Path, int] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._run, name="baton-upload", daemon=True)
        self._fs: Any = None

    def start(self) -> None:
        """Queue what an earlier recorder left in the spool, then start uploading."""
        self.scan()
        self._thread.start()

    def scan(self) -> int:
        """Queue the closed shards lying in the spool; return how many were found."""
        found = 0
        for path in sorted(self.directory.glob("*.cassette")):
            if path in self._sizes or _locked(path):
                continue
            self.add(path)
            found += 1
        if found:
            logger.info("baton: %d shards from an earlier run are in the spool", found)
        return found

    def add(self, path: Path) -> None:
        """Queue a closed shard for upload (any thread)."""
        try:
            size = path.stat().st_size
        except OSError:
            return
        with self._cond:
            if path in self._sizes:
                return
            self._queue.append(path)
            self._sizes[path] = size
            self.stats.waiting += 1
            self.stats.waiting_bytes += size
            self._cond.notify_all()

    def stop(self, timeout: float) -> int:
        """Stop after uploading what is queued, waiting at most ``timeout`` s; return shards left."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
        with self._cond:
            return len(self._queue)

    def _filesystem(self) -> tuple[Any, str]:
        from baton.cassettes.locations import filesystem_for

        # A client of its own, made again after a failure: a store that restarted is met
        # with fresh connections, not the pool of the one that went away.
        options = {**_fail_fast(self.destination), **self.storage_options}
        options["skip_instance_cache"] = True
        fs, root = filesystem_for(self.destination, options)
        return fs, root.rstrip("/")

    def _run(self) -> None:
        delay = 0.5
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue or self._past_deadline():
                    return
                path = self._queue[0]
            try:
                self._upload(path)
            except Exception as exc:
                with self._cond:
                    self.stats.failures += 1
                    failures = self.stats.failures
                logger.warning(
                    "baton: upload of %s failed (attempt %d; retry in %.1fs; it stays in %s): %s",
                    path.name,
                    failures,
                    delay,
                    self.directory,
                    " ".join(str(exc).split()) or type(exc).__name__,
                )
                self._fs = None  # a fresh client next time (endpoints come back on new ports)
                with self._cond:
                    self._cond.wait_for(lambda: self._past_deadline(), timeout=delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = 0.5
            with self._cond:
                self._queue.pop(0)
                size = self._sizes.pop(path, 0)
                self.stats.waiting -= 1
                self.stats.waiting_bytes -= size
                self.stats.uploaded += 1
                self.stats.uploaded_bytes += size

    def _past_deadline(self) -> bool:
        return self._stopping and self._deadline is not None and time.monotonic() >= self._deadline

    def _upload(self, path: Path) -> None:
        if not path.exists():
            return  # uploaded and removed by an earlier attempt that failed after the put
        if self._fs is None:
            self._fs, self._root = self._filesystem()
            with contextlib.suppress(AttributeError):
                self._fs.invalidate_cache()
        target = f"{self._root}/{path.name}"
        self._fs.put_file(str(path), target)
        url = self._fs.unstrip_protocol(target)
        if self._on_uploaded is not None:
            self._on_uploaded(path, url)
        logger.info("baton: uploaded %s to %s", path.name, url)
        path.unlink()


def _fail_fast(destination: str) -> dict[str, Any]:
    """Storage options that make one upload attempt give up soon: the spool retries itself.

    botocore retries up to five times inside one call, so an unreachable
    store would hold one attempt for tens of seconds, with nothing counted.
    ``--storage-option config_kwargs=...`` overrides it.
    """
    if destination.split("://", 1)[0] not in ("s3", "s3a"):
        return {}
    return {
        "config_kwargs": {
            "connect_timeout": 5,
            "read_timeout": 60,
            "retries": {"max_attempts": 1, "mode": "standard"},
        },
    }


def _locked(path: Path) -> bool:
    """True while a live writer holds the shard's lock (it is not closed yet)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)
    return False
