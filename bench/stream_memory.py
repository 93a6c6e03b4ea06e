"""Bodies larger than memory: peak RSS of baton record and baton replay, and the client's throughput.

    python bench/stream_memory.py [--sizes 100,1024] [--rounds 3]

For each size (MiB) a streaming upstream (Starlette under hypercorn,
tests/stream_apps.py) sends a body of that size with a Content-Length. The
client (httpx, hashing what it receives) downloads it, round after round:

* directly from the upstream;
* through bare ``mitmdump`` streaming it (``stream_large_bodies=1``): the
  proxy without baton;
* through ``baton record``, which streams it and writes it to a cassette;
* from ``baton replay`` (the fast path), and from ``baton replay --mode
  regular`` (mitmproxy, which routes it to the loopback replay server).

It also uploads the same size through ``baton record``. Peak RSS is the
kernel's high-water mark of each baton process (``VmHWM`` in /proc), after
everything it served; the issue's bounds are 150 MB for recording and
replaying a 1 GB body, and the client's throughput through ``baton record``
within 10% of the proxy without baton. Every download's SHA-256 is checked
against the original's. "CPU s/GiB" is the proxy process's user + system
time (all threads, from /proc) per GiB downloaded: steadier than MB/s on a
machine whose cores the client, the upstream and the proxy share.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import VENV_BIN, Process, cpu_seconds, free_port, save, start_command, table
from tests.processes import start_upstream
from tests.stream_apps import pattern_sha256

MiB = 1 << 20


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def download(url: str, size: int, proxy: str | None = None) -> float:
    """MB/s of one download; raises if the bytes are not the original's."""
    digest = hashlib.sha256()
    received = 0
    started = time.perf_counter()
    with (
        httpx.Client(proxy=proxy, trust_env=False, timeout=300) as client,
        client.stream("GET", f"{url}/download?size={size}") as answer,
    ):
        for piece in answer.iter_raw(MiB):
            digest.update(piece)
            received += len(piece)
    seconds = time.perf_counter() - started
    if received != size or digest.hexdigest() != pattern_sha256(size):
        raise RuntimeError(f"{url}: got {received} bytes, not the original's")
    return size / seconds / 1e6


