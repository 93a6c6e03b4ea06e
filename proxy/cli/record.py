"""``baton record``: a proxy that records every exchange through it into a cassette."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from baton.cassettes.compression import BodyCompression
from baton.cassettes.writer import FsyncPolicy
from baton.proxy.cli.contract import live_checks, live_summary, spec_option
from baton.proxy.cli.errors import InputError
from baton.proxy.cli.fidelity import record_state_options
from baton.proxy.cli.fleet import CassetteOutput, FleetFlags, fleet_options
from baton.proxy.cli.fleet_recording import FleetRecording
from baton.proxy.cli.grpc import GrpcFlags, grpc_options
from baton.proxy.cli.grpc_run import record_grpc
from baton.proxy.cli.observability import ObservabilityFlags, observability_options
from baton.proxy.cli.options import (
    RedactionFlags,
    compression_option,
    configure_logging,
    listen_options,
    mitmproxy_options,
    mode_option,
    redaction_options,
)

__all__ = ["record"]


@click.command()
@click.option(
    "-o",
    "--output",
    "cassette",
    required=True,
    type=CassetteOutput(),
    help="Cassette to append to (created if missing); with rotation a directory, a prefix "
    "ending in /, or a URL (s3://bucket/prefix/, any fsspec URL) for the shards.",
)
@mode_option(
    default="regular",
    help="mitmproxy mode: regular, reverse:URL, upstream:URL, transparent, socks5. Repeatable.",
)
@listen_options
@redaction_options
@click.option(
    "--only-host", multiple=True, metavar="GLOB", help="Record only these hosts (e.g. *.internal)."
)
@click.option("--only-path", multiple=True, metavar="GLOB", help="Record only these paths.")
@click.option(
    "--fsync",
    type=click.Choice([p.value for p in FsyncPolicy]),
    default=FsyncPolicy.CLOSE.value,
    show_default=True,
    help="fsync after every interaction, on close, or never.",
)
@click.option(
    "--stream-threshold",
    default="16MiB",
    show_default=True,
    metavar="SIZE",
    callback=lambda ctx, param, value: _size(value),
    help="Bodies longer than this (e.g. 16MB, 512KB, 1GB) pass through and are written in "
    "pieces, never held whole; server-sent events and bodies without a length always are.",
)
@compression_option
@record_state_options
@fleet_options
@observability_options
@spec_option
@grpc_options(record=True)
@mitmproxy_options("Any mitmproxy option, as with mitmdump --set.")
def record(
    cassette: str,
    modes: tuple[str, ...],
    listen_host: str,
    listen_port: int,
    redaction: RedactionFlags,
    only_host: tuple[str, ...],
    only_path: tuple[str, ...],
    fsync: str,
    stream_threshold: str,
    compression: BodyCompression | None,
    state_options: dict[str, object],
    spec: Path | None,
    extra: tuple[str, ...],
    verbose: int,
    quiet: bool,
    fleet: FleetFlags,
    observability: ObservabilityFlags,
    grpc: GrpcFlags,
) -> None:
    """Run a proxy that records every exchange through it into CASSETTE.

    Secrets are redacted before anything is written. Stop with Ctrl-C or
    SIGTERM: everything recorded is already on disk.

    \b
    Example (reverse proxy in front of a service on port 8000):
      baton record -o api.cassette --mode reverse:http://127.0.0.1:8000 --listen-port 9000
      curl http://127.0.0.1:9000/items

    gRPC on an insecure channel (h2c): --mode reverse:h2c://HOST:PORT (docs/grpc.md).
    """
    if any(m.startswith(("reverse:h2c://", "reverse:grpc://", "reverse:grpcs://")) for m in modes):
        configure_logging(verbose, quiet)
        record_grpc(
            cassette,
            modes[0],
            listen_host,
            listen_port,
            redaction.redactor(),
            grpc,
            fsync,
            quiet,
            compression=compression,
        )
        return
    from baton.proxy.recorder import Recorder
    from baton.proxy.running import ProxySettings, ProxyStartupError, run_proxy
    from baton.proxy.status import RecordingStatus

    configure_logging(verbose, quiet)
    observability.start_logging(quiet)
    # Rotation, sampling, object storage, metrics: checked here, exit 2 before listening.
    fleet_recording = FleetRecording.prepare(cassette, fleet, observability)
    settings = ProxySettings(
        modes=modes,
        listen_host=listen_host,
        listen_port=listen_port,
        extra=extra,
        options={
            **_connection_strategy(modes),
            **redaction.addon_options(),
            "baton_only_hosts": list(only_host),
            "baton_only_paths": list(only_path),
            "baton_fsync": fsync,
            "baton_stream_threshold": stream_threshold,
            "baton_compress": str(compression) if compression else "none",
            # Writes counted per session, for stateful replay (replay/state.py).
            **state_options,
            # Last, so the writer opens once, with every rule in place.
            "baton_cassette": fleet_recording.cassette_option,
        },
    )
    recorder = Recorder(open_writer=fleet_recording.open_writer)
    checks = live_checks(spec)
    status = RecordingStatus(recorder, fleet_recording.location, quiet=quiet)

    def tick() -> None:
        status.tick()
        fleet_recording.tick()

    addons = [*fleet_recording.addons_before(), recorder, *checks, *fleet_recording.addons_after()]
    fleet_recording.start(recorder)
    try:
        asyncio.run(run_proxy(settings, addons, status.ready, tick))
    except ProxyStartupError as exc:
        raise InputError(str(exc)) from exc
    finally:
        recorder.done()
        status.stop()
        fleet_recording.finish(quiet)
    status.summary()
    live_summary(checks)
    if recorder.failed:
        sys.exit(1)


def _size(value: str) -> str:
    """``--stream-threshold`` checked here, so a bad size is one line and exit 2."""
    from baton.proxy.stream_recording import parse_size

    try:
        parse_size(value)
    except ValueError as exc:
        raise InputError(f"--stream-threshold: {exc}") from exc
    return value


def _connection_strategy(modes: tuple[str, ...]) -> dict[str, object]:
    """mitmproxy options that let a refused upstream still be recorded, where that is safe.

    In reverse mode mitmproxy's default ("eager") connects upstream as soon as
    the client connects, and a refused connection is then dropped before any
    request is read: there is nothing to record. "lazy" reads the request
    first, so the failure is recorded with its error. In regular mode eager is
    kept: it learns the server's TLS details and HTTP/2 support before
    answering the client, and plain-HTTP requests are read before connecting
    anyway. ``--set connection_strategy=...`` overrides either choice.
    """
    if modes and all(mode.startswith("reverse:") for mode in modes):
        return {"connection_strategy": "lazy"}
    return {}
