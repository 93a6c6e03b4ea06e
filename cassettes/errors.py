"""The exceptions of the cassette layer.

Every error a caller of ``cassettes`` can catch derives from one root::

    CassetteError                  anything wrong with a cassette file or its use
     +-- CassetteFormatError       the bytes are not a valid cassette (names file, object, field)
     |    +-- UnsupportedVersion   written by a newer baton than this one
     +-- CassetteLockedError       another writer holds the file
     +-- CassetteTornError         appending is refused because the file ends in a torn object
    ContentCodingError             a body could not be decoded or encoded with its content-encoding
    RedactionError                 a redaction rule or its key file is unusable

Messages are written for the person at the terminal: they name the file and,
where it helps, the object number and field, and say what to do next.
"""

from __future__ import annotations

__all__ = [
    "CassetteError",
    "CassetteFormatError",
    "CassetteLockedError",
    "CassetteTornError",
    "ContentCodingError",
    "RedactionError",
    "UnsupportedVersion",
]


class CassetteError(Exception):
    """A cassette could not be read or written."""


class CassetteFormatError(CassetteError):
    """The bytes are not a valid baton cassette."""


class UnsupportedVersion(CassetteFormatError):
    """The cassette was written with a newer format version than this baton reads."""


class CassetteLockedError(CassetteError):
    """Another process is already appending to this cassette."""


class CassetteTornError(CassetteError):
    """The cassette ends in a torn object, so appending to it would bury the damage."""


class ContentCodingError(ValueError):
    """A body could not be decoded (or re-encoded) with the content-encoding its headers name."""


class RedactionError(ValueError):
    """A redaction rule is malformed, or the redaction key file cannot be used."""
