"""``baton contract``: OpenAPI from recorded traffic, traffic checked against it, and spec diffs.

Three commands over one idea: the recordings that drive replay and drift
also describe the interfaces. ``infer`` writes an OpenAPI 3.1 document from
cassettes, ``check`` validates cassettes against a document, ``diff``
classifies the changes between two documents (or two recordings) the way
``baton diff`` classifies drift. Exit codes as ``baton diff``: 0 fine,
1 violations or a gated change, 2 bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from baton.cassettes.model import Interaction
from baton.cassettes.reader import CassetteReader
from baton.cassettes.wording import plural
from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.options import RedactionFlags, configure_logging, redaction_options
from baton.proxy.cli.sources import CASSETTE_LOCATION, local_cassettes

__all__ = ["contract"]

_REPORT_FORMATS = ["text", "json", "junit", "markdown", "html"]


@click.group()
def contract() -> None:
    """Contracts from recorded traffic: infer OpenAPI, check traffic against it, diff specs.

    \b
    Examples:
      baton contract infer catalog.cassette -o catalog.yaml
      baton contract check --spec catalog.yaml new.cassette --format junit -o contract.xml
      baton contract diff catalog.yaml catalog-v2.yaml
    """


def _cassette_paths(locations: tuple[str | Path, ...]) -> tuple[Path, ...]:
    """Local files for the arguments (paths, globs, URLs: proxy/cli/sources.py), each a file."""
    paths = local_cassettes(locations)
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such cassette")
    return paths


def _interactions(
    paths: tuple[Path, ...], redaction: RedactionFlags | None
) -> Iterator[Interaction]:
    """Every interaction of every cassette, streamed, redacted when asked (examples come from them)."""
    redactor = redaction.redactor() if redaction is not None else None
    for path in paths:
        with user_errors(), CassetteReader(path, warn_torn=False) as reader:
            for interaction in reader:
                yield redactor.redact(interaction) if redactor is not None else interaction


def _load_spec(path: Path) -> dict[str, Any]:
    from baton.formats.openapi import load_document

    try:
        return load_document(path)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _write_report(text: str, output: Path | None, verdict: str, fmt: str) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"baton: report written to {output}", err=True)
    if fmt != "text":
        click.echo(verdict, err=True)


def _report_options(command: Any) -> Any:
    command = click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the report here instead of stdout.",
    )(command)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(_REPORT_FORMATS),
        default="text",
        show_default=True,
        help="text, json, junit (CI), markdown (a pull-request comment) or html (one page).",
    )(command)


@contract.command()
@click.argument("cassettes", nargs=-1, required=True, type=CASSETTE_LOCATION)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="File (.yaml, or .json), or a folder for one file per host [default: stdout].",
)
@click.option("--host", metavar="HOST", help="Only this host (name, name:port or URL).")
@click.option(
    "--path-template",
    multiple=True,
    metavar="TEMPLATE",
    help="Use this template where it matches, e.g. /carts/{cart}/items. Repeatable.",
)
@click.option(
    "--enum-max",
    type=click.IntRange(0, 100),
    default=5,
    show_default=True,
    help="A string field with at most this many distinct values (each seen twice on average) "
    "becomes an enum; 0 for none.",
)
@click.option(
    "--merge-into",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Add what the traffic shows to this document, keeping everything written in it "
    "(written back to it unless -o is given).",
)
@click.option("--title", help="info.title of the document [default: the host].")
@redaction_options
def infer(
    cassettes: tuple[Path, ...],
    output: Path | None,
    host: str | None,
    path_template: tuple[str, ...],
    enum_max: int,
    merge_into: Path | None,
    title: str | None,
    redaction: RedactionFlags,
) -> None:
    """Write an OpenAPI 3.1 document inferred from the traffic in CASSETTE...

    Paths are templated where segments vary (ids, UUIDs, slugs), parameters
    are required when always present, bodies and responses get JSON Schemas
    merged from every observation, with one redacted example each.

    \b
    Examples:
      baton contract infer catalog.cassette -o catalog.yaml
      baton contract infer *.cassette -o specs/
      baton contract infer new.cassette --merge-into catalog.yaml
    """
    from openapi_spec_validator import validate

    from baton.formats.openapi import (
        InferenceOptions,
        dump_document,
        infer_openapi,
        merge_documents,
    )

    configure_logging(0, True)
    cassettes = _cassette_paths(cassettes)
    existing = _load_spec(merge_into) if merge_into is not None else None
    options = InferenceOptions(
        path_templates=path_template, enum_max=enum_max, host=host, title=title
    )
    result = infer_openapi(_interactions(cassettes, redaction), options)
    if not result.documents:
        where = f" for host {host}" if host else ""
        raise InputError(f"no HTTP interactions{where} in {', '.join(map(str, cassettes))}")
    many = len(result.documents) > 1
    # A name without a document's suffix is a folder: click drops a trailing slash.
    folder = output is not None and (
        output.is_dir() or output.suffix.lower() not in (".yaml", ".yml", ".json")
    )
    if many and not folder:
        raise InputError(
            f"{plural(len(result.documents), 'host')} recorded ({', '.join(result.documents)}); "
            "pick one with --host, or give -o a folder for one file per host"
        )
    for origin, document in result.documents.items():
        if existing is not None:
            document = merge_documents(existing, document)
        try:
            validate(document)
        except Exception as exc:  # a bug of ours, or a merge target that was invalid already
            reason = " ".join(str(exc).split())[:200]
            raise InputError(f"the document for {origin} does not validate: {reason}") from exc
        target = output if output is not None else merge_into
        if target is not None and folder:
            target.mkdir(parents=True, exist_ok=True)
            target = target / (origin.split("://", 1)[1].replace(":", "_") + ".yaml")
        text = dump_document(document, target)
        operations = sum(
            1 for item in document["paths"].values() for key in item if key != "parameters"
        )
        summary = (
            f"baton: {origin}: {plural(operations, 'operation')} on "
            f"{plural(len(document['paths']), 'path')}"
        )
        if target is None:
            click.echo(text, nl=False)
            click.echo(summary, err=True)
        else:
            click.echo(f"{summary}, written to {target}", err=True)
    click.echo(f"baton: from {plural(result.interactions, 'interaction')}", err=True)
    for note in result.notes():
        click.echo(f"baton: note: {note}", err=True)


@contract.command()
@click.argument("cassettes", nargs=-1, required=True, type=CASSETTE_LOCATION)
@click.option(
    "--spec",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The OpenAPI document (YAML or JSON, 3.0 or 3.1) the traffic must follow.",
)
@_report_options
def check(cassettes: tuple[Path, ...], spec: Path, fmt: str, output: Path | None) -> None:
    """Check every recorded request and response of CASSETTE... against --spec.

    Unknown paths and methods, undocumented statuses and media types,
    missing required parameters and bodies, and schema violations (each at
    its JSON path) are violations: exit code 1. Servers are matched by path
    only, so traffic from any host checks against the same document.

    \b
    Example:
      baton contract check --spec openapi.yaml recorded/*.cassette --format junit -o contract.xml
    """
    from baton.replay.contract_check import ContractChecker, SpecError
    from baton.replay.contract_report import check_verdict, render_check

    configure_logging(0, True)
    cassettes = _cassette_paths(cassettes)
    document = _load_spec(spec)
    try:
        checker = ContractChecker(document, name=str(spec))
    except SpecError as exc:
        raise InputError(str(exc)) from exc
    sources = [(str(path), _interactions((path,), None)) for path in cassettes]
    report = checker.check_all(sources)
    if fmt == "html":
        from baton.replay.html import render_check_html

        text = render_check_html(report, document)
    else:
        text = render_check(report, fmt)
    _write_report(text, output, check_verdict(report), fmt)
    sys.exit(report.exit_code)


@contract.command(name="diff")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--fail-on",
    # DriftClass's values but noise, spelled out: importing replay.comparison loads deepdiff,
    # which every `baton replay` (it shares this module's options) would pay at start.
    type=click.Choice(["breaking", "additive", "value"]),
    default="breaking",
    show_default=True,
    help="Gate: fail on breaking (default), additive (or worse) or value (any change).",
)
@click.option("--host", metavar="HOST", help="For a cassette given: only this host.")
@_report_options
def diff_specs_command(
    old: Path, new: Path, fail_on: str, host: str | None, fmt: str, output: Path | None
) -> None:
    """Classify the changes from OLD to NEW: breaking, additive or value, with oasdiff's rule ids.

    OLD and NEW are OpenAPI documents, or cassettes (a document is inferred
    from each first). Exit code 1 when a change fails the gate.

    \b
    Examples:
      baton contract diff openapi.yaml inferred.yaml --format markdown -o api-changes.md
      baton contract diff v1.cassette v2.cassette
    """
    from baton.replay.comparison import DriftClass
    from baton.replay.contract_report import diff_verdict, render_spec_diff
    from baton.replay.spec_diff import diff_specs

    configure_logging(0, True)
    report = diff_specs(
        _spec_or_inferred(old, host),
        _spec_or_inferred(new, host),
        source=str(old),
        target=str(new),
        fail_on=DriftClass(fail_on),
    )
    if fmt == "html":
        from baton.replay.html import render_spec_diff_html

        text = render_spec_diff_html(report)
    else:
        text = render_spec_diff(report, fmt)
    _write_report(text, output, diff_verdict(report), fmt)
    sys.exit(report.exit_code)


def _spec_or_inferred(path: Path, host: str | None) -> dict[str, Any]:
    """The document at ``path``, or the one inferred from it when it is a cassette."""
    try:
        with path.open("rb") as handle:
            first = handle.read(1)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    if not first or first[0] < 0x80:  # text: YAML or JSON
        return _load_spec(path)
    from baton.formats.openapi import InferenceOptions, infer_openapi

    result = infer_openapi(_interactions((path,), None), InferenceOptions(host=host))
    if len(result.documents) != 1:
        found = ", ".join(result.documents) or "none"
        raise InputError(
            f"{path}: need one recorded host to infer from (found: {found}); use --host"
        )
    return next(iter(result.documents.values()))


# -- the live check of `baton record --spec` and `baton replay --spec` ------------------


def spec_option(command: Any) -> Any:
    """``--spec``: check each exchange against an OpenAPI document as it passes."""
    return click.option(
        "--spec",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Check every exchange against this OpenAPI document as it passes: violations are "
        "logged and counted, traffic is untouched.",
    )(command)


def live_checks(spec: Path | None) -> list[Any]:
    """The addon that checks traffic against ``spec`` (none without one); a bad spec is exit 2."""
    if spec is None:
        return []
    from baton.proxy.contract_addon import LiveContractCheck, load_checker

    try:
        return [LiveContractCheck(load_checker(spec))]
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def live_summary(checks: list[Any]) -> None:
    """Print what the live check found, after the command's own summary."""
    for check in checks:
        for line in check.summary():
            click.echo(line, err=True)
