"""``baton replay``: answer requests from cassettes in place of the recorded services."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from baton.cassettes.compression import BodyCompression
from baton.proxy.cli.contract import live_checks, live_summary, spec_option
from baton.proxy.cli.errors import InputError, user_errors
from baton.proxy.cli.faults import FaultFlags, fault_options, fault_summary, serve_fault_metrics
from baton.proxy.cli.fidelity import FidelityFlags, fidelity_options, finish_replay
from baton.proxy.cli.grpc import GrpcFlags, cassette_holds_grpc, grpc_options
from baton.proxy.cli.grpc_run import replay_grpc
from baton.proxy.cli.limits import limit_options, mitmproxy_limit_options
from baton.proxy.cli.observability import (
    ObservabilityFlags,
    observability_options,
    replay_observers,
    serve_replay_metrics,
)
from baton.proxy.cli.options import (
    RedactionFlags,
    compression_option,
    configure_logging,
    listen_options,
    mitmproxy_options,
    mode_option,
    redaction_options,
)
from baton.proxy.cli.replay_workers import refuse_workers, replay_workers
from baton.proxy.cli.sources import CASSETTE_LOCATION, local_cassettes
from baton.replay.index import ExhaustedPolicy
from baton.replay.limits import ServerLimits
from baton.replay.options import ReplayOptions, recorded_origins
from baton.replay.record_mode import RecordMode

if TYPE_CHECKING:
    from baton.replay.faults import FaultPlan

__all__ = ["replay"]


@click.command()
@click.argument("cassettes", nargs=-1, required=True, type=CASSETTE_LOCATION)
@mode_option(
    default="reverse",
    help="reverse (serve the recorded hosts on one port), reverse:URL, regular, upstream:URL, "
    "transparent, socks5.",
    bare_reverse=True,
)
@listen_options
@click.option(
    "--record-mode",
    type=click.Choice([m.value for m in RecordMode]),
    default=RecordMode.NONE.value,
    show_default=True,
    help="none: never touch the network; once; new_episodes; all (VCR.py's meanings).",
)
@click.option(
    "--match-on",
    metavar="LIST",
    help="Comma-separated matchers: method,scheme,host,port,path,query,body [default: all].",
)
@click.option("--match-header", multiple=True, metavar="NAME", help="Add a header to the key.")
@click.option("--ignore-query", multiple=True, metavar="NAME", help="Leave a query name out.")
@click.option("--ignore-field", multiple=True, metavar="JSONPATH", help="Leave a JSON field out.")
@click.option("--match-secrets", is_flag=True, help="Match redacted values by their keyed hash.")
@click.option(
    "--on-exhausted",
    type=click.Choice([p.value for p in ExhaustedPolicy]),
    default=ExhaustedPolicy.REPEAT_LAST.value,
    show_default=True,
    help="When identical requests outnumber their recorded answers.",
)
@click.option(
    "--miss-status",
    type=click.IntRange(100, 599),
    default=502,
    show_default=True,
    help="Status of the answer to an unmatched request.",
)
@click.option(
    "--replay-latency",
    type=click.FloatRange(0),
    is_flag=False,
    flag_value=1.0,
    default=None,
    metavar="[SCALE]",
    help="Wait the recorded duration (times SCALE, default 1) before answering.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Fast path: serve from N processes on one port (SO_REUSEPORT), e.g. one per core.",
)
@fault_options
@limit_options
@redaction_options
@compression_option
@click.option("--fail-on-miss", is_flag=True, help="Exit 1 at the end if any request missed.")
@fidelity_options
@observability_options
@spec_option
@grpc_options(replay=True)
@mitmproxy_options("Any mitmproxy option (implies the mitmproxy path).")
def replay(
    cassettes: tuple[str | Path, ...],
    modes: tuple[str, ...],
    listen_host: str,
    listen_port: int,
    record_mode: str,
    match_on: str | None,
    match_header: tuple[str, ...],
    ignore_query: tuple[str, ...],
    ignore_field: tuple[str, ...],
    match_secrets: bool,
    on_exhausted: str,
    miss_status: int,
    replay_latency: float | None,
    workers: int,
    faults: FaultFlags,
    limits: ServerLimits,
    redaction: RedactionFlags,
    compression: BodyCompression | None,
    fail_on_miss: bool,
    fidelity: FidelityFlags,
    spec: Path | None,
    extra: tuple[str, ...],
    verbose: int,
    quiet: bool,
    observability: ObservabilityFlags,
    grpc: GrpcFlags,
) -> None:
    """Answer requests from CASSETTE... in place of the recorded services.

    By default it serves every recorded host in reverse mode on one port with
    baton's own fast server (plain HTTP/1.1); other modes, HTTPS and HTTP/2 go
    through mitmproxy. It prints which path it took, and at the end the hits,
    the misses and the recorded interactions nobody asked for.

    \b
    Example:
      baton replay cassettes/catalog.cassette --listen-port 9000
      curl http://127.0.0.1:9000/products
    """
    configure_logging(verbose, quiet)
    observability.activate(quiet)
    # Paths, globs, directories and s3://... URLs (copied to a local cache) as local files.
    cassettes = local_cassettes(cassettes)
    mode = RecordMode(record_mode)
    options = ReplayOptions(
        match_on=[m.strip() for m in match_on.split(",") if m.strip()] if match_on else None,
        match_headers=match_header,
        ignore_query=ignore_query,
        ignore_fields=ignore_field,
        match_secrets=match_secrets,
        on_exhausted=on_exhausted,
        miss_status=miss_status,
        record_mode=mode.value,
        # What new_episodes and all record is redacted as `baton record` would.
        redaction=redaction.addon_options(),
        compress=str(compression) if compression else "none",
        # State, sessions, dynamic values, time, the run log (proxy/cli/fidelity.py).
        **fidelity.replay_options(),
    )
    for path in cassettes:
        may_be_missing = mode in (RecordMode.ONCE, RecordMode.ALL) and path == cassettes[0]
        if not path.exists() and not may_be_missing:
            raise InputError(f"{path}: no such file")
    fault_plan = faults.plan()  # a bad rule is one line, exit 2, before anything listens
    replaying_only = mode is RecordMode.NONE or (mode is RecordMode.ONCE and cassettes[0].exists())
    reverse_plain = all(m == "reverse" or m.startswith("reverse:http://") for m in modes)
    fast = replaying_only and reverse_plain and not extra and spec is None
    if workers > 1:  # what needs one process is refused: one line, exit 2
        metrics = observability.metrics_port is not None
        fast_only = fast and not cassette_holds_grpc(cassettes)
        refuse_workers(workers, fast_only, fault_plan is not None, metrics)
    if replaying_only and reverse_plain and cassette_holds_grpc(cassettes):
        # gRPC clients speak HTTP/2 (h2c or TLS): a grpcio server answers (replay/grpc_replay.py).
        replay_grpc(
            cassettes,
            listen_host,
            listen_port,
            grpc,
            fail_on_miss,
            quiet,
            http=(options, replay_latency),
        )
        return
    # The live contract check is a mitmproxy addon: --spec takes the mitmproxy path.
    if fast:
        _replay_fast(
            cassettes,
            listen_host,
            listen_port,
            options,
            replay_latency,
            fail_on_miss,
            quiet,
            fault_plan,
            limits,
            workers,
        )
    else:
        _replay_mitmproxy(
            cassettes,
            modes,
            listen_host,
            listen_port,
            options,
            replay_latency,
            fail_on_miss,
            extra,
            quiet,
            live_checks(spec),
            faults,
            limits if mode is RecordMode.NONE else None,
        )


def _replay_fast(
    cassettes: tuple[Path, ...],
    listen_host: str,
    listen_port: int,
    options: ReplayOptions,
    replay_latency: float | None,
    fail_on_miss: bool,
    quiet: bool,
    fault_plan: FaultPlan | None = None,
    limits: ServerLimits | None = None,
    workers: int = 1,
) -> None:
    import signal

    from baton.proxy.status import (
        ReplayStatus,
        format_address,
        listen_failure,
        plural,
        replay_summary,
    )
    from baton.replay.server import ReplayServer, install_fast_loop

    with user_errors():
        try:
            index = options.load(cassettes, address=False)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
    gc.freeze()  # start-up's objects live as long as the server: no full collection walks them
    if workers > 1:
        listen, latency = (listen_host, listen_port), replay_latency
        replay_workers(index, cassettes, workers, listen, options, limits, latency, fail_on_miss)
        return
    install_fast_loop()
    server = ReplayServer(
        index,
        host=listen_host,
        port=listen_port,
        miss_status=options.miss_status,
        latency_scale=replay_latency,
        faults=fault_plan,
        limits=limits,
    )

    status = ReplayStatus(lambda: index, quiet=quiet)
    # --metrics-port: served and missed requests are the index's own counts, read when scraped.
    serve_replay_metrics(lambda: index)
    rules = tuple(rule.text for rule in fault_plan.rules) if fault_plan is not None else ()
    serve_fault_metrics(rules, lambda: server.faults)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            host, port = await server.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise InputError(listen_failure(listen_host, listen_port, exc.errno, reason)) from exc
        click.echo(
            f"baton: replaying {plural(len(index), 'interaction')} from "
            f"{', '.join(map(str, cassettes))}; listening on {format_address(host, port)} "
            "(fast path: reverse mode, plain HTTP/1.1)",
            err=True,
        )
        status.start()
        try:
            while not stop.is_set():
                status.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            status.stop()
            await server.close()

    asyncio.run(serve())
    for line in replay_summary(index) + fault_summary(server.faults):
        click.echo(line, err=True)
    unused = finish_replay(index, options, cassettes, write_log=True)
    if (fail_on_miss and index.misses) or unused:
        sys.exit(1)


def _replay_mitmproxy(
    cassettes: tuple[Path, ...],
    modes: tuple[str, ...],
    listen_host: str,
    listen_port: int,
    options: ReplayOptions,
    replay_latency: float | None,
    fail_on_miss: bool,
    extra: tuple[str, ...],
    quiet: bool,
    checks: list[object],
    faults: FaultFlags | None = None,
    limits: ServerLimits | None = None,
) -> None:
    from baton.proxy.replayer import Replayer
    from baton.proxy.running import ProxySettings, ProxyStartupError, run_proxy
    from baton.proxy.status import ReplayStatus, format_address, plural, replay_summary

    resolved = tuple(_reverse_target(cassettes) if m == "reverse" else m for m in modes)
    reverse = all(m.startswith("reverse:") for m in resolved)
    settings = ProxySettings(
        modes=resolved,
        listen_host=listen_host,
        listen_port=listen_port,
        extra=extra,
        options={
            # Answer in the request hook before any upstream connection exists.
            "connection_strategy": "lazy",
            **options.addon_options(cassettes, address=not reverse),
            "baton_replay_latency": None if replay_latency is None else str(replay_latency),
            **(faults.addon_options() if faults is not None else {}),
            # Replaying only: mitmproxy refuses larger request bodies with 413 (recording
            # modes leave it unset, as `baton record` does: it would cut recorded answers).
            **(mitmproxy_limit_options(limits) if limits is not None else {}),
        },
    )
    replayer = Replayer()
    status = ReplayStatus(lambda: replayer.index, quiet=quiet)
    serve_replay_metrics(lambda: replayer.index)
    serve_fault_metrics(faults.rules if faults is not None else (), lambda: replayer.faults)

    def ready(addresses: list[tuple[str, int]]) -> None:
        where = ", ".join(format_address(h, p) for h, p in addresses)
        count = len(replayer.index) if replayer.index is not None else 0
        click.echo(
            f"baton: replaying {plural(count, 'interaction')} from "
            f"{', '.join(map(str, cassettes))}; "
            f"listening on {where} (mitmproxy path: {', '.join(resolved)}; "
            f"record mode {options.record_mode})",
            err=True,
        )
        status.start()

    try:
        addons = [replayer, *checks, *replay_observers()]
        asyncio.run(run_proxy(settings, addons, ready, status.tick))
    except ProxyStartupError as exc:
        raise InputError(str(exc)) from exc
    finally:
        status.stop()
        replayer.done()
    live_summary(checks)
    if replayer.index is not None:
        for line in replay_summary(replayer.index) + fault_summary(replayer.faults):
            click.echo(line, err=True)
        if replayer.recorded:
            click.echo(
                f"baton: recorded {plural(replayer.recorded, 'new interaction')} "
                f"into {cassettes[0]}",
                err=True,
            )
        unused = finish_replay(replayer.index, options, cassettes, write_log=False)
        if (fail_on_miss and replayer.index.misses) or unused:
            sys.exit(1)


def _reverse_target(cassettes: tuple[Path, ...]) -> str:
    """``reverse`` alone names no upstream; take the cassettes' one recorded host."""
    with user_errors():
        origins = recorded_origins(cassettes)
    if len(origins) != 1:
        found = ", ".join(sorted(origins)) or "none"
        raise InputError(
            f"cannot tell which upstream reverse mode stands for (recorded hosts: {found}); "
            "name it with --mode reverse:URL"
        )
    return f"reverse:{origins.pop()}"
