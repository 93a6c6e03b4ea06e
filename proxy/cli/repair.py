"""``baton repair``: rewrite a cassette without a torn tail or invalid objects."""

from __future__ import annotations

from pathlib import Path

import click

from baton.cassettes.repair import repair as repair_cassette
from baton.cassettes.wording import plural
from baton.proxy.cli.errors import user_errors
from baton.proxy.cli.options import configure_logging

__all__ = ["repair"]


@click.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
def repair(cassette: Path) -> None:
    """Rewrite CASSETTE without a torn tail or invalid objects, keeping a backup.

    \b
    Example (after a recorder was killed):
      baton repair api.cassette
    """
    configure_logging(0, True)
    with user_errors():
        report = repair_cassette(cassette)
    if not report.changed:
        click.echo(
            f"{cassette}: nothing to repair ({plural(report.kept, 'interaction')}, all sound)"
        )
        return
    for reason in report.dropped:
        click.echo(f"{cassette}: dropped {reason}")
    click.echo(
        f"{cassette}: kept {plural(report.kept, 'interaction')}, "
        f"dropped {plural(report.dropped_bytes, 'byte')}; "
        f"the original is at {report.backup}"
    )
