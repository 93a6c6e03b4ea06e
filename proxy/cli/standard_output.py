"""Writing a report to standard output so that all of it arrives.

After uvloop has run in the process (``baton diff --target``, ``baton
load``), a write into a full pipe came back short and Python's text layer
dropped the rest: a report over 64 KiB read by a consumer that was not yet
reading (``baton diff ... --format json | slow-tool``) stopped at 64 KiB,
with no error and the command's usual exit code. Reproduced with uvloop
0.23 on Python 3.11 and 3.12, and not with asyncio's own loop.
"""

from __future__ import annotations

import os
import select
import sys

import click

__all__ = ["write_whole"]


def write_whole(text: str) -> None:
    """Write ``text`` to standard output, all of it, however slowly the reader takes it:
    each short write is followed by the rest, and a full non-blocking pipe is waited on."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (click's test runner)
        click.echo(text, nl=False)
        return
    sys.stdout.flush()
    view = memoryview(text.encode(sys.stdout.encoding or "utf-8", "replace"))
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])
