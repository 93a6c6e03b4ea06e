"""The fleet options of ``baton record`` (rotation, sampling, object storage), gathered into
one value (``FleetFlags``), and ``-o``'s type (``CassetteOutput``).

What ``record`` builds from them is ``proxy/cli/fleet_recording.py``; the
metrics and log options of record and replay are ``proxy/cli/observability.py``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from baton.cassettes.locations import LocationError, is_url, parse_storage_options
from baton.proxy.cli.errors import InputError

# The metrics and log options live in observability.py; named here too for the modules
# that took them from here (load.py).
from baton.proxy.cli.observability import ObservabilityFlags, observability_options

__all__ = [
    "CassetteOutput",
    "FleetFlags",
    "ObservabilityFlags",
    "fleet_options",
    "observability_options",
]


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
