"""What ``baton record`` and ``baton replay`` tell the person at the terminal.

On a terminal, a live line with the count of recorded interactions; in a
pipe or CI log, only the start and summary lines, so logs stay readable.
A port that cannot be bound is one line naming the port, who holds it
where the system says, and what to do.
"""

from __future__ import annotations

import errno
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from baton.cassettes.wording import plural

if TYPE_CHECKING:
    from rich.status import Status

    from baton.proxy.recorder import Recorder
    from baton.replay.index import Index

__all__ = [
    "RecordingStatus",
    "ReplayStatus",
    "format_address",
    "listen_failure",
    "live_status",
    "plural",
    "replay_summary",
]


def format_address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_failure(host: str, port: int, error: int | None, reason: str) -> str:
    """One line for an address baton could not listen on: the port, its holder, the fix."""
    if error == errno.EADDRINUSE:
        holder = port_holder(port)
        held = f" (by {holder})" if holder else ""
        return (
            f"port {port} on {host} is already in use{held}; stop that or choose another "
            "--listen-port (--listen-port 0 picks a free one)"
        )
    if error == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no such address on this machine; check --listen-host"
    if error == errno.EACCES:
        return (
            f"cannot listen on port {port}: permission denied (ports below 1024 need root); "
            "choose another --listen-port (--listen-port 0 picks a free one)"
        )
    return f"cannot listen on {format_address(host, port)}: {reason}"


def port_holder(port: int) -> str | None:
    """``pid 1234 (nginx)`` for the process listening on TCP ``port``, where /proc tells.

    Linux only, best effort: None where /proc is missing or the holder is
    another user's process this one may not look into.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rpartition(":")[2], 16) == port:
                        inodes.add(f"socket:[{inode}]")
        except (OSError, IndexError, ValueError):
            continue
    if not inodes:
        return None
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") not in inodes:
                    continue
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
                    return f"pid {pid}, {comm.read().strip()}"
            except OSError:
                continue
    return None


def live_status(text: str) -> Status | None:
    """A started live status line on stderr when it is a terminal, else None.

    rich loads only here: importing it costs ~60 ms, which every ``baton
    replay`` started by a test suite (stderr a pipe) would pay for nothing.
    """
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    status = console.status(text)
    status.start()
    return status


class RecordingStatus:
    """The start line, the live count, and the summary of one recording session."""

    def __init__(self, recorder: Recorder, cassette: Path, *, quiet: bool = False) -> None:
        self._recorder = recorder
        self._cassette = cassette
        self._quiet = quiet
        self._live: Status | None = None

    def ready(self, addresses: list[tuple[str, int]]) -> None:
        where = ", ".join(format_address(h, p) for h, p in addresses) or "(no listener)"
        # Always printed, -q or not: scripts and tests read the bound port here.
        click.echo(f"baton: recording into {self._cassette}; listening on {where}", err=True)
        if not self._quiet:
            self._live = live_status(self._text())

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


class ReplayStatus:
    """The live line of ``baton replay`` on a terminal: hits, misses, unused, as they change.

    Nothing at all when stderr is not a terminal (a pipe, a CI log) or with
    ``-q``: there the start line and the summary are the whole output.
    """

    def __init__(self, index: Callable[[], Index | None], *, quiet: bool = False) -> None:
        self._index = index
        self._quiet = quiet
        self._live: Status | None = None

    def start(self) -> None:
        if not self._quiet:
            self._live = live_status(self._text())

    def _text(self) -> str:
        index = self._index()
        if index is None:
            return "replaying (Ctrl-C stops)"
        misses = len(index.misses)
        text = f"replaying: {plural(index.hits, 'hit')}, "
        text += f"[red]{plural(misses, 'miss')}[/red]" if misses else "0 misses"
        return text + f", {index.unmatched_count()} of {len(index)} unused (Ctrl-C stops)"

    def tick(self) -> None:
        if self._live is not None:
            self._live.update(self._text())

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def replay_summary(index: Index, shown: int = 20) -> list[str]:
    """Lines printed when replay stops: hits, misses, unused; then each distinct miss once.

    A request that missed many times (a client retrying, a poll) is one line
    with its count, so the list names what is missing rather than how often.
    """
    lines = [f"baton: {index.summary()}"]
    distinct = Counter(miss.headline().removeprefix("baton: ") for miss in index.misses)
    for headline, count in list(distinct.items())[:shown]:
        lines.append(f"baton: miss: {headline}" + (f" ({count} times)" if count > 1 else ""))
    if len(distinct) > shown:
        lines.append(f"baton: ... and {plural(len(distinct) - shown, 'more distinct miss')}")
    return lines
