"""The gRPC side of ``baton record``, ``baton replay`` and ``baton diff``: options and the runs they start.

The commands stay as they are for HTTP; each asks ``GrpcFlags`` whether this
run is a gRPC one (``--mode reverse:h2c://...`` for record, a cassette of
gRPC calls for replay, ``--proto-new`` for diff) and hands over to a
function here. grpcio and protobuf are imported only then, so baton without
the ``grpc`` extra starts as before and says which extra to install when a
gRPC feature is asked for.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from baton.proxy.cli.errors import InputError

__all__ = ["GrpcFlags", "grpc_options", "record_grpc", "replay_grpc", "require_grpc"]

_MISSING = (
    "gRPC support needs the grpc extra: pip install 'baton-replay[grpc]' "
    "(grpcio, grpcio-tools, grpcio-reflection, protobuf)"
)


def require_grpc() -> None:
    """Raise ``InputError`` naming the extra when grpcio or protobuf is not installed."""
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
    except ImportError as exc:
        raise InputError(_MISSING) from exc


@dataclass(frozen=True)
class GrpcFlags:
    """What the gRPC options of a command said."""

    protos: tuple[Path, ...] = ()
    descriptor_set: Path | None = None
    reflection: bool = False
    cert: Path | None = None
    trust: Path | None = None
    redact_fields: tuple[str, ...] = ()
    miss_status: str = "UNIMPLEMENTED"

    def schema(self, cached: dict[str, Any] | None = None) -> Any:
        """The ``ProtoSchema`` the options name, else the one a cassette header cached, else None."""
        require_grpc()
        from baton.formats.protobuf_schema import (
            ProtoSchema,
            SchemaError,
            compile_protos,
            load_descriptor_set,
        )

        try:
            if self.protos:
                return ProtoSchema(compile_protos(self.protos), "proto")
            if self.descriptor_set is not None:
                return ProtoSchema(load_descriptor_set(self.descriptor_set), "descriptor-set")
        except SchemaError as exc:
            raise InputError(str(exc)) from exc
        if cached and isinstance(cached.get("grpc_schema"), bytes):
            try:
                return ProtoSchema(
                    cached["grpc_schema"], str(cached.get("grpc_schema_source") or "reflection")
                )
            except SchemaError:
                return None  # a damaged cache: decode from the wire, as without one
        return None

    def server_credentials(self) -> Any:
        """grpcio TLS credentials from ``--grpc-cert`` (certificate chain and key in one PEM), or None."""
        if self.cert is None:
            return None
        import grpc

        pem = _read(self.cert, "--grpc-cert")
        if b"PRIVATE KEY" not in pem or b"CERTIFICATE" not in pem:
            raise InputError(
                f"--grpc-cert {self.cert}: needs the certificate chain and its private key "
                "in one PEM file"
            )
        return grpc.ssl_server_credentials([(pem, pem)])

    def trusted(self) -> bytes | None:
        """PEM certificates to trust for a TLS upstream (``--grpc-ca``), or None for the system's."""
        return None if self.trust is None else _read(self.trust, "--grpc-ca")


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{option} {path}: {exc.strerror or exc}") from exc


