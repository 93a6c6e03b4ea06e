"""Load generator speed: `baton load` at maximum rate vs wrk, against the same nginx, side by side.

    python bench/load_generator.py [--seconds 10] [--rounds 3] [--connections 64] [--threads 1 2]

The bench writes an nginx configuration of its own (Debian's nginx-light:
one worker process, access log off, 127.0.0.1 on a free port, a 1 KiB
static file), starts nginx in the foreground and stops it by its PID at the
end. A cassette holding one recorded GET of that file is what `baton load`
sends. For each thread count T, every round runs `wrk -tT -cC` and then
`baton load --workers T --concurrency C/T` (closed loop, as wrk: the next
request leaves when an answer came), the same number of seconds each; the
table gives the medians and the ratio baton / wrk. nginx, wrk and baton
share this machine's cores, as they would on a CI runner.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.cassettes import CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from bench.load import VENV_BIN, free_port, machine, run_wrk, save, table

NGINX_CONF = """
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
    }}
}}
"""


def start_nginx(root: Path, port: int) -> subprocess.Popen[bytes]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx-light (Debian)")
    (root / "www").mkdir()
    (root / "tmp").mkdir()
    (root / "www" / "index.html").write_bytes(b"x" * 1024)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port))
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(root), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"nginx did not start: {(root / 'error.log').read_text()}"
                ) from None
            time.sleep(0.05)


def write_cassette(path: Path) -> None:
    writer = CassetteWriter(path, redactor=None)
    request = Request(
        "GET", "http", "static.test", 80, "/index.html", headers=(("Host", "static.test"),)
    )
    body = b"x" * 1024
    response = Response(200, "OK", headers=(("Content-Length", "1024"),), body=body)
    writer.append(Interaction("1", request, response, time.time(), 1.0))
    writer.close()


def run_baton(
    cassette: Path, url: str, seconds: int, connections: int, workers: int
) -> dict[str, float]:
    out = subprocess.run(
        [
            str(VENV_BIN / "baton"),
            "load",
            str(cassette),
            "--target",
            url,
            "--duration",
            f"{seconds}s",
            "--concurrency",
            str(max(1, connections // workers)),
            "--workers",
            str(workers),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if out.returncode != 0:
        raise SystemExit(f"baton load failed: {out.stderr}")
    report = json.loads(out.stdout)
    return {
        "requests_per_second": report["throughput"],
        "p50_ms": report["latency_ms"]["p50"],
        "p99_ms": report["latency_ms"]["p99"],
        "errors": report["errors"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-nginx-") as folder:
        root = Path(folder)
        port = free_port()
        nginx = start_nginx(root, port)
        url = f"http://127.0.0.1:{port}"
        cassette = root / "static.cassette"
        write_cassette(cassette)
        rows, results = [], {}
        try:
            for threads in args.threads:
                wrk_runs, baton_runs = [], []
                for number in range(args.rounds):
                    wrk = run_wrk(url + "/index.html", args.seconds, args.connections, threads)
                    wrk_runs.append(wrk.requests_per_second)
                    baton = run_baton(cassette, url, args.seconds, args.connections, threads)
                    baton_runs.append(baton["requests_per_second"])
                    print(
                        f"threads {threads} round {number + 1}: wrk {wrk.requests_per_second:,.0f}/s"
                        f", baton load {baton['requests_per_second']:,.0f}/s "
                        f"(p99 {baton['p99_ms']} ms, {baton['errors']:.0f} errors)",
                        flush=True,
                    )
                wrk_median = statistics.median(wrk_runs)
                baton_median = statistics.median(baton_runs)
                ratio = baton_median / wrk_median if wrk_median else 0.0
                results[f"threads_{threads}"] = {
                    "wrk": wrk_runs,
                    "baton_load": baton_runs,
                    "ratio": round(ratio, 3),
                }
                rows.append(
                    [
                        f"{threads} (wrk -t{threads}, baton --workers {threads})",
                        f"{wrk_median:,.0f}",
                        f"{baton_median:,.0f}",
                        f"{ratio:.2f}x",
                    ]
                )
        finally:
            nginx.terminate()  # by its own PID: nginx's master stops its worker
            nginx.wait(10)
    print()
    print(table(rows, ["threads / processes", "wrk req/s", "baton load req/s", "baton / wrk"]))
    path = save(
        "load_generator",
        {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "connections": args.connections,
            "target": "nginx-light, 1 worker, 1 KiB static file, access log off",
            "results": results,
            "machine": machine(),
        },
    )
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
