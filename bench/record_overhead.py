"""Recording overhead: `baton record` vs bare `mitmdump`, both in reverse mode, side by side.

    python bench/record_overhead.py [--seconds 10] [--rounds 3] [--connections 32]

Both proxies run under the same interpreter in front of the same upstream
(uvicorn + httptools, a 1 KB JSON answer) and are loaded in turn by wrk, round
after round, so that drift in the machine affects both. The figure that
matters is the ratio: what recording every exchange (redaction, msgpack, a
write per interaction) costs on top of mitmproxy's own per-request work.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteReader
from bench.load import (
    VENV_BIN,
    WrkResult,
    free_port,
    median_result,
    run_wrk,
    save,
    start_command,
    start_upstream,
    table,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    upstream = start_upstream()
    results: dict[str, list[WrkResult]] = {
        "upstream direct": [],
        "mitmdump": [],
        "baton record": [],
    }
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
                for name, argv in contenders.items():
                    proxy = start_command(name, argv, port)
                    try:
                        run_wrk(proxy.url + "/", 2, args.connections)  # warm-up
                        results[name].append(
                            run_wrk(
                                proxy.url + "/", args.seconds, args.connections, pid=proxy.proc.pid
                            )
                        )
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
            str(m.errors),
        ]
        for name, m in medians.items()
    ]
    print()
    print(
        f"reverse proxy in front of uvicorn, wrk -c{args.connections}, "
        f"{args.seconds}s x {args.rounds} rounds, medians"
    )
    header = ["", "req/s", "p50 ms", "p99 ms", "vs mitmdump", "CPU us/req", "errors"]
    print(table(rows, header))
    ratio = medians["baton record"].requests_per_second / base.requests_per_second
    cpu_ratio = medians["baton record"].cpu_us_per_request / base.cpu_us_per_request
    print(
        f"\nbaton record runs at {ratio:.0%} of bare mitmdump's throughput and spends "
        f"{cpu_ratio:.2f}x its CPU per request; {recorded:,} interactions recorded and read back."
    )
    path = save(
        "record_overhead",
        {
            "settings": vars(args),
            "medians": medians,
            "runs": results,
            "ratio_baton_vs_mitmdump": ratio,
            "cpu_ratio_baton_vs_mitmdump": cpu_ratio,
            "interactions_recorded": recorded,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
