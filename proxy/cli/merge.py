"""``baton merge``: many cassettes (rotated shards, several recorders) into one, streaming."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import click

from baton.cassettes.compression import BodyCompression
from baton.cassettes.merge import MergeFilter, merge_cassettes
from baton.cassettes.wording import plural
from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.options import configure_logging
from baton.proxy.cli.sources import CASSETTE_LOCATION

__all__ = ["merge", "parse_when"]


def parse_when(text: str, option: str) -> float:
    """Seconds since the epoch for an ISO 8601 time or date (UTC unless it says) or a number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InputError(
            f"{option} {text!r}: give an ISO 8601 time such as 2026-11-29T10:00:00Z, "
            "a date, or seconds since the epoch"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _compression(value: str) -> BodyCompression | Literal["keep"] | None:
    """``--compress`` checked here, so a bad value is one line and exit 2."""
    if value.strip().lower() == "keep":
        return "keep"
    try:
        return BodyCompression.parse(value)
    except ValueError as exc:
        raise InputError(f"--compress: {exc}; or keep") from exc


@click.command()
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=CASSETTE_LOCATION)
@click.option(
    "--dedupe",
    is_flag=True,
    help="Keep one of each identical interaction (same request and answer; ids and times aside).",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Keep interactions recorded at or after WHEN (ISO 8601, UTC unless it says).",
)
@click.option("--until", metavar="WHEN", help="Keep interactions recorded before WHEN.")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="GLOB",
    help="Keep requests to a host matching GLOB (repeatable), e.g. '*.internal'.",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    metavar="GLOB",
    help="Keep requests whose path matches GLOB (repeatable), e.g. '/api/*'.",
)
@click.option(
    "--compress",
    "compression",
    default="keep",
    show_default=True,
    metavar="zstd[:LEVEL]|none|keep",
    callback=lambda ctx, param, value: _compression(value),
    help="How OUTPUT stores bodies: keep (compressed when every input was), zstd[:LEVEL], or "
    "none (plain, for a baton from before compression).",
)
def merge(
    output: Path,
    inputs: tuple[str, ...],
    dedupe: bool,
    since: str | None,
    until: str | None,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    compression: BodyCompression | Literal["keep"] | None,
) -> None:
    """Merge the cassettes INPUTS (paths, globs, directories, URLs) into OUTPUT, by recorded time.

    A streaming copy: large stored bodies are copied piece by piece, never
    held. OUTPUT is written to a temporary file and renamed over the old one
    only when every input was read, so it may be one of the inputs, and a
    corrupt input leaves it as it was.

    \b
    Examples:
      baton merge week.cassette shards/orders-api.*.cassette --dedupe
      baton merge day.cassette week.cassette --since 2026-11-29 --until 2026-11-30
      baton merge orders.cassette all.cassette --host orders.internal --path '/api/*'
      baton merge api.cassette api.cassette --compress zstd    # compress one in place
    """
    configure_logging(0, False)
    selection = MergeFilter(
        since=None if since is None else parse_when(since, "--since"),
        until=None if until is None else parse_when(until, "--until"),
        hosts=hosts,
        paths=paths,
    )
    if (
        selection.since is not None
        and selection.until is not None
        and selection.since >= selection.until
    ):
        raise InputError(f"--since {since} is not before --until {until}; swap them")
    from baton.cassettes.locations import expand_locations, fetch_source

    with user_errors():  # a location naming nothing (LocationError) is a CassetteError too
        sources = expand_locations(inputs)
        report = merge_cassettes(
            output,
            [fetch_source(source) for source in sources],
            dedupe=dedupe,
            selection=selection,
            names=[source.location for source in sources],
            compression=compression,
        )
    left_out = [
        (report.duplicates, "duplicate"),
        (report.outside_window, "outside the window"),
        (report.filtered_out, "filtered out by --host/--path"),
    ]
    details = "; ".join(f"{n} {what}" for n, what in left_out if n)
    for torn in report.torn:
        click.echo(f"baton: {torn}: a torn last object was skipped (`baton repair` it)", err=True)
    if report.orphan_parts:
        click.echo(
            f"baton: {plural(report.orphan_parts, 'part')} of unfinished streams skipped", err=True
        )
    click.echo(
        f"baton: merged {plural(report.inputs, 'cassette')} into {output}: "
        f"{plural(report.written, 'interaction')} written of {report.read} read"
        + (f" ({details})" if details else ""),
        err=True,
    )
