"""The fleet options of ``baton record`` (rotation, sampling, object storage) and the
observability options of ``record`` and ``replay`` (metrics, JSON logs), each gathered
into one value, and what ``record`` builds from them.

The command modules stay thin: ``record`` asks ``FleetRecording.prepare`` for a
writer factory, extra addons and a tick, and calls ``finish`` when the proxy
stops. The work is in ``proxy/rotation.py``, ``proxy/spool.py``,
``proxy/sampling.py``, ``proxy/metrics.py`` and ``proxy/structured_logging.py``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from baton.cassettes.locations import LocationError, is_url, parse_storage_options
from baton.proxy.cli.errors import InputError

__all__ = [
    "CassetteOutput",
    "FleetFlags",
    "FleetRecording",
    "ObservabilityFlags",
    "fleet_options",
    "observability_options",
    "replay_observers",
    "serve_replay_metrics",
]

logger = logging.getLogger(__name__)


class CassetteOutput(click.Path):
    """``record -o``: a cassette file, a directory prefix ending in ``/``, or an fsspec URL.

    A ``click.Path`` (so a configuration file's relative ``output`` is taken
    from the file's folder), except that a URL and a ``dir/`` prefix pass
    through as they are written; the value is always a ``str``.
    """

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = os.fspath(value)
        if is_url(text) or text.endswith("/"):
            return text
        return os.fspath(super().convert(value, param, ctx))


@dataclass(frozen=True)
class ObservabilityFlags:
    """``--metrics-port``, ``--metrics-host`` and ``--log-format`` as one value."""

    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"

    def start_logging(self, quiet: bool) -> None:
        """Switch stderr to JSON lines when asked (after ``configure_logging``)."""
        from baton.proxy.structured_logging import use_log_format

        use_log_format(self.log_format, quiet=quiet)

    def activate(self, quiet: bool) -> None:
        """``start_logging``, and make these the flags ``serve_replay_metrics`` serves by.

        One command runs per process; keeping the flags here spares the replay
        paths (fast, mitmproxy, gRPC) a parameter each.
        """
        global _ACTIVE
        _ACTIVE = self
        self.start_logging(quiet)

    def serve(self, metrics: Any) -> Any:
        """Serve ``metrics`` when ``--metrics-port`` was given; a busy port is exit 2."""
        if self.metrics_port is None:
            return None
        try:
            server = metrics.serve(self.metrics_host, self.metrics_port)
        except OSError as exc:
            raise InputError(
                f"--metrics-port {self.metrics_port}: cannot listen on {self.metrics_host}: "
                f"{exc.strerror or exc}"
            ) from exc
        click.echo(
            f"baton: metrics on http://{server.host}:{server.port}/metrics (health: /healthz)",
            err=True,
        )
        return server


_ACTIVE: ObservabilityFlags | None = None


def serve_replay_metrics(index: Callable[[], Any]) -> Any:
    """Serve replay's metrics (``--metrics-port``), read from ``index()`` when scraped."""
    flags = _ACTIVE
    if flags is None or flags.metrics_port is None:
        return None
    from baton.proxy.metrics import Metrics

    metrics = Metrics("replay")

    def hits() -> int:
        current = index()
        return int(current.hits) if current is not None else 0

    def misses() -> int:
        current = index()
        return len(current.misses) if current is not None else 0

    def recorded() -> int:
        current = index()
        return len(current) if current is not None else 0

    metrics.read("baton_interactions_served_total", "Requests answered from a cassette.", hits)
    metrics.read(
        "baton_misses_total",
        "Requests no recorded interaction matched (answered --miss-status).",
        misses,
    )
    metrics.read(
        "baton_interactions_loaded",
        "Interactions loaded from the cassettes.",
        recorded,
        kind="gauge",
    )
    metrics.health = lambda: {"loaded": recorded(), "served": hits(), "misses": misses()}
    global _REPLAY_METRICS
    _REPLAY_METRICS = metrics
    return flags.serve(metrics)


_REPLAY_METRICS: Any = None


def replay_observers() -> list[Any]:
    """The mitmproxy path's access records and per-host histograms, when asked for."""
    flags = _ACTIVE
    if flags is None or (flags.metrics_port is None and flags.log_format != "json"):
        return []

    return [_LateMetricsObserver(command="replay")]


class _LateMetricsObserver:
    """An ``ExchangeObserver`` whose metrics exist only once the proxy (and its index) started."""

    def __init__(self, command: str) -> None:
        from baton.proxy.metrics import ExchangeObserver

        self._observer = ExchangeObserver(None, command=command)

    def response(self, flow: Any) -> None:
        self._observer.metrics = _REPLAY_METRICS
        self._observer.response(flow)

    def error(self, flow: Any) -> None:
        self._observer.metrics = _REPLAY_METRICS
        self._observer.error(flow)


def observability_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--metrics-port``, ``--metrics-host``, ``--log-format``, handed over as ``observability``."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = ObservabilityFlags(
            metrics_port=kwargs.pop("metrics_port"),
            metrics_host=kwargs.pop("metrics_host"),
            log_format=kwargs.pop("log_format"),
        )
        command(*args, observability=flags, **kwargs)

    decorators = [
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            default=None,
            metavar="PORT",
            help="Serve Prometheus metrics at /metrics and a health check at /healthz on this "
            "port (0 picks a free one).",
        ),
        click.option(
            "--metrics-host",
            default="127.0.0.1",
            show_default=True,
            help="Address the metrics port binds (metrics name hosts and paths: keep it local "
            "unless a scraper elsewhere needs it).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="json: one JSON object per line on stderr, with an access record per exchange "
            "carrying its trace id (traceparent, B3).",
        ),
    ]
    decorated: Callable[..., None] = with_flags
    for decorator in reversed(decorators):
        decorated = decorator(decorated)
    return decorated