def upload(url: str, size: int) -> float:
    def pieces():  # type: ignore[no-untyped-def]
        for _ in range(size // MiB):
            yield b"u" * MiB

    started = time.perf_counter()
    answer = httpx.post(f"{url}/upload", content=pieces(), timeout=300, trust_env=False)
    seconds = time.perf_counter() - started
    if answer.json()["size"] != size:
        raise RuntimeError(f"upload: the upstream got {answer.json()['size']} bytes")
    return size / seconds / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1024", help="body sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round of 100 MiB")
    args, _ = parser.parse_known_args()  # make bench passes every script the same flags
    if args.quick:
        args.sizes, args.rounds = "100", 1
    sizes = [int(s) * MiB for s in args.sizes.split(",")]

    upstream = start_upstream("streams")
    results: dict[str, dict[str, object]] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            confdir = Path(scratch) / "mitmproxy"
            for size in sizes:
                label = f"{size // MiB} MiB"
                speeds: dict[str, list[float]] = {
                    "direct": [],
                    "mitmdump (streaming)": [],
                    "baton record": [],
                }
                record_peaks: list[int] = []
                cpu: dict[str, list[float]] = {"mitmdump (streaming)": [], "baton record": []}
                cassette = Path(scratch) / f"{size // MiB}.cassette"
                for round_number in range(args.rounds):
                    speeds["direct"].append(download(upstream.url, size))
                    port = free_port()
                    common = [
                        "--mode", f"reverse:{upstream.url}", "--listen-host", "127.0.0.1",
                        "--listen-port", str(port), "--set", f"confdir={confdir}",
                    ]  # fmt: skip
                    mitmdump = start_command(
                        "mitmdump",
                        [
                            str(VENV_BIN / "mitmdump"),
                            "-q",
                            *common,
                            "--set",
                            "stream_large_bodies=1",
                        ],
                        port,
                    )
                    try:
                        spent = cpu_seconds(mitmdump.proc.pid)
                        speeds["mitmdump (streaming)"].append(download(mitmdump.url, size))
                        spent = cpu_seconds(mitmdump.proc.pid) - spent
                        cpu["mitmdump (streaming)"].append(spent / (size / (1 << 30)))
                    finally:
                        mitmdump.stop()
                    cassette.unlink(missing_ok=True)
                    recorder = start_command(
                        "baton record",
                        [str(VENV_BIN / "baton"), "record", "-q", "-o", str(cassette), *common],
                        port,
                    )
                    try:
                        spent = cpu_seconds(recorder.proc.pid)
                        speeds["baton record"].append(download(recorder.url, size))
                        spent = cpu_seconds(recorder.proc.pid) - spent
                        cpu["baton record"].append(spent / (size / (1 << 30)))
                        if round_number == args.rounds - 1:
                            upload_speed = upload(recorder.url, size)
                        record_peaks.append(peak_rss(recorder.proc.pid))
                    finally:
                        recorder.stop()
                    print(
                        f"{label} round {round_number + 1}: "
                        + ", ".join(f"{k} {v[-1]:.0f} MB/s" for k, v in speeds.items()),
                        flush=True,
                    )
                replays: dict[str, tuple[float, int]] = {}
                for name, extra in (
                    ("baton replay (fast path)", []),
                    ("baton replay (mitmproxy path)", ["--mode", "regular", "--set", f"confdir={confdir}"]),
                ):  # fmt: skip
                    port = free_port()
                    replayer: Process = start_command(
                        name,
                        [
                            str(VENV_BIN / "baton"), "replay", "-q", str(cassette),
                            "--listen-port", str(port), *extra,
                        ],
                        port,
                    )  # fmt: skip
                    speed = float("nan")
                    try:
                        if extra:
                            speed = download(upstream.url, size, proxy=replayer.url)
                        else:
                            speed = download(replayer.url, size)
                    except RuntimeError as exc:  # a replay that fails to serve: say so, go on
                        print(f"{label}: {name} failed: {exc}", flush=True)
                    finally:
                        replays[name] = (speed, peak_rss(replayer.proc.pid))
                        replayer.stop()
                medians = {name: statistics.median(v) for name, v in speeds.items()}
                results[label] = {
                    "size_bytes": size,
                    "download_mb_per_s": medians,
                    "download_runs": speeds,
                    "proxy_cpu_seconds_per_gib": {k: statistics.median(v) for k, v in cpu.items()},
                    "upload_through_record_mb_per_s": upload_speed,
                    "record_peak_rss_bytes": max(record_peaks),
                    "replay": {
                        name: {"mb_per_s": speed, "peak_rss_bytes": peak}
                        for name, (speed, peak) in replays.items()
                    },
                    "cassette_bytes": cassette.stat().st_size,
                    "record_vs_mitmdump": medians["baton record"] / medians["mitmdump (streaming)"],
                }
    finally:
        upstream.stop()

    rows = []
    for label, found in results.items():
        speeds_found: dict[str, float] = found["download_mb_per_s"]  # type: ignore[assignment]
        replay_found: dict[str, dict[str, float]] = found["replay"]  # type: ignore[assignment]
        cpu_found: dict[str, float] = found["proxy_cpu_seconds_per_gib"]  # type: ignore[assignment]
        rows.append(
            [
                label,
                f"{speeds_found['direct']:.0f}",
                f"{speeds_found['mitmdump (streaming)']:.0f}",
                f"{speeds_found['baton record']:.0f}",
                f"{found['record_vs_mitmdump']:.2f}",
                f"{cpu_found['mitmdump (streaming)']:.1f}",
                f"{cpu_found['baton record']:.1f}",
                f"{int(found['record_peak_rss_bytes']) / MiB:.0f}",  # type: ignore[call-overload]
                f"{replay_found['baton replay (fast path)']['peak_rss_bytes'] / MiB:.0f}",
                f"{replay_found['baton replay (mitmproxy path)']['peak_rss_bytes'] / MiB:.0f}",
                f"{replay_found['baton replay (fast path)']['mb_per_s']:.0f}",
            ]
        )
    print()
    print(f"one body with a Content-Length, {args.rounds} rounds, median MB/s, peak RSS in MiB")
    header = [
        "body", "direct", "mitmdump", "baton record", "vs mitmdump",
        "CPU s/GiB mitmdump", "CPU s/GiB baton",
        "record RSS", "replay RSS", "replay RSS (mitmproxy)", "replay MB/s",
    ]  # fmt: skip
    print(table(rows, header))
    figures: dict[str, float] = {}
    for found in results.values():
        mib = int(found["size_bytes"]) // MiB  # type: ignore[call-overload]
        cassette_bytes = int(found["cassette_bytes"])  # type: ignore[call-overload]
        replay_found = found["replay"]
        for name, key in (
            ("baton replay (fast path)", f"replay_rss_{mib}mb_ratio"),
            ("baton replay (mitmproxy path)", f"replay_mitmproxy_rss_{mib}mb_ratio"),
        ):
            peak = replay_found[name]["peak_rss_bytes"]  # type: ignore[index]
            figures[key] = peak / cassette_bytes  # peak RSS of replay / the cassette's size
    # The client's throughput through baton record over bare mitmdump's, for the largest body.
    largest = max(results.values(), key=lambda found: int(found["size_bytes"]))  # type: ignore[call-overload]
    figures["record_stream_vs_mitmdump"] = float(largest["record_vs_mitmdump"])  # type: ignore[arg-type]
    print("figures: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    path = save("stream_memory", {"settings": vars(args), "figures": figures, "results": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
