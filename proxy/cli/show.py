"""``baton show``: the interactions of a cassette, as they are read."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from baton.cassettes.display import interaction_to_json, render_interaction
from baton.cassettes.reader import CassetteReader
from baton.proxy.cli.errors import quiet_broken_pipe, user_errors
from baton.proxy.cli.options import configure_logging

__all__ = ["show"]


@click.command()
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
    configure_logging(0, False)
    out = sys.stdout
    with user_errors(), quiet_broken_pipe(), CassetteReader(cassette, warn_torn=False) as reader:
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