@dataclass(frozen=True)
class FleetFlags:
    """The rotation, sampling and storage options of ``baton record``."""

    rotate_size: int | None = None
    rotate_interval: float | None = None
    shard_pattern: str | None = None
    sample: float | None = None
    sample_key: str = "trace"
    per_endpoint_limit: int | None = None
    spool: Path | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    upload_retry_max: float = 30.0
    upload_wait: float = 30.0

    def shards(self, output: str) -> bool:
        """True when ``-o`` is recorded as shards (a directory, a prefix, a URL, or rotation)."""
        return (
            self.rotate_size is not None
            or self.rotate_interval is not None
            or output.endswith("/")
            or is_url(output)
        )


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from baton.proxy.stream_recording import parse_size

    if value is None:
        return None
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise InputError(f"--{param.name.replace('_', '-')}: {exc}") from exc  # type: ignore[union-attr]
    if size <= 0:
        raise InputError(f"--{param.name.replace('_', '-')}: must be above zero")  # type: ignore[union-attr]
    return size


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from baton.proxy.rotation import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InputError(f"--{(param.name or '').replace('_', '-')}: {exc}") from exc


def _storage(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, Any]:
    try:
        return parse_storage_options(value)
    except LocationError as exc:
        raise InputError(str(exc)) from exc


def fleet_options(command: Callable[..., None]) -> Callable[..., None]:
    """The fleet options of ``record``, handed over as ``fleet: FleetFlags``."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = FleetFlags(
            rotate_size=kwargs.pop("rotate_size"),
            rotate_interval=kwargs.pop("rotate_interval"),
            shard_pattern=kwargs.pop("shard_pattern"),
            sample=kwargs.pop("sample"),
            sample_key=kwargs.pop("sample_key"),
            per_endpoint_limit=kwargs.pop("per_endpoint_limit"),
            spool=kwargs.pop("spool"),
            storage_options=kwargs.pop("storage_option"),
            upload_retry_max=kwargs.pop("upload_retry_max") or 30.0,
            upload_wait=kwargs.pop("upload_wait") or 30.0,
        )
        command(*args, fleet=flags, **kwargs)

    decorators = [
        click.option(
            "--rotate-size",
            metavar="SIZE",
            callback=_size,
            help="Close the shard at this size (e.g. 256MB) and start the next; -o then names "
            "a directory or a prefix ending in /.",
        ),
        click.option(
            "--rotate-interval",
            metavar="DURATION",
            callback=_duration,
            help="Close the shard after this long (e.g. 1h, 15m) and start the next.",
        ),
        click.option(
            "--shard-pattern",
            metavar="PATTERN",
            help="Shard file names [default: {name}.{host}.{pid}.{start:%Y%m%dT%H%M%SZ}."
            "{seq:04d}.cassette; name: the -o directory's name].",
        ),
        click.option(
            "--sample",
            type=click.FloatRange(0, 1, min_open=True),
            metavar="FRACTION",
            help="Keep this fraction of exchanges (e.g. 0.1), chosen by a hash of --sample-key: "
            "every recorder keeps the same ones.",
        ),
        click.option(
            "--sample-key",
            default="trace",
            show_default=True,
            metavar="KEY",
            help="What --sample hashes: trace (traceparent or B3 trace id), header:NAME, "
            "method, host, path, query, url, joined with + (e.g. method+path).",
        ),
        click.option(
            "--per-endpoint-limit",
            type=click.IntRange(1),
            metavar="N",
            help="Keep at most N exchanges per endpoint (method, host, path) in each shard.",
        ),
        click.option(
            "--spool",
            type=click.Path(file_okay=False, path_type=Path),
            help="Local directory for shards until they are uploaded (-o URL) "
            "[default: ~/.cache/baton/spool/...].",
        ),
        click.option(
            "--storage-option",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_storage,
            help="An fsspec option of the -o store (e.g. endpoint_url=http://127.0.0.1:9000); "
            "credentials come from the environment (AWS_*).",
        ),
        click.option(
            "--upload-retry-max",
            metavar="DURATION",
            callback=_duration,
            help="Longest wait between attempts of a failing upload (doubling from 0.5s) "
            "[default: 30s].",
        ),
        click.option(
            "--upload-wait",
            metavar="DURATION",
            callback=_duration,
            help="At stop, wait this long for uploads; what is left stays in the spool for the "
            "next run [default: 30s].",
        ),
    ]
    decorated: Callable[..., None] = with_flags
    for decorator in reversed(decorators):
        decorated = decorator(decorated)
    return decorated


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
