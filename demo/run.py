"""`make demo`: the story of baton on a small shop, with real processes on 127.0.0.1.

1. Starts the shop: a catalog, payments, and a cart that calls both.
2. Records the cart's calls to catalog and payments through `baton record`
   while a scripted shopper browses and checks out.
3. Stops catalog and payments and runs the cart's own test suite against
   `baton replay` (the pytest plugin): green, with no upstream running.
4. Starts catalog v2 and runs `baton diff` against it: breaking drift, exit 1.

Every process it starts, it stops by its own PID; it ends with the paths of
the cassettes and the reports.
"""

from __future__ import annotations

import os
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
BATON = [sys.executable, "-m", "baton.proxy.cli"]
TTY = sys.stdout.isatty()


def say(step: str, text: str) -> None:
    line = f"\n==> {step} {text}"
    print(f"\033[1m{line}\033[0m" if TTY else line, flush=True)


class Processes:
    """Everything the demo starts, stopped in reverse order by PID."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def service(self, name: str, target: str, env: dict[str, str] | None = None) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo.serve", target, str(sock.fileno())],
            pass_fds=[sock.fileno()],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        sock.close()
        self.started.append((name, proc))
        url = f"http://127.0.0.1:{port}"
        print(f"    {name:<12} {url}  (pid {proc.pid})")
        return url

    def recorder(self, name: str, cassette: Path, upstream: str) -> str:
        proc = subprocess.Popen(
            [
                *BATON,
                "record",
                "-o",
                str(cassette),
                "--mode",
                f"reverse:{upstream}",
                "--listen-port",
                "0",
            ],
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self.started.append((name, proc))
        assert proc.stderr is not None
        for raw in proc.stderr:
            if match := re.search(r"listening on [\d.]+:(\d+)", raw.decode()):
                url = f"http://127.0.0.1:{match.group(1)}"
                print(f"    {name:<12} {url}  (pid {proc.pid}) -> {cassette.relative_to(ROOT)}")
                return url
        raise SystemExit(f"demo: {name} did not start")

    def stop(self, name: str) -> None:
        for entry in list(self.started):
            if entry[0] == name:
                _terminate(entry[1])
                self.started.remove(entry)

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):
            _terminate(proc)
        self.started.clear()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=2, trust_env=False)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: {url} did not come up") from None
            time.sleep(0.05)


def shop(cart_url: str) -> None:
    with httpx.Client(base_url=cart_url, trust_env=False, timeout=10) as cart:
        number = cart.post("/carts").json()["cart"]
        for product, quantity in ((1, 2), (3, 1), (99, 1)):
            answer = cart.post(
                f"/carts/{number}/items", json={"product": product, "quantity": quantity}
            )
            print(
                f"    add product {product} x{quantity}  -> {answer.status_code} {answer.text[:60]}"
            )
        print(f"    show cart          -> {cart.get(f'/carts/{number}').text}")
        print(f"    checkout           -> {cart.post(f'/carts/{number}/checkout').text}")


def main() -> int:
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    catalog_cassette, payments_cassette = OUT / "catalog.cassette", OUT / "payments.cassette"
    for old in OUT.iterdir():
        if old.is_file():
            old.unlink()
    processes = Processes()
    try:
        say("1/4", "starting the shop: catalog v1, payments, and the cart that calls them")
        catalog = processes.service("catalog v1", "demo.shop.catalog:app", {"CATALOG_VERSION": "1"})
        payments = processes.service("payments", "demo.shop.payments:app")
        wait_until_up(catalog + "/products")

        say(
            "2/4",
            "recording the cart's calls through `baton record` (one reverse proxy per upstream)",
        )
        catalog_proxy = processes.recorder("recorder", catalog_cassette, catalog)
        payments_proxy = processes.recorder("recorder 2", payments_cassette, payments)
        cart = processes.service(
            "cart",
            "demo.shop.cart:app",
            {"CATALOG_URL": catalog_proxy, "PAYMENTS_URL": payments_proxy},
        )
        wait_until_up(cart + "/carts/0")
        print("    a scripted shopper browses and checks out:")
        shop(cart)
        for name in ("cart", "recorder", "recorder 2"):
            processes.stop(name)
        for path in (catalog_cassette, payments_cassette):
            shown = subprocess.run(
                [*BATON, "show", str(path), "--no-headers", "--max-body", "0"],
                capture_output=True,
                text=True,
                cwd=ROOT,
            ).stdout
            count = len(re.findall(r"^#\d+ ", shown, re.M))
            print(f"    {path.relative_to(ROOT)}: {count} interaction{'s' if count != 1 else ''}")
        leaked = b"sk_demo_4f1c2e9a7b30d5e8" in payments_cassette.read_bytes()
        print(f"    the payments API key in the cassette: {'LEAKED' if leaked else 'redacted'}")

        say("3/4", "stopping catalog and payments; the cart's tests run against `baton replay`")
        processes.stop("catalog v1")
        processes.stop("payments")
        tests = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "demo/shop/tests",
                "-q",
                "-p",
                "no:cacheprovider",
                "--no-header",
                f"--junitxml={OUT / 'cart-tests.xml'}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        print("    " + "\n    ".join(tests.stdout.strip().splitlines()[-3:]))
        if tests.returncode != 0:
            print(tests.stdout[-3000:])
            return 1

        say("4/4", "catalog v2 is about to be deployed: `baton diff` against it")
        catalog_v2 = processes.service(
            "catalog v2", "demo.shop.catalog:app", {"CATALOG_VERSION": "2"}
        )
        wait_until_up(catalog_v2 + "/products")
        command = [*BATON, "diff", str(catalog_cassette), "--target", catalog_v2, "--learn-noise"]
        print(
            "    $ baton diff demo/out/catalog.cassette --target " + catalog_v2 + " --learn-noise"
        )
        diff = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        print("    " + "\n    ".join(diff.stdout.rstrip().splitlines()))
        print(f"    exit code {diff.returncode}")
        for fmt, suffix in (("json", "json"), ("junit", "xml"), ("markdown", "md")):
            subprocess.run(
                [*command, "--format", fmt, "-o", str(OUT / f"drift.{suffix}")],
                capture_output=True,
                cwd=ROOT,
            )
        processes.stop("catalog v2")

        print(
            "\nWhat you saw: the cart's tests passed with no catalog or payments running,"
            "\nand the diff stopped catalog v2 (exit 1): it renamed `name` and made `price` a string."
        )
        print(f"\ncassettes: {catalog_cassette}\n           {payments_cassette}")
        print(
            f"reports:   {OUT / 'drift.json'}, {OUT / 'drift.xml'}, {OUT / 'drift.md'}, "
            f"{OUT / 'cart-tests.xml'}"
        )
        print(f"(done in {time.monotonic() - started:.0f} s)")
        return 0 if diff.returncode == 1 else 1
    finally:
        processes.stop_all()


if __name__ == "__main__":
    sys.exit(main())
