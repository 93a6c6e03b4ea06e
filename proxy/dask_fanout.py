"""Fan a drift run's shards out over a Dask cluster and merge what comes back.

One task per worker thread, each ``run_shard_json(job, i, n)``: the worker
opens the cassettes at the same paths (or URLs) the client named, re-sends
its shard's requests and returns its JSON report; the client merges them
with ``merge_shard_reports``, exactly as ``baton report merge`` merges the
reports of n CI jobs. The job is plain values, so it pickles; the secrets
it carries (``--header`` values) travel in memory to the workers and are
never written.

``dask.distributed`` is an optional dependency (the ``fleet`` extra); it is
imported only here, only when ``--dask`` is given.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from baton.replay.drift import DriftError, DriftReport
from baton.replay.drift_job import DiffJob, run_shard_json
from baton.replay.report_merge import ReportMergeError, merge_shard_reports

__all__ = ["diff_on_dask"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _client(address: str, workers: int, timeout: float) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise DriftError(
            "--dask needs dask.distributed: pip install 'baton-replay[fleet]'"
        ) from exc
    if address == "local":
        import dask

        # Processes, one thread each: the comparison is Python and holds the GIL; and no
        # statistical profiler walking the worker's stacks every 10 ms under that GIL.
        with (
            dask.config.set({"distributed.worker.profile.enabled": False}),
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DriftError(
            f"--dask {address}: no Dask scheduler reachable there ({reason}); "
            "start one (dask scheduler) or fix the address"
        ) from exc
    with client:
        yield client


def diff_on_dask(job: DiffJob, address: str, *, workers: int = 2) -> tuple[DriftReport, int]:
    """Run ``job`` as one shard per worker thread of the cluster at ``address``.

    Returns the merged report and the number of shards it was split into.

    ``address`` is a scheduler's (``tcp://host:8786``) or ``local`` for a
    ``LocalCluster`` of ``workers`` processes here. Raises ``DriftError``
    when the scheduler is unreachable or has no workers; a worker's own
    error (an unreachable target, a corrupt cassette) is raised as it was.
    """
    with _client(address, workers, job.timeout) as client:
        if address != "local":
            with contextlib.suppress(OSError, TimeoutError):
                client.wait_for_workers(1, timeout=job.timeout)
        threads = sum(client.nthreads().values())
        if threads == 0:
            raise DriftError(f"--dask {address}: the scheduler has no workers; start some")
        count = threads
        logger.info("fanning %d shards out over %s", count, address)
        futures = [
            client.submit(run_shard_json, job, index, count, pure=False)
            for index in range(1, count + 1)
        ]
        reports = client.gather(futures)
    try:
        merged = merge_shard_reports(
            [(f"shard {i}/{count}", report) for i, report in enumerate(reports, 1)]
        )
    except ReportMergeError as exc:  # not expected: the shards come from one job
        raise DriftError(str(exc)) from exc
    return merged, count
