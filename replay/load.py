"""``baton load``'s generator: recorded requests sent on a schedule, latencies kept honestly.

Open model (``--rate``, ``--speed``): request *i* has an intended send time
fixed before the run starts (``i / rate``, or its recorded offset divided by
the speed). It is sent then whether or not earlier requests have answered;
when every allowed connection is busy it waits in a queue, and its latency
is measured from the intended time, not from when a connection was free.
That is what keeps a stall visible: a closed-loop tester (one that sends the
next request only when the previous one answered) sends nothing while the
service stalls, so the stall is one slow sample among thousands — the
coordinated omission wrk2 was written to avoid. Without a rate, the run is
closed loop on purpose (as wrk): the maximum throughput, latency measured
from the actual send.

Speed: every request is serialised once, before the run; a connection is an
``asyncio.Protocol`` whose ``data_received`` feeds httptools (uvicorn's C
parser) and does nothing per header; latencies go into flat arrays and
become HDR histograms after the run, so the hot path is a write, a parse, an
append. ``--workers N`` runs N such loops in processes of their own, each
with its share of the schedule; their samples are merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from baton.cassettes.model import Interaction
from baton.replay.comparison import endpoint_of
from baton.replay.drift import SAFE_METHODS, outgoing_request

__all__ = [
    "LoadError",
    "LoadPlan",
    "LoadSettings",
    "PlannedRequest",
    "WorkerSamples",
    "plan_requests",
    "run_worker",
]


class LoadError(ValueError):
    """The load cannot run as asked (nothing to send, a bad target); one line for the user."""


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One recorded request, serialised for the target, with its endpoint and recorded offset."""

    endpoint: str
    wire: bytes
    offset_s: float


@dataclass(frozen=True)
class LoadPlan:
    """What is sent, in recorded order (cycled), and what was left out and why."""

    requests: tuple[PlannedRequest, ...]
    endpoints: tuple[str, ...]
    skipped: dict[str, int] = field(default_factory=dict)
    span_s: float = 0.0
    """Recorded time from the first request to one gap past the last: one cycle under --speed."""


def plan_requests(
    interactions: Iterable[Interaction],
    target: str,
    *,
    allow_side_effects: bool = False,
    supplied: dict[str, str] | None = None,
) -> LoadPlan:
    """The recorded requests as bytes for ``target``: safe methods only unless allowed.

    Redacted secrets are dropped or replaced (``supplied``, as ``baton diff``
    does); HEAD is left out (an answer without a body the parser would wait for).
    """
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(
            f"--target {target!r}: not an http(s) URL; write e.g. http://127.0.0.1:8000"
        )
    host_header = parts.netloc.rpartition("@")[2]
    base = parts.path.rstrip("/")
    planned: list[PlannedRequest] = []
    skipped: Counter[str] = Counter()
    first: float | None = None
    last = 0.0
    for interaction in interactions:
        request = interaction.request
        method = request.method.upper()
        if method == "HEAD":
            skipped["HEAD (no body to wait for)"] += 1
            continue
        if method not in SAFE_METHODS and not allow_side_effects:
            skipped[f"{method} (not safe; --allow-side-effects sends it)"] += 1
            continue
        outgoing, _ = outgoing_request(request, supplied or {})
        if outgoing is None:
            skipped["holds a redacted secret or a stored body"] += 1
            continue
        lines = [f"{outgoing.method} {base}{outgoing.target} HTTP/1.1", f"Host: {host_header}"]
        lines += [f"{name}: {value}" for name, value in outgoing.headers]
        if outgoing.body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(outgoing.body)}")
        wire = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + outgoing.body
        first = interaction.recorded_at if first is None else first
        last = max(last, interaction.recorded_at)
        planned.append(
            PlannedRequest(
                endpoint_of(method, request.path), wire, interaction.recorded_at - (first or 0.0)
            )
        )
    if not planned:
        reasons = "; ".join(f"{n} {why}" for why, n in skipped.items()) or "the cassette is empty"
        raise LoadError(f"nothing to send: {reasons}")
    endpoints = tuple(dict.fromkeys(p.endpoint for p in planned))
    gap = (last - (first or 0.0)) / max(1, len(planned) - 1)
    return LoadPlan(tuple(planned), endpoints, dict(skipped), (last - (first or 0.0)) + gap)


