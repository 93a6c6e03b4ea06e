"""``--max-request-line``, ``--header-timeout`` and the other limits of ``baton replay``.

Each is an option (and so a ``[tool.baton.replay]`` key); together they make
the ``ServerLimits`` (replay/limits.py) the fast server enforces. The mitmproxy
path takes what mitmproxy has an option for: the body size, as ``body_size_limit``.
docs/security.md lists the defaults next to nginx's and uvicorn's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from baton.replay.limits import AnswerLimits, ServerLimits, parse_size

__all__ = ["SIZE", "answer_limit_options", "limit_options", "mitmproxy_limit_options"]


class _Size(click.ParamType):
    """A byte count written as 512, 64k, 100m or 1g."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _Size()

_SECONDS = click.FloatRange(0, min_open=True)

# (option, field, type, default shown, help)
_OPTIONS: tuple[tuple[str, str, Any, str, str], ...] = (
    ("--max-request-line", "max_request_line", SIZE, "8k", "Longest request target; 414 beyond."),
    ("--max-header-size", "max_header_bytes", SIZE, "64k", "All header fields together; 431 beyond."),
    ("--max-headers", "max_headers", click.IntRange(1), "100", "Header fields per request; 431 beyond."),
    ("--max-body-size", "max_body_bytes", SIZE, "100m", "Request body; 413 beyond (also for Expect: 100-continue)."),
    ("--header-timeout", "header_timeout", _SECONDS, "10", "Seconds for a request head to arrive, else the connection closes."),
    ("--body-timeout", "body_timeout", _SECONDS, "60", "Seconds between two reads of a request body, else the connection closes."),
    ("--keepalive-timeout", "keepalive_timeout", _SECONDS, "75", "Seconds an idle keep-alive connection stays open."),
    ("--max-connections", "max_connections", click.IntRange(1), "10000", "Connections served at once; more wait in the listen backlog."),
)  # fmt: skip


def limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """The limits options, handed over as ``limits: ServerLimits``."""

    @functools.wraps(command)
    def with_limits(*args: Any, **kwargs: Any) -> None:
        values = {field: kwargs.pop(field) for _, field, _, _, _ in _OPTIONS}
        chosen = {field: value for field, value in values.items() if value is not None}
        command(*args, limits=ServerLimits(**chosen), **kwargs)

    decorated: Callable[..., None] = with_limits
    for option, field, kind, shown, text in reversed(_OPTIONS):
        decorated = click.option(
            option,
            field,
            type=kind,
            default=None,
            metavar="SIZE" if kind is SIZE else ("SECONDS" if kind is _SECONDS else "N"),
            help=f"{text} [default: {shown}]",
        )(decorated)
    return decorated


def mitmproxy_limit_options(limits: ServerLimits) -> dict[str, Any]:
    """What mitmproxy has an option for: the body size (its ``body_size_limit``, 413).

    Only when ``--max-body-size`` was given (flag or configuration file): mitmproxy has one
    limit for both directions, so the fast path's default (100m) would also refuse to
    serve a recorded answer larger than that (a 502 in place of the body).
    """
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source("max_body_bytes") if context is not None else None
    if source in (None, click.core.ParameterSource.DEFAULT):
        return {}
    return {"body_size_limit": str(limits.max_body_bytes)}


def answer_limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--max-answer-size``, ``--max-decoded-size`` and ``--follow-redirects``, handed over as
    ``answers: AnswerLimits`` (what a target of ``baton diff`` may send back)."""

    @functools.wraps(command)
    def with_limits(*args: Any, **kwargs: Any) -> None:
        chosen = {
            "max_body_bytes": kwargs.pop("max_answer_size"),
            "max_decoded_bytes": kwargs.pop("max_decoded_size"),
        }
        answers = AnswerLimits(
            **{field: value for field, value in chosen.items() if value is not None},
            follow_redirects=kwargs.pop("follow_redirects"),
        )
        command(*args, answers=answers, **kwargs)

    decorated: Callable[..., None] = with_limits
    decorated = click.option(
        "--follow-redirects",
        is_flag=True,
        help="Follow redirects that stay on the target (never to another host); "
        "by default a redirect is the answer compared.",
    )(decorated)
    decorated = click.option(
        "--max-decoded-size",
        type=SIZE,
        default=None,
        metavar="SIZE",
        help="An answer decoding (gzip, br, zstd) to more is that request's error, "
        "not a decompression bomb in memory. [default: 256m]",
    )(decorated)
    decorated = click.option(
        "--max-answer-size",
        type=SIZE,
        default=None,
        metavar="SIZE",
        help="An answer body larger than this is that request's error. [default: 100m]",
    )(decorated)
    return decorated
