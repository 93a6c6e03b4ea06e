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
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from cassettes.display import interaction_to_json, render_interaction
from cassettes.errors import CassetteError, RedactionError
from cassettes.model import Interaction
from cassettes.reader import CassetteReader
from cassettes.redaction import RedactionRules, Redactor, load_or_create_key
from cassettes.repair import repair as repair_cassette
from cassettes.writer import CassetteWriter, FsyncPolicy
from replay.comparison import DriftClass
from replay.index import ExhaustedPolicy
from replay.options import ReplayOptions, recorded_origins
from replay.record_mode import RecordMode

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


def _listen_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--listen-host`` and ``--listen-port``, shared by the commands that serve."""
    command = click.option(
        "--listen-port",
        type=click.IntRange(0, 65535),
        default=8080,
        show_default=True,
        help="Port to bind; 0 picks a free one (printed at start).",
    )(command)
    return click.option(
        "--listen-host", default="127.0.0.1", show_default=True, help="Address to bind."
    )(command)


def _mitmproxy_options(set_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--set`` pass-through and the verbosity flags, shared by record and replay."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        command = click.option("-q", "--quiet", is_flag=True, help="Only errors.")(command)
        command = click.option(
            "-v", "--verbose", count=True, help="More log output (-vv for mitmproxy's own)."
        )(command)
        return click.option("--set", "extra", multiple=True, metavar="OPTION=VALUE", help=set_help)(
            command
        )

    return decorate


def _redaction_options(command: Callable[..., None]) -> Callable[..., None]:
    """The redaction flags, shared by every command that writes a cassette."""
    decorators = [
        click.option(
            "--redact-header", multiple=True, metavar="NAME", help="Also redact this header."
        ),
        click.option(
            "--redact-field",
            multiple=True,
            metavar="NAME",
            help="Also redact query, form and JSON fields of this name.",
        ),
        click.option(
            "--redact-json-path", multiple=True, metavar="PATH", help="Also redact this JSON path."
        ),
        click.option(
            "--redact-regex",
            multiple=True,
            metavar="REGEX",
            help="Also redact what this regex matches.",
        ),
        click.option(
            "--no-default-redaction",
            is_flag=True,
            help="Drop baton's default rules (Authorization, Cookie, tokens...). Rarely wise.",
        ),
        click.option(
            "--redaction-key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Key for placeholders [default: ~/.config/baton/redaction.key].",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _redactor(
    redact_header: tuple[str, ...],
    redact_field: tuple[str, ...],
    redact_json_path: tuple[str, ...],
    redact_regex: tuple[str, ...],
    no_default_redaction: bool,
    redaction_key_file: Path | None,
) -> Redactor:
    """The redactor the redaction flags describe; ``InputError`` for a bad rule or key."""
    with _user_errors():
        rules = RedactionRules.build(
            headers=redact_header,
            fields=redact_field,
            json_paths=redact_json_path,
            patterns=redact_regex,
            defaults=not no_default_redaction,
        )
        return Redactor(rules, load_or_create_key(redaction_key_file))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="baton-replay", prog_name="baton")
def main() -> None:
    """Record HTTP traffic between services into cassettes, and use them.

    \b
    Record:  baton record -o api.cassette --mode reverse:http://127.0.0.1:8000
    Replay:  baton replay api.cassette --listen-port 9000
    Drift:   baton diff api.cassette --target http://127.0.0.1:8000
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
@_listen_options
@_redaction_options
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
@_mitmproxy_options("Any mitmproxy option, as with mitmdump --set.")
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


# -- replay ---------------------------------------------------------------------


