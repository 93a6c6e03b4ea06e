"""The cart service: the one under test. It calls the catalog for prices and payments at checkout.

Its upstreams come from the environment (``CATALOG_URL``, ``PAYMENTS_URL``),
as a twelve-factor service's would, so the same code runs against the real
services, against `baton record`, or against `baton replay` in its tests.
"""

from __future__ import annotations

import itertools
import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def make_app(catalog_url: str, payments_url: str, payments_key: str) -> Starlette:
    carts: dict[int, dict[int, int]] = {}
    numbers = itertools.count(1)
    client = httpx.AsyncClient(timeout=10, trust_env=False)

    async def price_of(product_id: int) -> float | None:
        response = await client.get(f"{catalog_url}/products/{product_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return float(response.json()["price"])

    async def total(cart: dict[int, int]) -> float:
        amount = 0.0
        for product_id, quantity in sorted(cart.items()):
            amount += (await price_of(product_id) or 0.0) * quantity
        return round(amount, 2)

    async def new_cart(request: Request) -> JSONResponse:
        number = next(numbers)
        carts[number] = {}
        return JSONResponse({"cart": number}, status_code=201)

    async def add_item(request: Request) -> JSONResponse:
        cart = carts.get(int(request.path_params["cart"]))
        if cart is None:
            return JSONResponse({"error": "no such cart"}, status_code=404)
        body = await request.json()
        product_id, quantity = int(body["product"]), int(body.get("quantity", 1))
        if await price_of(product_id) is None:
            return JSONResponse({"error": f"no product {product_id}"}, status_code=422)
        cart[product_id] = cart.get(product_id, 0) + quantity
        return JSONResponse({"items": {str(k): v for k, v in cart.items()}})

    async def show(request: Request) -> JSONResponse:
        cart = carts.get(int(request.path_params["cart"]))
        if cart is None:
            return JSONResponse({"error": "no such cart"}, status_code=404)
        return JSONResponse(
            {"items": {str(k): v for k, v in cart.items()}, "total": await total(cart)}
        )

    async def checkout(request: Request) -> JSONResponse:
        cart = carts.get(int(request.path_params["cart"]))
        if cart is None:
            return JSONResponse({"error": "no such cart"}, status_code=404)
        amount = await total(cart)
        charge = await client.post(
            f"{payments_url}/charges",
            json={"amount": amount, "currency": "EUR", "card": "tok_visa_demo"},
            headers={"Authorization": f"Bearer {payments_key}"},
        )
        if charge.status_code != 201:
            return JSONResponse(
                {"error": "payment refused", "detail": charge.json()}, status_code=402
            )
        return JSONResponse({"paid": amount, "charge": charge.json()["charge"]})

    return Starlette(
        routes=[
            Route("/carts", new_cart, methods=["POST"]),
            Route("/carts/{cart:int}", show),
            Route("/carts/{cart:int}/items", add_item, methods=["POST"]),
            Route("/carts/{cart:int}/checkout", checkout, methods=["POST"]),
        ]
    )


app = make_app(
    os.environ.get("CATALOG_URL", "http://127.0.0.1:8001"),
    os.environ.get("PAYMENTS_URL", "http://127.0.0.1:8002"),
    os.environ.get("PAYMENTS_API_KEY", "sk_demo_4f1c2e9a7b30d5e8"),
)
