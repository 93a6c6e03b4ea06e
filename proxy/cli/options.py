"""Option groups and set-up that several commands share: listening, mitmproxy, redaction, logging."""

from __future__ import annotations

import difflib
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from baton.cassettes.compression import BodyCompression
from baton.cassettes.redaction import RedactionRules, Redactor, load_or_create_key
from baton.proxy.cli.errors import InputError, user_errors

__all__ = [
    "RedactionFlags",
    "check_modes",
    "compression_option",
    "configure_logging",
    "listen_options",
    "mitmproxy_options",
    "mode_option",
    "redaction_options",
]


class _StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
    """Log to whatever ``sys.stderr`` is when a record is written, as logging's last resort does.

    A live status line (rich) swaps ``sys.stderr`` for a proxy while it runs,
    so log lines print above it instead of through it.
    """

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr at the level -v/-q ask for; mitmproxy's per-connection chatter only with -vv."""
    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    handler = _StderrNow()
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


@dataclass(frozen=True)
class RedactionFlags:
    """The redaction flags of one command line, as one value."""

    headers: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    json_paths: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    defaults: bool = True
    key_file: Path | None = None

    def redactor(self) -> Redactor:
        """The redactor these flags describe; ``InputError`` (exit 2) for a bad rule or key."""
        with user_errors():
            rules = RedactionRules.build(
                headers=self.headers,
                fields=self.fields,
                json_paths=self.json_paths,
                patterns=self.patterns,
                defaults=self.defaults,
            )
            return Redactor(rules, load_or_create_key(self.key_file))

    def addon_options(self) -> dict[str, object]:
        """The addons' ``baton_redact_*`` options, checked here first so a bad rule is exit 2."""
        from baton.proxy.redaction_options import redaction_addon_options

        self.redactor()
        return redaction_addon_options(
            headers=self.headers,
            fields=self.fields,
            json_paths=self.json_paths,
            patterns=self.patterns,
            defaults=self.defaults,
            key_file=str(self.key_file) if self.key_file else None,
        )


def redaction_options(command: Callable[..., None]) -> Callable[..., None]:
    """The redaction flags of every command that writes a cassette, handed over as one value.

    The command receives ``redaction: RedactionFlags`` instead of six
    parameters; the flags (and so the configuration keys) stay one per rule.
    """

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = RedactionFlags(
            headers=kwargs.pop("redact_header"),
            fields=kwargs.pop("redact_field"),
            json_paths=kwargs.pop("redact_json_path"),
            patterns=kwargs.pop("redact_regex"),
            defaults=not kwargs.pop("no_default_redaction"),
            key_file=kwargs.pop("redaction_key_file"),
        )
        command(*args, redaction=flags, **kwargs)

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
    decorated: Callable[..., None] = with_flags
    for decorator in reversed(decorators):
        decorated = decorator(decorated)
    return decorated


def compression_option(command: Callable[..., None]) -> Callable[..., None]:
    """``--compress``: how the bodies of the cassette a command writes are stored.

    The command receives ``compression: BodyCompression | None``; a bad value
    is one line and exit 2 before anything starts.
    """

    def parse(ctx: click.Context, param: click.Parameter, value: str) -> BodyCompression | None:
        try:
            return BodyCompression.parse(value)
        except ValueError as exc:
            raise InputError(f"--compress: {exc}") from exc

    return click.option(
        "--compress",
        "compression",
        default="none",
        show_default=True,
        metavar="zstd[:LEVEL]|none",
        callback=parse,
        help="Store text-like bodies zstd-compressed in the cassette: about half the size for "
        "JSON traffic, and replay serves the recorded bytes unchanged; a baton from before "
        "this option cannot read such bodies.",
    )(command)


_MODE_NAMES = ("regular", "reverse:URL", "upstream:URL", "transparent", "socks5")


def check_modes(modes: Sequence[str], *, bare_reverse: bool = False) -> None:
    """Refuse a ``--mode`` mitmproxy would reject, or would accept and then fail on later.

    mitmproxy's own parser (``ProxyMode.parse``) catches unknown modes and bad
    addresses, but gives ``reverse:127.0.0.1:9`` the scheme https and
    ``upstream:127.0.0.1:9`` http without a word, and the first request then
    fails far from the flag that caused it: a URL there must name its scheme.
    ``bare_reverse`` allows ``reverse`` alone, which ``baton replay`` reads as
    "the recorded host". Raises ``InputError`` (exit 2) naming the fix.
    """
    for spec in modes:
        if bare_reverse and spec == "reverse":
            continue  # `baton replay`'s default: its fast path loads no mitmproxy at all
        if spec.startswith(("reverse:h2c://", "reverse:grpc://", "reverse:grpcs://")):
            continue  # baton's own gRPC recorder (proxy/grpc_recording.py) checks these
        from mitmproxy.proxy.mode_specs import ProxyMode

        name, _, data = spec.partition(":")
        try:
            parsed = ProxyMode.parse(spec)
        except ValueError as exc:
            if name.lower() in ("reverse", "upstream") and not data.partition("@")[0]:
                raise InputError(
                    f"--mode {spec} needs the URL of the "
                    f"{'service' if name.lower() == 'reverse' else 'proxy'}, "
                    f"e.g. --mode {name}:http://127.0.0.1:8000"
                ) from exc
            known = ["reverse", *_MODE_NAMES] if bare_reverse else list(_MODE_NAMES)
            hint = f"use {', '.join(known[:-1])} or {known[-1]}"
            if name.lower() in ("reverse", "upstream"):
                hint = f"write it as {name}:http://HOST:PORT or {name}:https://HOST:PORT"
            if str(exc) == "unknown mode":
                close = difflib.get_close_matches(name.lower(), [k.split(":")[0] for k in known])
                if close:
                    hint = f"did you mean {close[0]}? ({hint})"
                raise InputError(f"--mode {spec}: unknown mode; {hint}") from exc
            reason = str(exc).strip() or type(exc).__name__
            raise InputError(f"--mode {spec}: {reason[0].lower()}{reason[1:]}; {hint}") from exc
        if parsed.type_name in ("reverse", "upstream") and "://" not in parsed.data:
            raise InputError(
                f"--mode {spec}: the URL has no scheme (http:// or https://); "
                f"write --mode {name}:http://{data}"
            )


def mode_option(
    *, default: str, help: str, bare_reverse: bool = False
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--mode``, repeatable, checked by ``check_modes`` before the command runs."""

    def validate(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> object:
        check_modes(value, bare_reverse=bare_reverse)
        return value

    return click.option(
        "--mode",
        "modes",
        multiple=True,
        default=[default],
        show_default=True,
        metavar="MODE",
        help=help,
        callback=validate,
    )
