"""``baton expire``: remove interactions recorded longer ago than an age."""

from __future__ import annotations

from pathlib import Path

import click

from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.hygiene_report import print_rewrite
from baton.proxy.cli.options import configure_logging

__all__ = ["expire"]


def _age(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from baton.replay.hygiene import parse_age

    try:
        return parse_age(value)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


@click.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--older-than",
    required=True,
    metavar="AGE",
    callback=_age,
    help="Remove interactions recorded longer ago than this: 90d, 12h, 2w.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result here instead of in place (in place keeps CASSETTE.bak).",
)
def expire(cassette: Path, older_than: float, output: Path | None) -> None:
    """Remove the interactions of CASSETTE recorded longer ago than AGE.

    \b
    Example:
      baton expire api.cassette --older-than 90d
    """
    from baton.replay.hygiene import expire_keep, rewrite

    configure_logging(0, True)
    if not cassette.exists():
        raise InputError(f"{cassette}: no such file")
    with user_errors():
        report = rewrite(cassette, expire_keep(older_than), output)
    print_rewrite(report, "expired")
