"""Prometheus metrics and a health check for the long-running commands (record, replay, load).

``--metrics-port`` serves ``/metrics`` (the Prometheus text format, from
``prometheus_client``) and ``/healthz`` on one port, bound to 127.0.0.1
unless ``--metrics-host`` says otherwise: metrics name hosts and paths.

Why it is built this way:

* Exact counts cost the hot path nothing: what the recorder, the spool, the
  rotating writer and the replay index already count is read when the
  endpoint is scraped (a custom collector), not incremented twice. The fast
  replay server is not touched at all: served and missed requests are the
  index's own ``hits`` and ``misses``.
* Only what no one counted yet is observed per exchange, by the
  ``ExchangeObserver`` addon on the mitmproxy path: latency histograms and
  bytes per host.
* One registry per process (``Metrics``), not prometheus_client's global
  one, so tests and an embedding program can run several.
* The server is a ``ThreadingHTTPServer`` on a daemon thread: a slow
  scraper never blocks the proxy's event loop.
* Its clients are not trusted more than the replay server's
  (docs/security.md): ``SMALL_SERVER_LIMITS`` bounds the request line, the
  time a request may take to arrive and the connections served at once (one
  thread each; the rest wait in the listen backlog). The standard library
  already refuses more than 100 headers or a header line over 64 KB (431).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from baton.replay.limits import SMALL_SERVER_LIMITS

__all__ = ["ExchangeObserver", "Metrics", "MetricsServer", "Reading"]

logger = logging.getLogger(__name__)
access_log = logging.getLogger("baton.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Reading:
    """One value read at scrape time: a counter (``_total``) or a gauge."""

    name: str
    help: str
    read: Callable[[], float]
    kind: str = "counter"
    labels: dict[str, str] = field(default_factory=dict)


class _ReadingsCollector:
    def __init__(self, readings: list[Reading]) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for reading in self._readings:
            family = families.get(reading.name)
            if family is None:
                names = sorted(reading.labels)
                if reading.kind == "counter":
                    family = CounterMetricFamily(reading.name, reading.help, labels=names)
                else:
                    family = GaugeMetricFamily(reading.name, reading.help, labels=names)
                families[reading.name] = family
            try:
                value = float(reading.read())
            except Exception:  # a metric must never break the scrape
                logger.exception("baton: metric %s", reading.name)
                continue
            family.add_metric([reading.labels[k] for k in sorted(reading.labels)], value)
        yield from families.values()


class Metrics:
    """The metrics of one command: values read at scrape time plus per-host histograms."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.registry = CollectorRegistry(auto_describe=False)
        self._readings: list[Reading] = []
        self.registry.register(_ReadingsCollector(self._readings))
        self.started = time.time()
        self.latency = Histogram(
            "baton_request_duration_seconds",
            "Time from the request's first byte to the response's last, per host.",
            ["host"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.bytes = Counter(
            "baton_proxied_bytes",
            "Body bytes that passed the proxy, per host and direction.",
            ["host", "direction"],
            registry=self.registry,
        )
        self.health: Callable[[], dict[str, Any]] = lambda: {}
        """Extra fields for /healthz; a ``"status"`` other than ``"ok"`` answers 503."""

    def read(
        self,
        name: str,
        help: str,
        read: Callable[[], float],
        *,
        kind: str = "counter",
        **labels: str,
    ) -> None:
        """Expose ``read()`` as ``name`` (a counter's name ends in ``_total``)."""
        if kind == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]  # prometheus_client adds the suffix itself
        self._readings.append(Reading(name, help, read, kind, labels))

    def text(self) -> bytes:
        """The Prometheus text exposition of everything registered."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Start serving ``/metrics`` and ``/healthz`` on a daemon thread."""
        return MetricsServer(self, host, port)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once; the rest wait to be accepted."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(SMALL_SERVER_LIMITS.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()  # serve_forever waits here: new connections stay in the backlog
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP, on a thread of its own."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        handler = _handler_for(metrics)
        self._server = _BoundedHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="baton-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "baton-metrics"
        timeout = SMALL_SERVER_LIMITS.header_timeout  # per read: an idle client is dropped

        def setup(self) -> None:
            super().setup()
            # A client trickling its request a byte at a time is cut off all the same.
            self._cut_off = threading.Timer(SMALL_SERVER_LIMITS.header_timeout, self._cut)
            self._cut_off.daemon = True
            self._cut_off.start()

        def _cut(self) -> None:
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)

        def finish(self) -> None:
            self._cut_off.cancel()
            super().finish()

        def parse_request(self) -> bool:
            if len(self.raw_requestline) > SMALL_SERVER_LIMITS.max_request_line:
                self.requestline = ""
                self.request_version = "HTTP/1.0"
                self.command = ""
                self.send_error(414)
                return False
            if not super().parse_request():
                return False
            self._cut_off.cancel()  # the request is in: answering is not limited
            return True

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.text(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/health"):
                state = {"status": "ok", "command": metrics.command}
                try:
                    state.update(metrics.health())
                except Exception as exc:
                    state.update(status="error", error=str(exc))
                state["uptime_s"] = round(time.time() - metrics.started, 3)
                code = 200 if state.get("status") == "ok" else 503
                self._send(code, json.dumps(state).encode() + b"\n", "application/json")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("metrics: " + format, *args)

    return Handler


class ExchangeObserver:
    """mitmproxy addon: per-host latency and bytes, and one access log record per exchange.

    The access record carries the request's trace id (W3C ``traceparent``,
    else B3), so ``--log-format json`` lines join up with the traces of the
    services around the recorder.
    """

    def __init__(self, metrics: Metrics | None, *, command: str) -> None:
        self.metrics = metrics
        self.command = command

    def response(self, flow: Any) -> None:
        self._observe(flow)

    def error(self, flow: Any) -> None:
        if flow.response is None:
            self._observe(flow)

    def _observe(self, flow: Any) -> None:
        from baton.proxy.sampling import trace_id

        request = flow.request
        response = flow.response
        host = request.pretty_host
        end = (response.timestamp_end if response is not None else None) or time.time()
        duration = max(0.0, end - (request.timestamp_start or end))
        sent = len(request.raw_content or b"")
        received = len(response.raw_content or b"") if response is not None else 0
        if self.metrics is not None:
            self.metrics.latency.labels(host).observe(duration)
            self.metrics.bytes.labels(host, "request").inc(sent)
            self.metrics.bytes.labels(host, "response").inc(received)
        if access_log.isEnabledFor(logging.INFO):
            headers = {name.lower(): value for name, value in request.headers.items()}
            access_log.info(
                "%s %s %s",
                request.method,
                request.pretty_url,
                response.status_code if response is not None else "error",
                extra={
                    "event": "exchange",
                    "command": self.command,
                    "method": request.method,
                    "url": request.pretty_url,
                    "host": host,
                    "status": response.status_code if response is not None else None,
                    "error": flow.error.msg if flow.error is not None else None,
                    "duration_ms": round(duration * 1000, 3),
                    "request_bytes": sent,
                    "response_bytes": received,
                    "trace_id": trace_id(headers),
                    "sampled": flow.metadata.get("baton_sample", "keep"),
                },
            )