def grpc_options(
    *, record: bool = False, replay: bool = False, diff: bool = False
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The gRPC options of a command, gathered into one ``grpc`` argument (``GrpcFlags``)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        def option(*args: Any, **kwargs: Any) -> None:
            nonlocal command
            opt = click.option(*args, expose_value=False, callback=_stash, **kwargs)
            command = opt(command)

        option(
            "--proto",
            "grpc_protos",
            multiple=True,
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="gRPC: .proto files that decode messages (compiled at start; repeatable).",
        )
        option(
            "--descriptor-set",
            "grpc_descriptor_set",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="gRPC: a FileDescriptorSet (protoc --descriptor_set_out) that decodes messages.",
        )
        if record:
            option(
                "--reflection",
                "grpc_reflection",
                is_flag=True,
                help="gRPC: ask the upstream's reflection service for the schema, cached in "
                "the cassette header.",
            )
            option(
                "--grpc-ca",
                "grpc_trust",
                type=click.Path(dir_okay=False, path_type=Path),
                metavar="PEM",
                help="gRPC: certificates to trust for a reverse:grpcs:// upstream.",
            )
            option(
                "--redact-grpc-field",
                "grpc_redact_fields",
                multiple=True,
                metavar="PATH",
                help="gRPC: blank this message field (user.password; field numbers 2.1 "
                "without a schema). Repeatable.",
            )
        if record or replay:
            option(
                "--grpc-cert",
                "grpc_cert",
                type=click.Path(dir_okay=False, path_type=Path),
                metavar="PEM",
                help="gRPC: serve TLS with this certificate chain and key (one PEM); h2c without.",
            )
        if replay:
            option(
                "--grpc-miss-status",
                "grpc_miss_status",
                default="UNIMPLEMENTED",
                show_default=True,
                type=click.Choice(
                    ["UNIMPLEMENTED", "NOT_FOUND", "FAILED_PRECONDITION", "UNAVAILABLE", "INTERNAL"]
                ),
                help="gRPC: the status of a call no recording matches (the near miss is its message).",
            )
        original = command

        def wrapped(*args: Any, **kwargs: Any) -> None:
            ctx = click.get_current_context()
            stash = ctx.meta.get(_STASH, {})
            kwargs["grpc"] = GrpcFlags(
                protos=tuple(stash.get("grpc_protos", ())),
                descriptor_set=stash.get("grpc_descriptor_set"),
                reflection=bool(stash.get("grpc_reflection", False)),
                cert=stash.get("grpc_cert"),
                trust=stash.get("grpc_trust"),
                redact_fields=tuple(stash.get("grpc_redact_fields", ())),
                miss_status=stash.get("grpc_miss_status") or "UNIMPLEMENTED",
            )
            original(*args, **kwargs)

        functools.update_wrapper(wrapped, original)
        return wrapped

    return decorate


_STASH = "baton.grpc"


def _stash(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_STASH, {})[param.name or ""] = value
    return value


def _run_until_stopped(main: Callable[[asyncio.Event], Any]) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    asyncio.run(run())


def record_grpc(
    cassette: Path,
    mode: str,
    listen_host: str,
    listen_port: int,
    redactor: Any,
    grpc: GrpcFlags,
    fsync: str,
    quiet: bool,
) -> None:
    """``baton record --mode reverse:h2c://HOST:PORT``: baton's gRPC recorder (proxy/grpc_recording.py)."""
    require_grpc()
    import grpc as grpcio

    from baton.cassettes.errors import CassetteError
    from baton.cassettes.writer import CassetteWriter
    from baton.formats.protobuf_schema import ProtoSchema, descriptor_set_from_reflection
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
            cassette, redactor=None, fsync=fsync, meta=meta, discard_if_empty=True
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
        _run_until_stopped(main)
    finally:
        writer.close()
    if not quiet:
        click.echo(f"baton: recorded {recorder.recorded} gRPC calls into {cassette}", err=True)
    if recorder.failed:
        sys.exit(1)


def cassette_holds_grpc(cassettes: tuple[Path, ...]) -> bool:
    """True when the first interaction of the first readable cassette is a gRPC call."""
    from baton.cassettes.errors import CassetteError
    from baton.cassettes.grpc_model import is_grpc_content_type
    from baton.cassettes.reader import CassetteReader

    for path in cassettes:
        if not path.exists():
            continue
        try:
            with CassetteReader(path) as reader:
                for interaction in reader:
                    return is_grpc_content_type(interaction.request.header("content-type"))
        except CassetteError:
            return False
    return False


def replay_grpc(
    cassettes: tuple[Path, ...],
    listen_host: str,
    listen_port: int,
    grpc: GrpcFlags,
    fail_on_miss: bool,
    quiet: bool,
) -> None:
    """``baton replay`` of a cassette of gRPC calls: a grpcio server answering from it."""
    require_grpc()
    import grpc as grpcio

    from baton.cassettes.errors import CassetteError
    from baton.cassettes.reader import CassetteReader
    from baton.proxy.status import format_address, listen_failure
    from baton.replay.grpc_replay import GrpcReplayer, start_replay_server

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

    async def main(stop: asyncio.Event) -> None:
        try:
            server, port = await start_replay_server(
                replayer, listen_host, listen_port, server_credentials
            )
        except (OSError, RuntimeError) as exc:
            raise InputError(listen_failure(listen_host, listen_port, None, str(exc))) from exc
        if not quiet:
            extra = (
                f"; {left_out} HTTP interactions left out (replay them apart)" if left_out else ""
            )
            click.echo(
                f"baton: replaying {len(replayer)} gRPC calls from "
                f"{', '.join(map(str, cassettes))}; listening on "
                f"{format_address(listen_host, port)} "
                f"(gRPC: {'TLS' if server_credentials is not None else 'h2c'}; schema: "
                f"{schema.source if schema is not None else 'none, wire decode'}){extra}",
                err=True,
            )
        try:
            await stop.wait()
        finally:
            await server.stop(grace=1)

    _run_until_stopped(main)
    unused = replayer.unused()
    click.echo(
        f"baton: {replayer.hits} gRPC calls answered, {len(replayer.misses)} missed, "
        f"{len(unused)} recorded calls unused",
        err=True,
    )
    for line in replayer.misses[:20]:
        click.echo(f"  miss: {line}", err=True)
    if fail_on_miss and replayer.misses:
        sys.exit(1)


_SCHEMA_SUFFIXES = (".proto", ".pb", ".desc", ".protoset", ".binpb")


def grpc_diff_wanted(cassette: str, new_cassette: str | None, target: str | None) -> bool:
    """True for ``baton diff OLD.proto NEW.proto`` and for a gRPC cassette against a target."""
    if new_cassette is not None:
        return cassette.endswith(_SCHEMA_SUFFIXES) and new_cassette.endswith(_SCHEMA_SUFFIXES)
    if target is None or "://" in cassette:
        return False
    return cassette_holds_grpc((Path(cassette),))


def _schema_file(path: Path) -> bytes:
    from baton.formats.protobuf_schema import SchemaError, compile_protos, load_descriptor_set

    try:
        if path.suffix == ".proto":
            return compile_protos([path])
        return load_descriptor_set(path)
    except SchemaError as exc:
        raise InputError(str(exc)) from exc


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
    from baton.cassettes.reader import CassetteReader
    from baton.formats.protobuf_schema import ProtoSchema, descriptor_set_from_reflection
    from baton.replay.comparison import DriftClass
    from baton.replay.grpc_drift import parse_grpc_target, run_grpc_diff
    from baton.replay.report import render, verdict

    trust = None if ca_cert is None else _read(ca_cert, "--ca-cert")
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
