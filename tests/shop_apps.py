"""Services for the fidelity tests: a stateful shop and a GraphQL one, both on Starlette.

The shop behaves the way replay gets wrong when it is only a lookup: a login
hands out a token that every later request must carry, a cart changes with
each write, orders get ids, ETags and times the server makes up, and it
echoes the reference the client generated. Each login has its own cart and
orders, so two sessions side by side see only their own.

The GraphQL service (Ariadne) serves a small catalog; version 2 of its
schema removes a field, for drift. Run by tests/upstream_apps.py.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PRICES = {"apple": 3, "pear": 4, "plum": 2}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Account:
    def __init__(self) -> None:
        self.cart: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}


def shop_app() -> Starlette:
    """The stateful shop (``fidelity-shop``)."""
    accounts: dict[str, _Account] = {}

    def account(request: Request) -> _Account | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return accounts.get(token)

    def unauthorised() -> Response:
        return JSONResponse({"error": "log in first"}, status_code=401)

    def cart_body(found: _Account) -> dict[str, Any]:
        total = sum(PRICES[line["sku"]] * line["qty"] for line in found.cart)
        return {"items": found.cart, "total": total}

    async def login(request: Request) -> Response:
        document = await request.json()
        token = "tok-" + secrets.token_hex(12)
        accounts[token] = _Account()
        expires = datetime.now(UTC) + timedelta(hours=1)
        response = JSONResponse(
            {
                "user": document.get("user"),
                "token": token,
                "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "expires_epoch": int(expires.timestamp()),
            }
        )
        response.set_cookie("session", secrets.token_hex(8))
        return response

    async def products(request: Request) -> Response:
        return JSONResponse({"products": sorted(PRICES)})

    async def cart(request: Request) -> Response:
        found = account(request)
        if found is None:
            return unauthorised()
        return JSONResponse(cart_body(found))

    async def add_item(request: Request) -> Response:
        found = account(request)
        if found is None:
            return unauthorised()
        document = await request.json()
        line = {
            "line_id": "line-" + secrets.token_hex(4),
            "sku": document["sku"],
            "qty": document["qty"],
            "request_id": document.get("request_id"),
        }
        found.cart.append(line)
        return JSONResponse({"added": line, **cart_body(found)}, status_code=201)

    async def remove_item(request: Request) -> Response:
        found = account(request)
        if found is None:
            return unauthorised()
        line_id = request.path_params["line_id"]
        kept = [line for line in found.cart if line["line_id"] != line_id]
        if len(kept) == len(found.cart):
            return JSONResponse({"error": f"no line {line_id}"}, status_code=404)
        found.cart = kept
        return JSONResponse(cart_body(found))

    async def place_order(request: Request) -> Response:
        found = account(request)
        if found is None:
            return unauthorised()
        document = await request.json()
        order_id = "ord-" + secrets.token_hex(5)
        order = {
            "id": order_id,
            "client_ref": document.get("client_ref"),
            "placed_at": document.get("placed_at"),
            "status": "placed",
            "lines": [dict(line) for line in found.cart],
            "total": cart_body(found)["total"],
            "created_at": _now(),
            "version": 1,
            "etag": secrets.token_hex(6),
        }
        found.orders[order_id] = order
        found.cart = []
        return _order_response(order, 201, {"Location": f"/orders/{order_id}"})

    async def get_order(request: Request) -> Response:
        found = account(request)
        if found is None:
            return unauthorised()
        order = found.orders.get(request.path_params["order_id"])
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return _order_response(order, 200)

    async def change_order(request: Request) -> Response:
        found = account(request)
        if found is None:
            return unauthorised()
        order = found.orders.get(request.path_params["order_id"])
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        if request.headers.get("if-match", "").strip('"') != order["etag"]:
            return JSONResponse({"error": "stale ETag"}, status_code=412)
        document = await request.json()
        order["status"] = document["status"]
        order["version"] += 1
        order["etag"] = secrets.token_hex(6)
        order["updated_at"] = _now()
        return _order_response(order, 200)

    async def list_orders(request: Request) -> Response:
        found = account(request)
        if found is None:
            return unauthorised()
        return JSONResponse({"orders": [o["id"] for o in found.orders.values()]})

    async def root(request: Request) -> Response:
        return JSONResponse({"service": "shop", "time": time.time()})

    return Starlette(
        routes=[
            Route("/", root),
            Route("/login", login, methods=["POST"]),
            Route("/products", products),
            Route("/cart", cart),
            Route("/cart/items", add_item, methods=["POST"]),
            Route("/cart/items/{line_id}", remove_item, methods=["DELETE"]),
            Route("/orders", place_order, methods=["POST"]),
            Route("/orders", list_orders, methods=["GET"]),
            Route("/orders/{order_id}", get_order, methods=["GET"]),
            Route("/orders/{order_id}", change_order, methods=["PATCH"]),
        ]
    )


def _order_response(
    order: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response:
    body = {k: v for k, v in order.items() if k != "etag"}
    return JSONResponse(
        body, status_code=status, headers={"ETag": f'"{order["etag"]}"', **(headers or {})}
    )


SCHEMA_V1 = """
type Query {
  product(sku: String!): Product
  products(limit: Int = 10): [Product!]!
}
type Mutation {
  rate(sku: String!, stars: Int!): Product!
}
type Product {
  sku: String!
  name: String!
  price: Int!
  rating: Float
  legacyCode: String
}
"""

SCHEMA_V2 = SCHEMA_V1.replace("  legacyCode: String\n", "").replace(
    "rating: Float", "rating: Float!"
)


def graphql_app(version: int = 1) -> Any:
    """The GraphQL catalog (``graphql-v1``, ``graphql-v2``: legacyCode removed, rating non-null)."""
    from ariadne import MutationType, QueryType, make_executable_schema
    from ariadne.asgi import GraphQL

    catalog = {
        sku: {
            "sku": sku,
            "name": sku.title(),
            "price": price,
            "rating": 4.0,
            "legacyCode": f"L-{sku}",
        }
        for sku, price in PRICES.items()
    }
    query = QueryType()
    mutation = MutationType()

    @query.field("product")
    def resolve_product(_: Any, info: Any, sku: str) -> Any:
        return catalog.get(sku)

    @query.field("products")
    def resolve_products(_: Any, info: Any, limit: int = 10) -> Any:
        return list(catalog.values())[:limit]

    @mutation.field("rate")
    def resolve_rate(_: Any, info: Any, sku: str, stars: int) -> Any:
        catalog[sku]["rating"] = float(stars)
        return catalog[sku]

    schema = make_executable_schema(SCHEMA_V1 if version == 1 else SCHEMA_V2, query, mutation)

    async def root(request: Request) -> Response:
        return JSONResponse({"service": "catalog", "graphql": "/graphql"})

    return Starlette(
        routes=[
            Route("/", root),
            Route("/graphql", GraphQL(schema, debug=False), methods=["GET", "POST"]),
        ]
    )
