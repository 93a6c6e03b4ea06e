"""Protobuf schemas for gRPC calls: compiled ``.proto`` files, descriptor sets, server reflection.

Every source ends as one serialized ``FileDescriptorSet`` — the form a
cassette header can cache and ``protoc --descriptor_set_out`` writes — and a
``ProtoSchema`` built from it answers "what are the request and response
types of ``/pkg.Service/Method``" and turns message bytes into their JSON
form and back. Nothing generated is imported: messages are built from the
descriptors at run time (``message_factory``), so a cassette never makes
baton run code.

``.proto`` files are compiled with the ``protoc`` that grpcio-tools bundles
(``grpc_tools.protoc``) into a temporary directory. This module needs the
``grpc`` extra; importing it without raises ``ImportError`` naming the extra.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.cassettes.grpc_model import GrpcCall, GrpcMessage
from baton.cassettes.protobuf_wire import WireError, decode_wire, redact_wire

MISSING_EXTRA = (
    "gRPC support needs the grpc extra: pip install 'baton-replay[grpc]' "
    "(grpcio, grpcio-tools, grpcio-reflection, protobuf)"
)

try:
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(MISSING_EXTRA) from exc

__all__ = [
    "MISSING_EXTRA",
    "MethodTypes",
    "ProtoSchema",
    "SchemaError",
    "compile_protos",
    "decode_call",
    "descriptor_set_from_reflection",
    "load_descriptor_set",
    "redact_message",
]

REDACTED_TEXT = "[REDACTED]"


class SchemaError(ValueError):
    """A schema that cannot be loaded or compiled (the message says which file and why)."""


@dataclass(frozen=True, slots=True)
class MethodTypes:
    """A method's message types (full names) and whether each side streams."""

    input_type: str
    output_type: str
    client_streaming: bool
    server_streaming: bool

    @property
    def kind(self) -> str:
        """``unary``, ``server-streaming``, ``client-streaming`` or ``bidi``."""
        if self.client_streaming and self.server_streaming:
            return "bidi"
        if self.client_streaming:
            return "client-streaming"
        return "server-streaming" if self.server_streaming else "unary"


class ProtoSchema:
    """Message types by method, and JSON forms of message bytes, from one descriptor set."""

    def __init__(self, file_set: bytes, source: str) -> None:
        self.file_set = file_set
        self.source = source
        parsed = descriptor_pb2.FileDescriptorSet()
        try:
            parsed.ParseFromString(file_set)
        except Exception as exc:
            raise SchemaError(f"not a FileDescriptorSet ({type(exc).__name__})") from exc
        self._pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        pending = list(parsed.file)
        # Files must be added after their dependencies; a set from protoc is in that
        # order already, one gathered from reflection may not be.
        while pending:
            progress = False
            for proto in list(pending):
                if all(dep in added for dep in proto.dependency):
                    self._pool.Add(proto)
                    added.add(proto.name)
                    pending.remove(proto)
                    progress = True
            if not progress:
                missing = sorted({d for p in pending for d in p.dependency if d not in added})
                raise SchemaError(f"the descriptor set lacks {', '.join(missing)}")
        self._files = [proto.name for proto in parsed.file]
        self._classes: dict[str, Any] = {}

    def services(self) -> list[str]:
        """Full names of every service the schema defines."""
        names: list[str] = []
        for name in self._files:
            names.extend(
                s.full_name for s in self._pool.FindFileByName(name).services_by_name.values()
            )
        return names

    def method(self, path: str) -> MethodTypes | None:
        """The types of ``/pkg.Service/Method``, or None when the schema does not define it."""
        service_name, _, method_name = path.strip("/").partition("/")
        try:
            service = self._pool.FindServiceByName(service_name)
        except KeyError:
            return None
        method = service.methods_by_name.get(method_name)
        if method is None:
            return None
        return MethodTypes(
            method.input_type.full_name,
            method.output_type.full_name,
            bool(method.client_streaming),
            bool(method.server_streaming),
        )

    def _class(self, type_name: str) -> Any:
        found = self._classes.get(type_name)
        if found is None:
            found = message_factory.GetMessageClass(self._pool.FindMessageTypeByName(type_name))
            self._classes[type_name] = found
        return found

    def decode(self, type_name: str, data: bytes) -> dict[str, Any]:
        """The JSON form of ``data`` as a ``type_name`` (proto field names; defaults left out)."""
        message = self._class(type_name)()
        message.ParseFromString(data)
        result: dict[str, Any] = json_format.MessageToDict(
            message, preserving_proto_field_name=True
        )
        return result

    def encode(self, type_name: str, form: dict[str, Any]) -> bytes:
        """The bytes of a ``type_name`` built from its JSON form."""
        message = self._class(type_name)()
        json_format.ParseDict(form, message, ignore_unknown_fields=False)
        data: bytes = message.SerializeToString()
        return data

    def message_fields(self, type_name: str) -> Any:
        """The message descriptor of ``type_name`` (for the proto-level diff)."""
        return self._pool.FindMessageTypeByName(type_name)


def _protoc_include() -> str:
    from importlib import resources

    return str(resources.files("grpc_tools") / "_proto")


