"""``baton replay --workers N``: the fast path in N processes listening on one port.

One Python process answers on one core; a test suite running its services
in parallel, or a load test, wants the machine. The cassettes are read and
indexed once, in this process; then N worker processes are forked (sharing
those pages copy-on-write; each serialises an answer when it first serves
it), each with its own event loop and
its own listening socket bound with ``SO_REUSEPORT`` to the same address, so
the kernel spreads connections over them. A request's answer must then not
depend on requests another worker saw: ``order_dependence``
(replay/answer_cache.py) names what would, and the command refuses it.

The workers stop on SIGTERM or SIGINT (this process sends SIGTERM to each by
its PID when it gets either), and each hands its counts back through a pipe:
the summary, the run log and ``--fail-on-miss`` see every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from baton.proxy.cli.errors import InputError
from baton.proxy.cli.fidelity import finish_replay
from baton.replay.answer_cache import order_dependence
from baton.replay.index import Index, Miss
from baton.replay.limits import ServerLimits
from baton.replay.options import ReplayOptions
from baton.replay.server import ReplayServer, install_fast_loop

__all__ = ["WorkerReport", "refuse_workers", "replay_workers", "serve_workers"]

_READY = b"R"
_FAILED = b"E"
_STOP_GRACE = 20.0
"""Seconds a worker has to finish its connections after SIGTERM before it is killed."""


@dataclass(frozen=True)
class WorkerReport:
    """What one worker served, handed to the parent when it stops."""

    hits: int
    served: list[int]
    misses: list[Miss]
    matched: list[int]
    """Numbers of the interactions whose match key some request of this worker had."""


def _reserve(host: str, port: int) -> tuple[socket.socket, str, int]:
    """A socket bound (not listening) to the address the workers will share, to fix the port.

    Bound once without ``SO_REUSEPORT`` first: a port some other process
    listens on, even one using ``SO_REUSEPORT`` itself, is refused rather
    than shared with it.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, address = infos[0][0], infos[0][4]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind(address)
        address = probe.getsockname()
    reservation = socket.socket(family, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind(address)
    bound_host, bound_port = reservation.getsockname()[:2]
    return reservation, str(bound_host), int(bound_port)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _worker(server: ReplayServer, fd: int) -> int:
    """Run in a forked worker: serve until SIGTERM/SIGINT, then write the report to ``fd``."""
    install_fast_loop()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await server.start()
        except OSError as exc:
            _write_all(fd, _FAILED + (exc.strerror or str(exc)).encode())
            raise
        _write_all(fd, _READY)
        try:
            await stop.wait()
        finally:
            await server.close()

    try:
        asyncio.run(serve())
    except OSError:
        return 1
    index = server.index
    # What ``unmatched()`` leaves out, by number: without building the interactions of a
    # lazily opened cassette (replay/index.py).
    asked = index._asked
    report = WorkerReport(
        hits=index.hits,
        served=list(index.served),
        misses=list(index.misses),
        matched=[n for n, key in enumerate(index._keys) if key in asked],
    )
    _write_all(fd, pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


def _fork_worker(server: ReplayServer) -> tuple[int, int]:
    """(pid, read end of its pipe) of a new worker serving ``server``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the parent's code
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handlers are its own
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(read_end)
            code = _worker(server, write_end)
        except BaseException:  # a worker reports and exits, whatever happened
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _read_rest(fd: int, into: list[bytes]) -> None:
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 1 << 16):
            into.append(chunk)
    os.close(fd)


def serve_workers(
    make_server: Callable[[str, int], ReplayServer],
    index: Index,
    workers: int,
    listen_host: str,
    listen_port: int,
    on_ready: Callable[[str, int], None],
    listen_error: Callable[[OSError], InputError],
) -> list[WorkerReport]:
    """Serve with ``workers`` processes until SIGINT/SIGTERM; merge their counts into ``index``.

    ``make_server(host, port)`` builds the (not yet started) server each
    worker runs; ``on_ready`` is called once every worker listens. Returns
    the workers' reports; raises ``InputError`` if the address cannot be used.
    """
    try:
        reservation, host, port = _reserve(listen_host, listen_port)
    except OSError as exc:
        raise listen_error(exc) from exc
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    server = make_server(host, port)  # built once, here: the workers share its pages
    children: dict[int, int] = {}
    received: dict[int, list[bytes]] = {}
    readers: list[threading.Thread] = []
    failure: str | None = None
    try:
        for _ in range(workers):
            pid, fd = _fork_worker(server)
            children[pid] = fd
        for fd in children.values():
            ready, _, _ = select.select([fd], [], [], 30.0)
            first = os.read(fd, 1) if ready else b""
            if first != _READY:
                rest = os.read(fd, 4096).decode(errors="replace") if first == _FAILED else ""
                failure = rest or "a worker did not start"
                break
        if failure is None:
            for pid, fd in children.items():
                received[pid] = []
                reader = threading.Thread(target=_read_rest, args=(fd, received[pid]), daemon=True)
                reader.start()
                readers.append(reader)
            on_ready(host, port)
            while not stop.wait(0.25):
                if any(os.waitpid(pid, os.WNOHANG)[0] for pid in children):
                    failure = "a worker stopped on its own"
                    break
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        for pid in children:
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.02)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        for reader in readers:
            reader.join(5.0)
        if not readers:
            for fd in children.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
        reservation.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failure is not None:
        raise InputError(f"--workers {workers}: {failure}")
    reports = []
    for chunks in received.values():
        with contextlib.suppress(pickle.UnpicklingError, EOFError):
            reports.append(pickle.loads(b"".join(chunks)))
    if len(reports) < workers:
        click.echo(
            f"baton: {workers - len(reports)} of {workers} workers stopped without their counts",
            err=True,
        )
    merge_reports(index, reports)
    return reports


def merge_reports(index: Index, reports: list[WorkerReport]) -> None:
    """Make ``index`` count what the workers served, as if one process had served it all."""
    matched = sorted({n for report in reports for n in report.matched})
    for number in matched:  # the Index learns which keys were asked by being asked them
        index.lookup(index.interactions[number].request, forwarding=True)
    served = [0] * len(index.interactions)
    for report in reports:
        for number, count in enumerate(report.served):
            served[number] += count
    index.served = served
    index.hits = sum(report.hits for report in reports)
    index.misses = [miss for report in reports for miss in report.misses]


def refuse_workers(workers: int, fast_path: bool, faults: bool, metrics: bool) -> None:
    """One line, exit 2, for ``--workers`` with what needs one process; nothing when N is 1."""
    if workers == 1:
        return
    if not fast_path:
        raise InputError(
            f"--workers {workers} needs the fast path (reverse mode, plain HTTP/1.1, "
            "--record-mode none, no --set or --spec); use --workers 1 for this replay"
        )
    if faults:
        raise InputError(
            f"--workers {workers}: --fault draws over the whole stream of requests, which "
            "no worker sees; use --workers 1 with --fault"
        )
    if metrics:
        raise InputError(
            f"--workers {workers}: --metrics-port would count one worker only; "
            "use --workers 1 with --metrics-port"
        )


def replay_workers(
    index: Index,
    cassettes: tuple[Path, ...],
    workers: int,
    listen: tuple[str, int],
    options: ReplayOptions,
    limits: ServerLimits | None,
    latency_scale: float | None,
    fail_on_miss: bool,
) -> None:
    """``baton replay --workers N`` once the cassettes are loaded: refuse an index whose
    answers depend on order, serve, print the merged summary, exit 1 as one process would."""
    from baton.proxy.status import format_address, listen_failure, plural, replay_summary

    reason = order_dependence(index)
    if reason is not None:
        raise InputError(
            f"--workers {workers}: {reason}, and each worker would keep its own count; "
            "use --workers 1 for these cassettes"
        )

    def ready(host: str, port: int) -> None:
        click.echo(
            f"baton: replaying {plural(len(index), 'interaction')} from "
            f"{', '.join(map(str, cassettes))}; listening on {format_address(host, port)} "
            f"(fast path: reverse mode, plain HTTP/1.1, {workers} workers)",
            err=True,
        )

    def listen_error(exc: OSError) -> InputError:
        reason = exc.strerror or str(exc)
        return InputError(listen_failure(listen_host, listen_port, exc.errno, reason))

    def make_server(host: str, port: int) -> ReplayServer:
        return ReplayServer(
            index,
            host=host,
            port=port,
            miss_status=options.miss_status,
            latency_scale=latency_scale,
            limits=limits,
            reuse_port=True,
        )

    listen_host, listen_port = listen
    serve_workers(make_server, index, workers, listen_host, listen_port, ready, listen_error)
    for line in replay_summary(index):
        click.echo(line, err=True)
    unused = finish_replay(index, options, cassettes, write_log=True)
    if (fail_on_miss and index.misses) or unused:
        sys.exit(1)