@main.command()
@click.argument(
    "cassettes", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    default=["reverse"],
    show_default=True,
    metavar="MODE",
    help="reverse (serve the recorded hosts on one port), reverse:URL, regular, upstream:URL, "
    "transparent, socks5.",
)
@_listen_options
@click.option(
    "--record-mode",
    type=click.Choice([m.value for m in RecordMode]),
    default=RecordMode.NONE.value,
    show_default=True,
    help="none: never touch the network; once; new_episodes; all (VCR.py's meanings).",
)
@click.option(
    "--match-on",
    metavar="LIST",
    help="Comma-separated matchers: method,scheme,host,port,path,query,body [default: all].",
)
@click.option("--match-header", multiple=True, metavar="NAME", help="Add a header to the key.")
@click.option("--ignore-query", multiple=True, metavar="NAME", help="Leave a query name out.")
@click.option("--ignore-field", multiple=True, metavar="JSONPATH", help="Leave a JSON field out.")
@click.option("--match-secrets", is_flag=True, help="Match redacted values by their keyed hash.")
@click.option(
    "--on-exhausted",
    type=click.Choice([p.value for p in ExhaustedPolicy]),
    default=ExhaustedPolicy.REPEAT_LAST.value,
    show_default=True,
    help="When identical requests outnumber their recorded answers.",
)
@click.option(
    "--miss-status",
    type=click.IntRange(100, 599),
    default=502,
    show_default=True,
    help="Status of the answer to an unmatched request.",
)
@click.option(
    "--replay-latency",
    type=click.FloatRange(0),
    is_flag=False,
    flag_value=1.0,
    default=None,
    metavar="[SCALE]",
    help="Wait the recorded duration (times SCALE, default 1) before answering.",
)
@click.option("--fail-on-miss", is_flag=True, help="Exit 1 at the end if any request missed.")
@_mitmproxy_options("Any mitmproxy option (implies the mitmproxy path).")
def replay(
    cassettes: tuple[Path, ...],
    modes: tuple[str, ...],
    listen_host: str,
    listen_port: int,
    record_mode: str,
    match_on: str | None,
    match_header: tuple[str, ...],
    ignore_query: tuple[str, ...],
    ignore_field: tuple[str, ...],
    match_secrets: bool,
    on_exhausted: str,
    miss_status: int,
    replay_latency: float | None,
    fail_on_miss: bool,
    extra: tuple[str, ...],
    verbose: int,
    quiet: bool,
) -> None:
    """Answer requests from CASSETTE... in place of the recorded services.

    By default it serves every recorded host in reverse mode on one port with
    baton's own fast server (plain HTTP/1.1); other modes, HTTPS and HTTP/2 go
    through mitmproxy. It prints which path it took, and at the end the hits,
    the misses and the recorded interactions nobody asked for.

    \b
    Example:
      baton replay cassettes/catalog.cassette --listen-port 9000
      curl http://127.0.0.1:9000/products
    """
    _configure_logging(verbose, quiet)
    mode = RecordMode(record_mode)
    options = ReplayOptions(
        match_on=[m.strip() for m in match_on.split(",") if m.strip()] if match_on else None,
        match_headers=match_header,
        ignore_query=ignore_query,
        ignore_fields=ignore_field,
        match_secrets=match_secrets,
        on_exhausted=on_exhausted,
        miss_status=miss_status,
        record_mode=mode.value,
    )
    for path in cassettes:
        may_be_missing = mode in (RecordMode.ONCE, RecordMode.ALL) and path == cassettes[0]
        if not path.exists() and not may_be_missing:
            raise InputError(f"{path}: no such file")
    replaying_only = mode is RecordMode.NONE or (mode is RecordMode.ONCE and cassettes[0].exists())
    reverse_plain = all(m == "reverse" or m.startswith("reverse:http://") for m in modes)
    if replaying_only and reverse_plain and not extra:
        _replay_fast(cassettes, listen_host, listen_port, options, replay_latency, fail_on_miss)
    else:
        _replay_mitmproxy(cassettes, modes, listen_host, listen_port, options, fail_on_miss, extra)


