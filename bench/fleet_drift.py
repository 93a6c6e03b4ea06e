"""Fleet drift: one process against shards and Dask, and baton merge in MB/s.

    python bench/fleet_drift.py [--interactions 10000] [--rounds 3] [--merge-mib 256]

Drift: a cassette of N exchanges (GET /items/1..N, 1 KB JSON) re-sent to a
local uvicorn upstream, each run a separate process, timed from start to
exit (interpreter and imports included), as:

* one process: ``baton diff CASSETTE --target URL``;
* two shard processes at once: ``--shard 1/2`` and ``--shard 2/2`` in
  parallel, then ``baton report merge`` (what two CI jobs do);
* ``--dask local --dask-workers 2``: a LocalCluster of two worker processes
  started by the command (its start-up counted), one shard each.

Merge: ``baton merge`` of (a) four cassettes of small exchanges (~1 KB
bodies) and (b) one cassette holding one large stored body plus a few small
exchanges; MB/s of input read and written, and the merge's peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteWriter, Interaction, Request, Response
from bench.diff_throughput import REPORTING_PEAK, build_cassette
from bench.load import save, start_upstream, table


def baton(*args: str) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB) and stdout of one ``baton`` process."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", REPORTING_PEAK, *args], capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"baton {' '.join(args)} failed: {proc.stderr}")
    peak_kib = int(proc.stderr.rsplit("VmHWM:", 1)[1].split()[0])
    return seconds, peak_kib, proc.stdout


def sharded(cassette: Path, url: str, folder: Path) -> float:
    """Two shard processes at once, then the merge: seconds until the merged report exists."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "baton.proxy.cli",
                "diff",
                str(cassette),
                "--target",
                url,
                "--shard",
                f"{i}/2",
                "--format",
                "json",
                "-o",
                str(folder / f"{i}.json"),
            ],
            stderr=subprocess.DEVNULL,
        )
        for i in (1, 2)
    ]
    for proc in procs:
        if proc.wait(1800) not in (0, 1):
            raise SystemExit("a shard failed")
    merged = subprocess.run(
        [
            sys.executable,
            "-m",
            "baton.proxy.cli",
            "report",
            "merge",
            str(folder / "1.json"),
            str(folder / "2.json"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    if merged.returncode not in (0, 1):
        raise SystemExit(f"report merge failed: {merged.stderr}")
    return seconds


def build_small(folder: Path, shards: int, per_shard: int) -> list[Path]:
    """``shards`` cassettes of ``per_shard`` exchanges with 1 KB bodies, overlapping in time."""
    body = json.dumps({"items": [{"id": n, "name": f"item {n}"} for n in range(40)]}).encode()
    paths = []
    for shard in range(shards):
        path = folder / f"small-{shard}.cassette"
        with CassetteWriter(path, redactor=None) as writer:
            for n in range(per_shard):
                writer.append(
                    Interaction(
                        f"{shard}-{n}",
                        Request("GET", "http", "orders.internal", 80, f"/orders/{n}"),
                        Response(
                            200, "OK", headers=(("content-type", "application/json"),), body=body
                        ),
                        float(n) + shard / shards,
                    )
                )
        paths.append(path)
    return paths


def build_large(folder: Path, mib: int) -> Path:
    path = folder / "large.cassette"
    piece = hashlib.sha256(b"bench").digest() * (1 << 15)  # 1 MiB
    with CassetteWriter(path, redactor=None) as writer:
        stream = writer.open_stream()
        for n in range(mib):
            stream.write(piece, float(n))
        writer.append(
            Interaction(
                "large",
                Request("GET", "http", "files.internal", 80, "/export"),
                Response(200, "OK", body=None),
                0.0,
            ),
            streams={"response": stream},
        )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--merge-mib", type=int, default=256)
    args = parser.parse_args()

    drift: dict[str, list[float]] = {"one process": [], "2 shards + merge": [], "dask local, 2": []}
    merge: dict[str, list[tuple[float, int, int]]] = {"small exchanges": [], "large body": []}
    upstream = start_upstream()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            cassette = folder / "many.cassette"
            build_cassette(cassette, args.interactions)
            target = ["--target", upstream.url]
            for round_number in range(args.rounds):
                seconds, _, _ = baton("diff", str(cassette), *target, "--format", "json")
                drift["one process"].append(seconds)
                drift["2 shards + merge"].append(sharded(cassette, upstream.url, folder))
                seconds, _, out = baton(
                    "diff",
                    str(cassette),
                    *target,
                    "--dask",
                    "local",
                    "--dask-workers",
                    "2",
                    "--format",
                    "json",
                )
                if json.loads(out)["summary"]["compared"] != args.interactions:
                    raise SystemExit("dask: not every interaction was compared")
                drift["dask local, 2"].append(seconds)
                print(
                    f"round {round_number + 1}: "
                    + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in drift.items()),
                    flush=True,
                )
            small = build_small(folder, 4, max(1, (args.merge_mib << 20) // 4 // 1100))
            large = build_large(folder, args.merge_mib)
            for name, inputs in {"small exchanges": small, "large body": [large]}.items():
                size = sum(p.stat().st_size for p in inputs)
                for _ in range(args.rounds):
                    out = folder / "merged.cassette"
                    seconds, peak, _ = baton("merge", str(out), *map(str, inputs))
                    merge[name].append((seconds, peak, size))
                    out.unlink()
                print(
                    f"merge, {name}: {size / (1 << 20) / merge[name][-1][0]:.0f} MiB/s", flush=True
                )
    finally:
        upstream.stop()

    medians: dict[str, dict[str, float]] = {}
    rows = []
    for name, runs in drift.items():
        seconds = statistics.median(runs)
        medians[name] = {"seconds": seconds, "interactions_per_second": args.interactions / seconds}
        rows.append(
            [
                name,
                f"{args.interactions:,}",
                f"{seconds:.1f}",
                f"{args.interactions / seconds:,.0f}",
            ]
        )
    print()
    print(f"baton diff over {args.interactions:,} interactions, medians of {args.rounds}")
    print(table(rows, ["", "interactions", "seconds", "per second"]))
    rows = []
    for name, merge_runs in merge.items():
        seconds = statistics.median(s for s, _, _ in merge_runs)
        size = merge_runs[0][2]
        peak_mib = max(p for _, p, _ in merge_runs) / 1024
        medians[f"merge {name}"] = {
            "seconds": seconds,
            "input_mib": size / (1 << 20),
            "mib_per_second": size / (1 << 20) / seconds,
            "peak_rss_mib": peak_mib,
        }
        rows.append(
            [
                name,
                f"{size / (1 << 20):.0f}",
                f"{seconds:.1f}",
                f"{size / (1 << 20) / seconds:.0f}",
                f"{peak_mib:.0f}",
            ]
        )
    print()
    print("baton merge")
    print(table(rows, ["", "input MiB", "seconds", "MiB/s", "peak RSS MiB"]))
    path = save("fleet_drift", {"settings": vars(args), "medians": medians})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
