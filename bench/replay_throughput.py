"""Replay throughput: baton replay vs mitmdump --server-replay vs WireMock, side by side.

    python bench/replay_throughput.py [--seconds 10] [--rounds 3] [--connections 32] [--paths 50]

One run records the same traffic (GET /items/1 ... /items/N against a
uvicorn upstream) through `baton record` (a cassette) and `mitmdump -w` (a
flow file), stops the upstream, and then serves it back with:

* baton replay, fast path (baton's own asyncio + httptools server);
* baton replay, mitmproxy path (the Replayer addon, reverse mode);
* mitmdump --server-replay (mitmproxy's own replay, reverse mode);
* WireMock standalone (the jar from the npm package `wiremock`), one stub per
  recorded exchange, request journal off (its documented setting for load).

wrk rotates through the recorded paths. Every contender runs in turn each
round under the same conditions; the table reports medians, ratios against
WireMock, and each server's start-up time (process start to first answer).
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import read_cassette
from bench.load import (
    ROOT,
    VENV_BIN,
    WrkResult,
    free_port,
    median_result,
    rotating_paths_script,
    run_wrk,
    save,
    start_command,
    start_upstream,
    table,
)

WIREMOCK_VERSION = "3.13.2"
TALKBACK_VERSION = "4.2.0"
CACHE = ROOT / "bench" / ".cache"


def npm_package(name: str, version: str) -> Path:
    """Install ``name@version`` from the npm registry into bench/.cache once; its folder."""
    folder = CACHE / "node_modules" / name
    if not (folder / "package.json").exists():
        if not shutil.which("npm"):
            raise SystemExit(f"{name} needs npm to be fetched")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(CACHE),
                f"{name}@{version}",
            ],
            check=True,
            capture_output=True,
        )
    return folder


def talkback_tapes(cassette: Path, root: Path) -> None:
    """One talkback tape per recorded exchange, with the same answers baton serves."""
    root.mkdir(parents=True)
    for number, interaction in enumerate(read_cassette(cassette)):
        request, response = interaction.request, interaction.response
        assert response is not None and response.body is not None
        tape = {
            "meta": {
                "createdAt": "2026-01-01T00:00:00.000Z",
                "host": "http://127.0.0.1:9",
                "reqHumanReadable": True,
                "resHumanReadable": True,
            },
            "req": {"url": request.target, "method": request.method, "headers": {}, "body": ""},
            "res": {
                "status": response.status,
                "headers": {name: [value] for name, value in response.headers},
                "body": response.body.decode("utf-8"),
            },
        }
        (root / f"tape-{number}.json5").write_text(json.dumps(tape))


def wiremock_jar() -> Path:
    """The standalone jar from the npm package, installed once into bench/.cache."""
    if not shutil.which("java"):
        raise SystemExit("WireMock needs java to run")
    folder = npm_package("wiremock", WIREMOCK_VERSION)
    return folder / "build" / f"wiremock-standalone-{WIREMOCK_VERSION}.jar"


def wiremock_mappings(cassette: Path, root: Path) -> int:
    """One WireMock stub per recorded exchange: the same answers baton serves."""
    mappings = root / "mappings"
    mappings.mkdir(parents=True)
    interactions = read_cassette(cassette)
    for number, interaction in enumerate(interactions):
        request, response = interaction.request, interaction.response
        assert response is not None
        stub = {
            "request": {"method": request.method, "url": request.target},
            "response": {
                "status": response.status,
                "headers": {name: value for name, value in response.headers},
                "base64Body": base64.b64encode(response.body or b"").decode(),
            },
        }
        (mappings / f"{number}.json").write_text(json.dumps(stub))
    return len(interactions)


def time_to_first_answer(
    argv: list[str], url: str, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], float]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code < 500:
                return proc, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - start > timeout:
            proc.kill()
            raise RuntimeError(f"{argv[0]} did not start")
        time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paths", type=int, default=50)
    parser.add_argument("--no-wiremock", action="store_true")
    parser.add_argument("--no-talkback", action="store_true")
    parser.add_argument(
        "--with-metrics",
        action="store_true",
        help="Also run the fast path with --metrics-port (what counting costs it).",
    )
    args = parser.parse_args()
    paths = [f"/items/{n}" for n in range(1, args.paths + 1)]

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        confdir = scratch / "mitmproxy"
        cassette = scratch / "items.cassette"
        flows = scratch / "items.mitm"
        upstream = start_upstream()
        try:
            for name, argv in {
                "baton record": [str(VENV_BIN / "baton"), "record", "-q", "-o", str(cassette)],
                "mitmdump -w": [str(VENV_BIN / "mitmdump"), "-q", "-w", str(flows)],
            }.items():
                port = free_port()
                recorder = start_command(
                    name,
                    [
                        *argv,
                        "--mode",
                        f"reverse:{upstream.url}",
                        "--listen-host",
                        "127.0.0.1",
                        "--listen-port",
                        str(port),
                        "--set",
                        f"confdir={confdir}",
                    ],
                    port,
                )
                with httpx.Client(trust_env=False, timeout=10) as client:
                    for path in paths:
                        client.get(recorder.url + path).raise_for_status()
                recorder.stop()
        finally:
            upstream.stop()  # from here on, nothing but the recordings answers

        script = rotating_paths_script(paths, scratch)
        contenders: dict[str, list[str]] = {}
        fast_port, mitm_port, server_replay_port, wiremock_port, talkback_port = (
            free_port() for _ in range(5)
        )
        contenders["baton replay (fast path)"] = [
            str(VENV_BIN / "baton"),
            "replay",
            "-q",
            str(cassette),
            "--listen-port",
            str(fast_port),
        ]
        contenders["baton replay (mitmproxy path)"] = [
            str(VENV_BIN / "baton"),
            "replay",
            "-q",
            str(cassette),
            "--listen-port",
            str(mitm_port),
            "--set",
            f"confdir={confdir}",
        ]
        contenders["mitmdump --server-replay"] = [
            str(VENV_BIN / "mitmdump"),
            "-q",
            "--mode",
            f"reverse:{upstream.url}",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(server_replay_port),
            "--server-replay",
            str(flows),
            "--set",
            "server_replay_reuse=true",
            "--set",
            "connection_strategy=lazy",
            "--set",
            f"confdir={confdir}",
        ]
        ports = {
            "baton replay (fast path)": fast_port,
            "baton replay (mitmproxy path)": mitm_port,
            "mitmdump --server-replay": server_replay_port,
        }
        if args.with_metrics:
            metrics_port = free_port()
            name = "baton replay (fast path, --metrics-port)"
            contenders[name] = [
                *contenders["baton replay (fast path)"][:-1],
                str(metrics_port),
                "--metrics-port",
                "0",
            ]
            ports[name] = metrics_port
        if not args.no_wiremock:
            root = scratch / "wiremock"
            wiremock_mappings(cassette, root)
            contenders["WireMock"] = [
                "java",
                "-jar",
                str(wiremock_jar()),
                "--port",
                str(wiremock_port),
                "--bind-address",
                "127.0.0.1",
                "--root-dir",
                str(root),
                "--disable-banner",
                "--no-request-journal",
                "--disable-request-logging",
            ]
            ports["WireMock"] = wiremock_port
        if not args.no_talkback:
            tapes = scratch / "talkback"
            talkback_tapes(cassette, tapes)
            npm_package("talkback", TALKBACK_VERSION)
            contenders["talkback"] = [
                "node",
                str(ROOT / "bench" / "talkback_server.js"),
                str(talkback_port),
                str(tapes),
            ]
            ports["talkback"] = talkback_port

        results: dict[str, list[WrkResult]] = {name: [] for name in contenders}
        startup: dict[str, list[float]] = {name: [] for name in contenders}
        for round_number in range(args.rounds):
            for name, argv in contenders.items():
                url = f"http://127.0.0.1:{ports[name]}"
                proc, started = time_to_first_answer(argv, url + paths[0])
                startup[name].append(started)
                try:
                    check = httpx.get(url + paths[6], trust_env=False, timeout=10)
                    if check.status_code != 200 or paths[6].encode() not in check.content:
                        raise SystemExit(f"{name} did not replay {paths[6]}: {check.status_code}")
                    warm = 5 if name == "WireMock" else 2  # the JVM needs its JIT warm-up
                    run_wrk(url + "/", warm, args.connections, script=script)
                    results[name].append(
                        run_wrk(
                            url + "/", args.seconds, args.connections, pid=proc.pid, script=script
                        )
                    )
                finally:
                    proc.terminate()
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                print(
                    f"round {round_number + 1}: {name}: "
                    f"{results[name][-1].requests_per_second:,.0f} req/s",
                    flush=True,
                )

    medians = {name: median_result(runs) for name, runs in results.items()}
    baseline_name = "WireMock" if "WireMock" in medians else "mitmdump --server-replay"
    base = medians[baseline_name]
    rows = [
        [
            name,
            f"{m.requests_per_second:,.0f}",
            f"{m.p50_ms:.2f}",
            f"{m.p99_ms:.2f}",
            f"{m.requests_per_second / base.requests_per_second:.2f}",
            f"{sorted(startup[name])[len(startup[name]) // 2]:.2f}",
            str(m.errors),
        ]
        for name, m in medians.items()
    ]
    print()
    print(
        f"replaying {len(paths)} recorded exchanges, wrk -t2 -c{args.connections}, "
        f"{args.seconds}s x {args.rounds} rounds, medians"
    )
    print(
        table(rows, ["", "req/s", "p50 ms", "p99 ms", f"vs {baseline_name}", "start s", "errors"])
    )
    fast = medians["baton replay (fast path)"].requests_per_second
    via_mitm = medians["baton replay (mitmproxy path)"].requests_per_second
    server_replay = medians["mitmdump --server-replay"].requests_per_second
    ratios = {
        "fast_path_vs_baseline": fast / base.requests_per_second,
        "mitmproxy_path_vs_server_replay": via_mitm / server_replay,
        "fast_path_vs_server_replay": fast / server_replay,
    }
    print("\n" + "; ".join(f"{k.replace('_', ' ')}: {v:.2f}x" for k, v in ratios.items()))
    path = save(
        "replay_throughput",
        {
            "settings": vars(args),
            "medians": medians,
            "runs": results,
            "startup_seconds": startup,
            "ratios": ratios,
            "baseline": baseline_name,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
