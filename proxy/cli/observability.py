"""The observability options of ``record`` and ``replay``: ``--metrics-port``, ``--metrics-host``
and ``--log-format``, gathered into one value, and replay's metrics.

The work is in ``proxy/metrics.py`` (Prometheus, /healthz, the access-record
addon) and ``proxy/structured_logging.py`` (JSON lines).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from baton.proxy.cli.errors import InputError

__all__ = [
    "ObservabilityFlags",
    "observability_options",
    "replay_observers",
    "serve_replay_metrics",
]


@dataclass(frozen=True)
class ObservabilityFlags:
    """``--metrics-port``, ``--metrics-host`` and ``--log-format`` as one value."""

    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"

    def start_logging(self, quiet: bool) -> None:
        """Switch stderr to JSON lines when asked (after ``configure_logging``)."""
        from baton.proxy.structured_logging import use_log_format

        use_log_format(self.log_format, quiet=quiet)

    def activate(self, quiet: bool) -> None:
        """``start_logging``, and make these the flags ``serve_replay_metrics`` serves by.

        One command runs per process; keeping the flags here spares the replay
        paths (fast, mitmproxy, gRPC) a parameter each.
        """
        global _ACTIVE
        _ACTIVE = self
        self.start_logging(quiet)

    def serve(self, metrics: Any) -> Any:
        """Serve ``metrics`` when ``--metrics-port`` was given; a busy port is exit 2."""
        if self.metrics_port is None:
            return None
        try:
            server = metrics.serve(self.metrics_host, self.metrics_port)
        except OSError as exc:
            raise InputError(
                f"--metrics-port {self.metrics_port}: cannot listen on {self.metrics_host}: "
                f"{exc.strerror or exc}"
            ) from exc
        click.echo(
            f"baton: metrics on http://{server.host}:{server.port}/metrics (health: /healthz)",
            err=True,
        )
        return server


_ACTIVE: ObservabilityFlags | None = None


def serve_replay_metrics(index: Callable[[], Any]) -> Any:
    """Serve replay's metrics (``--metrics-port``), read from ``index()`` when scraped."""
    flags = _ACTIVE
    if flags is None or flags.metrics_port is None:
        return None
    from baton.proxy.metrics import Metrics

    metrics = Metrics("replay")

    def hits() -> int:
        current = index()
        return int(current.hits) if current is not None else 0

    def misses() -> int:
        current = index()
        return len(current.misses) if current is not None else 0

    def recorded() -> int:
        current = index()
        return len(current) if current is not None else 0

    metrics.read("baton_interactions_served_total", "Requests answered from a cassette.", hits)
    metrics.read(
        "baton_misses_total",
        "Requests no recorded interaction matched (answered --miss-status).",
        misses,
    )
    metrics.read(
        "baton_interactions_loaded",
        "Interactions loaded from the cassettes.",
        recorded,
        kind="gauge",
    )
    metrics.health = lambda: {"loaded": recorded(), "served": hits(), "misses": misses()}
    global _REPLAY_METRICS
    _REPLAY_METRICS = metrics
    return flags.serve(metrics)


_REPLAY_METRICS: Any = None


def replay_observers() -> list[Any]:
    """The mitmproxy path's access records and per-host histograms, when asked for."""
    flags = _ACTIVE
    if flags is None or (flags.metrics_port is None and flags.log_format != "json"):
        return []

    return [_LateMetricsObserver(command="replay")]


class _LateMetricsObserver:
    """An ``ExchangeObserver`` whose metrics exist only once the proxy (and its index) started."""

    def __init__(self, command: str) -> None:
        from baton.proxy.metrics import ExchangeObserver

        self._observer = ExchangeObserver(None, command=command)

    def response(self, flow: Any) -> None:
        self._observer.metrics = _REPLAY_METRICS
        self._observer.response(flow)

    def error(self, flow: Any) -> None:
        self._observer.metrics = _REPLAY_METRICS
        self._observer.error(flow)


def observability_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--metrics-port``, ``--metrics-host``, ``--log-format``, handed over as ``observability``."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = ObservabilityFlags(
            metrics_port=kwargs.pop("metrics_port"),
            metrics_host=kwargs.pop("metrics_host"),
            log_format=kwargs.pop("log_format"),
        )
        command(*args, observability=flags, **kwargs)

    decorators = [
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            default=None,
            metavar="PORT",
            help="Serve Prometheus metrics at /metrics and a health check at /healthz on this "
            "port (0 picks a free one).",
        ),
        click.option(
            "--metrics-host",
            default="127.0.0.1",
            show_default=True,
            help="Address the metrics port binds (metrics name hosts and paths: keep it local "
            "unless a scraper elsewhere needs it).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="json: one JSON object per line on stderr, with an access record per exchange "
            "carrying its trace id (traceparent, B3).",
        ),
    ]
    decorated: Callable[..., None] = with_flags
    for decorator in reversed(decorators):
        decorated = decorator(decorated)
    return decorated
