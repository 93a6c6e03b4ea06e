"""Recording overhead: `baton record` vs bare `mitmdump`, both in reverse mode, side by side.

    python bench/record_overhead.py [--seconds 10] [--rounds 3] [--connections 32]
                                    [--quick] [--baseline DIR]

Both proxies run under the same interpreter in front of the same upstream
(uvicorn + httptools, a 1 KB JSON answer) and are loaded in turn by wrk, round
after round (the order reversed every other round), so that drift in the
machine affects both. The figure that
matters is the ratio: what recording every exchange (redaction, msgpack, a
write per interaction) costs on top of mitmproxy's own per-request work.
"CPU us/req" is the proxy process's user + system time (all threads) per
request answered: steadier than req/s on a machine whose cores wrk, the
upstream and the proxy share. "RSS MiB" is its peak resident set (VmHWM).

``--baseline DIR`` adds a third contender, ``baton record`` imported from
another checkout (``PYTHONPATH=DIR``, e.g. ``git worktree add /tmp/before
HEAD~3``), in the same rounds: before and after, side by side.
``--quick`` is one round of 3 s, for a smoke run.

``--instructions N`` also counts the instructions each proxy executes per
request (user space, all threads), under valgrind's callgrind, over N
keep-alive requests after a warm-up: ``mitmdump``, ``mitmdump -w`` (bare
mitmproxy writing a flow file, the like-for-like recorder) and ``baton
record`` (and the baseline). CPU time on a shared machine moves by a quarter
between runs; an instruction count does not move with the load, so it says
where a CPU difference comes from, or that it does not come from the work
done. It misses kernel time and memory stalls, which the CPU column keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteReader
from bench.load import (
    ROOT,
    VENV_BIN,
    Process,
    WrkResult,
    free_port,
    listening_socket,
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


# bench/upstream.py's app with keep-alive connections kept for an hour: a proxy under
# valgrind (eager mitmdump connects upstream when the client connects) can take longer
# than uvicorn's default 5 s to forward the first request, and would then find the
# connection closed (a 502, "server closed connection").
_PATIENT_UPSTREAM = """
import socket, sys
sys.path.insert(0, sys.argv[2])
import uvicorn
from bench.upstream import app
config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=3600)
uvicorn.Server(config).run(sockets=[socket.socket(fileno=int(sys.argv[1]))])
"""


def start_patient_upstream() -> Process:
    """The benchmark's upstream, for proxies slowed down by valgrind (see above)."""
    sock = listening_socket()
    proc = subprocess.Popen(
        [sys.executable, "-c", _PATIENT_UPSTREAM, str(sock.fileno()), str(ROOT)],
        pass_fds=[sock.fileno()],
    )
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    wait_ready(url + "/", proc, timeout=60)
    return Process("upstream", proc, url)


async def _fixed_requests(port: int, count: int, connections: int) -> None:
    """``count`` keep-alive GETs of / over ``connections`` connections; every answer a 200."""

    async def one_connection(share: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n".encode()
        for _ in range(share):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"proxy answered {head.splitlines()[0]!r}")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
        writer.close()

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    await asyncio.gather(*(one_connection(n) for n in shares if n))


