"""The cassette format: the interaction model, the msgpack stream, redaction.

This package imports neither ``replay`` nor ``proxy`` and never mitmproxy, so
the format can be read, written and tested on its own.
"""

from __future__ import annotations

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
from baton.cassettes.repair import RepairReport, repair
from baton.cassettes.writer import CassetteWriter, FsyncPolicy

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
