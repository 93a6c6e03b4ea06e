"""``baton import``: HAR, VCR.py cassettes and mitmproxy flow files into a cassette, redacted."""

from __future__ import annotations

from pathlib import Path

import click

from baton.cassettes.compression import BodyCompression
from baton.cassettes.wording import plural
from baton.cassettes.writer import CassetteWriter
from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.options import (
    RedactionFlags,
    compression_option,
    configure_logging,
    redaction_options,
)

__all__ = ["import_"]


@click.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "cassette",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cassette to append to (created if missing).",
)
@click.option(
    "--from",
    "source_format",
    type=click.Choice(["har", "vcr", "mitmproxy"]),
    help="Force the format [default: detected from the content].",
)
@redaction_options
@compression_option
def import_(
    sources: tuple[Path, ...],
    cassette: Path,
    source_format: str | None,
    redaction: RedactionFlags,
    compression: BodyCompression | None,
) -> None:
    """Import HAR, VCR.py cassettes or mitmproxy flow files into CASSETTE, redacted.

    Each SOURCE is read whole before anything is written, so a file that
    cannot be read at all adds nothing; a bad entry in a readable file is
    skipped and reported with its index.

    \b
    Example:
      baton import session.har tests/cassettes/*.yaml flows.mitm -o api.cassette
    """
    from baton.formats.detect import SourceError, SourceFormat, import_file

    configure_logging(0, True)
    redactor = redaction.redactor()
    forced = SourceFormat(source_format) if source_format else None
    results = []
    for source in sources:
        try:
            results.append((source, *import_file(source, forced)))
        except SourceError as exc:
            raise InputError(f"{source}: {exc}") from exc
    total = 0
    with (
        user_errors(),
        CassetteWriter(
            cassette,
            redactor=redactor,
            meta={"imported_with": "baton import"},
            compression=compression,
        ) as writer,
    ):
        for source, kind, result in results:
            for interaction in result.interactions:
                writer.append(interaction)
            total += len(result.interactions)
            click.echo(
                f"{source}: {kind.value}, {len(result.interactions)} imported"
                + (f", {len(result.skipped)} skipped" if result.skipped else "")
            )
            for skipped in result.skipped:
                click.echo(f"  skipped entry {skipped.index}: {skipped.reason}")
            for note in result.notes:
                click.echo(f"  note: {note}")
    click.echo(f"baton: {plural(total, 'interaction')} written to {cassette}", err=True)
