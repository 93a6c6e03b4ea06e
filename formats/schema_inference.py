"""JSON Schemas from observed values: genson for the shape, baton's own statistics for the rest.

genson merges every observed value into one schema (types, properties,
which properties were always present). It knows nothing of the values
themselves, so next to each builder ``ObservedSchema`` keeps, per location
(``$.items[].status``), a little about the strings seen there: whether all
of them had one format (date-time, date, uuid, email, uri) and, while there
were few, which ones. ``schema()`` then adds ``format`` where every value
had it, and ``enum`` where a field showed a small closed set: at most
``enum_max`` distinct values, each seen on average at least twice (a field
seen once tells nothing about being closed), short, without spaces (codes
and words, not prose) and without a format.

Both halves merge (``merge``), so observations grouped under one URL can
be joined when a later pass decides two URLs are one endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from genson import SchemaBuilder

__all__ = ["FORMATS", "ObservedSchema", "ValueStats", "string_format"]

FORMATS: dict[str, re.Pattern[str]] = {
    "date-time": re.compile(
        r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$"
    ),
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "uuid": re.compile(
        r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ),
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"),
    "uri": re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s]+$"),
}
_ENUM_LONGEST = 40
_KEY_IS_DATA = re.compile(
    r"^-?\d+$|^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def string_format(value: str) -> str | None:
    """The one format ``value`` has, if any (date-time, date, uuid, email, uri)."""
    for name, pattern in FORMATS.items():
        if pattern.match(value):
            return name
    return None


@dataclass
class ValueStats:
    """What the strings at one location looked like: how many, which (while few), what format."""

    count: int = 0
    values: dict[str, int] | None = field(default_factory=dict)
    """Distinct values and how often each came, or None once there were too many to keep."""
    format: str | None = None
    formatted: bool = True
    """False once a value without ``format`` (or with another) was seen."""

    def add(self, value: str, keep: int) -> None:
        self.count += 1
        if self.values is not None:
            self.values[value] = self.values.get(value, 0) + 1
            if len(self.values) > keep:
                self.values = None
        if self.formatted:
            found = string_format(value)
            if found is None or (self.format is not None and found != self.format):
                self.formatted, self.format = False, None
            else:
                self.format = found

    def merge(self, other: ValueStats, keep: int) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.format, self.formatted = other.count, other.format, other.formatted
            self.values = None if other.values is None else dict(other.values)
            return
        self.count += other.count
        if self.values is not None and other.values is not None:
            for value, n in other.values.items():
                self.values[value] = self.values.get(value, 0) + n
            if len(self.values) > keep:
                self.values = None
        else:
            self.values = None
        if not (self.formatted and other.formatted and self.format == other.format):
            self.formatted, self.format = False, None

    def enum(self, enum_max: int) -> list[str] | None:
        """The closed set these values seem to form, or None."""
        if self.values is None or not self.values or self.formatted:
            return None
        distinct = len(self.values)
        if distinct > enum_max or self.count < 2 * distinct:
            return None
        # Words and codes (EUR, captured, in_stock) form closed sets; prose (names, titles) does not.
        if any(len(v) > _ENUM_LONGEST or not v or any(c.isspace() for c in v) for v in self.values):
            return None
        return sorted(self.values)


class ObservedSchema:
    """A JSON Schema built from every value added, with formats and small enums."""

    def __init__(self, enum_max: int = 5) -> None:
        self.enum_max = enum_max
        self.count = 0
        self._builder = SchemaBuilder(schema_uri=None)
        self._strings: dict[str, ValueStats] = {}

    def add(self, value: Any) -> None:
        """Observe one value (parsed JSON, or a dict of form fields)."""
        self.count += 1
        self._builder.add_object(value)
        for location, text in _strings(value, "$"):
            stats = self._strings.setdefault(location, ValueStats())
            stats.add(text, self.enum_max)

    def merge(self, other: ObservedSchema) -> None:
        """Take in everything ``other`` observed."""
        if other.count == 0:
            return
        self.count += other.count
        self._builder.add_schema(other._builder.to_schema())
        for location, stats in other._strings.items():
            self._strings.setdefault(location, ValueStats()).merge(stats, self.enum_max)

    def strings_at(self, location: str) -> ValueStats | None:
        """The statistics of the strings seen at ``location`` (``$.a[].b``), if any."""
        return self._strings.get(location)

    def schema(self) -> dict[str, Any]:
        """The schema: genson's, with formats and enums added, ``integer|number`` as number."""
        schema: dict[str, Any] = self._builder.to_schema()
        schema.pop("$schema", None)
        self._finish(schema, "$")
        return schema

    def _finish(self, schema: dict[str, Any], location: str) -> None:
        properties = schema.get("properties")
        if properties and all(_KEY_IS_DATA.match(name) for name in properties):
            # {"17": 2, "42": 1}: keys that are ids are data, not a fixed set of fields.
            merged = SchemaBuilder(schema_uri=None)
            for sub in properties.values():
                merged.add_schema(sub)
            schema.pop("properties")
            schema.pop("required", None)
            schema["additionalProperties"] = merged.to_schema()
            schema["additionalProperties"].pop("$schema", None)
        for variant in schema.get("anyOf", []):
            self._finish(variant, location)
        for name, sub in schema.get("properties", {}).items():
            self._finish(sub, f"{location}.{name}")
        items = schema.get("items")
        if isinstance(items, dict):
            self._finish(items, f"{location}[]")
        types = schema.get("type")
        if isinstance(types, list) and {"integer", "number"} <= set(types):
            types.remove("integer")
        if types == "string" or (isinstance(types, list) and "string" in types):
            stats = self._strings.get(location)
            if stats is None:
                return
            if stats.formatted and stats.format:
                schema["format"] = stats.format
            enum = stats.enum(self.enum_max)
            if enum is not None:
                schema["enum"] = (
                    [*enum, None] if isinstance(types, list) and "null" in types else enum
                )


def _strings(value: Any, location: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _strings(sub, f"{location}.{key}")
    elif isinstance(value, list):
        for sub in value:
            yield from _strings(sub, f"{location}[]")
