"""The demo's catalog service: products, prices and stock, over plain JSON.

A real ASGI app (Starlette) run under uvicorn by ``demo/run.py``. It asks for
a bearer token on the stock endpoint so that the demo shows redaction at work.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PRODUCTS = {
    1: {"id": 1, "name": "Espresso cup", "price": 12.5, "currency": "EUR"},
    2: {"id": 2, "name": "Milk jug", "price": 18.0, "currency": "EUR"},
    3: {"id": 3, "name": "Grinder", "price": 89.9, "currency": "EUR"},
}
STOCK = {1: 40, 2: 0, 3: 7}
DEMO_TOKEN = "demo-secret-token-1234"


async def list_products(request: Request) -> JSONResponse:
    return JSONResponse({"products": list(PRODUCTS.values())})


async def get_product(request: Request) -> JSONResponse:
    product = PRODUCTS.get(int(request.path_params["product_id"]))
    if product is None:
        return JSONResponse({"error": "no such product"}, status_code=404)
    return JSONResponse(product)


async def get_stock(request: Request) -> JSONResponse:
    if request.headers.get("authorization") != f"Bearer {DEMO_TOKEN}":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    product_id = int(request.path_params["product_id"])
    return JSONResponse({"id": product_id, "in_stock": STOCK.get(product_id, 0)})


app = Starlette(
    routes=[
        Route("/products", list_products),
        Route("/products/{product_id:int}", get_product),
        Route("/products/{product_id:int}/stock", get_stock),
    ]
)
