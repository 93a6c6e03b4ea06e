"""The cassette format: the interaction model, the msgpack stream, redaction.

This package imports neither ``replay`` nor ``proxy`` and never mitmproxy, so
the format can be read, written and tested on its own.

The names below load their module on first use (PEP 562), so importing one
of them, or ``baton.cassettes.errors`` alone, does not load the writer,
asyncio and the redactor: the CLI and the pytest plugin start faster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baton.cassettes.codec import FORMAT_NAME, FORMAT_VERSION
    from baton.cassettes.errors import (
        CassetteError,
        CassetteFormatError,
        CassetteLockedError,
        CassetteTornError,
        ContentCodingError,
        RedactionError,
        UnsupportedVersion,
    )
    from baton.cassettes.model import Interaction, Request, Response
    from baton.cassettes.reader import CassetteReader, ReadLimits, read_cassette
    from baton.cassettes.redaction import (
        PLACEHOLDER_PATTERN,
        RedactionRules,
        Redactor,
        load_or_create_key,
    )
    from baton.cassettes.repair import RepairReport
    from baton.cassettes.writer import CassetteWriter, FsyncPolicy

_EXPORTS = {
    "FORMAT_NAME": "baton.cassettes.codec",
    "FORMAT_VERSION": "baton.cassettes.codec",
    "CassetteError": "baton.cassettes.errors",
    "CassetteFormatError": "baton.cassettes.errors",
    "CassetteLockedError": "baton.cassettes.errors",
    "CassetteTornError": "baton.cassettes.errors",
    "ContentCodingError": "baton.cassettes.errors",
    "RedactionError": "baton.cassettes.errors",
    "UnsupportedVersion": "baton.cassettes.errors",
    "Interaction": "baton.cassettes.model",
    "Request": "baton.cassettes.model",
    "Response": "baton.cassettes.model",
    "CassetteReader": "baton.cassettes.reader",
    "ReadLimits": "baton.cassettes.reader",
    "read_cassette": "baton.cassettes.reader",
    "PLACEHOLDER_PATTERN": "baton.cassettes.redaction",
    "RedactionRules": "baton.cassettes.redaction",
    "Redactor": "baton.cassettes.redaction",
    "load_or_create_key": "baton.cassettes.redaction",
    "RepairReport": "baton.cassettes.repair",
    "CassetteWriter": "baton.cassettes.writer",
    "FsyncPolicy": "baton.cassettes.writer",
}


# `repair` is also the name of a submodule: once anything imports the submodule, Python
# binds the package attribute to it and __getattr__ is never asked; so it is bound here.
from baton.cassettes.repair import repair  # noqa: E402


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'baton.cassettes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PLACEHOLDER_PATTERN",
    "CassetteError",
    "CassetteFormatError",
    "CassetteLockedError",
    "CassetteReader",
    "CassetteTornError",
    "CassetteWriter",
    "ContentCodingError",
    "FsyncPolicy",
    "Interaction",
    "ReadLimits",
    "RedactionError",
    "RedactionRules",
    "Redactor",
    "RepairReport",
    "Request",
    "Response",
    "UnsupportedVersion",
    "load_or_create_key",
    "read_cassette",
    "repair",
]
