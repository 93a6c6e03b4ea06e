"""Start and stop the real processes the tests talk to: upstream services and baton itself.

Every process is started by the test that needs it and stopped by its own
PID when the test ends, killed if it does not stop in time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BATON = [sys.executable, "-m", "baton.proxy.cli"]


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def trusting(ca: Path) -> ssl.SSLContext:
    """An SSL context for clients that trust ``ca`` (a test CA or mitmproxy's)."""
    return ssl.create_default_context(cafile=str(ca))


@dataclass
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass
class Upstream:
    """A real service on 127.0.0.1, in its own process."""

    proc: subprocess.Popen[bytes]
    port: int
    scheme: str
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def stop(self) -> None:
        _stop(self.proc)


def start_upstream(
    app: str, tls: TLSFiles | None = None, timeout: float = 30.0, host: str = "127.0.0.1"
) -> Upstream:
    """Start ``app`` ("httpbin", "echo", "shop-v1/2") on an ephemeral port; wait until it answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    args = [sys.executable, str(HERE / "upstream_apps.py"), app, str(sock.fileno())]
    if tls:
        args += ["--cert", str(tls.cert), "--key", str(tls.key)]
    proc = subprocess.Popen(args, pass_fds=[sock.fileno()])
    sock.close()
    upstream = Upstream(proc, port, "https" if tls else "http", host)
    deadline = time.monotonic() + timeout
    verify: ssl.SSLContext | bool = trusting(tls.ca) if tls else False
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"upstream {app} exited with {proc.returncode}")
        try:
            httpx.get(upstream.url + "/", verify=verify, timeout=5, trust_env=False)
            return upstream
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                upstream.stop()
                raise
            time.sleep(0.1)


_LISTENING = re.compile(r"listening on (\S+):(\d+)")


@dataclass
class BatonProcess:
    """A ``baton`` command running as a real subprocess, its stderr collected as it comes."""

    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    port: int = 0
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _drain(self, ready: threading.Event) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match and not ready.is_set():
                self.port = int(match.group(2))
                ready.set()
        ready.set()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as Ctrl-C or a service manager would; return the exit code."""
        code = _stop(self.proc, timeout)
        if self.reader is not None:
            self.reader.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to flush or clean up."""
        self.proc.kill()
        self.proc.wait(10)
        if self.reader is not None:
            self.reader.join(5)


def start_baton(
    args: list[str],
    *,
    wait_listening: bool = True,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    preexec_fn: object = None,
    cwd: Path | None = None,
) -> BatonProcess:
    """Run ``baton ARGS`` and, for proxies, wait until it prints the address it listens on."""
    proc = subprocess.Popen(
        [*BATON, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,  # type: ignore[arg-type]
        cwd=cwd,
    )
    baton = BatonProcess(proc)
    ready = threading.Event()
    baton.reader = threading.Thread(target=baton._drain, args=(ready,), daemon=True)
    baton.reader.start()
    if wait_listening and (not ready.wait(timeout) or not baton.port):
        _stop(proc)
        raise RuntimeError(f"baton did not start listening:\n{baton.output}")
    return baton


def run_baton(
    args: list[str], timeout: float = 120.0, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot ``baton`` command and return its exit code and output."""
    return subprocess.run(
        [*BATON, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[call-overload]
    )


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return int(port)


@dataclass
class Mitmdump:
    """A plain ``mitmdump`` process, for the addon loaded with ``-s``."""

    proc: subprocess.Popen[bytes]
    port: int
    reader: threading.Thread

    def stop(self) -> None:
        _stop(self.proc, 15)
        self.reader.join(5)


def start_mitmdump(
    args: list[str], timeout: float = 30.0, mitmdump: Path | None = None
) -> Mitmdump:
    """Run ``mitmdump ARGS`` (this interpreter's by default) on an ephemeral port until it listens."""
    mitmdump = mitmdump or Path(sys.executable).with_name("mitmdump")
    proc = subprocess.Popen(
        [str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    found: list[int] = []
    listening = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            match = re.search(rb"listening at .*?:(\d+)", raw)
            if match and not found:
                found.append(int(match.group(1)))
                listening.set()
        listening.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    if not listening.wait(timeout) or not found:
        _stop(proc)
        raise RuntimeError("mitmdump did not start listening")
    return Mitmdump(proc, found[0], reader)