def _replay_fast(
    cassettes: tuple[Path, ...],
    listen_host: str,
    listen_port: int,
    options: ReplayOptions,
    replay_latency: float | None,
    fail_on_miss: bool,
) -> None:
    import signal

    from proxy.status import format_address, plural, replay_summary
    from replay.server import ReplayServer, install_fast_loop

    with _user_errors():
        try:
            index = options.load(cassettes, address=False)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    install_fast_loop()
    server = ReplayServer(
        index,
        host=listen_host,
        port=listen_port,
        miss_status=options.miss_status,
        latency_scale=replay_latency,
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            host, port = await server.start()
        except OSError as exc:
            raise InputError(
                f"cannot listen on {format_address(listen_host, listen_port)}: {exc.strerror}; "
                "choose another --listen-port (0 picks a free one)"
            ) from exc
        click.echo(
            f"baton: replaying {plural(len(index), 'interaction')} from "
            f"{', '.join(map(str, cassettes))}; listening on {format_address(host, port)} "
            "(fast path: reverse mode, plain HTTP/1.1)",
            err=True,
        )
        await stop.wait()
        await server.close()

    asyncio.run(serve())
    for line in replay_summary(index):
        click.echo(line, err=True)
    if fail_on_miss and index.misses:
        sys.exit(1)


def _replay_mitmproxy(
    cassettes: tuple[Path, ...],
    modes: tuple[str, ...],
    listen_host: str,
    listen_port: int,
    options: ReplayOptions,
    fail_on_miss: bool,
    extra: tuple[str, ...],
) -> None:
    from proxy.replayer import Replayer
    from proxy.running import ProxySettings, ProxyStartupError, run_proxy
    from proxy.status import format_address, replay_summary

    resolved = tuple(_reverse_target(cassettes) if m == "reverse" else m for m in modes)
    reverse = all(m.startswith("reverse:") for m in resolved)
    settings = ProxySettings(
        modes=resolved,
        listen_host=listen_host,
        listen_port=listen_port,
        extra=extra,
        options={
            # Answer in the request hook before any upstream connection exists.
            "connection_strategy": "lazy",
            **options.addon_options(cassettes, address=not reverse),
        },
    )
    replayer = Replayer()

    def ready(addresses: list[tuple[str, int]]) -> None:
        where = ", ".join(format_address(h, p) for h, p in addresses)
        count = len(replayer.index) if replayer.index is not None else 0
        click.echo(
            f"baton: replaying {count} interactions from {', '.join(map(str, cassettes))}; "
            f"listening on {where} (mitmproxy path: {', '.join(resolved)}; "
            f"record mode {options.record_mode})",
            err=True,
        )

    try:
        asyncio.run(run_proxy(settings, [replayer], ready))
    except ProxyStartupError as exc:
        raise InputError(str(exc)) from exc
    finally:
        replayer.done()
    if replayer.index is not None:
        for line in replay_summary(replayer.index):
            click.echo(line, err=True)
        if replayer.recorded:
            click.echo(
                f"baton: recorded {replayer.recorded} new interactions into {cassettes[0]}",
                err=True,
            )
        if fail_on_miss and replayer.index.misses:
            sys.exit(1)


def _reverse_target(cassettes: tuple[Path, ...]) -> str:
    """``reverse`` alone names no upstream; take the cassettes' one recorded host."""
    with _user_errors():
        origins = recorded_origins(cassettes)
    if len(origins) != 1:
        found = ", ".join(sorted(origins)) or "none"
        raise InputError(
            f"cannot tell which upstream reverse mode stands for (recorded hosts: {found}); "
            "name it with --mode reverse:URL"
        )
    return f"reverse:{origins.pop()}"


# -- diff -----------------------------------------------------------------------


def _diff_config(path: Path | None) -> dict[str, object]:
    """``[diff]`` of baton.toml, or ``[tool.baton.diff]`` of pyproject.toml, in the current folder."""
    import tomllib

    candidates = [path] if path else [Path("baton.toml"), Path("pyproject.toml")]
    for candidate in candidates:
        if candidate is None or not candidate.exists():
            if path is not None:
                raise InputError(f"{path}: no such file")
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{candidate}: not valid TOML: {exc}") from exc
        section = (
            data.get("tool", {}).get("baton", {}) if candidate.name == "pyproject.toml" else data
        )
        diff = section.get("diff", {})
        if not isinstance(diff, dict):
            raise InputError(f"{candidate}: [diff] must be a table")
        return diff
    return {}


@main.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new_cassette", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--target", metavar="URL", help="Base URL of the build to test, e.g. http://127.0.0.1:8000."
)
@click.option("--concurrency", type=click.IntRange(1, 512), default=32, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds per request.",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME:VALUE",
    help="Send this header (replaces a redacted one).",
)
@click.option(
    "--only",
    multiple=True,
    metavar="PATTERN",
    help="Only endpoints or paths matching this glob, e.g. 'GET /products/*'.",
)
@click.option(
    "--allow-side-effects", is_flag=True, help="Also re-send POST, PUT, PATCH and DELETE."
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="PATH",
    help="Treat this location as noise (body.items[*].ts, $.meta, header.x-id).",
)
@click.option(
    "--ignore-regex",
    multiple=True,
    metavar="REGEX",
    help="Treat locations matching this regex as noise.",
)
@click.option("--ignore-order", is_flag=True, help="Compare JSON lists as multisets.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rules file [default: ./baton.toml, else [tool.baton] of ./pyproject.toml].",
)
@click.option(
    "--learn-noise",
    is_flag=True,
    help="Send each request twice to the reference first; what differs is noise.",
)
@click.option("--reference", metavar="URL", help="Build to learn noise from [default: the target].")
@click.option(
    "--noise",
    "noise_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reuse noise saved with --save-noise.",
)
@click.option(
    "--save-noise",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the learned noise to FILE.",
)
@click.option(
    "--fail-on",
    type=click.Choice([c.value for c in DriftClass if c is not DriftClass.NOISE]),
    default=None,
    help="Gate: fail on breaking (default), additive (or worse) or value (any drift).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here instead of stdout.",
)
def diff(
    cassette: Path,
    new_cassette: Path | None,
    target: str | None,
    concurrency: int,
    timeout: float,
    headers: tuple[str, ...],
    only: tuple[str, ...],
    allow_side_effects: bool,
    ignore: tuple[str, ...],
    ignore_regex: tuple[str, ...],
    ignore_order: bool,
    config_path: Path | None,
    learn_noise: bool,
    reference: str | None,
    noise_file: Path | None,
    save_noise: Path | None,
    fail_on: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Tell where a new build (or a new recording) answers differently from CASSETTE.

    Re-sends the recorded requests to --target and compares each answer with
    the recorded one, or compares CASSETTE with NEW_CASSETTE without any
    network. Every difference is breaking, additive, value or noise; the exit
    code is 1 when a change fails the gate, 0 otherwise, 2 on bad input.

    \b
    Examples:
      baton diff api.cassette --target http://127.0.0.1:8000 --learn-noise
      baton diff v1.cassette v2.cassette --format markdown -o drift.md
    """
    import json as json_module

    from replay.comparison import NoiseRules
    from replay.drift import DriftError, diff_against_target, diff_cassettes, supplied_headers
    from replay.report import render

    _configure_logging(0, True)
    if (target is None) == (new_cassette is None):
        raise click.UsageError("give either --target URL or a second cassette, not both or neither")
    config = _diff_config(config_path)
    gate = DriftClass(fail_on or str(config.get("fail_on", "breaking")))
    endpoints = config.get("endpoints", {})
    rules = NoiseRules(
        paths=[*map(str, config.get("ignore", [])), *ignore],  # type: ignore[call-overload]
        regexes=[*map(str, config.get("ignore_regex", [])), *ignore_regex],  # type: ignore[call-overload]
        per_endpoint={str(k): list(v.get("ignore", [])) for k, v in endpoints.items()}  # type: ignore[union-attr]
        if isinstance(endpoints, dict)
        else {},
        ignore_order=ignore_order or bool(config.get("ignore_order", False)),
    )
    if noise_file is not None:
        try:
            saved = json_module.loads(noise_file.read_text(encoding="utf-8"))
            for endpoint, locations in saved["learned"].items():
                rules.learn(endpoint, locations)
        except FileNotFoundError as exc:
            raise InputError(f"{noise_file}: no such file") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{noise_file}: not a baton noise file ({type(exc).__name__})"
            ) from exc
    # The recording is streamed: memory holds only the requests in flight.
    with _user_errors(), CassetteReader(cassette, warn_torn=False) as old:
        try:
            if new_cassette is not None:
                report = diff_cassettes(
                    old,
                    read_cassette_checked(new_cassette),
                    source=str(cassette),
                    target=str(new_cassette),
                    only=only,
                    rules=rules,
                    fail_on=gate,
                )
            else:
                assert target is not None
                with _progress("re-sending recorded requests") as advance:
                    report = asyncio.run(
                        diff_against_target(
                            old,
                            target,
                            source=str(cassette),
                            concurrency=concurrency,
                            timeout=timeout,
                            supplied=supplied_headers(headers),
                            only=only,
                            allow_side_effects=allow_side_effects,
                            rules=rules,
                            learn_noise=learn_noise,
                            reference=reference,
                            fail_on=gate,
                            progress=advance,
                        )
                    )
        except DriftError as exc:
            raise InputError(str(exc)) from exc
    text = render(report, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"baton: report written to {output}", err=True)
        if fmt != "text":
            from replay.report import verdict

            click.echo(verdict(report), err=True)
    else:
        click.echo(text, nl=False)
    if save_noise is not None:
        save_noise.write_text(
            json_module.dumps(rules.learned_json(), indent=2) + "\n", encoding="utf-8"
        )
        click.echo(f"baton: learned noise saved to {save_noise}", err=True)
    sys.exit(report.exit_code)


def read_cassette_checked(path: Path) -> list[Interaction]:
    """Every interaction of ``path``; a torn tail is skipped quietly (the diff is read-only)."""
    with CassetteReader(path, warn_torn=False) as reader:
        return list(reader)


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int], None]]:
    """A live count on a terminal; nothing in a pipe or under CI."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    show = sys.stderr.isatty() and not os.environ.get("CI")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, disable=not show) as progress:
        task = progress.add_task(description, total=None)
        yield lambda n: progress.advance(task, n)


# -- interop --------------------------------------------------------------------


@main.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "cassette",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cassette to append to (created if missing).",
)
@click.option(
    "--from",
    "source_format",
    type=click.Choice(["har", "vcr", "mitmproxy"]),
    help="Force the format [default: detected from the content].",
)
@_redaction_options
def import_(
    sources: tuple[Path, ...],
    cassette: Path,
    source_format: str | None,
    redact_header: tuple[str, ...],
    redact_field: tuple[str, ...],
    redact_json_path: tuple[str, ...],
    redact_regex: tuple[str, ...],
    no_default_redaction: bool,
    redaction_key_file: Path | None,
) -> None:
    """Import HAR, VCR.py cassettes or mitmproxy flow files into CASSETTE, redacted.

    Each SOURCE is read whole before anything is written, so a file that
    cannot be read at all adds nothing; a bad entry in a readable file is
    skipped and reported with its index.

    \b
    Example:
      baton import session.har tests/cassettes/*.yaml flows.mitm -o api.cassette
    """
    from proxy.importing import SourceError, SourceFormat, import_file

    _configure_logging(0, True)
    redactor = _redactor(
        redact_header,
        redact_field,
        redact_json_path,
        redact_regex,
        no_default_redaction,
        redaction_key_file,
    )
    forced = SourceFormat(source_format) if source_format else None
    results = []
    for source in sources:
        try:
            results.append((source, *import_file(source, forced)))
        except SourceError as exc:
            raise InputError(f"{source}: {exc}") from exc
    total = 0
    with (
        _user_errors(),
        CassetteWriter(
            cassette, redactor=redactor, meta={"imported_with": "baton import"}
        ) as writer,
    ):
        for source, kind, result in results:
            for interaction in result.interactions:
                writer.append(interaction)
            total += len(result.interactions)
            click.echo(
                f"{source}: {kind.value}, {len(result.interactions)} imported"
                + (f", {len(result.skipped)} skipped" if result.skipped else "")
            )
            for skipped in result.skipped:
                click.echo(f"  skipped entry {skipped.index}: {skipped.reason}")
            for note in result.notes:
                click.echo(f"  note: {note}")
    click.echo(f"baton: {total} interactions written to {cassette}", err=True)


