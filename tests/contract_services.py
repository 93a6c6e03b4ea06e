"""Real services for the contract tests, and recording their traffic through ``baton record``.

``orders`` comes in three versions, each a real ASGI app served by uvicorn
on an ephemeral 127.0.0.1 port (started with ``demo.serve``, as the demo's
shop is):

1. the baseline: orders with an id, a status, a total, a creation time and items;
2. adds a status the contract never mentioned: an archived order answers 410;
3. breaks the contract: ``total`` becomes a string; and adds an optional
   ``note`` on some orders (additive, not breaking).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

ORDERS = {
    1: {"status": "open", "total": 12.5, "items": [{"sku": "cup", "qty": 2}]},
    2: {"status": "paid", "total": 89.9, "items": [{"sku": "grinder", "qty": 1}]},
    3: {"status": "paid", "total": 18.0, "items": [{"sku": "jug", "qty": 1}]},
    4: {"status": "open", "total": 5.0, "items": []},
}


def make_orders_app(version: int) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def shown(number: int) -> dict[str, Any]:
        order = ORDERS[number]
        body: dict[str, Any] = {
            "id": number,
            "status": order["status"],
            "total": order["total"],
            "created": f"2024-05-0{number}T10:00:00Z",
            "items": order["items"],
        }
        if version >= 3:
            body["total"] = f"{order['total']:.2f}"
            if number % 2 == 0:
                body["note"] = "leave at the door"
        return body

    async def one(request: Request) -> JSONResponse:
        number = int(request.path_params["order"])
        if version >= 2 and number == 3:
            return JSONResponse({"error": "archived"}, status_code=410)
        if number not in ORDERS:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse(shown(number))

    async def listing(request: Request) -> JSONResponse:
        limit = int(request.query_params.get("limit", "10"))
        return JSONResponse({"orders": [shown(n) for n in list(ORDERS)[:limit]]})

    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(
            {"id": 5, "status": "open", "sku": body["sku"], "qty": body.get("qty", 1)},
            status_code=201,
        )

    return Starlette(
        routes=[
            Route("/orders", listing, methods=["GET"]),
            Route("/orders", create, methods=["POST"]),
            Route("/orders/{order:int}", one),
        ]
    )


orders_v1 = make_orders_app(1)
orders_v2 = make_orders_app(2)
orders_v3 = make_orders_app(3)


class Service:
    """One app under uvicorn in its own process, stopped by its PID."""

    def __init__(self, target: str, env: dict[str, str] | None = None) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo.serve", target, str(sock.fileno())],
            pass_fds=[sock.fileno()],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/", timeout=2, trust_env=False)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def service(target: str, env: dict[str, str] | None = None) -> Iterator[Service]:
    started = Service(target, env)
    try:
        yield started
    finally:
        started.stop()


def shop_for_orders(base_url: str) -> None:
    """What a client of the orders service does: list, look at each order, one missing, create."""
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as client:
        client.get("/orders", params={"limit": 4})
        client.get("/orders", params={"limit": 2})
        for number in (1, 2, 3, 4, 1, 2):
            client.get(f"/orders/{number}")
        client.get("/orders/99")
        client.post("/orders", json={"sku": "cup", "qty": 3})
        client.post("/orders", json={"sku": "jug"})


def record_through_baton(
    start_baton: Callable[..., Any], upstream: str, cassette: Path, traffic: Callable[[str], None]
) -> Path:
    """Run ``baton record`` in reverse mode in front of ``upstream``, send ``traffic``, stop it."""
    recorder = start_baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{upstream}", "--listen-port", "0"
    )
    try:
        traffic(recorder.url)
    finally:
        code = recorder.stop()
    assert code == 0, recorder.output
    assert cassette.is_file(), recorder.output
    return cassette


def _recorder(confdir: Path) -> Callable[..., Any]:
    from tests.processes import start_baton

    def start(*args: str) -> Any:
        return start_baton([*args, "--set", f"confdir={confdir}"])

    return start


@pytest.fixture(scope="session")
def orders_cassettes(
    tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path
) -> dict[int, Path]:
    """The orders client's traffic with versions 1, 2 and 3, each recorded through baton record."""
    folder = tmp_path_factory.mktemp("orders")
    found = {}
    for version in (1, 2, 3):
        with service(f"tests.contract_services:orders_v{version}") as upstream:
            found[version] = record_through_baton(
                _recorder(mitm_confdir),
                upstream.url,
                folder / f"orders-v{version}.cassette",
                shop_for_orders,
            )
    return found
