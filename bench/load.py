"""Shared machinery of the benchmarks: processes on 127.0.0.1, wrk, medians, tables.

Load only ever goes to 127.0.0.1, bounded in connections and seconds.
Every process a benchmark starts is stopped by its own PID.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent


def cache_bytecode() -> None:
    """Let every process a bench starts read and write Python's bytecode cache, as a user's does.

    An installed baton has its .pyc files (pip compiles them at install) and an
    editable one writes them on first run, unless PYTHONDONTWRITEBYTECODE is set,
    as it is on some CI machines. Measured with the variable set, every start-up
    would include compiling baton's modules from source (about 0.1 s here): a
    cost no user pays twice. The packages are compiled once, up front.
    """
    import compileall

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for package in ("cassettes", "formats", "replay", "proxy"):
        compileall.compile_dir(ROOT / package, quiet=1, workers=1)


cache_bytecode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2, trust_env=False)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_upstream() -> Process:
    sock = listening_socket()
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "upstream.py"), str(sock.fileno())],
        pass_fds=[sock.fileno()],
    )
    sock.close()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/", proc)
    return Process("upstream", proc, url)


def start_command(name: str, argv: Sequence[str], port: int, probe_path: str = "/") -> Process:
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + probe_path, proc)
    return Process(name, proc, url)


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us_per_request: float = 0.0
    """CPU time (user + system, all threads) the measured process spent per request."""


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a server's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its live children, from /proc."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB of a process and its children, summed (a server and its workers)."""
    rss = hwm = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss / 1024, hwm / 1024


def nginx_argv(
    routes: dict[str, tuple[int, list[tuple[str, str]], bytes]],
    port: int,
    folder: Path,
    workers: int = 1,
) -> list[str]:
    """The command line of an nginx answering each path with ``return`` and the given bytes.

    The limit reference for a replay server: nginx serving fixed answers from
    memory, one worker by default, its config, pid file, logs and temp folders
    in ``folder``. nginx writes ``Server``, ``Date``, ``Content-Length`` and
    ``Connection`` itself and the ``Content-Type`` from ``default_type``; the
    other recorded headers go out with ``add_header``.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx-light (Debian)")
    folder.mkdir(parents=True, exist_ok=True)
    own = {"server", "date", "content-length", "connection", "transfer-encoding", "content-type"}
    locations = []
    for path, (status, headers, body) in routes.items():
        text = body.decode("utf-8")
        if "$" in text:
            raise ValueError(f"{path}: nginx would expand the $ in its body")
        quoted = text.replace("\\", "\\\\").replace("'", "\\'")
        content_type = next((v for n, v in headers if n.lower() == "content-type"), "text/plain")
        extra = "".join(
            f"    add_header {json.dumps(n)} {json.dumps(v)};\n"
            for n, v in headers
            if n.lower() not in own
        )
        locations.append(
            f"  location = {path} {{\n    default_type {json.dumps(content_type)};\n"
            f"{extra}    return {status} '{quoted}';\n  }}\n"
        )
    config = folder / "nginx.conf"
    config.write_text(
        f"worker_processes {workers};\n"
        "daemon off;\n"
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "  access_log off;\n"
        "  server_tokens off;\n"
        "  keepalive_requests 1000000;\n"
        f"  client_body_temp_path {folder / 'body'};\n"
        f"  proxy_temp_path {folder / 'proxy'};\n"
        f"  fastcgi_temp_path {folder / 'fastcgi'};\n"
        f"  uwsgi_temp_path {folder / 'uwsgi'};\n"
        f"  scgi_temp_path {folder / 'scgi'};\n"
        f"  server {{\n  listen 127.0.0.1:{port};\n"
        + "".join(locations)
        + "  location / { return 404; }\n  }\n}\n"
    )
    return [nginx, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(config)]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def rotating_paths_script(paths: Sequence[str], folder: Path) -> Path:
    """A wrk Lua script that requests ``paths`` in turn."""
    script = folder / "rotate.lua"
    listed = ", ".join(json.dumps(p) for p in paths)
    script.write_text(
        f"local paths = {{{listed}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = (i % #paths) + 1\n"
        '  return wrk.format("GET", paths[i])\n'
        "end\n"
    )
    return script


def run_wrk(
    url: str,
    seconds: int,
    connections: int = 32,
    threads: int = 2,
    pid: int | None = None,
    script: Path | None = None,
    cpu: int | None = None,
) -> WrkResult:
    """Load ``url`` with wrk; with ``pid``, also measure that process's CPU per request;
    with ``cpu``, wrk is held to that CPU (``taskset``)."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian)")
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        [
            *(["taskset", "-c", str(cpu)] if cpu is not None else []),
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            *(["-s", str(script)] if script else []),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if found := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(found.group(1))
    if found := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(g) for g in found.groups())
    return WrkResult(rps, p50, p99, errors, total, cpu / total * 1e6 if pid and total else 0.0)


def median_result(results: list[WrkResult]) -> WrkResult:
    return WrkResult(
        statistics.median(r.requests_per_second for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        sum(r.requests for r in results),
        statistics.median(r.cpu_us_per_request for r in results),
    )


def machine() -> dict[str, object]:
    import mitmproxy.version

    return {
        "python": platform.python_version(),
        "implementation": sys.executable,
        "mitmproxy": mitmproxy.version.VERSION,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def save(name: str, payload: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=asdict) + "\n")
    return path


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)
