"""What ``--compress zstd`` costs: CPU per interaction to encode, append and read, plain vs zstd.

    python bench/body_compression.py [--count 20000] [--rounds 3] [--quick]

The traffic is bench/cassette_load.py's (GET /items/N, 1 KB JSON answers).
Each round measures plain and zstd side by side, alternating (plain, zstd,
plain, zstd...), in CPU time of this process (``time.process_time``), so a
busy machine slows both alike; the figures are medians over the rounds:

* encode: ``interaction_to_object`` + msgpack, what the writer does per
  interaction before the write;
* append: ``CassetteWriter.append`` to a file (redaction off), the whole
  per-interaction cost of recording into a cassette;
* read: iterating a ``CassetteReader`` over the file (decoding every body).

With ``--record N`` (default 2,000; 0 skips it), also a real ``baton
record`` in reverse mode in front of bench/upstream.py, plain and with
``--compress zstd`` alternating: N requests to distinct paths (1 KB JSON
answers) from one keep-alive client, and the recorder's CPU time per
request (``/proc``, process and threads): the cost as recording sees it.

Figures (results/body_compression.json): ``encode_us_plain``,
``encode_us_zstd``, ``append_us_plain``, ``append_us_zstd``,
``read_us_plain``, ``read_us_zstd``, ``bytes_per_interaction_plain`` /
``_zstd``, and ``record_cpu_us_plain`` / ``record_cpu_us_zstd``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteReader, CassetteWriter, Interaction
from baton.cassettes.codec import interaction_to_object, pack
from baton.cassettes.compression import BodyCompression
from bench.cassette_load import interactions
from bench.load import Process, cpu_seconds, free_port, save, start_upstream, table, wait_ready

SETTINGS = {"plain": None, "zstd": BodyCompression()}


def one_round(items: list[Interaction], folder: Path, name: str) -> dict[str, float]:
    """CPU microseconds per interaction for one setting, and the file's bytes per interaction."""
    compression = SETTINGS[name]
    count = len(items)
    start = time.process_time()
    for item in items:
        pack(interaction_to_object(item, None, compression))
    encode = time.process_time() - start
    path = folder / f"{name}.cassette"
    path.unlink(missing_ok=True)
    start = time.process_time()
    with CassetteWriter(path, redactor=None, compression=compression) as writer:
        for item in items:
            writer.append(item)
    append = time.process_time() - start
    start = time.process_time()
    with CassetteReader(path) as reader:
        read = sum(1 for _ in reader)
    read_seconds = time.process_time() - start
    if read != count:
        raise SystemExit(f"{name}: read {read} of {count} interactions")
    return {
        "encode_us": encode / count * 1e6,
        "append_us": append / count * 1e6,
        "read_us": read_seconds / count * 1e6,
        "bytes_per_interaction": path.stat().st_size / count,
    }


def record_round(upstream: Process, folder: Path, name: str, requests: int) -> float:
    """CPU microseconds ``baton record`` spends per request, with or without ``--compress zstd``."""
    port = free_port()
    cassette = folder / f"recorded-{name}.cassette"
    cassette.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "baton.proxy.cli", "record", "-o", str(cassette), "-q"]
    argv += ["--mode", f"reverse:{upstream.url}", "--listen-port", str(port)]
    argv += ["--set", f"confdir={folder / 'mitmproxy'}"]
    if name == "zstd":
        argv += ["--compress", "zstd"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recorder = Process(f"baton record ({name})", proc, f"http://127.0.0.1:{port}")
    try:
        wait_ready(recorder.url + "/", proc)
        with httpx.Client(trust_env=False, timeout=30) as client:
            client.get(f"{recorder.url}/warm-up")
            before = cpu_seconds(proc.pid)
            for number in range(requests):
                client.get(f"{recorder.url}/items/{number}").raise_for_status()
            spent = cpu_seconds(proc.pid) - before
    finally:
        recorder.stop()
    return spent / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", type=int, default=2_000, metavar="N")
    parser.add_argument("--quick", action="store_true", help="2,000 interactions, one round")
    args = parser.parse_args()
    if args.quick:
        args.count, args.rounds, args.record = 2_000, 1, 500
    items = interactions(args.count)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for name in SETTINGS:  # side by side: plain, zstd, plain, zstd...
                runs[name].append(one_round(items, Path(scratch), name))
        if args.record:
            upstream = start_upstream()
            try:
                for round_number in range(args.rounds):
                    for name in SETTINGS:
                        cost = record_round(upstream, Path(scratch), name, args.record)
                        runs[name][round_number]["record_cpu_us"] = cost
            finally:
                upstream.stop()
    medians = {
        name: {key: statistics.median(run[key] for run in found) for key in found[0]}
        for name, found in runs.items()
    }
    rows = [
        [
            name,
            f"{m['encode_us']:.1f}",
            f"{m['append_us']:.1f}",
            f"{m['read_us']:.1f}",
            f"{m['bytes_per_interaction']:.0f}",
            f"{m['record_cpu_us']:.0f}" if "record_cpu_us" in m else "-",
        ]
        for name, m in medians.items()
    ]
    print(f"{args.count:,} interactions, CPU us per interaction, medians of {args.rounds}")
    print(table(rows, ["bodies", "encode", "append", "read", "bytes/interaction", "baton record"]))
    figures = {f"{key}_{name}": value for name, m in medians.items() for key, value in m.items()}
    path = save(
        "body_compression",
        {"settings": vars(args), "medians": medians, "runs": runs, "figures": figures},
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
