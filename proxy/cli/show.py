"""``baton show``: the interactions of a cassette, as they are read, filtered or summarised."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

import click

from baton.cassettes.display import (
    InteractionFilter,
    SummaryTotals,
    interaction_to_json,
    parse_status_filter,
    render_interaction,
    render_summary_line,
)
from baton.cassettes.reader import CassetteReader
from baton.proxy.cli.errors import InputError, quiet_broken_pipe, user_errors
from baton.proxy.cli.fidelity import show_dynamic, show_graphql
from baton.proxy.cli.options import configure_logging
from baton.proxy.cli.sources import CASSETTE_LOCATION, local_cassette

__all__ = ["show"]


def wants_colour(stream: TextIO) -> bool:
    """Colour on a terminal only: never in a pipe or a file, never with NO_COLOR or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _statuses(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    try:
        return tuple(parse_status_filter(value) for value in values)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


@click.command()
@click.argument("cassette", type=CASSETTE_LOCATION)
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
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="GLOB",
    help="Only requests to a matching host or host:port, e.g. '*.internal' (repeatable).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    metavar="GLOB",
    help="Only requests whose path (without query) matches, e.g. '/api/*' (repeatable).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="N|4xx|error",
    callback=_statuses,
    help="Only answers with this status, class, or no answer at all (repeatable).",
)
@click.option(
    "--dynamic",
    "dynamic",
    is_flag=True,
    help="List the dynamic values replay recognises: each response value a later request "
    "sent back, where it came from and where it returned.",
)
@click.option("--graphql", is_flag=True, help="List the GraphQL operations by name, with counts.")
@click.option(
    "--summary",
    is_flag=True,
    help="One line per interaction (number, method, URL, status, sizes, duration), then totals.",
)
@click.option(
    "--html",
    is_flag=True,
    help="One self-contained HTML page instead: a timeline, bodies by type (JSON tree, images, "
    "text, events, WebSocket messages). Redirect it to a file.",
)
def show(
    cassette: str | Path,
    fmt: str,
    no_headers: bool,
    max_body: int,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    statuses: tuple[str, ...],
    summary: bool,
    dynamic: bool,
    graphql: bool,
    html: bool,
) -> None:
    """Print the interactions of CASSETTE, as they are read.

    Filters of one kind match any of their values; filters of different
    kinds must all match. Interactions keep their number in the cassette.
    Method and status are coloured on a terminal (not in a pipe; NO_COLOR
    turns it off).

    \b
    Examples:
      baton show api.cassette --summary
      baton show api.cassette --host 'api.*' --status 5xx --status error
      baton show api.cassette --format json | jq .response.status
      baton show api.cassette --html > api.html
    """
    configure_logging(0, False)
    if dynamic or graphql:  # views of their own (proxy/cli/fidelity.py)
        with user_errors():
            (show_dynamic if dynamic else show_graphql)(Path(cassette))
        return
    cassette = local_cassette(cassette)  # a path, a glob naming one, or a URL
    if summary and fmt == "json":
        raise InputError("--summary is a text view; leave out --format json (or --summary)")
    selection = InteractionFilter(hosts, paths, statuses)
    if html:
        if summary or fmt == "json":
            raise InputError("--html is a page of its own; leave out --summary and --format json")
        _show_html(cassette, selection)
        return
    out = sys.stdout
    colour = fmt == "text" and wants_colour(out)
    totals = SummaryTotals()
    with user_errors(), quiet_broken_pipe(), CassetteReader(cassette, warn_torn=False) as reader:
        for number, interaction in enumerate(reader, 1):
            totals.read = number
            if not selection.matches(interaction):
                continue
            if fmt == "json":
                out.write(json.dumps(interaction_to_json(interaction), ensure_ascii=False))
            elif summary:
                out.write(render_summary_line(interaction, number, colour=colour))
            else:
                if totals.shown:
                    out.write("\n")
                out.write(
                    render_interaction(
                        interaction,
                        number,
                        headers=not no_headers,
                        max_body=max_body,
                        colour=colour,
                    )
                )
            out.write("\n")
            totals.add(interaction)
            out.flush()
        if summary:
            out.write(("\n" if totals.shown else "") + totals.render(bool(selection)) + "\n")
        elif selection and not totals.shown:
            click.echo(
                f"baton: no interaction of {cassette} matches the filters ({totals.read} read)",
                err=True,
            )
        if reader.torn_at is not None:
            click.echo(
                f"baton: warning: {cassette}: ends in a torn object at byte {reader.torn_at}; "
                f"`baton repair {cassette}` removes it",
                err=True,
            )


def _show_html(cassette: Path, selection: InteractionFilter) -> None:
    """The selected interactions as one HTML page on stdout (held whole: pages are for reading)."""
    from baton.replay.html import render_cassette_html

    with user_errors(), quiet_broken_pipe(), CassetteReader(cassette, warn_torn=False) as reader:
        chosen = [(n, i) for n, i in enumerate(reader, 1) if selection.matches(i)]
        note = ""
        if reader.torn_at is not None:
            note = f"the cassette ends in a torn object at byte {reader.torn_at}"
            click.echo(
                f"baton: warning: {cassette}: ends in a torn object at byte {reader.torn_at}; "
                f"`baton repair {cassette}` removes it",
                err=True,
            )
        sys.stdout.write(render_cassette_html(chosen, cassette=str(cassette), note=note))
        sys.stdout.flush()
