"""``baton prune``: remove the interactions no replay served, as its run logs tell."""

from __future__ import annotations

from pathlib import Path

import click

from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.hygiene_report import print_rewrite
from baton.proxy.cli.options import configure_logging

__all__ = ["prune"]


@click.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--unused-since",
    "run_logs",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="RUNLOG",
    help="A run log written by baton replay --run-log (repeatable: used by any run is used).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result here instead of in place (in place keeps CASSETTE.bak).",
)
def prune(cassette: Path, run_logs: tuple[Path, ...], output: Path | None) -> None:
    """Remove from CASSETTE the interactions no replay in RUNLOG served.

    \b
    Example:
      baton replay api.cassette --run-log run.json &   # run the tests, then stop it
      baton prune api.cassette --unused-since run.json
    """
    from baton.replay.hygiene import prune_keep, rewrite
    from baton.replay.run_log import read_served

    configure_logging(0, True)
    if not cassette.exists():
        raise InputError(f"{cassette}: no such file")
    served: set[str] = set()
    replayed = False
    for log in run_logs:
        try:
            ids, cassettes = read_served(log)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        served |= ids
        replayed = replayed or any(_same_file(cassette, c) for c in cassettes)
    if not replayed:
        names = ", ".join(map(str, run_logs))
        raise InputError(
            f"{cassette}: not among the cassettes {names} replayed; "
            "prune only with a run log of a replay that served it"
        )
    with user_errors():
        report = rewrite(cassette, prune_keep(served), output)
    print_rewrite(report, "unused")


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve() or one.samefile(other)
    except OSError:
        return False
