"""Drift throughput: interactions compared per second, with and without the network.

    python bench/diff_throughput.py [--interactions 10000] [--rounds 3] [--concurrency 32]
    python bench/diff_throughput.py --quick          # 2,000 interactions, one round

Builds a cassette of N exchanges shaped like the upstream's answers
(GET /items/1..N, 1 KB JSON), then measures, as separate processes, round
after round in turn:

* ``baton diff CASSETTE --target URL``: every request re-sent to a local
  uvicorn upstream and compared (the network path);
* ``baton diff CASSETTE AGAIN``: the same comparisons, no network, against
  a second recording of the same exchanges (other ids and times): reading
  both, pairing, comparing;
* both again on a cassette of one interaction: what a run costs before it
  compares anything (interpreter, imports, the reachability check).

It reports, medians over the rounds: interactions per second of the whole
process (N / seconds, start-up included: what a CI job waits for), the same
without the start-up ((N - 1) / (seconds - seconds of the one-interaction
run): the rate a larger recording approaches), CPU time per interaction of
the diff process (user + system; steadier than seconds on a shared machine)
and the peak resident memory of the diff process. The headline figures go
to bench/results/diff_throughput.json under "figures".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def build_cassette(path: Path, count: int, *, later: bool = False) -> None:
    """``later``: the same exchanges recorded again (other ids and times), as a second
    recording of an unchanged build is."""
    with CassetteWriter(path, redactor=None) as writer:
        for n in range(1, count + 1):
            item = f"/items/{n}"
            body = b'{"path": "%s", ' % item.encode() + BODY[1:]
            writer.append(
                Interaction(
                    f"again-{n}" if later else str(n),
                    Request(
                        "GET", "http", "127.0.0.1", 80, item, (), "HTTP/1.1", (("Accept", "*/*"),)
                    ),
                    Response(200, "OK", headers=(("content-type", "application/json"),), body=body),
                    float(n) + (86_400.0 if later else 0.0),
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


def run(args: list[str]) -> tuple[float, float, int, dict[str, object]]:
    """Seconds, CPU seconds, peak RSS (KiB) and the JSON summary of one `baton diff` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", REPORTING_PEAK, "diff", *args, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=600)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"baton diff failed: {err.decode()}")
    peak_kib = int(err.decode().rsplit("VmHWM:", 1)[1].split()[0])
    return seconds, cpu, peak_kib, json.loads(out)["summary"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--quick", action="store_true", help="2,000 interactions, one round: a check, not a figure"
    )
    args = parser.parse_args()
    if args.quick:
        args.interactions, args.rounds = 2_000, 1
    count = args.interactions

    runs: dict[str, list[tuple[float, float, int]]] = {}
    upstream = start_upstream()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            cassette = Path(scratch) / "many.cassette"
            again = Path(scratch) / "many-again.cassette"
            single = Path(scratch) / "one.cassette"
            single_again = Path(scratch) / "one-again.cassette"
            build_cassette(cassette, count)
            build_cassette(again, count, later=True)
            build_cassette(single, 1)
            build_cassette(single_again, 1, later=True)
            live = ["--target", upstream.url, "--concurrency", str(args.concurrency)]
            cases = {
                "with network": ([str(cassette), *live], count),
                "without network": ([str(cassette), str(again)], count),
                "with network, start-up": ([str(single), *live], 1),
                "without network, start-up": ([str(single), str(single_again)], 1),
            }
            for round_number in range(args.rounds):
                for name, (argv, expected) in cases.items():
                    seconds, cpu, peak, summary = run(argv)
                    if summary["compared"] != expected:
                        raise SystemExit(
                            f"{name}: compared {summary['compared']}, expected {expected}"
                        )
                    runs.setdefault(name, []).append((seconds, cpu, peak))
                    print(
                        f"round {round_number + 1}: {name}: {seconds:.2f} s, "
                        f"{expected / seconds:,.0f} interactions/s, CPU {cpu:.2f} s",
                        flush=True,
                    )
    finally:
        upstream.stop()

    def median(name: str, field: int) -> float:
        return statistics.median(r[field] for r in runs[name])

    medians: dict[str, dict[str, float]] = {}
    rows = []
    for name in ("with network", "without network"):
        seconds, cpu = median(name, 0), median(name, 1)
        startup, startup_cpu = median(f"{name}, start-up", 0), median(f"{name}, start-up", 1)
        peak_mib = max(r[2] for r in runs[name]) / 1024
        steady = (count - 1) / max(seconds - startup, 1e-9)
        cpu_us = (cpu - startup_cpu) / (count - 1) * 1e6
        medians[name] = {
            "seconds": seconds,
            "interactions_per_second": count / seconds,
            "start_up_seconds": startup,
            "interactions_per_second_after_start_up": steady,
            "cpu_us_per_interaction": cpu_us,
            "peak_rss_mib": peak_mib,
        }
        rows.append(
            [
                name,
                f"{count:,}",
                f"{seconds:.2f}",
                f"{count / seconds:,.0f}",
                f"{startup:.2f}",
                f"{steady:,.0f}",
                f"{cpu_us:.0f}",
                f"{peak_mib:.0f}",
            ]
        )
    load = os.getloadavg()
    print()
    print(
        f"baton diff over {count:,} interactions (1 KB JSON each), medians of {args.rounds}; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(
        table(
            rows,
            [
                "",
                "interactions",
                "seconds",
                "per second",
                "start-up s",
                "per s after start-up",
                "CPU us/interaction",
                "peak RSS MiB",
            ],
        )
    )
    live, offline = medians["with network"], medians["without network"]
    figures = {
        "offline_per_s": round(offline["interactions_per_second"]),
        "live_per_s": round(live["interactions_per_second"]),
        "offline_rss_mb": round(offline["peak_rss_mib"], 1),
        "offline_per_s_after_start_up": round(offline["interactions_per_second_after_start_up"]),
        "live_per_s_after_start_up": round(live["interactions_per_second_after_start_up"]),
        "offline_cpu_us_per_interaction": round(offline["cpu_us_per_interaction"], 1),
        "live_cpu_us_per_interaction": round(live["cpu_us_per_interaction"], 1),
        "live_rss_mb": round(live["peak_rss_mib"], 1),
        "start_up_s": round(offline["start_up_seconds"], 3),
    }
    path = save(
        "diff_throughput",
        {
            "settings": vars(args),
            "load_average": load,
            "figures": figures,
            "medians": medians,
            "runs": runs,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
