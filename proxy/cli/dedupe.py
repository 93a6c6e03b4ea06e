"""``baton dedupe``: collapse repeated recordings of one request that got the same answer."""

from __future__ import annotations

from pathlib import Path

import click

from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.hygiene_report import print_rewrite
from baton.proxy.cli.options import configure_logging

__all__ = ["dedupe"]


@click.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result here instead of in place (in place keeps CASSETTE.bak).",
)
def dedupe(cassette: Path, output: Path | None) -> None:
    """Collapse identical interactions of CASSETTE: same match key, same state, same answer.

    Only the repeats at the end of a request's queue go, so replay (repeat-last)
    answers exactly as before; a poll's "pending, pending, done" stays whole.

    \b
    Example:
      baton dedupe api.cassette
    """
    from baton.replay.hygiene import dedupe_keep, rewrite

    configure_logging(0, True)
    if not cassette.exists():
        raise InputError(f"{cassette}: no such file")
    with user_errors():
        report = rewrite(cassette, dedupe_keep, output)
    print_rewrite(report, "repeated")
