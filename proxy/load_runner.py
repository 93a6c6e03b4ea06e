"""Run ``baton load``'s workers (replay/load.py): in this process, or in ``--workers`` processes.

One Python event loop tops out near one core; a load generator that must
keep up with wrk needs several. Each worker process gets its share of the
schedule (every Nth request, its slice of the rate) and its own
connections, and sends its samples back when done; they are merged here.
``--metrics-port`` reads the running counts the workers publish in shared
memory every 50 ms (prometheus text, with proxy/metrics.py's server).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from typing import Any

from baton.replay.load import LoadPlan, LoadSettings, WorkerSamples, run_worker

__all__ = ["run_load"]

_COUNTS = 3  # per worker: requests, errors, sent


def _publisher(counts: Any, worker: int) -> Any:
    def publish(samples: WorkerSamples) -> None:
        base = worker * _COUNTS
        counts[base] = samples.requests
        counts[base + 1] = sum(samples.errors.values())
        counts[base + 2] = samples.sent

    return publish


def _worker_main(plan: LoadPlan, settings: LoadSettings, counts: Any, results: Any) -> None:
    samples = run_worker(plan, settings, _publisher(counts, settings.worker))
    results.put((settings.worker, samples))


def _serve_metrics(counts: Any, workers: int, observability: Any) -> Any:
    if observability is None or observability.metrics_port is None:
        return None
    from baton.proxy.metrics import Metrics

    metrics = Metrics("load")

    def total(offset: int) -> float:
        return float(sum(counts[w * _COUNTS + offset] for w in range(workers)))

    metrics.read("baton_load_requests_total", "Requests answered or failed.", lambda: total(0))
    metrics.read("baton_load_errors_total", "Requests that failed (any kind).", lambda: total(1))
    metrics.read("baton_load_sent_total", "Requests sent.", lambda: total(2))
    metrics.health = lambda: {"requests": total(0), "errors": total(1)}
    return observability.serve(metrics)


def run_load(plan: LoadPlan, settings: LoadSettings, observability: Any = None) -> WorkerSamples:
    """Every worker's samples, merged; workers > 1 run in forked processes."""
    workers = settings.workers
    context = multiprocessing.get_context("fork")
    counts = context.Array("q", workers * _COUNTS, lock=False)
    server = _serve_metrics(counts, workers, observability)
    try:
        if workers == 1:
            return run_worker(plan, settings, _publisher(counts, 0))
        results = context.Queue()
        processes = [
            context.Process(
                target=_worker_main,
                args=(plan, replace(settings, worker=w), counts, results),
                daemon=True,
            )
            for w in range(workers)
        ]
        for process in processes:
            process.start()
        merged = WorkerSamples()
        for _ in processes:
            _, samples = results.get(
                timeout=settings.warmup_s + settings.duration_s + 2 * settings.timeout_s + 30
            )
            merged.merge(samples)
        for process in processes:
            process.join(10)
        return merged
    finally:
        if server is not None:
            server.close()
