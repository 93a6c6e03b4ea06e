"""The catalog service, in two versions.

v2 is the build about to be deployed: ``name`` was renamed ``title``, the
price became a string, a ``currency`` field appeared. Both stamp every answer
with the time it was served, which changes on every call (noise, not drift).
"""

from __future__ import annotations

import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PRODUCTS = {
    1: ("Espresso cup", 12.5, 40),
    2: ("Milk jug", 18.0, 0),
    3: ("Grinder", 89.9, 7),
}


def _product(product_id: int, version: int) -> dict[str, object]:
    name, price, stock = PRODUCTS[product_id]
    if version == 1:
        return {"id": product_id, "name": name, "price": price, "stock": stock}
    return {
        "id": product_id,
        "title": name,
        "price": f"{price:.2f}",
        "currency": "EUR",
        "stock": stock,
    }


def make_app(version: int) -> Starlette:
    async def list_products(request: Request) -> JSONResponse:
        items = [_product(n, version) for n in PRODUCTS]
        return JSONResponse({"products": items, "served_at": time.time()})

    async def get_product(request: Request) -> JSONResponse:
        product_id = int(request.path_params["product_id"])
        if product_id not in PRODUCTS:
            return JSONResponse({"error": "no such product"}, status_code=404)
        return JSONResponse({**_product(product_id, version), "served_at": time.time()})

    return Starlette(
        routes=[
            Route("/products", list_products),
            Route("/products/{product_id:int}", get_product),
        ]
    )


app = make_app(int(os.environ.get("CATALOG_VERSION", "1")))
