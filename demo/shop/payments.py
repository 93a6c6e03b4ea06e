"""The payments service: charges a card token, with a bearer key."""

from __future__ import annotations

import itertools
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_KEY = os.environ.get("PAYMENTS_API_KEY", "sk_demo_4f1c2e9a7b30d5e8")
_charge_numbers = itertools.count(1001)


async def create_charge(request: Request) -> JSONResponse:
    if request.headers.get("authorization") != f"Bearer {API_KEY}":
        return JSONResponse({"error": "bad api key"}, status_code=401)
    body = await request.json()
    if body.get("amount", 0) <= 0:
        return JSONResponse({"error": "nothing to charge"}, status_code=422)
    return JSONResponse(
        {"charge": f"ch_{next(_charge_numbers)}", "amount": body["amount"], "status": "captured"},
        status_code=201,
    )


app = Starlette(routes=[Route("/charges", create_charge, methods=["POST"])])