def compile_protos(files: Sequence[Path], include: Sequence[Path] = ()) -> bytes:
    """One serialized ``FileDescriptorSet`` for ``files`` and everything they import.

    Compiled by grpcio-tools' bundled protoc; each file's own folder is on the
    import path, then ``include``, then the well-known types. ``SchemaError``
    carries protoc's own complaint.
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise ImportError(MISSING_EXTRA) from exc
    for file in files:
        if not file.is_file():
            raise SchemaError(f"{file}: no such .proto file")
    roots = [*dict.fromkeys(str(f.resolve().parent) for f in files), *(str(i) for i in include)]
    with tempfile.TemporaryDirectory(prefix="baton-protoc-") as scratch:
        out = Path(scratch) / "set.pb"
        args = [
            "protoc",
            *(f"-I{root}" for root in roots),
            f"-I{_protoc_include()}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *(str(f.resolve()) for f in files),
        ]
        import contextlib
        import io
        import os

        # protoc writes its errors to fd 2 directly; catch them through a temp file.
        err_path = Path(scratch) / "stderr"
        with open(err_path, "w") as err_file, contextlib.redirect_stderr(io.StringIO()):
            saved = os.dup(2)
            os.dup2(err_file.fileno(), 2)
            try:
                code = protoc.main(args)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        if code != 0 or not out.exists():
            complaint = err_path.read_text(errors="replace").strip().splitlines()
            first = complaint[0] if complaint else f"protoc exited {code}"
            raise SchemaError(f"{', '.join(map(str, files))}: {first}")
        return out.read_bytes()


def load_descriptor_set(path: Path) -> bytes:
    """The bytes of a ``FileDescriptorSet`` file, checked to parse (``SchemaError`` if not)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SchemaError(f"{path}: {exc.strerror or exc}") from exc
    try:
        ProtoSchema(data, "descriptor-set")
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    return data


def descriptor_set_from_reflection(channel: Any, services: Sequence[str] = ()) -> bytes:
    """Ask a server's reflection service for its schema, once per service; one ``FileDescriptorSet``.

    ``channel`` is a synchronous ``grpc.Channel``. Without ``services``, every
    service the server lists (but the reflection service itself).
    """
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    wanted = list(services) or [
        s for s in database.get_services() if not s.startswith("grpc.reflection.")
    ]
    files: dict[str, Any] = {}

    def gather(file: Any) -> None:
        if file.name in files:
            return
        for dependency in file.dependencies:
            gather(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        files[file.name] = proto

    for service in wanted:
        gather(pool.FindServiceByName(service).file)
    out = descriptor_pb2.FileDescriptorSet()
    out.file.extend(files.values())
    data: bytes = out.SerializeToString()
    return data


def _plain(data: bytes, compressed: bool) -> bytes:
    """Message bytes without their compression (gzip, the one gRPC coding clients all speak)."""
    if not compressed:
        return data
    return gzip.decompress(data)


def decode_call(call: GrpcCall, schema: ProtoSchema | None) -> GrpcCall:
    """``call`` with every message's JSON form: from ``schema`` where it knows the method, else the wire.

    A call either decodes whole with the schema or whole without it, so its
    forms never mix field names and numbers.
    """
    types = schema.method(call.path) if schema is not None else None
    if schema is not None and types is not None:
        try:
            return _with_forms(
                call,
                [
                    schema.decode(types.input_type, _plain(m.data, m.compressed))
                    for m in call.requests
                ],
                [
                    schema.decode(types.output_type, _plain(m.data, m.compressed))
                    for m in call.responses
                ],
                schema.source,
            )
        except Exception:  # the wrong schema for these bytes: fall back to the wire
            pass
    return _with_forms(
        call,
        [_wire_form(m) for m in call.requests],
        [_wire_form(m) for m in call.responses],
        "wire",
    )


def _wire_form(message: GrpcMessage) -> Any:
    try:
        return decode_wire(_plain(message.data, message.compressed))
    except (WireError, OSError, EOFError):
        return None


def _with_forms(call: GrpcCall, requests: list[Any], responses: list[Any], source: str) -> GrpcCall:
    from dataclasses import replace

    return replace(
        call,
        requests=tuple(replace(m, decoded=f) for m, f in zip(call.requests, requests, strict=True)),
        responses=tuple(
            replace(m, decoded=f) for m, f in zip(call.responses, responses, strict=True)
        ),
        schema=source,
    )


def redact_message(
    data: bytes, type_name: str | None, schema: ProtoSchema | None, paths: Sequence[str]
) -> bytes:
    """``data`` with the fields at ``paths`` blanked, re-encoded.

    With a schema, a path is field names (``user.password``, repeated fields
    entered on every element); without one, field numbers (``2.1``).
    """
    if not paths:
        return data
    if schema is not None and type_name is not None:
        form = schema.decode(type_name, data)
        changed = False
        for path in paths:
            changed |= _blank(form, path.split("."))
        return schema.encode(type_name, form) if changed else data
    for path in paths:
        numbers = path.split(".")
        if all(part.isdigit() for part in numbers):
            data = redact_wire(data, [int(part) for part in numbers])
    return data


def _blank(form: Any, path: list[str]) -> bool:
    if isinstance(form, list):
        return any([_blank(item, path) for item in form])
    if not isinstance(form, dict) or path[0] not in form:
        return False
    if len(path) > 1:
        return _blank(form[path[0]], path[1:])
    value = form[path[0]]
    if isinstance(value, list):
        form[path[0]] = [_blank_value(v) for v in value]
    else:
        form[path[0]] = _blank_value(value)
    return True


def _blank_value(value: Any) -> Any:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return 0
    if isinstance(value, dict):
        return {}
    return REDACTED_TEXT
