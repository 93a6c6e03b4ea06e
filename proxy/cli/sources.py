"""Cassette arguments of the reading commands: paths, globs, directories and fsspec URLs.

The commands name their cassette arguments with ``CASSETTES`` (a string, not
``click.Path``: a ``Path`` would fold ``s3://bucket`` into ``s3:/bucket``) and
turn them into local files with ``local_cassettes`` before reading
(``baton.cassettes.locations`` does the work; see there why remote cassettes
are copied to a cache).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from baton.cassettes.locations import LocationError, resolve_cassettes

__all__ = ["CASSETTE_LOCATION", "local_cassette", "local_cassettes"]

CASSETTE_LOCATION = click.STRING
"""The click type of a cassette argument that may be a path, a glob or a URL."""


def local_cassettes(arguments: Iterable[str | Path]) -> tuple[Path, ...]:
    """Local files for the cassettes the arguments name; a location naming nothing is exit 2."""
    from baton.proxy.cli.errors import InputError

    try:
        return tuple(resolve_cassettes(arguments))
    except LocationError as exc:
        raise InputError(str(exc)) from exc


def local_cassette(argument: str | Path) -> Path:
    """The one local file a single-cassette argument names (a glob must match exactly one)."""
    from baton.proxy.cli.errors import InputError

    found = local_cassettes([argument])
    if len(found) != 1:
        raise InputError(f"{argument}: names {len(found)} cassettes; this command reads one")
    return found[0]