@dataclass(frozen=True)
class LoadSettings:
    """How one worker sends: the model, its share, the window measured."""

    host: str
    port: int
    use_tls: bool = False
    rate: float | None = None
    """Requests per second over all workers (open model); None with ``speed`` None: closed loop."""
    speed: float | None = None
    """A multiple of the recorded timing (open model)."""
    duration_s: float = 10.0
    warmup_s: float = 0.0
    concurrency: int = 64
    """Connections this worker may open."""
    timeout_s: float = 10.0
    worker: int = 0
    workers: int = 1
    insecure: bool = False
    ca_cert: str | None = None


@dataclass
class WorkerSamples:
    """What one worker measured: flat arrays (picklable, mergeable) and error counts."""

    latency_us: array[int] = field(default_factory=lambda: array("q"))
    at_s: array[float] = field(default_factory=lambda: array("f"))
    """Seconds from the end of the warmup to the intended send."""
    endpoint: array[int] = field(default_factory=lambda: array("H"))
    errors: Counter[tuple[int, str]] = field(default_factory=Counter)
    """(endpoint number, kind) -> count."""
    requests: int = 0
    sent: int = 0
    late_sends: int = 0
    """Requests that waited in the queue for a free connection (open model)."""

    def merge(self, other: WorkerSamples) -> None:
        self.latency_us.extend(other.latency_us)
        self.at_s.extend(other.at_s)
        self.endpoint.extend(other.endpoint)
        self.errors.update(other.errors)
        self.requests += other.requests
        self.sent += other.sent
        self.late_sends += other.late_sends


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.number = -1
        """The planned request in flight (index into the plan), -1 when idle."""
        self.intended = 0.0
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.engine.failed(self, "malformed answer")

    def on_message_complete(self) -> None:
        self.engine.answered(self, self.parser.get_status_code(), self.parser.should_keep_alive())

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine.lost(self, exc)

    def send(self, number: int, intended: float, wire: bytes) -> None:
        self.number = number
        self.intended = intended
        self.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(wire)


_EPSILON = 1e-7
"""Seconds: ``start + i / rate`` lands a hair before or after a window's edge in floating point;
a request due at the edge belongs to the next window, so 500/s for 2 s is 1,000 requests."""


def _error_kind(exc: BaseException | None) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ssl.SSLError):
        return "tls error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError) and exc.strerror:
        return f"socket error: {exc.strerror.lower()}"  # out of ports or descriptors, mostly
    return "connection closed"


