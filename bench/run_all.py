"""`make bench`: run every benchmark in turn; each prints its table and writes bench/results/NAME.json."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "record_overhead.py",
    "replay_throughput.py",
    "cassette_load.py",
    "diff_throughput.py",
    "fleet_drift.py",
    "ws_throughput.py",
    "stream_memory.py",
    "grpc_replay.py",
    "fidelity_overhead.py",
    "load_generator.py",
    "slowloris.py",
    "reliability.py",
]


def main() -> int:
    failed = []
    for script in BENCHMARKS:
        print(f"\n=== {script} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *sys.argv[1:]]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
