"""``baton lint``: secrets that redaction missed, for a pre-commit hook."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from baton.cassettes.reader import CassetteReader
from baton.cassettes.wording import plural
from baton.proxy.cli.errors import user_errors
from baton.proxy.cli.options import configure_logging
from baton.proxy.cli.sources import CASSETTE_LOCATION, local_cassettes

__all__ = ["lint"]


@click.command()
@click.argument("cassettes", nargs=-1, required=True, type=CASSETTE_LOCATION)
@click.option("--no-entropy", is_flag=True, help="Only known secret shapes, no entropy check.")
def lint(cassettes: tuple[str | Path, ...], no_entropy: bool) -> None:
    """Look for secrets redaction missed; exit 1 if any is found (for a pre-commit hook).

    \b
    Example (.pre-commit-config.yaml):
      - repo: local
        hooks:
          - {id: baton-lint, name: baton lint, entry: baton lint, language: system, files: '\\.cassette$'}
    """
    from baton.cassettes.leak_scan import NOT_SCRUBBED, scan_interaction

    configure_logging(0, True)
    cassettes = local_cassettes(cassettes)  # paths, globs, directories, URLs
    found = 0
    unscrubbed = 0
    for path in cassettes:
        with user_errors(), CassetteReader(path, warn_torn=False) as reader:
            for number, interaction in enumerate(reader, 1):
                for finding in scan_interaction(number, interaction, entropy=not no_entropy):
                    if finding.kind == NOT_SCRUBBED:
                        unscrubbed += 1
                    else:
                        found += 1
                    click.echo(
                        f"{path}: interaction {finding.interaction}: {finding.location}: "
                        f"{finding.kind}: {finding.excerpt}"
                    )
    if unscrubbed:
        click.echo(
            f"baton: {plural(unscrubbed, 'streamed body', 'streamed bodies')} written unscrubbed "
            "(a redaction rule needed the whole body); check them, or re-record without the "
            "stream (a larger --stream-threshold) or with rules that apply piece by piece "
            "(docs/security.md)",
            err=True,
        )
    if found:
        click.echo(
            f"baton: {plural(found, 'likely secret')}; add redaction rules and re-record, "
            "or re-import with --redact-...",
            err=True,
        )
    if found or unscrubbed:
        sys.exit(1)
    click.echo(f"baton: no likely secrets in {plural(len(cassettes), 'cassette')}", err=True)
