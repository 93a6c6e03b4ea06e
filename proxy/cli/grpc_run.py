"""What the gRPC runs of ``baton record``, ``replay`` and ``diff`` do once proxy/cli/grpc.py chose them.

Each imports grpcio and protobuf when it starts (``require_grpc`` names the
extra when they are missing), so loading the CLI costs nothing without them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from baton.cassettes.compression import BodyCompression
from baton.proxy.cli.errors import InputError
from baton.proxy.cli.grpc import GrpcFlags, read_pem, require_grpc, run_until_stopped

if TYPE_CHECKING:  # the loop itself starts in run_until_stopped, for gRPC runs only
    import asyncio

__all__ = ["diff_grpc", "proto_diff", "proto_diff_of_flags", "record_grpc", "replay_grpc"]


def record_grpc(
    cassette: Path,
    mode: str,
    listen_host: str,
    listen_port: int,
    redactor: Any,
    grpc: GrpcFlags,
    fsync: str,
    quiet: bool,
    compression: BodyCompression | None = None,
) -> None:
    """``baton record --mode reverse:h2c://HOST:PORT``: baton's gRPC recorder (proxy/grpc_recording.py)."""
    require_grpc()
    import grpc as grpcio

    from baton.cassettes.errors import CassetteError
    from baton.cassettes.protobuf_schema import ProtoSchema, descriptor_set_from_reflection
    from baton.cassettes.writer import CassetteWriter
    from baton.proxy.grpc_recording import GrpcRecorder, parse_grpc_mode
    from baton.proxy.status import format_address, listen_failure

    try:
        upstream = parse_grpc_mode(mode)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    assert upstream is not None
    if upstream.tls:
        from dataclasses import replace

        upstream = replace(upstream, trust=grpc.trusted())
    schema = grpc.schema()
    if schema is None and grpc.reflection:
        credentials = (
            grpcio.ssl_channel_credentials(root_certificates=upstream.trust)
            if upstream.tls
            else None
        )
        channel = (
            grpcio.secure_channel(upstream.target, credentials)
            if credentials is not None
            else grpcio.insecure_channel(upstream.target)
        )
        try:
            schema = ProtoSchema(descriptor_set_from_reflection(channel), "reflection")
        except grpcio.RpcError as exc:
            raise InputError(
                f"--reflection: {upstream.target} did not answer reflection "
                f"({exc.code().name}); give --proto or --descriptor-set instead"  # type: ignore[attr-defined]
            ) from exc
        finally:
            channel.close()
    meta: dict[str, Any] = {"recorded_with": "baton record", "mode": [mode]}
    if schema is not None:
        meta["grpc_schema"] = schema.file_set
        meta["grpc_schema_source"] = schema.source
    server_credentials = grpc.server_credentials()
    try:
        writer = CassetteWriter(
            cassette,
            redactor=None,
            fsync=fsync,
            meta=meta,
            discard_if_empty=True,
            compression=compression,
        )
    except CassetteError as exc:
        raise InputError(str(exc)) from exc
    recorder = GrpcRecorder(upstream, writer, schema, grpc.redact_fields, redactor=redactor)

    async def main(stop: asyncio.Event) -> None:
        try:
            port = await recorder.start(listen_host, listen_port, server_credentials)
        except RuntimeError as exc:
            raise InputError(listen_failure(listen_host, listen_port, None, str(exc))) from exc
        scheme = "grpcs" if upstream.tls else "h2c"
        if not quiet:
            click.echo(
                f"baton: recording gRPC calls to {scheme}://{upstream.target} into {cassette}; "
                f"listening on {format_address(listen_host, port)} "
                f"({'TLS' if server_credentials is not None else 'h2c'}; schema: "
                f"{schema.source if schema is not None else 'none, wire decode'})",
                err=True,
            )
        try:
            await stop.wait()
        finally:
            await recorder.stop()

    try:
        run_until_stopped(main)
    finally:
        writer.close()
    if not quiet:
        click.echo(f"baton: recorded {recorder.recorded} gRPC calls into {cassette}", err=True)
    if recorder.failed:
        sys.exit(1)


