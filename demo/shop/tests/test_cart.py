"""The cart's own test suite: its upstreams are answered by baton from the recorded cassettes.

No catalog and no payments service runs while these tests do: `baton_replay`
serves both cassettes on one local port, and the cart is pointed at it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from demo.shop.cart import make_app

OUT = Path(__file__).resolve().parents[2] / "out"
CASSETTES = (str(OUT / "catalog.cassette"), str(OUT / "payments.cassette"))


def cart_client(base_url: str) -> httpx.AsyncClient:
    # The key is not the recorded one: redacted credentials match any value.
    app = make_app(base_url, base_url, payments_key="sk_test_any_key_works")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cart")


@pytest.mark.baton(*CASSETTES)
def test_the_total_uses_catalog_prices(baton_replay) -> None:
    asyncio.run(_total(baton_replay.url))


async def _total(url: str) -> None:
    async with cart_client(url) as cart:
        number = (await cart.post("/carts")).json()["cart"]
        await cart.post(f"/carts/{number}/items", json={"product": 1, "quantity": 2})
        await cart.post(f"/carts/{number}/items", json={"product": 3})
        assert (await cart.get(f"/carts/{number}")).json()["total"] == 114.9


@pytest.mark.baton(*CASSETTES)
def test_checkout_charges_the_total(baton_replay) -> None:
    asyncio.run(_checkout(baton_replay.url))


async def _checkout(url: str) -> None:
    async with cart_client(url) as cart:
        number = (await cart.post("/carts")).json()["cart"]
        await cart.post(f"/carts/{number}/items", json={"product": 1, "quantity": 2})
        await cart.post(f"/carts/{number}/items", json={"product": 3})
        receipt = (await cart.post(f"/carts/{number}/checkout")).json()
        assert receipt["paid"] == 114.9
        assert receipt["charge"].startswith("ch_")


@pytest.mark.baton(*CASSETTES)
def test_an_unknown_product_is_refused(baton_replay) -> None:
    asyncio.run(_unknown(baton_replay.url))


async def _unknown(url: str) -> None:
    async with cart_client(url) as cart:
        number = (await cart.post("/carts")).json()["cart"]
        refused = await cart.post(f"/carts/{number}/items", json={"product": 99})
        assert refused.status_code == 422
