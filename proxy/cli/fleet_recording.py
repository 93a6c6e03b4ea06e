"""What ``baton record`` runs besides the Recorder for a fleet: shards, spool, sampling,
metrics, logs (``FleetRecording``).

``record`` asks ``FleetRecording.prepare`` for a writer factory, extra addons
and a tick, and calls ``finish`` when the proxy stops. The work is in
``proxy/rotation.py``, ``proxy/spool.py``, ``proxy/sampling.py`` and
``proxy/metrics.py``; the flags are in ``proxy/cli/fleet.py`` and
``proxy/cli/observability.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click

from baton.cassettes.locations import is_url
from baton.proxy.cli.errors import InputError
from baton.proxy.cli.fleet import FleetFlags
from baton.proxy.cli.observability import ObservabilityFlags

__all__ = ["FleetRecording"]

logger = logging.getLogger(__name__)


class FleetRecording:
    """What ``record`` runs besides the Recorder: shards, spool, sampling, metrics, logs."""

    def __init__(self, output: str, fleet: FleetFlags, observability: ObservabilityFlags) -> None:
        self.output = output
        self.fleet = fleet
        self.observability = observability
        self.sharded = fleet.shards(output)
        self.remote = is_url(output) and not output.startswith("file://")
        self.writer: Any = None
        self.spool: Any = None
        self.sampling: Any = None
        self.metrics: Any = None
        self.metrics_server: Any = None
        self.namer: Any = None
        self.directory: Path | None = None
        self.recorder: Any = None
        self._observer: Any = None

    @classmethod
    def prepare(
        cls, output: str, fleet: FleetFlags, observability: ObservabilityFlags
    ) -> FleetRecording:
        """Check every setting (exit 2 on a bad one, before anything listens) and set up."""
        self = cls(output, fleet, observability)
        from baton.proxy.rotation import DEFAULT_PATTERN, ShardNamer
        from baton.proxy.sampling import Sampler, SamplingAddon

        if fleet.sample is not None or fleet.per_endpoint_limit is not None:
            try:
                sampler = Sampler(fleet.sample or 1.0, fleet.sample_key, fleet.per_endpoint_limit)
            except ValueError as exc:
                raise InputError(str(exc)) from exc
            self.sampling = SamplingAddon(sampler)
        if not self.sharded:
            for name, given in (
                ("--spool", fleet.spool),
                ("--shard-pattern", fleet.shard_pattern),
            ):
                if given is not None:
                    raise InputError(
                        f"{name} is for sharded recording: give -o a directory, a prefix "
                        "ending in /, or a URL, or --rotate-size/--rotate-interval"
                    )
            return self
        if self.remote:
            from baton.proxy.spool import check_destination, default_spool_dir

            problem = check_destination(output, fleet.storage_options)
            if problem is not None:
                raise InputError(problem)
            self.directory = fleet.spool or default_spool_dir(output)
        else:
            if fleet.spool is not None:
                raise InputError("--spool is for -o URLs; a local -o is written in place")
            local = output.removeprefix("file://")
            self.directory = Path(local)
        name = _service_name(output)
        try:
            self.namer = ShardNamer(fleet.shard_pattern or DEFAULT_PATTERN, name=name)
        except ValueError as exc:
            raise InputError(f"--shard-pattern: {exc}") from exc
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.directory}: cannot create: {exc.strerror or exc}") from exc
        if self.remote:
            from baton.proxy.spool import Spool

            self.spool = Spool(
                self.directory,
                output,
                storage_options=fleet.storage_options,
                backoff_max=fleet.upload_retry_max,
            )
        return self

    @property
    def location(self) -> str:
        """What the start and summary lines name."""
        if self.remote:
            return f"{self.output} (spool {self.directory})"
        return str(self.directory) if self.directory is not None else self.output

    @property
    def cassette_option(self) -> str:
        """The ``baton_cassette`` option: the cassette, or the shards' directory."""
        return str(self.directory) if self.directory is not None else self.output

    def open_writer(self, path: str, **kwargs: Any) -> Any:
        """The Recorder's writer factory: a ``RotatingWriter``, or a ``CassetteWriter``."""
        from baton.cassettes.errors import CassetteError
        from baton.cassettes.writer import CassetteWriter
        from baton.proxy.rotation import RotatingWriter, RotationPolicy

        meta = dict(kwargs.pop("meta", None) or {})
        if self.sampling is not None:
            meta["sampling"] = self.sampling.sampler.describe()
        if not self.sharded:
            return CassetteWriter(path, meta=meta, **kwargs)
        kwargs.pop("discard_if_empty", None)
        if self.namer is not None:
            meta["shard_name"] = self.namer.name
        try:
            self.writer = RotatingWriter(
                path,
                redactor=kwargs.pop("redactor"),
                fsync=kwargs.pop("fsync"),
                namer=self.namer,
                policy=RotationPolicy(self.fleet.rotate_size, self.fleet.rotate_interval),
                meta=meta,
                on_closed=self._closed,
                on_rotate=self._rotated,
                compression=kwargs.pop("compression", None),
            )
        except OSError as exc:
            raise CassetteError(f"{path}: cannot open a shard: {exc.strerror or exc}") from exc
        return self.writer

    def _closed(self, path: Path) -> None:
        if self.spool is not None:
            self.spool.add(path)
        logger.info("baton: shard closed: %s", path.name)

    def _rotated(self) -> None:
        if self.sampling is not None:
            self.sampling.reset()

    def addons_before(self) -> list[Any]:
        """Addons that must see a flow before the Recorder (the sampler)."""
        return [self.sampling] if self.sampling is not None else []

    def start(self, recorder: Any) -> None:
        """Start uploading (what an earlier run left first) and serving metrics."""
        self.recorder = recorder
        if self.spool is not None:
            self.spool.start()
        if self.observability.metrics_port is not None:
            self.metrics = self._record_metrics(recorder)
            if self._observer is not None:
                self._observer.metrics = self.metrics
            self.metrics_server = self.observability.serve(self.metrics)

    def addons_after(self) -> list[Any]:
        """The addon that counts per host and writes access records, when either is asked for."""
        from baton.proxy.metrics import ExchangeObserver

        if self.observability.metrics_port is None and self.observability.log_format != "json":
            return []
        self._observer = ExchangeObserver(None, command="record")
        return [self._observer]

    def tick(self) -> None:
        """A few times a second, on the proxy's loop: rotate a shard whose time is up."""
        if self.writer is not None:
            self.writer.tick()

    def finish(self, quiet: bool) -> int:
        """Close the metrics port; wait for uploads; return the shards left in the spool."""
        left = 0
        if self.spool is not None:
            left = self.spool.stop(self.fleet.upload_wait)
            if left:
                click.echo(
                    f"baton: {left} shards not uploaded yet stay in {self.directory}; a recorder "
                    f"started with the same -o (and --spool) uploads them",
                    err=True,
                )
            elif not quiet:
                click.echo(
                    f"baton: uploaded {self.spool.stats.uploaded} shards to {self.output}",
                    err=True,
                )
        if self.metrics_server is not None:
            self.metrics_server.close()
        return left

    def _record_metrics(self, recorder: Any) -> Any:
        from baton.proxy.metrics import Metrics

        metrics = Metrics("record")
        read = metrics.read
        read(
            "baton_interactions_recorded_total",
            "Interactions written to the cassette or its shards.",
            lambda: recorder.recorded,
        )
        read(
            "baton_write_failures_total",
            "Interactions that could not be written (the traffic went on).",
            lambda: recorder.failed,
        )
        read(
            "baton_skipped_total",
            "Exchanges left out by --only-host/--only-path filters and sampling.",
            lambda: recorder.skipped,
        )
        if self.sampling is not None:
            for decision in ("sampled_out", "over_limit"):
                read(
                    "baton_sampled_out_total",
                    "Exchanges left out by --sample (sampled_out) or --per-endpoint-limit "
                    "(over_limit).",
                    lambda d=decision: self._sample_count(d),
                    reason=decision,
                )
        read(
            "baton_write_queue_depth",
            "Interactions handed to the writer and not yet on disk.",
            lambda: self._queue_depth(),
            kind="gauge",
        )
        if self.sharded:
            read(
                "baton_shards_rotated_total",
                "Shards closed because they reached --rotate-size or --rotate-interval.",
                lambda: self.writer.rotations if self.writer is not None else 0,
            )
            read(
                "baton_shard_open_failures_total",
                "Next shards that could not be opened (recording went on in the current one).",
                lambda: self.writer.failures if self.writer is not None else 0,
            )
        if self.spool is not None:
            stats = self.spool.stats
            read("baton_uploads_total", "Shards uploaded.", lambda: stats.uploaded)
            read(
                "baton_uploaded_bytes_total",
                "Bytes of shards uploaded.",
                lambda: stats.uploaded_bytes,
            )
            read(
                "baton_upload_failures_total",
                "Failed upload attempts (each retry counts); the shard stays in the spool.",
                lambda: stats.failures,
            )
            read(
                "baton_spool_shards",
                "Closed shards waiting in the spool for upload.",
                lambda: stats.waiting,
                kind="gauge",
            )
            read(
                "baton_spool_bytes",
                "Bytes of closed shards waiting in the spool.",
                lambda: stats.waiting_bytes,
                kind="gauge",
            )
        metrics.health = self._health
        return metrics

    def _sample_count(self, decision: str) -> int:
        from baton.proxy.sampling import SampleDecision

        return int(self.sampling.counts[SampleDecision(decision)])

    def _queue_depth(self) -> int:
        writer = self.writer if self.writer is not None else getattr(self.recorder, "_writer", None)
        if writer is None:
            return 0
        depth = getattr(writer, "queue_depth", None)
        if depth is not None:
            return int(depth)
        return len(getattr(writer, "_pending", ()))

    def _health(self) -> dict[str, Any]:
        state: dict[str, Any] = {"recorded": self.recorder.recorded, "failed": self.recorder.failed}
        if self.writer is not None:
            state["shard"] = self.writer.path.name
        if self.spool is not None:
            state["spool_shards"] = self.spool.stats.waiting
            state["upload_failures"] = self.spool.stats.failures
        return state


def _service_name(output: str) -> str:
    """The ``{name}`` of shard names: the last segment of the -o directory or prefix."""
    text = output.split("://", 1)[-1].rstrip("/")
    last = text.rsplit("/", 1)[-1] if "/" in text else text
    if "://" in output and "/" not in text:
        last = ""  # s3://bucket/ alone: the bucket is no service name
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in last).strip(".-")
    return cleaned or os.environ.get("BATON_SERVICE_NAME", "") or "baton"
