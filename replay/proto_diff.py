"""The protobuf counterpart of ``baton contract diff``: what a schema change does to the wire.

Two descriptor sets (compiled ``.proto`` files or ``protoc
--descriptor_set_out`` files) are compared message by message and field by
field *number*, since the number is what travels: a field keeps its meaning
on the wire exactly as long as its number keeps its type. The rules follow
the protobuf language guide ("Updating A Message Type") and buf's WIRE and
WIRE_JSON categories:

breaking
    a field number reused for a field of another name and type; a field's
    type changed to one that does not parse the same bytes (int32 -> string;
    int32 -> int64 parses, see value); singular <-> repeated; a field made
    or no longer ``required`` (proto2), or a new required one; a field or
    enum value removed without reserving its number; a name moved to
    another number; a message, enum, service or method removed; a method's
    request or response type or its streaming changed.
additive
    a new field, enum value, message, service or method.
value
    a wire-compatible change that still shows elsewhere: a field renamed
    (same number and type: the wire is unchanged, JSON and generated code are
    not), a type changed within a compatible group, a field removed with its
    number reserved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2

from baton.replay.comparison import Change, DriftClass

__all__ = ["ProtoDiff", "diff_descriptor_sets"]

_FDP = descriptor_pb2.FieldDescriptorProto

# Types that read each other's bytes (language guide: "Updating A Message Type").
_COMPATIBLE = [
    {_FDP.TYPE_INT32, _FDP.TYPE_UINT32, _FDP.TYPE_INT64, _FDP.TYPE_UINT64, _FDP.TYPE_BOOL},
    {_FDP.TYPE_SINT32, _FDP.TYPE_SINT64},
    {_FDP.TYPE_FIXED32, _FDP.TYPE_SFIXED32},
    {_FDP.TYPE_FIXED64, _FDP.TYPE_SFIXED64},
    {_FDP.TYPE_STRING, _FDP.TYPE_BYTES},
]


def _type_name(field: Any) -> str:
    if field.type in (_FDP.TYPE_MESSAGE, _FDP.TYPE_ENUM, _FDP.TYPE_GROUP):
        return str(field.type_name).lstrip(".")
    name: str = _FDP.Type.Name(field.type)
    return name.removeprefix("TYPE_").lower()


def _label(field: Any) -> str:
    name: str = _FDP.Label.Name(field.label)
    return name.removeprefix("LABEL_").lower()


@dataclass
class _Message:
    fields: dict[int, Any]
    reserved: list[tuple[int, int]]
    reserved_names: set[str]


def _walk(prefix: str, messages: Any) -> Iterator[tuple[str, Any]]:
    for message in messages:
        name = f"{prefix}.{message.name}" if prefix else message.name
        yield name, message
        yield from _walk(name, message.nested_type)


def _index(
    file_set: bytes,
) -> tuple[dict[str, _Message], dict[str, dict[int, str]], dict[str, Any]]:
    parsed = descriptor_pb2.FileDescriptorSet()
    parsed.ParseFromString(file_set)
    messages: dict[str, _Message] = {}
    enums: dict[str, dict[int, str]] = {}
    services: dict[str, Any] = {}
    for file in parsed.file:
        if file.name.startswith("google/protobuf/"):
            continue  # the well-known types: not the service's to change
        package = file.package
        for name, message in _walk(package, file.message_type):
            messages[name] = _Message(
                {field.number: field for field in message.field},
                [(r.start, r.end) for r in message.reserved_range],
                set(message.reserved_name),
            )
            for enum in message.enum_type:
                enums[f"{name}.{enum.name}"] = {v.number: v.name for v in enum.value}
        for enum in file.enum_type:
            enums[f"{package}.{enum.name}" if package else enum.name] = {
                v.number: v.name for v in enum.value
            }
        for service in file.service:
            full = f"{package}.{service.name}" if package else service.name
            services[full] = {method.name: method for method in service.method}
    return messages, enums, services


def _reserved(message: _Message, number: int) -> bool:
    # reserved_range ends are exclusive in descriptors.
    return any(start <= number < end for start, end in message.reserved)


@dataclass
class ProtoDiff:
    """The changes between two schemas, most severe first."""

    changes: list[Change]

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.drift is DriftClass.BREAKING]

    def render(self) -> str:
        if not self.changes:
            return "no changes between the two schemas\n"
        lines = []
        for change in self.changes:
            detail = ""
            if change.old is not None or change.new is not None:
                detail = f": {change.old} -> {change.new}"
            lines.append(f"{change.drift.value:<9} {change.kind:<22} {change.location}{detail}")
        counts = {d: sum(1 for c in self.changes if c.drift is d) for d in DriftClass}
        lines.append(
            ", ".join(f"{n} {d.value}" for d, n in counts.items() if n)
            + (" - wire-incompatible changes found" if self.breaking else "")
        )
        return "\n".join(lines) + "\n"


def _field_changes(name: str, old: _Message, new: _Message) -> Iterator[Change]:
    new_by_name = {field.name: field for field in new.fields.values()}
    for number, before in sorted(old.fields.items()):
        where = f"{name}.{before.name} (field {number})"
        after = new.fields.get(number)
        if after is None:
            moved = new_by_name.get(before.name)
            if moved is not None:
                yield Change(DriftClass.BREAKING, "field_renumbered", where, number, moved.number)
            elif _reserved(new, number):
                yield Change(DriftClass.VALUE, "field_removed_reserved", where, before.name, None)
            else:
                yield Change(DriftClass.BREAKING, "field_removed", where, before.name, None)
            continue
        old_type, new_type = _type_name(before), _type_name(after)
        type_changed = old_type != new_type
        compatible = type_changed and any(
            before.type in group and after.type in group for group in _COMPATIBLE
        )
        if before.name != after.name:
            if type_changed and not compatible:
                yield Change(
                    DriftClass.BREAKING,
                    "field_number_reused",
                    where,
                    f"{before.name} {old_type}",
                    f"{after.name} {new_type}",
                )
                continue
            yield Change(DriftClass.VALUE, "field_renamed", where, before.name, after.name)
        if type_changed:
            if compatible:
                yield Change(DriftClass.VALUE, "type_changed_compatible", where, old_type, new_type)
            else:
                yield Change(DriftClass.BREAKING, "type_changed", where, old_type, new_type)
        old_label, new_label = _label(before), _label(after)
        if old_label != new_label:
            if "required" in (old_label, new_label):
                yield Change(DriftClass.BREAKING, "required_changed", where, old_label, new_label)
            elif "repeated" in (old_label, new_label):
                yield Change(
                    DriftClass.BREAKING, "cardinality_changed", where, old_label, new_label
                )
    for number, after in sorted(new.fields.items()):
        if number in old.fields:
            continue
        where = f"{name}.{after.name} (field {number})"
        if _label(after) == "required":
            yield Change(DriftClass.BREAKING, "required_field_added", where, None, after.name)
        elif not any(f.name == after.name for f in old.fields.values()):
            yield Change(DriftClass.ADDITIVE, "field_added", where, None, _type_name(after))


def _method_changes(service: str, old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    for name, before in old.items():
        where = f"{service}/{name}"
        after = new.get(name)
        if after is None:
            yield Change(DriftClass.BREAKING, "method_removed", where, name, None)
            continue
        for part in ("input_type", "output_type"):
            if getattr(before, part) != getattr(after, part):
                kind = "request_type_changed" if part == "input_type" else "response_type_changed"
                yield Change(
                    DriftClass.BREAKING,
                    kind,
                    where,
                    getattr(before, part).lstrip("."),
                    getattr(after, part).lstrip("."),
                )
        for part in ("client_streaming", "server_streaming"):
            if bool(getattr(before, part)) != bool(getattr(after, part)):
                yield Change(
                    DriftClass.BREAKING,
                    f"{part.split('_')[0]}_streaming_changed",
                    where,
                    bool(getattr(before, part)),
                    bool(getattr(after, part)),
                )
    for name in new.keys() - old.keys():
        yield Change(DriftClass.ADDITIVE, "method_added", f"{service}/{name}", None, name)


def diff_descriptor_sets(old: bytes, new: bytes) -> ProtoDiff:
    """Every change from schema ``old`` to schema ``new`` (serialized ``FileDescriptorSet``s)."""
    old_messages, old_enums, old_services = _index(old)
    new_messages, new_enums, new_services = _index(new)
    changes: list[Change] = []
    for name, message in old_messages.items():
        if name not in new_messages:
            changes.append(Change(DriftClass.BREAKING, "message_removed", name, name, None))
            continue
        changes.extend(_field_changes(name, message, new_messages[name]))
    changes.extend(
        Change(DriftClass.ADDITIVE, "message_added", name, None, name)
        for name in new_messages.keys() - old_messages.keys()
    )
    for name, values in old_enums.items():
        after = new_enums.get(name)
        if after is None:
            changes.append(Change(DriftClass.BREAKING, "enum_removed", name, name, None))
            continue
        for number, value in values.items():
            if number not in after:
                changes.append(
                    Change(
                        DriftClass.BREAKING, "enum_value_removed", f"{name}.{value}", number, None
                    )
                )
        for number, value in after.items():
            if number not in values:
                changes.append(
                    Change(DriftClass.ADDITIVE, "enum_value_added", f"{name}.{value}", None, number)
                )
    for name, methods in old_services.items():
        if name not in new_services:
            changes.append(Change(DriftClass.BREAKING, "service_removed", name, name, None))
            continue
        changes.extend(_method_changes(name, methods, new_services[name]))
    changes.extend(
        Change(DriftClass.ADDITIVE, "service_added", name, None, name)
        for name in new_services.keys() - old_services.keys()
    )
    order = {
        DriftClass.BREAKING: 0,
        DriftClass.ADDITIVE: 1,
        DriftClass.VALUE: 2,
        DriftClass.NOISE: 3,
    }
    changes.sort(key=lambda c: (order[c.drift], c.location, c.kind))
    return ProtoDiff(changes)
