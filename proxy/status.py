"""What ``baton record`` tells the person at the terminal while it runs.

On a terminal, a live line with the count of recorded interactions; in a
pipe or CI log, only the start and summary lines, so logs stay readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.status import Status

if TYPE_CHECKING:
    from baton.proxy.recorder import Recorder
    from baton.replay.index import Index

__all__ = ["RecordingStatus"]


def plural(count: int, noun: str) -> str:
    """``1 interaction``, ``2 interactions``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RecordingStatus:
    """The start line, the live count, and the summary of one recording session."""

    def __init__(self, recorder: Recorder, cassette: Path, *, quiet: bool = False) -> None:
        self._recorder = recorder
        self._cassette = cassette
        self._quiet = quiet
        self._console = Console(stderr=True)
        self._live: Status | None = None

    def ready(self, addresses: list[tuple[str, int]]) -> None:
        where = ", ".join(format_address(h, p) for h, p in addresses) or "(no listener)"
        # Always printed, -q or not: scripts and tests read the bound port here.
        click.echo(f"baton: recording into {self._cassette}; listening on {where}", err=True)
        if self._console.is_terminal and not self._quiet:
            self._live = self._console.status(self._text())
            self._live.start()

    def _text(self) -> str:
        r = self._recorder
        text = f"recording into {self._cassette}: {plural(r.recorded, 'interaction')}"
        if r.failed:
            text += f", [red]{r.failed} failed[/red]"
        if r.skipped:
            text += f", {r.skipped} filtered out"
        return text + " (Ctrl-C stops)"

    def tick(self) -> None:
        if self._live is not None:
            self._live.update(self._text())

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def summary(self) -> None:
        r = self._recorder
        line = f"baton: recorded {plural(r.recorded, 'interaction')} into {self._cassette}"
        if r.discarded:
            line = f"baton: recorded no interactions; {self._cassette} was not created"
        if r.skipped:
            line += f"; {r.skipped} filtered out"
        if r.failed:
            line += f"; {r.failed} could not be recorded (see the errors above)"
        click.echo(line, err=True)


def replay_summary(index: Index) -> list[str]:
    """Lines printed when replay stops: hits, misses (each named), unused."""
    lines = [f"baton: {index.summary()}"]
    for miss in index.misses[:20]:
        lines.append("baton: miss: " + miss.report().splitlines()[0].removeprefix("baton: "))
    if len(index.misses) > 20:
        lines.append(f"baton: ... and {len(index.misses) - 20} more misses")
    return lines
