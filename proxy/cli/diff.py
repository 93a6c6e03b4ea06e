"""``baton diff``: where a new build, or a new recording, answers differently from a cassette."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from baton.proxy.cli.configuration import current_config
from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.fidelity import graphql_schema_option
from baton.proxy.cli.grpc import GrpcFlags, grpc_diff_wanted, grpc_options
from baton.proxy.cli.grpc_run import diff_grpc, proto_diff, proto_diff_of_flags
from baton.proxy.cli.limits import answer_limit_options
from baton.proxy.cli.options import configure_logging
from baton.proxy.cli.sources import CASSETTE_LOCATION
from baton.proxy.cli.standard_output import write_whole
from baton.replay.comparison import DriftClass
from baton.replay.limits import AnswerLimits

__all__ = ["diff"]


@click.command()
@click.argument("cassette", required=False, type=CASSETTE_LOCATION)
@click.argument("new_cassette", required=False, type=CASSETTE_LOCATION)
@click.option(
    "--target", metavar="URL", help="Base URL of the build to test, e.g. http://127.0.0.1:8000."
)
@graphql_schema_option
@grpc_options(diff=True)
@click.option("--concurrency", type=click.IntRange(1, 512), default=32, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds per request (and to reach a --dask scheduler).",
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
@answer_limit_options
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
@click.option(
    "--shard",
    metavar="I/N",
    help="Compare only shard I of N (a stable split by request key); merge the JSON reports "
    "with 'baton report merge'.",
)
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS",
    help="Fan the shards out over a Dask cluster (tcp://HOST:PORT), or 'local' for one here.",
)
@click.option(
    "--dask-workers",
    type=click.IntRange(1, 256),
    default=2,
    show_default=True,
    help="Worker processes of --dask local.",
)
def diff(
    cassette: str | None,
    new_cassette: str | None,
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
    answers: AnswerLimits,
    noise_file: Path | None,
    save_noise: Path | None,
    fail_on: str,
    fmt: str,
    output: Path | None,
    shard: str | None,
    dask_address: str | None,
    dask_workers: int,
    grpc: GrpcFlags,
) -> None:
    """Tell where a new build (or a new recording) answers differently from CASSETTE.

    Re-sends the recorded requests to --target and compares each answer with
    the recorded one, or compares CASSETTE with NEW_CASSETTE without any
    network. Every difference is breaking, additive, value or noise; the exit
    code is 1 when a change fails the gate, 0 otherwise, 2 on bad input.
    A cassette argument may be a path, a glob, a directory or an fsspec URL;
    several cassettes are read as one, interleaved by recorded time.

    \b
    Examples:
      baton diff api.cassette --target http://127.0.0.1:8000 --learn-noise
      baton diff v1.cassette v2.cassette --format markdown -o drift.md
      baton diff api.cassette --target http://127.0.0.1:8000 --shard 2/4 --format json -o 2.json
      baton diff api.cassette --target http://127.0.0.1:8000 --dask tcp://10.0.0.5:8786
      baton diff grpc.cassette --target h2c://127.0.0.1:50051
      baton diff orders-v1.proto orders-v2.proto
    """
    import json as json_module

    from baton.replay.drift import DriftError, supplied_headers
    from baton.replay.drift_job import DiffJob
    from baton.replay.report import render
    from baton.replay.sharding import Shard, ShardError

    configure_logging(0, True)
    if grpc.proto_new is not None:
        proto_diff_of_flags(grpc)  # gRPC schemas compared: no cassette (proxy/cli/grpc_run.py)
    if cassette is None:
        raise click.UsageError("Missing argument 'CASSETTE'.")
    if (target is None) == (new_cassette is None):
        raise click.UsageError("give either --target URL or a second cassette, not both or neither")
    if ca_cert is not None and insecure:
        raise InputError("give --ca-cert PATH or --insecure, not both")
    if shard is not None and dask_address is not None:
        raise InputError("give --shard I/N or --dask ADDRESS, not both")
    # Per-endpoint rules have no flag; they come from [tool.baton.diff.endpoints."GET /x/*"].
    endpoints = current_config().table("diff", "endpoints")
    noise: dict[str, list[str]] = {}
    if noise_file is not None:
        try:
            saved = json_module.loads(noise_file.read_text(encoding="utf-8"))
            for endpoint, locations in saved["learned"].items():
                noise[str(endpoint)] = [str(location) for location in locations]
        except FileNotFoundError as exc:
            raise InputError(f"{noise_file}: no such file") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{noise_file}: not a baton noise file ({type(exc).__name__})"
            ) from exc
    if grpc_diff_wanted(cassette, new_cassette, target):
        if shard is not None or dask_address is not None:
            raise InputError("--shard and --dask split HTTP cassettes; a gRPC diff runs whole")
        # gRPC (proxy/cli/grpc.py): two schemas compared, or recorded calls re-sent.
        if new_cassette is not None:
            proto_diff(Path(cassette), Path(new_cassette))
        from baton.replay.comparison import NoiseRules

        rules = NoiseRules(list(ignore), list(ignore_regex), {}, {}, ignore_order)
        for endpoint, locations in noise.items():
            rules.learn(endpoint, locations)
        assert target is not None
        diff_grpc(
            Path(cassette),
            target,
            grpc,
            headers=supplied_headers(headers),
            only=only,
            rules=rules,
            learn_noise=learn_noise,
            reference=reference,
            ca_cert=ca_cert,
            fail_on=fail_on,
            fmt=fmt,
            output=output,
            save_noise=save_noise,
            timeout=timeout,
        )
    try:
        job = DiffJob(
            cassette=_shown(cassette),
            new_cassette=None if new_cassette is None else _shown(new_cassette),
            target=target,
            concurrency=concurrency,
            timeout=timeout,
            supplied=supplied_headers(headers) if target is not None else {},
            only=only,
            allow_side_effects=allow_side_effects,
            ignore=ignore,
            ignore_regex=ignore_regex,
            per_endpoint={pattern: list(rule["ignore"]) for pattern, rule in endpoints.items()},
            ignore_order=ignore_order,
            noise=noise,
            learn_noise=learn_noise,
            reference=reference,
            fail_on=fail_on,
            ca_cert=None if ca_cert is None else str(ca_cert),
            insecure=insecure,
            answers=answers,
        )
        rules = job.rules()
        with user_errors():
            if dask_address is not None:
                from baton.proxy.dask_fanout import diff_on_dask

                report, shards = diff_on_dask(job, dask_address, workers=dask_workers)
                click.echo(f"baton: {shards} shards on Dask ({dask_address}), merged", err=True)
                if report.learned_noise is not None:
                    rules = report.learned_noise
            else:
                chosen = None if shard is None else Shard.parse(shard, by_endpoint=learn_noise)
                if target is None:  # two recordings: no network, nothing to wait for
                    report = job.run(chosen, rules)
                else:
                    with _progress("re-sending recorded requests") as advance:
                        report = job.run(chosen, rules, advance)
    except (DriftError, ShardError) as exc:
        raise InputError(str(exc)) from exc
    text = render(report, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"baton: report written to {output}", err=True)
        if fmt != "text":
            from baton.replay.report import verdict

            click.echo(verdict(report), err=True)
    else:
        write_whole(text)
    if save_noise is not None:
        save_noise.write_text(
            json_module.dumps(rules.learned_json(), indent=2) + "\n", encoding="utf-8"
        )
        click.echo(f"baton: learned noise saved to {save_noise}", err=True)
    sys.exit(report.exit_code)


def _shown(location: str) -> str:
    """A location as reports name it: a URL or glob as given, a path as ``Path`` writes it."""
    from baton.cassettes.locations import is_url

    return location if is_url(location) else str(Path(location))


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int], None]]:
    """A live count on a terminal; nothing in a pipe or under CI."""
    if not sys.stderr.isatty() or os.environ.get("CI"):
        yield lambda n: None  # rich (~0.07 s to import) only where it shows
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=None)
        yield lambda n: progress.advance(task, n)
