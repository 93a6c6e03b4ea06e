"""``baton export``: a cassette as HAR 1.2 (devtools, ``mitmproxy -r``) or as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from baton.cassettes.reader import CassetteReader
from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.export_pact import PactFlags, export_pact, pact_options
from baton.proxy.cli.options import configure_logging
from baton.proxy.cli.sources import CASSETTE_LOCATION, local_cassette

__all__ = ["export"]


@click.command()
@click.argument("cassette", type=CASSETTE_LOCATION)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["har", "json", "pact"]),
    default="har",
    show_default=True,
    help="har: HAR 1.2 (devtools, mitmproxy -r); json: the cassette as JSON; "
    "pact: a Pact 3.0.0 file per consumer/provider pair.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="File [default: stdout]; for pact with several pairs, a folder.",
)
@pact_options
def export(cassette: str | Path, fmt: str, output: Path | None, pact: PactFlags) -> None:
    """Export CASSETTE as HAR 1.2, JSON, or Pact files.

    \b
    Examples:
      baton export api.cassette -o api.har
      baton export catalog.cassette --format pact --consumer cart --provider catalog -o pacts/
    """
    cassette = local_cassette(cassette)  # a path, a glob naming one, or a URL
    if fmt == "pact":
        export_pact(cassette, output, pact)
        return
    if output is not None and output.is_dir():
        raise InputError(f"{output}: is a folder; -o takes a file for --format {fmt}")
    from baton.cassettes.display import interaction_to_json
    from baton.formats.har import export_har

    configure_logging(0, True)
    with user_errors(), CassetteReader(cassette, warn_torn=False) as reader:
        if fmt == "har":
            document = export_har(reader, str(reader.header.get("baton", "")))
        else:
            document = {
                "header": reader.header,
                "interactions": [interaction_to_json(i) for i in reader],
            }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, output)
    click.echo(f"baton: {fmt} written to {output}", err=True)
