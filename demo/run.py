"""`make demo`: record a bundled service through `baton record`, then show the cassette.

Starts the catalog service and baton on free ports of 127.0.0.1, sends a few
calls through baton like a client service would, stops both (by their own
PIDs), and prints the cassette with `baton show`.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo" / "out"
sys.path.insert(0, str(ROOT))

from demo.catalog import DEMO_TOKEN  # noqa: E402


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def start_catalog() -> tuple[subprocess.Popen[bytes], int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.serve", "demo.catalog:app", str(sock.fileno())],
        pass_fds=[sock.fileno()],
        cwd=ROOT,
    )
    sock.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/products", timeout=2, trust_env=False)
            return proc, port
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("demo: the catalog service did not start") from None
            time.sleep(0.1)


def start_recorder(cassette: Path, upstream: int) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "record",
            "-o",
            str(cassette),
            "--mode",
            f"reverse:http://127.0.0.1:{upstream}",
            "--listen-port",
            "0",
        ],
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode()
        print("   " + line, end="")
        if match := re.search(r"listening on [\d.]+:(\d+)", line):
            return proc, int(match.group(1))
    raise SystemExit("demo: baton record did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    cassette = OUT / "catalog.cassette"
    cassette.unlink(missing_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        say("starting the catalog service on 127.0.0.1")
        catalog, catalog_port = start_catalog()
        processes.append(catalog)
        print(f"   catalog listening on 127.0.0.1:{catalog_port} (pid {catalog.pid})")

        say("starting `baton record` as a reverse proxy in front of it")
        recorder, proxy_port = start_recorder(cassette, catalog_port)
        processes.append(recorder)

        say("a client calls the catalog through baton")
        base = f"http://127.0.0.1:{proxy_port}"
        with httpx.Client(base_url=base, trust_env=False, timeout=10) as client:
            for path, headers in [
                ("/products", {}),
                ("/products/1", {}),
                ("/products/2/stock", {"Authorization": f"Bearer {DEMO_TOKEN}"}),
                ("/products/99", {}),
            ]:
                response = client.get(path, headers=headers)
                print(f"   GET {path} -> {response.status_code} {response.text[:60]}")

        say("stopping baton (SIGTERM): everything is already on disk")
        stop(recorder)
        assert recorder.stderr is not None
        print("   " + recorder.stderr.read().decode().strip())

        say(f"baton show {cassette.relative_to(ROOT)} --no-headers")
        subprocess.run(
            [sys.executable, "-m", "proxy.cli", "show", str(cassette), "--no-headers"], check=True
        )
        leaked = DEMO_TOKEN.encode() in cassette.read_bytes()
        say("the bearer token in the cassette: " + ("LEAKED" if leaked else "redacted"))
        print(f"\ncassette: {cassette}")
        return 1 if leaked else 0
    finally:
        for proc in reversed(processes):
            stop(proc)


if __name__ == "__main__":
    sys.exit(main())
