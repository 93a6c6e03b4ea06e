"""`baton export --format pact`: a file the Pact verifier (pact-python on the Pact reference core)
accepts against the real provider it was recorded from, and rejects against a breaking release,
naming the interaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract_services import record_through_baton, service
from tests.processes import run_baton


@pytest.fixture(scope="module")
def catalog_pact(tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path) -> Iterator[Path]:
    """The cart's calls to catalog v1, recorded through baton record, exported as a pact."""
    import httpx

    from tests.processes import start_baton

    def start(*args: str) -> Any:
        return start_baton([*args, "--set", f"confdir={mitm_confdir}"])

    def cart_asks_for_prices(url: str) -> None:
        with httpx.Client(base_url=url, trust_env=False) as client:
            for number in (1, 3, 1, 99):
                client.get(f"/products/{number}", headers={"X-Pact-State": "the usual products"})
            # Asked twice, so baton sees which values change from one answer to the next.
            client.get("/products")
            client.get("/products")

    folder = tmp_path_factory.mktemp("pact")
    cassette = folder / "catalog.cassette"
    with service("demo.shop.catalog:app", {"CATALOG_VERSION": "1"}) as catalog:
        record_through_baton(start, catalog.url, cassette, cart_asks_for_prices)
    pacts = folder / "pacts"
    result = run_baton(
        [
            *("export", str(cassette), "--format", "pact", "-o", str(pacts)),
            *("--consumer", "cart", "--provider", "catalog"),
            *("--provider-state-header", "X-Pact-State"),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert f"baton: pact cart -> catalog: 4 interactions, written to {pacts}/cart-catalog.json" in (
        result.stderr
    )
    assert "2 repeated requests written once" in result.stderr
    yield pacts / "cart-catalog.json"


@pytest.fixture(autouse=True)
def no_pact_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pact core reports usage over the network unless told not to; tests stay on 127.0.0.1."""
    monkeypatch.setenv("PACT_DO_NOT_TRACK", "true")


def _verify(pact: Path, version: int) -> tuple[bool, str]:
    from pact import Verifier

    with service("demo.shop.catalog:app", {"CATALOG_VERSION": str(version)}) as provider:
        verifier = (
            Verifier("catalog", host="127.0.0.1").add_transport(url=provider.url).add_source(pact)
        )
        try:
            verifier.verify()
            passed = True
        except RuntimeError:
            passed = False
        return passed, verifier.output(strip_ansi=True)


def test_the_pact_file_holds_what_was_recorded_with_matchers_where_values_varied(
    catalog_pact: Path,
) -> None:
    document = json.loads(catalog_pact.read_text())
    assert document["consumer"] == {"name": "cart"}
    assert document["provider"] == {"name": "catalog"}
    assert document["metadata"]["pactSpecification"] == {"version": "3.0.0"}
    by_description = {i["description"]: i for i in document["interactions"]}
    assert sorted(by_description) == [
        "GET /products -> 200",
        "GET /products/1 -> 200",
        "GET /products/3 -> 200",
        "GET /products/99 -> 404",
    ]
    one = by_description["GET /products/1 -> 200"]
    assert one["providerStates"] == [{"name": "the usual products"}]
    assert one["request"]["method"] == "GET" and one["request"]["path"] == "/products/1"
    assert one["response"]["status"] == 200
    assert one["response"]["body"]["name"] == "Espresso cup"
    rules = one["response"]["matchingRules"]["body"]
    # id, name, price, stock and the timestamp differed between products 1 and 3: types only.
    assert rules["$.name"] == {"matchers": [{"match": "type"}]}
    assert rules["$.served_at"] == {"matchers": [{"match": "type"}]}
    missing = by_description["GET /products/99 -> 404"]
    assert missing["response"]["body"] == {"error": "no such product"}
    assert (
        "matchingRules" not in missing["response"]
        or "body" not in missing["response"]["matchingRules"]
    )


def test_the_pact_verifier_accepts_version_1_and_names_what_version_2_broke(
    catalog_pact: Path,
) -> None:
    passed, output = _verify(catalog_pact, 1)
    assert passed, output
    assert "There were" not in output

    passed, output = _verify(catalog_pact, 2)
    assert not passed
    assert (
        "Verifying a pact between cart and catalog Given the usual products - GET /products/1 -> 200"
    ) in output
    assert "Actual map is missing the following keys: name" in output
    assert "$.price -> Expected '12.50' (String) to be the same type as 12.5" in output
    # The 404 answer did not change: it still verifies.
    assert "- GET /products/99 -> 404" not in output


def test_one_pact_per_consumer_and_provider_from_headers_and_client_addresses(
    tmp_path: Path,
) -> None:
    from baton.cassettes.model import Interaction, Request, Response
    from baton.cassettes.writer import CassetteWriter

    def exchange(
        number: int, host: str, client: str, headers: tuple[tuple[str, str], ...]
    ) -> Interaction:
        return Interaction(
            id=f"i{number}",
            request=Request("GET", "http", host, 80, f"/items/{number}", headers=headers),
            response=Response(
                200, headers=(("Content-Type", "application/json"),), body=b'{"n": 1}'
            ),
            recorded_at=1.0,
            tags={"client": f"{client}:5{number}000"},
        )

    cassette = tmp_path / "mixed.cassette"
    writer = CassetteWriter(cassette, redactor=None)
    for interaction in (
        exchange(1, "stock.internal", "10.0.0.7", ()),
        exchange(2, "stock.internal", "10.0.0.8", (("X-Service", "billing"),)),
        exchange(3, "prices.internal", "10.0.0.7", ()),
    ):
        writer.append(interaction)
    writer.close()
    folder = tmp_path / "pacts"
    result = run_baton(
        [
            *("export", str(cassette), "--format", "pact", "-o", str(folder)),
            *("--consumer-map", "10.0.0.7=cart", "--consumer-header", "X-Service"),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        "billing-stock.internal.json",
        "cart-prices.internal.json",
        "cart-stock.internal.json",
    ]
    several = run_baton(["export", str(cassette), "--format", "pact"])
    assert several.returncode == 2
    assert "give -o a folder for one file each" in several.stderr
    bad = run_baton(["export", str(cassette), "--format", "pact", "--consumer-map", "cart"])
    assert bad.returncode == 2 and "write it as ADDRESS=NAME" in bad.stderr
