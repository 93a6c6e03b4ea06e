"""``baton textconv``: a cassette as stable text, for ``git diff`` (a textconv driver)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from baton.cassettes.display import render_interaction
from baton.cassettes.reader import CassetteReader
from baton.proxy.cli.errors import quiet_broken_pipe, user_errors
from baton.proxy.cli.options import configure_logging

__all__ = ["textconv"]


@click.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
def textconv(cassette: Path) -> None:
    """Print CASSETTE as stable text for git diff (a textconv driver).

    \b
    Example (set up once per repository):
      echo '*.cassette diff=baton' >> .gitattributes
      git config diff.baton.textconv 'baton textconv'
    """
    configure_logging(0, True)
    out = sys.stdout
    with user_errors(), quiet_broken_pipe(), CassetteReader(cassette, warn_torn=False) as reader:
        out.write(f"# baton cassette, format version {reader.version}\n")
        for number, interaction in enumerate(reader, 1):
            out.write(
                "\n" + render_interaction(interaction, number, max_body=0, stable=True) + "\n"
            )
        if reader.torn_at is not None:
            out.write(f"\n# torn object at byte {reader.torn_at} (baton repair removes it)\n")
