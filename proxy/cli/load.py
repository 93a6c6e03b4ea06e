"""``baton load``: re-send a cassette's requests to a build at a fixed rate and report latency."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.observability import ObservabilityFlags, observability_options
from baton.proxy.cli.options import configure_logging
from baton.proxy.cli.sources import CASSETTE_LOCATION, local_cassettes
from baton.proxy.cli.standard_output import write_whole

__all__ = ["load"]

_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min))?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_SPEED = re.compile(r"^(\d+(?:\.\d+)?)\s*x?$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)\s*%?$")


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = _RATE.match(value.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--rate {value!r}: write requests per second, e.g. 500/s (or 600/m)")
    per_minute = match.group(2) in ("m", "min")
    return float(match.group(1)) / (60.0 if per_minute else 1.0)


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    match = _DURATION.match(str(value).strip().lower())
    if not match:
        raise InputError(f"--{param.name} {value!r}: write a duration, e.g. 60s, 500ms or 2m")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def _speed(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = _SPEED.match(value.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--speed {value!r}: write a multiple of the recorded timing, e.g. 2x")
    return float(match.group(1))


def _fraction(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    match = _PERCENT.match(value.strip())
    if not match:
        raise InputError(
            f"--{param.name.replace('_', '-')} {value!r}: write a percentage, e.g. 20%"
        )  # type: ignore[union-attr]
    return float(match.group(1)) / 100.0


@click.command()
@click.argument("cassette", type=CASSETTE_LOCATION)
@click.option("--target", required=True, metavar="URL", help="Base URL of the build to load.")
@click.option(
    "--rate",
    metavar="N/s",
    callback=_rate,
    help="Open model: send N requests per second whether or not earlier ones answered "
    "(latency from the intended send time). Without --rate or --speed: closed loop, "
    "as fast as answers come.",
)
@click.option(
    "--speed",
    metavar="Nx",
    callback=_speed,
    help="Open model at a multiple of the recorded timing (2x: twice as fast).",
)
@click.option(
    "--duration", default="10s", show_default=True, callback=_duration, help="Measured time."
)
@click.option(
    "--warmup",
    default="0s",
    show_default=True,
    callback=_duration,
    help="Time sent but not measured, before --duration.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    help="Connections at most (per worker).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sending, each with its share of the rate and its own connections.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.01),
    default=10.0,
    show_default=True,
    help="Seconds a request may take before it counts as a timeout error.",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="NAME:VALUE",
    help="Send this header (replaces a redacted one).",
)
@click.option("--allow-side-effects", is_flag=True, help="Also send POST, PUT, PATCH and DELETE.")
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust this CA bundle (PEM) for an HTTPS target, instead of the system store.",
)
@click.option("--insecure", is_flag=True, help="Do not verify the HTTPS target's certificate.")
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
    "--save-baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save this run's JSON report as a baseline for later --baseline runs.",
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Compare with a report saved by --save-baseline.",
)
@click.option(
    "--max-p99-regression",
    metavar="PERCENT",
    callback=_fraction,
    help="Gate: exit 1 when p99 is more than PERCENT above the --baseline's (e.g. 20%).",
)
@click.option(
    "--max-error-rate",
    metavar="PERCENT",
    callback=_fraction,
    help="Gate: exit 1 when more than PERCENT of requests fail (e.g. 0.1%).",
)
@observability_options
def load(
    cassette: str,
    target: str,
    rate: float | None,
    speed: float | None,
    duration: float,
    warmup: float,
    concurrency: int,
    workers: int,
    timeout: float,
    headers: tuple[str, ...],
    allow_side_effects: bool,
    ca_cert: Path | None,
    insecure: bool,
    fmt: str,
    output: Path | None,
    save_baseline: Path | None,
    baseline: Path | None,
    max_p99_regression: float | None,
    max_error_rate: float | None,
    observability: ObservabilityFlags,
) -> None:
    """Send CASSETTE's recorded requests to --target under load and report the latency.

    With --rate (or --speed) requests leave on a fixed schedule and latency is
    counted from when each was due, so a stall shows in the percentiles
    instead of being hidden by a client that waited for it (coordinated
    omission). Only safe methods are sent unless --allow-side-effects; the
    recorded requests cycle until --duration is over. Exit 1 when a gate is
    crossed, 2 on bad input.

    \b
    Examples:
      baton load api.cassette --target http://127.0.0.1:8000 --rate 500/s --duration 60s
      baton load api.cassette --target http://127.0.0.1:8000 --rate 500/s --save-baseline base.json
      baton load api.cassette --target http://127.0.0.1:8000 --rate 500/s \\
          --baseline base.json --max-p99-regression 20% --max-error-rate 0.1%
    """
    from baton.cassettes import CassetteReader
    from baton.replay.drift import DriftError, supplied_headers
    from baton.replay.load import LoadError, LoadSettings, plan_requests

    try:
        from baton.replay.load_report import (
            BaselineError,
            Gates,
            build_report,
            read_baseline,
            render_load,
        )
    except ImportError as exc:  # hdrhistogram comes with the `load` extra
        raise InputError(
            f"baton load needs the load extra ({exc.name} is missing): "
            "pip install 'baton-replay[load]'"
        ) from exc
    from baton.replay.resend import TLSConfigError, tls_context

    configure_logging(0, True)
    observability.start_logging(True)
    if rate is not None and speed is not None:
        raise InputError("give --rate N/s or --speed Nx, not both")
    if ca_cert is not None and insecure:
        raise InputError("give --ca-cert PATH or --insecure, not both")
    if max_p99_regression is not None and baseline is None:
        raise InputError("--max-p99-regression compares with a baseline: give --baseline FILE")
    if duration <= 0:
        raise InputError("--duration must be more than 0s")
    saved: dict[str, Any] | None = None
    if baseline is not None:
        try:
            saved = read_baseline(baseline.read_text(encoding="utf-8"), str(baseline))
        except FileNotFoundError as exc:
            raise InputError(f"--baseline {baseline}: no such file") from exc
        except BaselineError as exc:
            raise InputError(str(exc)) from exc
    paths = local_cassettes([cassette])
    if len(paths) != 1:
        raise InputError(
            f"{cassette}: names {len(paths)} cassettes; merge them first (baton merge)"
        )
    if not paths[0].exists():
        raise InputError(f"{paths[0]}: no such file")
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    try:
        supplied = supplied_headers(headers)
        if parts.scheme == "https":
            tls_context(ca_cert, insecure=insecure)  # a bad --ca-cert is one line
        with user_errors(), CassetteReader(paths[0], warn_torn=False) as reader:
            plan = plan_requests(
                reader, target, allow_side_effects=allow_side_effects, supplied=supplied
            )
    except (LoadError, DriftError, TLSConfigError) as exc:
        raise InputError(str(exc)) from exc
    if speed is not None and plan.span_s <= 0:
        raise InputError(
            "--speed: the recorded requests carry no timing to speed up (one request, or all at "
            "one instant); give --rate N/s instead"
        )
    assert parts.hostname is not None
    settings = LoadSettings(
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        use_tls=parts.scheme == "https",
        rate=rate,
        speed=speed,
        duration_s=duration,
        warmup_s=warmup,
        concurrency=concurrency,
        timeout_s=timeout,
        workers=workers,
        insecure=insecure,
        ca_cert=None if ca_cert is None else str(ca_cert),
    )
    # One connection (and TLS handshake) first, with diff's rules: an unreachable target or an
    # untrusted certificate is one line, exit 2, not a report of a thousand failed requests.
    import asyncio

    from baton.replay.drift import check_reachable

    try:
        tls = tls_context(ca_cert, insecure=insecure) if parts.scheme == "https" else None
        asyncio.run(check_reachable(target, timeout, tls))
    except DriftError as exc:
        raise InputError(str(exc)) from exc
    from baton.proxy.load_runner import run_load

    samples = run_load(plan, settings, observability)
    report = build_report(
        samples,
        plan,
        target=target,
        rate=rate,
        speed=speed,
        concurrency=concurrency,
        workers=workers,
        duration_s=duration,
        warmup_s=warmup,
    )
    report.apply_gates(Gates(max_p99_regression, max_error_rate), saved)
    text = render_load(report, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"baton: report written to {output}", err=True)
        if fmt != "text":
            click.echo(report.verdict(), err=True)
    else:
        write_whole(text)
    if save_baseline is not None:
        save_baseline.write_text(render_load(report, "json"), encoding="utf-8")
        click.echo(f"baton: baseline saved to {save_baseline}", err=True)
    sys.exit(report.exit_code)
