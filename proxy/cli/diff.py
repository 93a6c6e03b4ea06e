"""``baton diff``: where a new build, or a new recording, answers differently from a cassette."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from baton.cassettes.model import Interaction
from baton.cassettes.reader import CassetteReader
from baton.proxy.cli.configuration import current_config
from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.options import configure_logging
from baton.replay.comparison import DriftClass

__all__ = ["diff"]


@click.command()
@click.argument("cassette", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new_cassette", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--target", metavar="URL", help="Base URL of the build to test, e.g. http://127.0.0.1:8000."
)
@click.option("--concurrency", type=click.IntRange(1, 512), default=32, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds per request.",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME:VALUE",
    help="Send this header (replaces a redacted one).",
)
@click.option(
    "--only",
    multiple=True,
    metavar="PATTERN",
    help="Only endpoints or paths matching this glob, e.g. 'GET /products/*'.",
)
@click.option(
    "--allow-side-effects", is_flag=True, help="Also re-send POST, PUT, PATCH and DELETE."
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="PATH",
    help="Treat this location as noise (body.items[*].ts, $.meta, header.x-id).",
)
@click.option(
    "--ignore-regex",
    multiple=True,
    metavar="REGEX",
    help="Treat locations matching this regex as noise.",
)
@click.option("--ignore-order", is_flag=True, help="Compare JSON lists as multisets.")
@click.option(
    "--learn-noise",
    is_flag=True,
    help="Send each request twice to the reference first; what differs is noise.",
)
@click.option("--reference", metavar="URL", help="Build to learn noise from [default: the target].")
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust this CA bundle (PEM) for HTTPS targets, instead of the system store.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Do not verify HTTPS certificates of the target and reference; the report says so.",
)
@click.option(
    "--noise",
    "noise_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reuse noise saved with --save-noise.",
)
@click.option(
    "--save-noise",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the learned noise to FILE.",
)
@click.option(
    "--fail-on",
    type=click.Choice([c.value for c in DriftClass if c is not DriftClass.NOISE]),
    default=DriftClass.BREAKING.value,
    show_default=True,
    help="Gate: fail on breaking (default), additive (or worse) or value (any drift).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "markdown", "html"]),
    default="text",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here instead of stdout.",
)
def diff(
    cassette: Path,
    new_cassette: Path | None,
    target: str | None,
    concurrency: int,
    timeout: float,
    headers: tuple[str, ...],
    only: tuple[str, ...],
    allow_side_effects: bool,
    ignore: tuple[str, ...],
    ignore_regex: tuple[str, ...],
    ignore_order: bool,
    learn_noise: bool,
    reference: str | None,
    ca_cert: Path | None,
    insecure: bool,
    noise_file: Path | None,
    save_noise: Path | None,
    fail_on: str,
    fmt: str,
    output: Path | None,
) -> None:
    """Tell where a new build (or a new recording) answers differently from CASSETTE.

    Re-sends the recorded requests to --target and compares each answer with
    the recorded one, or compares CASSETTE with NEW_CASSETTE without any
    network. Every difference is breaking, additive, value or noise; the exit
    code is 1 when a change fails the gate, 0 otherwise, 2 on bad input.

    \b
    Examples:
      baton diff api.cassette --target http://127.0.0.1:8000 --learn-noise
      baton diff v1.cassette v2.cassette --format markdown -o drift.md
    """
    import json as json_module

    from baton.replay.comparison import NoiseRules
    from baton.replay.drift import DriftError, diff_against_target, diff_cassettes, supplied_headers
    from baton.replay.report import render

    configure_logging(0, True)
    if (target is None) == (new_cassette is None):
        raise click.UsageError("give either --target URL or a second cassette, not both or neither")
    if ca_cert is not None and insecure:
        raise InputError("give --ca-cert PATH or --insecure, not both")
    gate = DriftClass(fail_on)
    # Per-endpoint rules have no flag; they come from [tool.baton.diff.endpoints."GET /x/*"].
    endpoints = current_config().table("diff", "endpoints")
    rules = NoiseRules(
        paths=list(ignore),
        regexes=list(ignore_regex),
        per_endpoint={pattern: list(rule["ignore"]) for pattern, rule in endpoints.items()},
        ignore_order=ignore_order,
    )
    if noise_file is not None:
        try:
            saved = json_module.loads(noise_file.read_text(encoding="utf-8"))
            for endpoint, locations in saved["learned"].items():
                rules.learn(endpoint, locations)
        except FileNotFoundError as exc:
            raise InputError(f"{noise_file}: no such file") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{noise_file}: not a baton noise file ({type(exc).__name__})"
            ) from exc
    # The recording is streamed: memory holds only the requests in flight.
    with user_errors(), CassetteReader(cassette, warn_torn=False) as old:
        try:
            if new_cassette is not None:
                report = diff_cassettes(
                    old,
                    read_cassette_checked(new_cassette),
                    source=str(cassette),
                    target=str(new_cassette),
                    only=only,
                    rules=rules,
                    fail_on=gate,
                )
            else:
                assert target is not None
                with _progress("re-sending recorded requests") as advance:
                    report = asyncio.run(
                        diff_against_target(
                            old,
                            target,
                            source=str(cassette),
                            concurrency=concurrency,
                            timeout=timeout,
                            supplied=supplied_headers(headers),
                            only=only,
                            allow_side_effects=allow_side_effects,
                            rules=rules,
                            learn_noise=learn_noise,
                            reference=reference,
                            fail_on=gate,
                            progress=advance,
                            ca_cert=ca_cert,
                            insecure=insecure,
                        )
                    )
        except DriftError as exc:
            raise InputError(str(exc)) from exc
    text = render(report, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"baton: report written to {output}", err=True)
        if fmt != "text":
            from baton.replay.report import verdict

            click.echo(verdict(report), err=True)
    else:
        click.echo(text, nl=False)
    if save_noise is not None:
        save_noise.write_text(
            json_module.dumps(rules.learned_json(), indent=2) + "\n", encoding="utf-8"
        )
        click.echo(f"baton: learned noise saved to {save_noise}", err=True)
    sys.exit(report.exit_code)


def read_cassette_checked(path: Path) -> list[Interaction]:
    """Every interaction of ``path``; a torn tail is skipped quietly (the diff is read-only)."""
    with CassetteReader(path, warn_torn=False) as reader:
        return list(reader)


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int], None]]:
    """A live count on a terminal; nothing in a pipe or under CI."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    show = sys.stderr.isatty() and not os.environ.get("CI")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, disable=not show) as progress:
        task = progress.add_task(description, total=None)
        yield lambda n: progress.advance(task, n)