@main.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["har", "json"]),
    default="har",
    show_default=True,
    help="har: HAR 1.2 (devtools, mitmproxy -r); json: the cassette as JSON.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File [default: stdout].",
)
def export(cassette: Path, fmt: str, output: Path | None) -> None:
    """Export CASSETTE as HAR 1.2 or JSON.

    \b
    Example:
      baton export api.cassette -o api.har
    """
    from cassettes.display import interaction_to_json
    from cassettes.har import export_har

    _configure_logging(0, True)
    with _user_errors(), CassetteReader(cassette, warn_torn=False) as reader:
        if fmt == "har":
            document = export_har(reader, str(reader.header.get("baton", "")))
        else:
            document = {
                "header": reader.header,
                "interactions": [interaction_to_json(i) for i in reader],
            }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, output)
    click.echo(f"baton: {fmt} written to {output}", err=True)


@main.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
def textconv(cassette: Path) -> None:
    """Print CASSETTE as stable text for git diff (a textconv driver).

    \b
    Example (set up once per repository):
      echo '*.cassette diff=baton' >> .gitattributes
      git config diff.baton.textconv 'baton textconv'
    """
    _configure_logging(0, True)
    out = sys.stdout
    with _user_errors(), _quiet_broken_pipe(), CassetteReader(cassette, warn_torn=False) as reader:
        out.write(f"# baton cassette, format version {reader.version}\n")
        for number, interaction in enumerate(reader, 1):
            out.write(
                "\n" + render_interaction(interaction, number, max_body=0, stable=True) + "\n"
            )
        if reader.torn_at is not None:
            out.write(f"\n# torn object at byte {reader.torn_at} (baton repair removes it)\n")