class _Engine:
    def __init__(
        self,
        plan: LoadPlan,
        settings: LoadSettings,
        progress: Callable[[WorkerSamples], None] | None,
    ) -> None:
        self.plan = plan
        self.settings = settings
        self.wires = [p.wire for p in plan.requests]
        numbers = {name: n for n, name in enumerate(plan.endpoints)}
        self.endpoint_numbers = [numbers[p.endpoint] for p in plan.requests]
        self.samples = WorkerSamples()
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.opening = 0
        self.pending: list[tuple[int, float]] = []
        self.pending_at = 0
        self.closed_loop = settings.rate is None and settings.speed is None
        self.measure_from = 0.0
        self.stop_at = 0.0
        self.next_number = settings.worker
        self.progress = progress
        self.tls: ssl.SSLContext | None = None
        if settings.use_tls:
            from baton.replay.resend import tls_context

            self.tls = tls_context(settings.ca_cert, insecure=settings.insecure)
        self.finished: asyncio.Future[None] | None = None
        self.scheduled = False
        """Every request due before the end has been sent or queued (a loaded machine can run
        the schedule late: the end of the window alone does not mean the sending is over)."""

    # -- samples ----------------------------------------------------------------------------
    def _record(self, connection: _Connection, now: float, error: str | None) -> None:
        started = connection.sent if self.closed_loop else connection.intended
        if connection.intended < self.measure_from - _EPSILON:
            return  # warmup
        samples = self.samples
        samples.requests += 1
        endpoint = self.endpoint_numbers[connection.number]
        if error is not None:
            samples.errors[(endpoint, error)] += 1
            return
        samples.latency_us.append(max(1, int((now - started) * 1e6)))
        samples.at_s.append(connection.intended - self.measure_from)
        samples.endpoint.append(endpoint)

    # -- connection events ------------------------------------------------------------------
    def answered(self, connection: _Connection, status: int, keep_alive: bool) -> None:
        now = time.perf_counter()
        self._record(connection, now, f"http {status}" if status >= 500 else None)
        connection.number = -1
        self.busy.discard(connection)
        if not keep_alive and connection.transport is not None:
            connection.transport.close()
            connection.parser = httptools.HttpResponseParser(connection)
            self._refill()
            return
        self._give_work(connection, now)

    def failed(self, connection: _Connection, kind: str) -> None:
        if connection.number >= 0:
            self._record(connection, time.perf_counter(), kind)
            connection.number = -1
        if connection.transport is not None:
            connection.transport.abort()

    def lost(self, connection: _Connection, exc: Exception | None) -> None:
        self.busy.discard(connection)
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)
        if connection.number >= 0:
            self._record(connection, time.perf_counter(), _error_kind(exc))
            connection.number = -1
        self._refill()

    def _give_work(self, connection: _Connection, now: float) -> None:
        if self.closed_loop:
            if now < self.stop_at:
                self._start(connection, self._take_number(), now)
                return
        elif self.pending_at < len(self.pending):
            number, intended = self.pending[self.pending_at]
            self.pending_at += 1
            self._start(connection, number, intended)
            return
        self.idle.append(connection)
        self._maybe_finish()

    def _start(self, connection: _Connection, number: int, intended: float) -> None:
        self.busy.add(connection)
        if intended >= self.measure_from - _EPSILON:
            self.samples.sent += 1
        connection.send(number, intended, self.wires[number])

    def _take_number(self) -> int:
        number = self.next_number % len(self.wires)
        self.next_number += self.settings.workers
        return number

    def _refill(self) -> None:
        """Open connections for queued work (or, closed loop, to keep the concurrency)."""
        want = (
            self.settings.concurrency
            if self.closed_loop and time.perf_counter() < self.stop_at
            else len(self.pending) - self.pending_at
        )
        while (
            self.opening < want - len(self.busy) - len(self.idle)
            and len(self.busy) + len(self.idle) + self.opening < self.settings.concurrency
        ):
            self.opening += 1
            asyncio.get_running_loop().create_task(self._open())
        self._maybe_finish()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self),
                    self.settings.host,
                    self.settings.port,
                    ssl=self.tls,
                    server_hostname=self.settings.host if self.tls else None,
                ),
                self.settings.timeout_s,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.opening -= 1
            self._connect_failed(exc)
            return
        self.opening -= 1
        self._give_work(connection, time.perf_counter())

    def _connect_failed(self, exc: BaseException) -> None:
        """The request that would have gone on this connection fails (counted, as wrk does)."""
        now = time.perf_counter()
        kind = _error_kind(exc)
        if self.closed_loop:
            if now < self.stop_at:
                number = self._take_number()
                if now >= self.measure_from:
                    self.samples.requests += 1
                    self.samples.errors[(self.endpoint_numbers[number], kind)] += 1
                # Do not spin on a refusing target: try again a little later.
                asyncio.get_running_loop().call_later(0.01, self._refill)
        elif self.pending_at < len(self.pending):
            number, intended = self.pending[self.pending_at]
            self.pending_at += 1
            if intended >= self.measure_from:
                self.samples.requests += 1
                self.samples.errors[(self.endpoint_numbers[number], kind)] += 1
            asyncio.get_running_loop().call_soon(self._refill)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if (
            self.finished is not None
            and not self.finished.done()
            and self.scheduled
            and time.perf_counter() >= self.stop_at
            and not self.busy
            and not self.opening
            and self.pending_at >= len(self.pending)
        ):
            self.finished.set_result(None)

    # -- the run ----------------------------------------------------------------------------
    def _schedule(self, start: float) -> Iterable[tuple[int, float]]:
        """(planned request, intended send time) for this worker, in time order, forever."""
        settings = self.settings
        count = len(self.wires)
        if settings.rate is not None:
            interval = settings.workers / settings.rate
            first = start + settings.worker / settings.rate
            i = 0
            while True:
                yield (settings.worker + i * settings.workers) % count, first + i * interval
                i += 1
        assert settings.speed is not None
        span = max(self.plan.span_s, 1e-3)
        cycle = 0
        while True:
            for number in range(settings.worker, count, settings.workers):
                offset = self.plan.requests[number].offset_s + cycle * span
                yield number, start + offset / settings.speed
            cycle += 1

    async def _send_on_schedule(self, start: float) -> None:
        for number, intended in self._schedule(start):
            if intended >= self.stop_at - _EPSILON:
                return
            now = time.perf_counter()
            if intended > now:
                await asyncio.sleep(intended - now)
            if self.pending_at >= len(self.pending) and self.idle:
                self._start(self.idle.pop(), number, intended)
                continue
            if self.pending_at > 4096 and self.pending_at * 2 > len(self.pending):
                del self.pending[: self.pending_at]  # keep the queue from growing without end
                self.pending_at = 0
            self.pending.append((number, intended))
            self.samples.late_sends += 1
            self._refill()

    async def _watch(self) -> None:
        """Time out requests that outlive ``--timeout``; report progress now and then."""
        while self.finished is not None and not self.finished.done():
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            for connection in list(self.busy):
                if now - connection.sent > self.settings.timeout_s:
                    self.busy.discard(connection)
                    self._record(connection, now, "timeout")
                    connection.number = -1
                    if connection.transport is not None:
                        connection.transport.abort()
            if self.progress is not None:
                self.progress(self.samples)
            self._maybe_finish()

    async def _preopen(self) -> None:
        """Connections the schedule starts with (as wrk2 connects before sending), so the first
        requests do not pay for a handshake; more are opened when requests queue."""
        settings = self.settings
        per_second = (settings.rate or 100.0 * (settings.speed or 1.0)) / settings.workers
        count = min(settings.concurrency, max(2, math.ceil(per_second / 100.0)))
        loop = asyncio.get_running_loop()

        async def one() -> None:
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                _, connection = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Connection(self),
                        settings.host,
                        settings.port,
                        ssl=self.tls,
                        server_hostname=settings.host if self.tls else None,
                    ),
                    settings.timeout_s,
                )
                self.idle.append(connection)

        await asyncio.gather(*(one() for _ in range(count)))

    async def run(self) -> WorkerSamples:
        loop = asyncio.get_running_loop()
        self.finished = loop.create_future()
        if not self.closed_loop:
            await self._preopen()
        start = time.perf_counter() + 0.02
        self.measure_from = start + self.settings.warmup_s
        self.stop_at = self.measure_from + self.settings.duration_s
        watcher = loop.create_task(self._watch())
        if self.closed_loop:
            self._refill()
            await asyncio.sleep(max(0.0, self.stop_at - time.perf_counter()))
        else:
            await self._send_on_schedule(start)
            await asyncio.sleep(max(0.0, self.stop_at - time.perf_counter()))
        self.scheduled = True
        self._maybe_finish()
        # Answers still due count; the watcher times out what outlives --timeout.
        with contextlib.suppress(TimeoutError):  # the watcher times requests out before this
            await asyncio.wait_for(asyncio.shield(self.finished), self.settings.timeout_s + 1.0)
        watcher.cancel()
        for connection in self.idle + list(self.busy):
            if connection.transport is not None:
                connection.transport.close()
        if self.progress is not None:
            self.progress(self.samples)
        return self.samples


def run_worker(
    plan: LoadPlan,
    settings: LoadSettings,
    progress: Callable[[WorkerSamples], None] | None = None,
) -> WorkerSamples:
    """Run one worker's share of the load on a fresh event loop (uvloop where installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_Engine(plan, settings, progress).run())
    return uvloop.run(_Engine(plan, settings, progress).run())
