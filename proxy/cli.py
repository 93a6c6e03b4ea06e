"""The ``baton`` command line: thin commands over the library.

Each command parses its arguments, calls one library function and renders
the result. Every user error — a missing file, a corrupt cassette, a bad
flag, a port in use — ends as one line on stderr and exit code 2, without a
traceback (click's convention for usage errors, extended to input errors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from cassettes.display import interaction_to_json, render_interaction
from cassettes.errors import CassetteError, RedactionError
from cassettes.reader import CassetteReader
from cassettes.repair import repair as repair_cassette
from cassettes.writer import FsyncPolicy

__all__ = ["main"]


class InputError(click.ClickException):
    """A user error that is not a wrong flag: a bad file, an unusable setting. Exit code 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"baton: error: {self.format_message()}", err=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except (CassetteError, RedactionError) as exc:
        raise InputError(str(exc)) from exc


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-connection chatter from mitmproxy's internals only with -vv.
    for noisy in ("mitmproxy.proxy", "hpack", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="baton-replay", prog_name="baton")
def main() -> None:
    """Record HTTP traffic between services into cassettes, and use them.

    \b
    Record:  baton record -o api.cassette --mode reverse:http://127.0.0.1:8000
    Look:    baton show api.cassette
    Mend:    baton repair api.cassette
    """


# -- record ---------------------------------------------------------------------


@main.command()
@click.option(
    "-o",
    "--output",
    "cassette",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cassette to append to (created if missing).",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    default=["regular"],
    show_default=True,
    metavar="MODE",
    help="mitmproxy mode: regular, reverse:URL, upstream:URL, transparent, socks5. Repeatable.",
)
@click.option("--listen-host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--listen-port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to bind; 0 picks a free one (printed at start).",
)
@click.option("--redact-header", multiple=True, metavar="NAME", help="Also redact this header.")
@click.option(
    "--redact-field",
    multiple=True,
    metavar="NAME",
    help="Also redact query, form and JSON fields of this name.",
)
@click.option(
    "--redact-json-path", multiple=True, metavar="PATH", help="Also redact this JSON path."
)
@click.option(
    "--redact-regex", multiple=True, metavar="REGEX", help="Also redact what this regex matches."
)
@click.option(
    "--no-default-redaction",
    is_flag=True,
    help="Drop baton's default rules (Authorization, Cookie, tokens...). Rarely wise.",
)
@click.option(
    "--redaction-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key for placeholders [default: ~/.config/baton/redaction.key].",
)
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
    "--set",
    "extra",
    multiple=True,
    metavar="OPTION=VALUE",
    help="Any mitmproxy option, as with mitmdump --set.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for mitmproxy's own).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def record(
    cassette: Path,
    modes: tuple[str, ...],
    listen_host: str,
    listen_port: int,
    redact_header: tuple[str, ...],
    redact_field: tuple[str, ...],
    redact_json_path: tuple[str, ...],
    redact_regex: tuple[str, ...],
    no_default_redaction: bool,
    redaction_key_file: Path | None,
    only_host: tuple[str, ...],
    only_path: tuple[str, ...],
    fsync: str,
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
    from proxy.recorder import Recorder
    from proxy.running import ProxySettings, ProxyStartupError, run_proxy
    from proxy.status import RecordingStatus

    _configure_logging(verbose, quiet)
    settings = ProxySettings(
        modes=modes,
        listen_host=listen_host,
        listen_port=listen_port,
        extra=extra,
        options={
            **_connection_strategy(modes),
            "baton_redact_headers": list(redact_header),
            "baton_redact_fields": list(redact_field),
            "baton_redact_json_paths": list(redact_json_path),
            "baton_redact_regex": list(redact_regex),
            "baton_redact_defaults": not no_default_redaction,
            "baton_redaction_key_file": str(redaction_key_file) if redaction_key_file else None,
            "baton_only_hosts": list(only_host),
            "baton_only_paths": list(only_path),
            "baton_fsync": fsync,
            # Last, so the writer opens once, with every rule in place.
            "baton_cassette": str(cassette),
        },
    )
    recorder = Recorder()
    status = RecordingStatus(recorder, cassette, quiet=quiet)
    try:
        asyncio.run(run_proxy(settings, [recorder], status.ready, status.tick))
    except ProxyStartupError as exc:
        raise InputError(str(exc)) from exc
    finally:
        recorder.done()
        status.stop()
    status.summary()
    if recorder.failed:
        sys.exit(1)


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


# -- show -----------------------------------------------------------------------


@main.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: a block per interaction; json: one JSON object per line.",
)
@click.option("--no-headers", is_flag=True, help="Text format: leave headers out.")
@click.option(
    "--max-body",
    type=click.IntRange(0),
    default=4096,
    show_default=True,
    help="Text format: cut bodies after this many characters (0: never).",
)
def show(cassette: Path, fmt: str, no_headers: bool, max_body: int) -> None:
    """Print the interactions of CASSETTE, as they are read.

    \b
    Example:
      baton show api.cassette --format json | jq .response.status
    """
    _configure_logging(0, False)
    out = sys.stdout
    with _user_errors(), _quiet_broken_pipe(), CassetteReader(cassette, warn_torn=False) as reader:
        for number, interaction in enumerate(reader, 1):
            if fmt == "json":
                out.write(json.dumps(interaction_to_json(interaction), ensure_ascii=False))
                out.write("\n")
            else:
                if number > 1:
                    out.write("\n")
                out.write(
                    render_interaction(
                        interaction, number, headers=not no_headers, max_body=max_body
                    )
                )
                out.write("\n")
            out.flush()
        if reader.torn_at is not None:
            click.echo(
                f"baton: warning: {cassette}: ends in a torn object at byte {reader.torn_at}; "
                f"`baton repair {cassette}` removes it",
                err=True,
            )


@contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    # `baton show big.cassette | head` must end quietly when head exits.
    try:
        yield
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)


# -- repair ---------------------------------------------------------------------


@main.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
def repair(cassette: Path) -> None:
    """Rewrite CASSETTE without a torn tail or invalid objects, keeping a backup.

    \b
    Example (after a recorder was killed):
      baton repair api.cassette
    """
    _configure_logging(0, True)
    with _user_errors():
        report = repair_cassette(cassette)
    if not report.changed:
        click.echo(f"{cassette}: nothing to repair ({report.kept} interactions, all sound)")
        return
    for reason in report.dropped:
        click.echo(f"{cassette}: dropped {reason}")
    click.echo(
        f"{cassette}: kept {report.kept} interactions, dropped {report.dropped_bytes} bytes; "
        f"the original is at {report.backup}"
    )


# -- addon-path -----------------------------------------------------------------


@main.command("addon-path")
def addon_path() -> None:
    """Print the path of baton's mitmproxy script, for ``mitmdump -s``.

    \b
    Example:
      mitmdump -s "$(baton addon-path)" --set baton_cassette=api.cassette
    """
    from proxy import mitmproxy_addon

    click.echo(mitmproxy_addon.__file__)


if __name__ == "__main__":
    main()