def count_instructions(
    name: str, argv: list[str], port: int, requests: int, scratch: Path, pythonpath: str | None
) -> float:
    """Instructions ``argv`` executes per request, counted by callgrind over ``requests``.

    Valgrind starts the proxy with instrumentation off (start-up is not
    counted), the warm-up runs, then counting is switched on for exactly
    ``requests`` answered requests and dumped: one number, the same whatever
    else the machine is doing.
    """
    out = scratch / f"callgrind.{name.replace(' ', '_')}"
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            *argv,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    proxy = Process(name, proc, f"http://127.0.0.1:{port}")
    try:
        wait_ready(proxy.url + "/", proc, timeout=300)
        asyncio.run(_fixed_requests(port, 64, 32))  # warm-up: connections, caches
        subprocess.run(
            ["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True
        )
        asyncio.run(_fixed_requests(port, requests, 32))
        subprocess.run(
            ["callgrind_control", "--dump=measured", str(proc.pid)], check=True, capture_output=True
        )
    finally:
        proxy.stop()
    for dump in scratch.glob(out.name + ".*"):
        text = dump.read_text(errors="replace")
        if re.search(r"^desc: Trigger: .*measured", text[:4000], re.M):
            found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
            if found:
                return int(found.group(1)) / requests
    raise RuntimeError(f"{name}: callgrind wrote no count")


def instruction_counts(requests: int, scratch: Path, baseline: str | None) -> dict[str, float]:
    """Instructions per request of each contender (see ``count_instructions``), one after another."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("--instructions needs valgrind: apt-get install valgrind (Debian)")
    upstream = start_patient_upstream()
    counts: dict[str, float] = {}
    try:
        for name, argv in contender_argvs(upstream.url, scratch, "counted", baseline).items():
            argv = [str(VENV_BIN / argv[0]), *argv[1:]]
            port = int(argv[argv.index("--listen-port") + 1])
            counts[name] = count_instructions(
                name, argv, port, requests, scratch, baseline if name == BASELINE else None
            )
            print(f"instructions: {name}: {counts[name] / 1000:,.0f} k per request", flush=True)
    finally:
        upstream.stop()
    return counts


def contender_argvs(
    upstream: str, scratch: Path, tag: str, baseline: str | None, with_flow_file: bool = True
) -> dict[str, list[str]]:
    """Each proxy's command line (program name first, relative to the venv's bin)."""
    port = free_port()
    common = [
        "--mode",
        f"reverse:{upstream}",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--set",
        f"confdir={scratch / 'mitmproxy'}",
    ]
    mitmdump = ["mitmdump", "-q", *common, "--set", "flow_detail=0"]
    contenders = {"mitmdump": mitmdump}
    if with_flow_file:
        contenders["mitmdump -w"] = [*mitmdump, "-w", str(scratch / f"{tag}.flows")]
    contenders["baton record"] = [
        "baton",
        "record",
        "-q",
        "-o",
        str(scratch / f"{tag}.cassette"),
        *common,
    ]
    if baseline:
        contenders[BASELINE] = [
            "baton",
            "record",
            "-q",
            "-o",
            str(scratch / f"{tag}-baseline.cassette"),
            *common,
        ]
    return contenders


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
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count each proxy's instructions per request under callgrind, over N "
        "requests (load-independent; needs valgrind; ~1 min per proxy at N=300)",
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
    instructions: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            if args.instructions:
                instructions = instruction_counts(args.instructions, Path(scratch), args.baseline)
            for round_number in range(args.rounds):
                results["upstream direct"].append(
                    run_wrk(upstream.url + "/", args.seconds, args.connections)
                )
                argvs = contender_argvs(
                    upstream.url, Path(scratch), f"round{round_number}", args.baseline, False
                )
                contenders = {name: [str(VENV_BIN / a[0]), *a[1:]] for name, a in argvs.items()}
                port = int(argvs["mitmdump"][argvs["mitmdump"].index("--listen-port") + 1])
                order = list(contenders.items())
                if round_number % 2:
                    order.reverse()  # A B, B A, ...: neither always runs first
                for name, argv in order:
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
    if instructions:
        print(
            f"instructions per request (callgrind, {args.instructions} requests): "
            + ", ".join(f"{name} {count / 1000:,.0f}k" for name, count in instructions.items())
        )
        figures["kinstr_per_req_mitmdump"] = round(instructions["mitmdump"] / 1000, 1)
        figures["kinstr_per_req_mitmdump_w"] = round(instructions["mitmdump -w"] / 1000, 1)
        figures["kinstr_per_req_baton"] = round(instructions["baton record"] / 1000, 1)
        figures["instr_baton_vs_mitmdump"] = round(
            instructions["baton record"] / instructions["mitmdump"], 3
        )
        if BASELINE in instructions:
            figures["kinstr_per_req_baseline"] = round(instructions[BASELINE] / 1000, 1)
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
            "instructions_per_request": instructions,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