def replay_grpc(
    cassettes: tuple[Path, ...],
    listen_host: str,
    listen_port: int,
    grpc: GrpcFlags,
    fail_on_miss: bool,
    quiet: bool,
    http: tuple[Any, float | None] | None = None,
) -> None:
    """``baton replay`` of a cassette of gRPC calls: a grpcio server answering from it.

    ``http`` (the ``ReplayOptions`` and latency scale of the command): when the
    cassettes hold HTTP exchanges too, baton's fast server answers them on the
    same port, a ``PrefaceSplitter`` telling the two kinds of client apart.
    """
    require_grpc()
    import grpc as grpcio

    from baton.cassettes.errors import CassetteError
    from baton.cassettes.reader import CassetteReader
    from baton.proxy.status import format_address, listen_failure, replay_summary
    from baton.replay.grpc_replay import GrpcReplayer, start_replay_server
    from baton.replay.protocol_split import PrefaceSplitter
    from baton.replay.server import ReplayServer

    interactions = []
    meta: dict[str, Any] = {}
    try:
        for path in cassettes:
            with CassetteReader(path) as reader:
                meta = meta or reader.meta
                interactions.extend(reader)
    except CassetteError as exc:
        raise InputError(str(exc)) from exc
    schema = grpc.schema(meta)
    replayer = GrpcReplayer(
        interactions, schema, miss_code=getattr(grpcio.StatusCode, grpc.miss_status)
    )
    left_out = len(interactions) - len(replayer)
    server_credentials = grpc.server_credentials()
    # HTTP beside gRPC on one port needs the preface to tell them apart: h2c only.
    index = None
    if left_out and http is not None and server_credentials is None:
        options, latency = http
        try:
            index = options.load(cassettes, address=False)
        except ValueError as exc:
            raise InputError(str(exc)) from exc

    async def main(stop: asyncio.Event) -> None:
        front: PrefaceSplitter | None = None
        http_server: ReplayServer | None = None
        try:
            if index is None:
                server, port = await start_replay_server(
                    replayer, listen_host, listen_port, server_credentials
                )
                host = listen_host
            else:
                server, grpc_port = await start_replay_server(replayer, "127.0.0.1", 0)
                http_server = ReplayServer(
                    index, miss_status=options.miss_status, latency_scale=latency
                )
                _, http_port = await http_server.start()
                front = PrefaceSplitter(listen_host, listen_port, grpc_port, http_port)
                host, port = await front.start()
        except (OSError, RuntimeError) as exc:
            raise InputError(listen_failure(listen_host, listen_port, None, str(exc))) from exc
        if not quiet:
            if index is not None:
                extra = f"; {left_out} HTTP interactions answered on the same port (HTTP/1.1)"
            elif left_out:
                extra = f"; {left_out} HTTP interactions left out (replay them apart)"
            else:
                extra = ""
            click.echo(
                f"baton: replaying {len(replayer)} gRPC calls from "
                f"{', '.join(map(str, cassettes))}; listening on "
                f"{format_address(host, port)} "
                f"(gRPC: {'TLS' if server_credentials is not None else 'h2c'}; schema: "
                f"{schema.source if schema is not None else 'none, wire decode'}){extra}",
                err=True,
            )
        try:
            await stop.wait()
        finally:
            if front is not None:
                await front.close()
            if http_server is not None:
                await http_server.close()
            await server.stop(grace=1)

    run_until_stopped(main)
    unused = replayer.unused()
    click.echo(
        f"baton: {replayer.hits} gRPC calls answered, {len(replayer.misses)} missed, "
        f"{len(unused)} recorded calls unused",
        err=True,
    )
    for line in replayer.misses[:20]:
        click.echo(f"  miss: {line}", err=True)
    if index is not None:
        for line in replay_summary(index):
            click.echo(line, err=True)
    if fail_on_miss and (replayer.misses or (index is not None and index.misses)):
        sys.exit(1)


def _schema_file(path: Path) -> bytes:
    from baton.cassettes.protobuf_schema import SchemaError, compile_protos, load_descriptor_set

    try:
        if path.suffix == ".proto":
            return compile_protos([path])
        return load_descriptor_set(path)
    except SchemaError as exc:
        raise InputError(str(exc)) from exc


