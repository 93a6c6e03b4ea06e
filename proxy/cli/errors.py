"""User errors and their exit code, in one place for every command.

click exits 2 on a usage error (a wrong flag); baton extends that to every
input error: a missing or corrupt file, an unusable setting, a port in use.
Each ends as one line on stderr, ``baton: error: ...``, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from baton.cassettes.errors import CassetteError, RedactionError

__all__ = ["InputError", "quiet_broken_pipe", "user_errors"]


class InputError(click.ClickException):
    """A user error that is not a wrong flag: a bad file, an unusable setting. Exit code 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"baton: error: {self.format_message()}", err=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's input errors (a corrupt cassette, a bad redaction rule) into exit 2."""
    try:
        yield
    except (CassetteError, RedactionError) as exc:
        raise InputError(str(exc)) from exc


@contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """End quietly when the reader of stdout goes away (``baton show big.cassette | head``)."""
    try:
        yield
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(0)
