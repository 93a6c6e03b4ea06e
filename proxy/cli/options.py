"""Option groups and set-up that several commands share: listening, mitmproxy, redaction, logging."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

from baton.cassettes.redaction import RedactionRules, Redactor, load_or_create_key
from baton.proxy.cli.errors import user_errors

__all__ = [
    "configure_logging",
    "listen_options",
    "mitmproxy_options",
    "redaction_options",
    "redactor_from_flags",
]


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr at the level -v/-q ask for; mitmproxy's per-connection chatter only with -vv."""
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


def listen_options(command: Callable[..., None]) -> Callable[..., None]:
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


def mitmproxy_options(set_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
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


def redaction_options(command: Callable[..., None]) -> Callable[..., None]:
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


def redactor_from_flags(
    redact_header: tuple[str, ...],
    redact_field: tuple[str, ...],
    redact_json_path: tuple[str, ...],
    redact_regex: tuple[str, ...],
    no_default_redaction: bool,
    redaction_key_file: Path | None,
) -> Redactor:
    """The redactor the redaction flags describe; ``InputError`` for a bad rule or key."""
    with user_errors():
        rules = RedactionRules.build(
            headers=redact_header,
            fields=redact_field,
            json_paths=redact_json_path,
            patterns=redact_regex,
            defaults=not no_default_redaction,
        )
        return Redactor(rules, load_or_create_key(redaction_key_file))
