"""Rotation soak: 50 connections through `baton record --rotate-size 1MB` for 30 s.

    python bench/rotation_soak.py [--seconds 30] [--connections 50] [--rotate-size 1MB]

Every request carries a unique id; afterwards each shard is read alone, and
the ids in all shards together must be exactly the ids the clients got an
answer for: none lost, none written twice, no shard with a torn end or with
parts whose interaction is in another shard. It also reports the requests
per second through the recorder, the number of shards and the slowest
answers (a rotation must not hold requests up), next to the same load
without rotation. The test suite runs a few seconds of the same
(tests/test_fleet_recording.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes.reader import CassetteReader
from bench.load import VENV_BIN, free_port, save, start_command, start_upstream, table


async def _load(url: str, connections: int, seconds: float) -> tuple[list[str], list[float]]:
    sent: list[str] = []
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            n = 0
            while time.monotonic() < deadline:
                request_id = f"c{number}-{n}"
                n += 1
                started = time.perf_counter()
                answer = await http.get(f"{url}/items/{n % 50}", params={"id": request_id})
                latencies.append(time.perf_counter() - started)
                if answer.status_code == 200:
                    sent.append(request_id)

    await asyncio.gather(*(client(c) for c in range(connections)))
    return sent, latencies


def _ids(folder: Path) -> tuple[int, list[str]]:
    shards = sorted(folder.glob("*.cassette"))
    ids: list[str] = []
    for shard in shards:
        with CassetteReader(shard, warn_torn=False) as reader:
            ids += [str(dict(i.request.query).get("id")) for i in reader]
            if reader.torn_at is not None or reader.orphan_parts:
                raise SystemExit(f"{shard}: torn, or parts whose interaction is elsewhere")
    return len(shards), ids


def run(
    seconds: float, connections: int, rotate_size: str | None, scratch: Path
) -> dict[str, object]:
    upstream = start_upstream()
    port = free_port()
    folder = scratch / ("rotated" if rotate_size else "single")
    argv = [str(VENV_BIN / "baton"), "record", "-q", "--mode", f"reverse:{upstream.url}"]
    argv += ["--listen-port", str(port)]
    if rotate_size:
        argv += ["-o", f"{folder}/", "--rotate-size", rotate_size]
    else:
        folder.mkdir()
        argv += ["-o", str(folder / "all.cassette")]
    recorder = start_command("baton record", argv, port, probe_path="/items/0?id=probe")
    try:
        sent, latencies = asyncio.run(_load(recorder.url, connections, seconds))
    finally:
        recorder.stop()
        upstream.stop()
    shards, ids = _ids(folder)
    ids = [i for i in ids if i != "probe"]
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    lost = sorted(set(sent) - set(ids))
    if doubled or lost:
        raise SystemExit(f"lost {len(lost)} ({lost[:5]}), written twice {len(doubled)}")
    latencies.sort()
    return {
        "requests": len(sent),
        "requests_per_second": len(sent) / seconds,
        "shards": shards,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rotate-size", default="1MB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        results = {
            "one cassette": run(args.seconds, args.connections, None, scratch),
            f"--rotate-size {args.rotate_size}": run(
                args.seconds, args.connections, args.rotate_size, scratch
            ),
        }
    rows = [
        [
            name,
            str(r["requests"]),
            f"{r['requests_per_second']:,.0f}",
            str(r["shards"]),
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
        ]
        for name, r in results.items()
    ]
    print(f"{args.connections} connections, {args.seconds:.0f} s, every id in exactly one shard\n")
    print(table(rows, ["", "requests", "req/s", "shards", "p50 ms", "p99 ms", "max ms"]))
    save("rotation_soak", {"args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
