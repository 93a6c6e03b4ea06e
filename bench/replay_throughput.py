"""Replay throughput: baton replay vs nginx, talkback, WireMock and mitmdump, side by side.

    python bench/replay_throughput.py [--seconds 10] [--rounds 3] [--connections 32] [--paths 50]
    python bench/replay_throughput.py --only baton,nginx      # fast iteration
    python bench/replay_throughput.py --quick                 # 3 s x 1 round, baton and nginx

One run records the same traffic (GET /items/1 ... /items/N against a
uvicorn upstream) through `baton record` (a cassette) and `mitmdump -w` (a
flow file), stops the upstream, and then serves it back with:

* nginx (Debian's nginx-light), the limit reference: a generated config with
  one ``location = /items/N { return 200 '...'; }`` per recorded exchange,
  the same body and Content-Type, 1 worker (``nginx-w2``: 2), access log off;
* baton replay, fast path (baton's own asyncio + httptools server), 1 worker
  and ``--workers 2`` (``baton-w2``);
* baton replay, mitmproxy path (the Replayer addon, reverse mode);
* mitmdump --server-replay (mitmproxy's own replay, reverse mode);
* talkback (npm), one tape per recorded exchange;
* WireMock standalone (the jar from the npm package `wiremock`), one stub per
  recorded exchange, request journal off (its documented setting for load).

``nginx-pinned`` and ``baton-pinned`` are nginx (1 worker) and the fast path
again, each held to CPU 0 with ``taskset`` while wrk runs one thread held to
CPU 1. Unpinned on two cores, wrk's two threads and the server take turns on
the same cores and the scheduler's turns show in the tail (p99 near 4 ms for
nginx itself); pinned, the tail is the server's own. Both ways are reported.

wrk rotates through the recorded paths. Every contender runs in turn each
round under the same conditions; the table reports medians, ratios against
nginx, each server's start-up time (process start to first answer), its CPU
time per request and its memory (VmRSS after the load and VmHWM, summed over
the server's processes). The headline figures go to
bench/results/replay_throughput.json under "figures".
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
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
    memory_mib,
    nginx_argv,
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


CONTENDERS = {
    "nginx": "nginx (1 worker)",
    "nginx-w2": "nginx (2 workers)",
    "baton": "baton replay (fast path)",
    "baton-w2": "baton replay (fast path, --workers 2)",
    "nginx-pinned": "nginx (1 worker, CPU 0; wrk -t1 on CPU 1)",
    "baton-pinned": "baton replay (fast path, CPU 0; wrk -t1 on CPU 1)",
    "baton-mitm": "baton replay (mitmproxy path)",
    "mitmdump": "mitmdump --server-replay",
    "talkback": "talkback",
    "wiremock": "WireMock",
}
"""Short names for ``--only`` -> the row each one is."""
PINNED = ("nginx-pinned", "baton-pinned")
"""Held to CPU 0 while wrk runs one thread on CPU 1 (``taskset``)."""
QUICK = ("nginx", "baton", "baton-w2", "nginx-w2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=None, help="Per measurement [10; quick 3].")
    parser.add_argument("--rounds", type=int, default=None, help="Medians of [3; quick 1].")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paths", type=int, default=50)
    parser.add_argument(
        "--only",
        metavar="LIST",
        help=f"Comma-separated contenders, of: {', '.join(CONTENDERS)} [default: all].",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"3 s x 1 round of {','.join(QUICK)} (unless --only/--seconds/--rounds say).",
    )
    parser.add_argument("--no-wiremock", action="store_true")
    parser.add_argument("--no-talkback", action="store_true")
    parser.add_argument(
        "--with-metrics",
        action="store_true",
        help="Also run the fast path with --metrics-port (what counting costs it).",
    )
    args = parser.parse_args()
    seconds = args.seconds or (3 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 3)
    wanted = [w.strip() for w in args.only.split(",")] if args.only else None
    if wanted is None:
        wanted = list(QUICK) if args.quick else list(CONTENDERS)
    unknown = [w for w in wanted if w not in CONTENDERS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    if args.no_wiremock and "wiremock" in wanted:
        wanted.remove("wiremock")
    if args.no_talkback and "talkback" in wanted:
        wanted.remove("talkback")
    paths = [f"/items/{n}" for n in range(1, args.paths + 1)]

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        confdir = scratch / "mitmproxy"
        cassette = scratch / "items.cassette"
        flows = scratch / "items.mitm"
        upstream = start_upstream()
        recorders = {"baton record": [str(VENV_BIN / "baton"), "record", "-q", "-o", str(cassette)]}
        if "mitmdump" in wanted:
            recorders["mitmdump -w"] = [str(VENV_BIN / "mitmdump"), "-q", "-w", str(flows)]
        try:
            for name, argv in recorders.items():
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
        ports: dict[str, int] = {}
        baton = [str(VENV_BIN / "baton"), "replay", "-q", str(cassette), "--listen-port"]
        for short in wanted:
            name, port = CONTENDERS[short], free_port()
            ports[name] = port
            if short in ("nginx", "nginx-w2", "nginx-pinned"):
                routes = {}
                for interaction in read_cassette(cassette):
                    response = interaction.response
                    assert response is not None and response.body is not None
                    routes[interaction.request.target] = (
                        response.status,
                        list(response.headers),
                        response.body,
                    )
                workers = 2 if short == "nginx-w2" else 1
                contenders[name] = nginx_argv(routes, port, scratch / short, workers)
            elif short in ("baton", "baton-pinned"):
                contenders[name] = [*baton, str(port)]
            elif short == "baton-w2":
                contenders[name] = [*baton, str(port), "--workers", "2"]
            elif short == "baton-mitm":
                contenders[name] = [*baton, str(port), "--set", f"confdir={confdir}"]
            elif short == "mitmdump":
                contenders[name] = [
                    str(VENV_BIN / "mitmdump"),
                    "-q",
                    "--mode",
                    f"reverse:{upstream.url}",
                    "--listen-host",
                    "127.0.0.1",
                    "--listen-port",
                    str(port),
                    "--server-replay",
                    str(flows),
                    "--set",
                    "server_replay_reuse=true",
                    "--set",
                    "connection_strategy=lazy",
                    "--set",
                    f"confdir={confdir}",
                ]
            elif short == "wiremock":
                root = scratch / "wiremock"
                wiremock_mappings(cassette, root)
                contenders[name] = [
                    "java",
                    "-jar",
                    str(wiremock_jar()),
                    "--port",
                    str(port),
                    "--bind-address",
                    "127.0.0.1",
                    "--root-dir",
                    str(root),
                    "--disable-banner",
                    "--no-request-journal",
                    "--disable-request-logging",
                ]
            elif short == "talkback":
                tapes = scratch / "talkback"
                talkback_tapes(cassette, tapes)
                npm_package("talkback", TALKBACK_VERSION)
                contenders[name] = [
                    "node",
                    str(ROOT / "bench" / "talkback_server.js"),
                    str(port),
                    str(tapes),
                ]
        for short in PINNED:
            if short in wanted:
                contenders[CONTENDERS[short]] = [
                    "taskset",
                    "-c",
                    "0",
                    *contenders[CONTENDERS[short]],
                ]
        pinned_names = {CONTENDERS[short] for short in PINNED}
        if pinned_names & set(contenders) and not shutil.which("taskset"):
            raise SystemExit("taskset is not installed (Debian: util-linux)")
        if args.with_metrics:
            name, port = "baton replay (fast path, --metrics-port)", free_port()
            contenders[name] = [*baton, str(port), "--metrics-port", "0"]
            ports[name] = port

        results: dict[str, list[WrkResult]] = {name: [] for name in contenders}
        startup: dict[str, list[float]] = {name: [] for name in contenders}
        memory: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        for round_number in range(rounds):
            for name, argv in contenders.items():
                url = f"http://127.0.0.1:{ports[name]}"
                proc, started = time_to_first_answer(argv, url + paths[0])
                startup[name].append(started)
                try:
                    check = httpx.get(url + paths[6], trust_env=False, timeout=10)
                    if check.status_code != 200 or paths[6].encode() not in check.content:
                        raise SystemExit(f"{name} did not replay {paths[6]}: {check.status_code}")
                    warm = 5 if name == "WireMock" else 2  # the JVM needs its JIT warm-up
                    pin = {"threads": 1, "cpu": 1} if name in pinned_names else {}
                    run_wrk(url + "/", warm, args.connections, script=script, **pin)
                    results[name].append(
                        run_wrk(
                            url + "/", seconds, args.connections, pid=proc.pid, script=script, **pin
                        )
                    )
                    memory[name].append(memory_mib(proc.pid))
                finally:
                    proc.terminate()
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                last = results[name][-1]
                print(
                    f"round {round_number + 1}: {name}: {last.requests_per_second:,.0f} req/s, "
                    f"p99 {last.p99_ms:.2f} ms, {last.cpu_us_per_request:.1f} CPU us/req",
                    flush=True,
                )

    medians = {name: median_result(runs) for name, runs in results.items()}
    rss = {name: statistics.median(r for r, _ in runs) for name, runs in memory.items()}
    hwm = {name: statistics.median(h for _, h in runs) for name, runs in memory.items()}
    start = {name: statistics.median(times) for name, times in startup.items()}
    baseline_name = next(
        (n for n in (CONTENDERS["nginx"], "WireMock", CONTENDERS["mitmdump"]) if n in medians),
        next(iter(medians)),
    )
    base = medians[baseline_name]
    rows = [
        [
            name,
            f"{m.requests_per_second:,.0f}",
            f"{m.p50_ms:.2f}",
            f"{m.p99_ms:.2f}",
            f"{m.requests_per_second / base.requests_per_second:.2f}",
            f"{m.cpu_us_per_request:.1f}",
            f"{rss[name]:.1f}",
            f"{hwm[name]:.1f}",
            f"{start[name]:.2f}",
            str(m.errors),
        ]
        for name, m in medians.items()
    ]
    print()
    print(
        f"replaying {len(paths)} recorded exchanges, wrk -t2 -c{args.connections}, "
        f"{seconds}s x {rounds} rounds, medians; load before: {os.getloadavg()[0]:.2f}"
    )
    header = ["", "req/s", "p50 ms", "p99 ms", f"vs {baseline_name}", "CPU us/req"]
    print(table(rows, [*header, "RSS MiB", "HWM MiB", "start s", "errors"]))

    def rps(short: str) -> float | None:
        found = medians.get(CONTENDERS[short])
        return found.requests_per_second if found is not None else None

    ratios: dict[str, float] = {}
    figures: dict[str, float] = {}
    fast, nginx, nginx2, fast2 = rps("baton"), rps("nginx"), rps("nginx-w2"), rps("baton-w2")
    via_mitm, server_replay = rps("baton-mitm"), rps("mitmdump")
    if fast is not None:
        fast_name = CONTENDERS["baton"]
        figures.update(
            fast_rps=fast,
            fast_p99_ms=medians[fast_name].p99_ms,
            startup_small_s=start[fast_name],
            fast_rss_mb=rss[fast_name],
            fast_cpu_us_per_request=medians[fast_name].cpu_us_per_request,
        )
        ratios["fast_path_vs_baseline"] = fast / base.requests_per_second
        if nginx is not None:
            figures["fast_vs_nginx"] = fast / nginx
    if nginx is not None:
        figures["nginx_rps"] = nginx
        figures["nginx_cpu_us_per_request"] = medians[CONTENDERS["nginx"]].cpu_us_per_request
    if fast2 is not None:
        figures["fast_workers2_rps"] = fast2
        if nginx2 is not None:  # like for like: two worker processes each
            figures["fast_workers2_vs_nginx"] = fast2 / nginx2
        if nginx is not None:
            figures["fast_workers2_vs_nginx1"] = fast2 / nginx
    if nginx2 is not None:
        figures["nginx_workers2_rps"] = nginx2
    fast_pinned = medians.get(CONTENDERS["baton-pinned"])
    nginx_pinned = medians.get(CONTENDERS["nginx-pinned"])
    if fast_pinned is not None:
        figures["fast_pinned_p99_ms"] = fast_pinned.p99_ms
        figures["fast_pinned_rps"] = fast_pinned.requests_per_second
    if nginx_pinned is not None:
        figures["nginx_pinned_p99_ms"] = nginx_pinned.p99_ms
        figures["nginx_pinned_rps"] = nginx_pinned.requests_per_second
        if fast_pinned is not None:
            figures["fast_pinned_vs_nginx"] = (
                fast_pinned.requests_per_second / nginx_pinned.requests_per_second
            )
    if via_mitm is not None and server_replay is not None:
        ratios["mitmproxy_path_vs_server_replay"] = via_mitm / server_replay
    if fast is not None and server_replay is not None:
        ratios["fast_path_vs_server_replay"] = fast / server_replay
    print("\n" + "; ".join(f"{k.replace('_', ' ')}: {v:.2f}x" for k, v in ratios.items()))
    print("figures: " + ", ".join(f"{k} {v:,.3g}" for k, v in figures.items()))
    path = save(
        "replay_throughput",
        {
            "settings": {**vars(args), "seconds": seconds, "rounds": rounds, "only": wanted},
            "load_average": os.getloadavg(),
            "figures": figures,
            "medians": medians,
            "runs": results,
            "startup_seconds": startup,
            "memory_mib": {name: {"rss": rss[name], "hwm": hwm[name]} for name in medians},
            "ratios": ratios,
            "baseline": baseline_name,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