@main.command()
@click.argument(
    "cassettes", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option("--no-entropy", is_flag=True, help="Only known secret shapes, no entropy check.")
def lint(cassettes: tuple[Path, ...], no_entropy: bool) -> None:
    """Look for secrets redaction missed; exit 1 if any is found (for a pre-commit hook).

    \b
    Example (.pre-commit-config.yaml):
      - repo: local
        hooks:
          - {id: baton-lint, name: baton lint, entry: baton lint, language: system, files: '\\.cassette$'}
    """
    from cassettes.leak_scan import scan_interaction

    _configure_logging(0, True)
    found = 0
    for path in cassettes:
        with _user_errors(), CassetteReader(path, warn_torn=False) as reader:
            for number, interaction in enumerate(reader, 1):
                for finding in scan_interaction(number, interaction, entropy=not no_entropy):
                    found += 1
                    click.echo(
                        f"{path}: interaction {finding.interaction}: {finding.location}: "
                        f"{finding.kind}: {finding.excerpt}"
                    )
    if found:
        click.echo(
            f"baton: {found} likely secret(s); add redaction rules and re-record, "
            "or re-import with --redact-...",
            err=True,
        )
        sys.exit(1)
    click.echo(f"baton: no likely secrets in {len(cassettes)} cassette(s)", err=True)


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
