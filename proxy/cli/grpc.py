"""The gRPC side of ``baton record``, ``baton replay`` and ``baton diff``: options and the runs they start.

The commands stay as they are for HTTP; each asks ``GrpcFlags`` whether this
run is a gRPC one (``--mode reverse:h2c://...`` for record, a cassette of
gRPC calls for replay, ``--proto-new`` for diff) and hands over to a
function in proxy/cli/grpc_run.py. grpcio and protobuf are imported only then, so baton without
the ``grpc`` extra starts as before and says which extra to install when a
gRPC feature is asked for.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from baton.proxy.cli.errors import InputError

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "GrpcFlags",
    "cassette_holds_grpc",
    "grpc_diff_wanted",
    "grpc_options",
    "require_grpc",
    "run_until_stopped",
]

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
    proto_new: Path | None = None

    def schema(self, cached: dict[str, Any] | None = None) -> Any:
        """The ``ProtoSchema`` the options name, else the one a cassette header cached, else None."""
        require_grpc()
        from baton.cassettes.protobuf_schema import (
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

        pem = read_pem(self.cert, "--grpc-cert")
        if b"PRIVATE KEY" not in pem or b"CERTIFICATE" not in pem:
            raise InputError(
                f"--grpc-cert {self.cert}: needs the certificate chain and its private key "
                "in one PEM file"
            )
        return grpc.ssl_server_credentials([(pem, pem)])

    def trusted(self) -> bytes | None:
        """PEM certificates to trust for a TLS upstream (``--grpc-ca``), or None for the system's."""
        return None if self.trust is None else read_pem(self.trust, "--grpc-ca")


def read_pem(path: Path, option: str) -> bytes:
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
        if diff:
            option(
                "--proto-new",
                "grpc_proto_new",
                type=click.Path(dir_okay=False, path_type=Path),
                metavar="FILE",
                help="gRPC: compare the schema of --proto (or --descriptor-set) with this one "
                "(.proto or a descriptor set): wire-incompatible changes; no cassette needed.",
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
                proto_new=stash.get("grpc_proto_new"),
            )
            original(*args, **kwargs)

        functools.update_wrapper(wrapped, original)
        return wrapped

    return decorate


_STASH = "baton.grpc"


def _stash(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_STASH, {})[param.name or ""] = value
    return value


def run_until_stopped(main: Callable[[asyncio.Event], Any]) -> None:
    import asyncio  # here: `baton diff` of two recordings loads these options and needs no loop

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    asyncio.run(run())


def cassette_holds_grpc(cassettes: tuple[Path, ...], look_at: int = 50) -> bool:
    """True when one of the first ``look_at`` interactions of the cassettes is a gRPC call.

    Bounded, so a large HTTP cassette is not read twice before the fast path starts.
    """
    from baton.cassettes.errors import CassetteError
    from baton.cassettes.grpc_model import is_grpc_content_type
    from baton.cassettes.reader import CassetteReader

    seen = 0
    for path in cassettes:
        if not path.exists():
            continue
        try:
            with CassetteReader(path) as reader:
                for interaction in reader:
                    if is_grpc_content_type(interaction.request.header("content-type")):
                        return True
                    seen += 1
                    if seen >= look_at:
                        return False
        except CassetteError:
            return False
    return False


_SCHEMA_SUFFIXES = (".proto", ".pb", ".desc", ".protoset", ".binpb")


def grpc_diff_wanted(cassette: str, new_cassette: str | None, target: str | None) -> bool:
    """True for ``baton diff OLD.proto NEW.proto`` and for a gRPC cassette against a target."""
    if new_cassette is not None:
        return cassette.endswith(_SCHEMA_SUFFIXES) and new_cassette.endswith(_SCHEMA_SUFFIXES)
    if target is None or "://" in cassette:
        return False
    return cassette_holds_grpc((Path(cassette),))
