"""``baton record``: a proxy that records every exchange through it into a cassette."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from baton.cassettes.writer import FsyncPolicy
from baton.proxy.cli.contract import live_checks, live_summary, spec_option
from baton.proxy.cli.errors import InputError
from baton.proxy.cli.options import (
    RedactionFlags,
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
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cassette to append to (created if missing).",
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
@spec_option
@mitmproxy_options("Any mitmproxy option, as with mitmdump --set.")
def record(
    cassette: Path,
    modes: tuple[str, ...],
    listen_host: str,
    listen_port: int,
    redaction: RedactionFlags,
    only_host: tuple[str, ...],
    only_path: tuple[str, ...],
    fsync: str,
    stream_threshold: str,
    spec: Path | None,
    extra: tuple[str, ...],
    verbose: int,
    quiet: bool,
) -> None:
    """Run a proxy that records every exchange through it into CASSETTE.

    Secrets are redacted before anything is written. Stop with Ctrl-C or
    SIGTERM: everything recorded is already on disk.

    \b
    Example (reverse proxy in front of a service on port 8000):
      baton record -o api.cassette --mode reverse:http://127.0.0.1:8000 --listen-port 9000
      curl http://127.0.0.1:9000/items
    """
    from baton.proxy.recorder import Recorder
    from baton.proxy.running import ProxySettings, ProxyStartupError, run_proxy
    from baton.proxy.status import RecordingStatus

    configure_logging(verbose, quiet)
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
            # Last, so the writer opens once, with every rule in place.
            "baton_cassette": str(cassette),
        },
    )
    recorder = Recorder()
    checks = live_checks(spec)
    status = RecordingStatus(recorder, cassette, quiet=quiet)
    try:
        asyncio.run(run_proxy(settings, [recorder, *checks], status.ready, status.tick))
    except ProxyStartupError as exc:
        raise InputError(str(exc)) from exc
    finally:
        recorder.done()
        status.stop()
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
