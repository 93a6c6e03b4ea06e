"""``baton report``: work with drift reports already written; ``merge`` joins the shards of one run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from baton.proxy.cli.diff import diff as diff_command
from baton.proxy.cli.errors import InputError
from baton.replay.comparison import DriftClass

__all__ = ["report"]

# The formats `baton diff` writes, whatever they are: a merged report renders the same way.
_FORMATS = next(
    p.type.choices
    for p in diff_command.params
    if p.name == "fmt" and isinstance(p.type, click.Choice)
)


@click.group()
def report() -> None:
    """Work with drift reports written by 'baton diff --format json'.

    \b
    Example (four CI jobs ran baton diff --shard I/4 --format json -o I.json):
      baton report merge 1.json 2.json 3.json 4.json -o drift.json --format json
    """


@report.command("merge")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--fail-on",
    type=click.Choice([c.value for c in DriftClass if c is not DriftClass.NOISE]),
    help="Gate: fail on breaking, additive (or worse) or value [default: the shards' gate].",
)
@click.option(
    "--format", "fmt", type=click.Choice(list(_FORMATS)), default="text", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the merged report here instead of stdout.",
)
def merge_reports(
    reports: tuple[Path, ...], fail_on: str | None, fmt: str, output: Path | None
) -> None:
    """Merge the JSON reports of every shard of one run (baton diff --shard I/N).

    The result is the report one unsharded run would have written: the same
    interactions in the same order, the same counts, the same verdict. The
    exit code is that run's: 1 when a change fails the gate, 0 otherwise,
    2 when the shards do not add up (one missing or given twice, shards of
    different recordings or settings).

    \b
    Example (after four CI jobs each ran baton diff --shard I/4 --format json -o I.json):
      baton report merge 1.json 2.json 3.json 4.json --format markdown -o drift.md
    """
    from baton.replay.report import render, verdict
    from baton.replay.report_merge import ReportMergeError, merge_shard_reports

    loaded = []
    for path in reports:
        try:
            loaded.append((str(path), json.loads(path.read_text(encoding="utf-8"))))
        except FileNotFoundError as exc:
            raise InputError(f"{path}: no such file") from exc
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{path}: not a JSON report ({type(exc).__name__}); "
                "write it with baton diff --format json"
            ) from exc
    try:
        merged = merge_shard_reports(loaded, DriftClass(fail_on) if fail_on else None)
    except ReportMergeError as exc:
        raise InputError(str(exc)) from exc
    text = render(merged, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"baton: merged report written to {output}", err=True)
        if fmt != "text":
            click.echo(verdict(merged), err=True)
    else:
        click.echo(text, nl=False)
    sys.exit(merged.exit_code)
