"""What ``baton prune``, ``dedupe`` and ``expire`` print: one shared wording for the three."""

from __future__ import annotations

import click

from baton.cassettes.wording import plural
from baton.replay.hygiene import RewriteReport

__all__ = ["print_rewrite"]


def print_rewrite(report: RewriteReport, what: str, *, dry_run: bool = False) -> None:
    """``NAME: removed 3 interactions (unused), kept 12; the original is at NAME.bak``."""
    for interaction in report.removed[:20]:
        status = interaction.response.status if interaction.response is not None else "error"
        click.echo(f"  - {interaction.request.method} {interaction.request.url} -> {status}")
    if len(report.removed) > 20:
        click.echo(f"  ... and {len(report.removed) - 20} more")
    if not report.removed:
        click.echo(f"{report.target}: nothing {what} ({plural(report.kept, 'interaction')} kept)")
        return
    verb = "would remove" if dry_run else "removed"
    line = (
        f"{report.target}: {verb} {plural(len(report.removed), 'interaction')} ({what}), "
        f"kept {report.kept}"
    )
    if report.backup is not None:
        line += f"; the original is at {report.backup}"
    click.echo(line)