def proto_diff_of_flags(grpc: GrpcFlags) -> None:
    """``baton diff --proto OLD.proto --proto-new NEW.proto`` (or --descriptor-set OLD)."""
    require_grpc()
    from baton.cassettes.protobuf_schema import SchemaError, compile_protos, load_descriptor_set
    from baton.replay.proto_diff import diff_descriptor_sets

    assert grpc.proto_new is not None
    try:
        if grpc.protos:
            old = compile_protos(grpc.protos)
        elif grpc.descriptor_set is not None:
            old = load_descriptor_set(grpc.descriptor_set)
        else:
            raise InputError(
                "--proto-new needs the old schema: --proto OLD.proto or --descriptor-set OLD"
            )
    except SchemaError as exc:
        raise InputError(str(exc)) from exc
    result = diff_descriptor_sets(old, _schema_file(grpc.proto_new))
    click.echo(result.render(), nl=False)
    sys.exit(1 if result.breaking else 0)


def proto_diff(old: Path, new: Path) -> None:
    """``baton diff OLD.proto NEW.proto``: wire-incompatible changes; exit 1 when there are any."""
    require_grpc()
    from baton.replay.proto_diff import diff_descriptor_sets

    result = diff_descriptor_sets(_schema_file(old), _schema_file(new))
    click.echo(result.render(), nl=False)
    sys.exit(1 if result.breaking else 0)


def diff_grpc(
    cassette: Path,
    target: str,
    grpc: GrpcFlags,
    *,
    headers: dict[str, str],
    only: tuple[str, ...],
    rules: Any,
    learn_noise: bool,
    reference: str | None,
    ca_cert: Path | None,
    fail_on: str,
    fmt: str,
    output: Path | None,
    save_noise: Path | None,
    timeout: float,
) -> None:
    """``baton diff GRPC.cassette --target h2c://HOST:PORT``: re-send every call, report the drift."""
    require_grpc()
    import json

    import grpc as grpcio

    from baton.cassettes.errors import CassetteError
    from baton.cassettes.protobuf_schema import ProtoSchema, descriptor_set_from_reflection
    from baton.cassettes.reader import CassetteReader
    from baton.replay.comparison import DriftClass
    from baton.replay.grpc_drift import parse_grpc_target, run_grpc_diff
    from baton.replay.report import render, verdict

    trust = None if ca_cert is None else read_pem(ca_cert, "--ca-cert")
    try:
        live = parse_grpc_target(target, trust)
        reference_target = None if reference is None else parse_grpc_target(reference, trust)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    try:
        with CassetteReader(cassette) as reader:
            meta = reader.meta
            interactions = list(reader)
    except CassetteError as exc:
        raise InputError(str(exc)) from exc
    recorded_schema = grpc.schema(meta)
    # The target's own schema, when it serves reflection: a renamed field then shows.
    fresh_schema = None
    if live.tls:
        channel = grpcio.secure_channel(
            live.address, grpcio.ssl_channel_credentials(root_certificates=trust)
        )
    else:
        channel = grpcio.insecure_channel(live.address)
    try:
        fresh_schema = ProtoSchema(descriptor_set_from_reflection(channel), "reflection")
    except Exception:  # no reflection there (or not reachable yet): the recording's schema decodes
        fresh_schema = None
    finally:
        channel.close()
    report = run_grpc_diff(
        interactions=interactions,
        target=live,
        source=str(cassette),
        recorded_schema=recorded_schema,
        fresh_schema=fresh_schema,
        rules=rules,
        fail_on=DriftClass(fail_on),
        supplied=headers,
        learn_noise=learn_noise,
        reference=reference_target,
        timeout=timeout,
        only=only,
    )
    text = render(report, fmt)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(f"baton: report written to {output}", err=True)
        click.echo(verdict(report), err=True)
    else:
        click.echo(text, nl=False)
    if save_noise is not None:
        save_noise.write_text(json.dumps(rules.learned_json(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"baton: learned noise saved to {save_noise}", err=True)
    sys.exit(report.exit_code)
