"""Drift throughput: interactions compared per second, with and without the network.

    python bench/diff_throughput.py [--interactions 10000] [--rounds 3] [--concurrency 32]

Builds a cassette of N exchanges shaped like the upstream's answers
(GET /items/1..N, 1 KB JSON), then measures, as separate processes:

* ``baton diff CASSETTE --target URL``: every request re-sent to a local
  uvicorn upstream and compared (the network path);
* ``baton diff CASSETTE CASSETTE``: the same comparisons, no network
  (pairing by match key, decoding, deepdiff).

It reports interactions per second and the peak resident memory of the diff
process, medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteWriter, Interaction, Request, Response
from bench.load import save, start_upstream, table
from bench.upstream import BODY


def build_cassette(path: Path, count: int) -> None:
    with CassetteWriter(path, redactor=None) as writer:
        for n in range(1, count + 1):
            item = f"/items/{n}"
            body = b'{"path": "%s", ' % item.encode() + BODY[1:]
            writer.append(
                Interaction(
                    str(n),
                    Request(
                        "GET", "http", "127.0.0.1", 80, item, (), "HTTP/1.1", (("Accept", "*/*"),)
                    ),
                    Response(200, "OK", headers=(("content-type", "application/json"),), body=body),
                    float(n),
                )
            )


# Runs the CLI and reports the process's own peak resident memory (VmHWM) at
# exit; ru_maxrss would include what the parent held when it forked.
REPORTING_PEAK = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write(next(l for l in open('/proc/self/status')"
    " if l.startswith('VmHWM'))))\n"
    "from baton.proxy.cli import main\n"
    "sys.argv = ['baton', *sys.argv[1:]]\n"
    "main()\n"
)


def run(args: list[str]) -> tuple[float, int, dict[str, object]]:
    """Seconds, peak RSS (KiB) and the JSON summary of one `baton diff` process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", REPORTING_PEAK, "diff", *args, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"baton diff failed: {err.decode()}")
    peak_kib = int(err.decode().rsplit("VmHWM:", 1)[1].split()[0])
    return seconds, peak_kib, json.loads(out)["summary"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    results: dict[str, list[tuple[float, int]]] = {"with network": [], "without network": []}
    upstream = start_upstream()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            cassette = Path(scratch) / "many.cassette"
            build_cassette(cassette, args.interactions)
            for round_number in range(args.rounds):
                for name, argv in {
                    "with network": [
                        str(cassette),
                        "--target",
                        upstream.url,
                        "--concurrency",
                        str(args.concurrency),
                    ],
                    "without network": [str(cassette), str(cassette)],
                }.items():
                    seconds, peak, summary = run(argv)
                    if summary["compared"] != args.interactions:
                        raise SystemExit(
                            f"{name}: compared {summary['compared']}, expected {args.interactions}"
                        )
                    results[name].append((seconds, peak))
                    print(
                        f"round {round_number + 1}: {name}: {args.interactions / seconds:,.0f} interactions/s",
                        flush=True,
                    )
    finally:
        upstream.stop()

    rows = []
    medians: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        seconds = statistics.median(s for s, _ in runs)
        peak_mib = max(p for _, p in runs) / 1024
        medians[name] = {
            "seconds": seconds,
            "interactions_per_second": args.interactions / seconds,
            "peak_rss_mib": peak_mib,
        }
        rows.append(
            [
                name,
                f"{args.interactions:,}",
                f"{seconds:.1f}",
                f"{args.interactions / seconds:,.0f}",
                f"{peak_mib:.0f}",
            ]
        )
    print()
    print(
        f"baton diff over {args.interactions:,} interactions (1 KB JSON each), medians of {args.rounds}"
    )
    print(table(rows, ["", "interactions", "seconds", "per second", "peak RSS MiB"]))
    path = save("diff_throughput", {"settings": vars(args), "medians": medians, "runs": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
