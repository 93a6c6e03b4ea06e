"""gRPC calls per second and p99: baton replay next to the grpcio server it recorded, same run.

    python bench/grpc_replay.py [--rounds 3] [--seconds 5] [--concurrency 16]

One run compiles tests/grpc_services/orders.proto, starts the real grpcio
server of the tests (a synchronous ``grpc.server`` with a thread pool, the
way most Python services are written), records one unary ``Get`` and one
100-message ``List`` stream through ``baton record --mode reverse:h2c://``,
stops nothing, and then drives each contender in turn, round after round,
with the same client:

* the grpcio server itself;
* ``baton replay`` of the cassette (a ``grpc.aio`` server answering from it).

The client is a separate process (``grpc.aio``, one channel, CONCURRENCY
calls in flight) running for SECONDS per workload: ``unary`` (Get) and
``stream`` (List of 100 messages, read to the end). The table reports calls
per second and the p50/p99 latency of a whole call; medians of the rounds.
Results go to bench/results/grpc_replay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _client(address: str, stubs: str, workload: str, seconds: float, concurrency: int) -> None:
    """Run in a child process: drive ``address`` and print one JSON line of results."""
    import grpc
    from grpc import aio

    from tests.grpc_services.client import load_stubs

    pb2, _ = load_stubs(Path(stubs))
    latencies: list[float] = []
    checked = {"messages": 0}

    async def run() -> None:
        async with aio.insecure_channel(address) as channel:
            get = channel.unary_unary(
                "/shop.OrderService/Get",
                request_serializer=pb2.GetOrderRequest.SerializeToString,
                response_deserializer=pb2.Order.FromString,
            )
            listing = channel.unary_stream(
                "/shop.OrderService/List",
                request_serializer=pb2.ListOrdersRequest.SerializeToString,
                response_deserializer=pb2.Order.FromString,
            )
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    if workload == "unary":
                        answer = await get(
                            pb2.GetOrderRequest(id="order-7", token="t"),
                            metadata=[("x-request-id", "req-1")],
                        )
                        assert answer.id == "order-7"
                        checked["messages"] += 1
                    else:
                        count = 0
                        async for _ in listing(pb2.ListOrdersRequest(count=100)):
                            count += 1
                        assert count == 100, count
                        checked["messages"] += count
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    latencies.sort()
    print(
        json.dumps(
            {
                "calls_per_s": len(latencies) / elapsed,
                "p50_ms": latencies[len(latencies) // 2] * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
                "messages": checked["messages"],
            }
        )
    )
    del grpc


def _drive(address: str, stubs: Path, workload: str, seconds: float, concurrency: int) -> Any:
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            address,
            "--stubs",
            str(stubs),
            "--workload",
            workload,
            "--seconds",
            str(seconds),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _start_baton(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    import re

    proc = subprocess.Popen(
        [sys.executable, "-m", "baton.proxy.cli", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    for raw in proc.stderr:
        match = re.search(r"listening on \S+:(\d+)", raw.decode())
        if match:
            return proc, int(match.group(1))
    raise RuntimeError("baton did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--client")
    parser.add_argument("--stubs")
    parser.add_argument("--workload")
    args = parser.parse_args()
    if args.client:
        _client(args.client, args.stubs, args.workload, args.seconds, args.concurrency)
        return 0

    import grpc

    from tests.grpc_services.client import load_stubs
    from tests.grpc_services.server import compile_stubs

    scratch = Path(tempfile.mkdtemp(prefix="baton-grpc-bench-"))
    stubs = compile_stubs(scratch / "stubs")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.grpc_services.server", "--stubs", str(stubs)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    cassette = scratch / "bench.cassette"
    recorder, record_port = _start_baton(
        [
            *("record", "-o", str(cassette), "--mode", f"reverse:h2c://127.0.0.1:{port}"),
            *("--listen-port", "0", "--proto", str(ROOT / "tests/grpc_services/orders.proto")),
        ]
    )
    pb2, pb2_grpc = load_stubs(stubs)
    with grpc.insecure_channel(f"127.0.0.1:{record_port}") as channel:
        stub = pb2_grpc.OrderServiceStub(channel)
        stub.Get(pb2.GetOrderRequest(id="order-7", token="t"), metadata=[("x-request-id", "req-1")])
        assert len(list(stub.List(pb2.ListOrdersRequest(count=100)))) == 100
    recorder.terminate()
    recorder.wait(30)
    replayer, replay_port = _start_baton(["replay", str(cassette), "--listen-port", "0"])
    contenders = {
        "grpcio server": f"127.0.0.1:{port}",
        "baton replay": f"127.0.0.1:{replay_port}",
    }
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        w: {name: [] for name in contenders} for w in ("unary", "stream")
    }
    try:
        for _ in range(args.rounds):
            for workload in results:
                for name, address in contenders.items():
                    results[workload][name].append(
                        _drive(address, stubs, workload, args.seconds, args.concurrency)
                    )
    finally:
        replayer.terminate()
        server.terminate()
        replayer.wait(30)
        server.wait(30)

    summary: dict[str, Any] = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
    }
    print(
        f"{'workload':<8} {'contender':<14} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}"
    )
    for workload, by_name in results.items():
        base = statistics.median(r["calls_per_s"] for r in by_name["grpcio server"])
        for name, runs in by_name.items():
            row = {
                key: statistics.median(r[key] for r in runs)
                for key in ("calls_per_s", "p50_ms", "p99_ms")
            }
            row["ratio"] = row["calls_per_s"] / base
            summary[f"{workload}/{name}"] = row
            print(
                f"{workload:<8} {name:<14} {row['calls_per_s']:>9.0f} {row['p50_ms']:>8.2f} "
                f"{row['p99_ms']:>8.2f} {row['ratio']:>6.2f}"
            )
    out = ROOT / "bench" / "results" / "grpc_replay.json"
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
