"""Recording overhead: `baton record` vs bare `mitmdump`, both in reverse mode, side by side.

    python bench/record_overhead.py [--seconds 10] [--rounds 3] [--connections 32]
                                    [--quick] [--baseline DIR]

Both proxies run under the same interpreter in front of the same upstream
(uvicorn + httptools, a 1 KB JSON answer) and are loaded in turn by wrk, round
after round, so that drift in the machine affects both. The figure that
matters is the ratio: what recording every exchange (redaction, msgpack, a
write per interaction) costs on top of mitmproxy's own per-request work.
"CPU us/req" is the proxy process's user + system time (all threads) per
request answered: steadier than req/s on a machine whose cores wrk, the
upstream and the proxy share. "RSS MiB" is its peak resident set (VmHWM).

``--baseline DIR`` adds a third contender, ``baton record`` imported from
another checkout (``PYTHONPATH=DIR``, e.g. ``git worktree add /tmp/before
HEAD~3``), in the same rounds: before and after, side by side.
``--quick`` is one round of 3 s, for a smoke run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteReader
from bench.load import (
    VENV_BIN,
    Process,
    WrkResult,
    free_port,
    median_result,
    run_wrk,
    save,
    start_upstream,
    table,
    wait_ready,
)

BASELINE = "baton record (baseline)"


def peak_rss(pid: int) -> int:
    """The process's peak resident set in bytes (VmHWM), 0 if it cannot be read."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start_proxy(name: str, argv: list[str], port: int, pythonpath: str | None = None) -> Process:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/", proc)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return Process(name, proc, url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run baton record from this checkout (PYTHONPATH=DIR), same rounds",
    )
    args, _ = parser.parse_known_args()  # make bench passes every script the same flags
    if args.quick:
        args.seconds, args.rounds = 3, 1

    upstream = start_upstream()
    results: dict[str, list[WrkResult]] = {
        "upstream direct": [],
        "mitmdump": [],
        "baton record": [],
    }
    if args.baseline:
        results[BASELINE] = []
    peaks: dict[str, list[int]] = {name: [] for name in results}
    recorded = 0
    try:
        with tempfile.TemporaryDirectory() as scratch:
            confdir = Path(scratch) / "mitmproxy"
            for round_number in range(args.rounds):
                results["upstream direct"].append(
                    run_wrk(upstream.url + "/", args.seconds, args.connections)
                )
                port = free_port()
                common = [
                    "--mode",
                    f"reverse:{upstream.url}",
                    "--listen-host",
                    "127.0.0.1",
                    "--listen-port",
                    str(port),
                    "--set",
                    f"confdir={confdir}",
                ]
                contenders = {
                    "mitmdump": [
                        str(VENV_BIN / "mitmdump"),
                        "-q",
                        *common,
                        "--set",
                        "flow_detail=0",
                    ],
                    "baton record": [
                        str(VENV_BIN / "baton"),
                        "record",
                        "-q",
                        "-o",
                        str(Path(scratch) / f"round{round_number}.cassette"),
                        *common,
                    ],
                }
                if args.baseline:
                    contenders[BASELINE] = [
                        str(VENV_BIN / "baton"),
                        "record",
                        "-q",
                        "-o",
                        str(Path(scratch) / f"baseline{round_number}.cassette"),
                        *common,
                    ]
                for name, argv in contenders.items():
                    proxy = start_proxy(
                        name, argv, port, args.baseline if name == BASELINE else None
                    )
                    try:
                        run_wrk(proxy.url + "/", 2, args.connections)  # warm-up
                        results[name].append(
                            run_wrk(
                                proxy.url + "/", args.seconds, args.connections, pid=proxy.proc.pid
                            )
                        )
                        peaks[name].append(peak_rss(proxy.proc.pid))
                    finally:
                        proxy.stop()
                    print(
                        f"round {round_number + 1}: {name}: {results[name][-1].requests_per_second:,.0f} req/s",
                        flush=True,
                    )
                with CassetteReader(Path(scratch) / f"round{round_number}.cassette") as reader:
                    recorded += sum(1 for _ in reader)
    finally:
        upstream.stop()

    medians = {name: median_result(runs) for name, runs in results.items()}
    base = medians["mitmdump"]
    rows = [
        [
            name,
            f"{m.requests_per_second:,.0f}",
            f"{m.p50_ms:.1f}",
            f"{m.p99_ms:.1f}",
            f"{m.requests_per_second / base.requests_per_second:.2f}",
            f"{m.cpu_us_per_request:,.0f}" if m.cpu_us_per_request else "-",
            f"{max(peaks[name]) / (1 << 20):.0f}" if peaks[name] else "-",
            str(m.errors),
        ]
        for name, m in medians.items()
    ]
    print()
    print(
        f"reverse proxy in front of uvicorn, wrk -c{args.connections}, "
        f"{args.seconds}s x {args.rounds} rounds, medians"
    )
    header = ["", "req/s", "p50 ms", "p99 ms", "vs mitmdump", "CPU us/req", "RSS MiB", "errors"]
    print(table(rows, header))
    ratio = medians["baton record"].requests_per_second / base.requests_per_second
    cpu_ratio = medians["baton record"].cpu_us_per_request / base.cpu_us_per_request
    print(
        f"\nbaton record runs at {ratio:.0%} of bare mitmdump's throughput and spends "
        f"{cpu_ratio:.2f}x its CPU per request; {recorded:,} interactions recorded and read back."
    )
    figures = {
        "record_vs_mitmdump": round(ratio, 3),
        "cpu_us_per_req_mitmdump": round(base.cpu_us_per_request, 1),
        "cpu_us_per_req_baton": round(medians["baton record"].cpu_us_per_request, 1),
    }
    if args.baseline:
        before = medians[BASELINE]
        figures["baseline_vs_mitmdump"] = round(
            before.requests_per_second / base.requests_per_second, 3
        )
        figures["cpu_us_per_req_baseline"] = round(before.cpu_us_per_request, 1)
    path = save(
        "record_overhead",
        {
            "figures": figures,
            "settings": vars(args),
            "medians": medians,
            "runs": results,
            "peak_rss_bytes": {name: max(p) for name, p in peaks.items() if p},
            "ratio_baton_vs_mitmdump": ratio,
            "cpu_ratio_baton_vs_mitmdump": cpu_ratio,
            "interactions_recorded": recorded,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
