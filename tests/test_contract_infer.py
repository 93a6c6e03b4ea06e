"""`baton contract infer`: the demo shop's real traffic, recorded through `baton record`, becomes
OpenAPI 3.1 documents that openapi-spec-validator accepts, with templated paths, parameters,
schemas per status, formats, small enums, redacted examples; --merge-into keeps human edits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from baton.cassettes.model import (
    Interaction,
    Request,
    Response,
    StoredBody,
    WebSocketConversation,
    WebSocketMessage,
)
from baton.cassettes.writer import CassetteWriter
from tests.contract_services import record_through_baton, service
from tests.processes import run_baton

API_KEY = "sk_demo_4f1c2e9a7b30d5e8"


@pytest.fixture(scope="module")
def shop_cassettes(
    tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path
) -> Iterator[dict[str, Path]]:
    """The demo shop at work: the cart, and its calls to catalog and payments, each recorded."""
    from demo.run import shop
    from tests.processes import start_baton

    def start(*args: str) -> Any:
        return start_baton([*args, "--set", f"confdir={mitm_confdir}"])

    folder = tmp_path_factory.mktemp("shop")
    cassettes = {name: folder / f"{name}.cassette" for name in ("catalog", "payments", "cart")}
    with (
        service("demo.shop.catalog:app", {"CATALOG_VERSION": "1"}) as catalog,
        service("demo.shop.payments:app") as payments,
    ):
        catalog_proxy = start(
            "record",
            "-o",
            str(cassettes["catalog"]),
            "--mode",
            f"reverse:{catalog.url}",
            "--listen-port",
            "0",
        )
        payments_proxy = start(
            "record",
            "-o",
            str(cassettes["payments"]),
            "--mode",
            f"reverse:{payments.url}",
            "--listen-port",
            "0",
        )
        try:
            env = {"CATALOG_URL": catalog_proxy.url, "PAYMENTS_URL": payments_proxy.url}
            with service("demo.shop.cart:app", env) as cart:

                def two_shoppers(url: str) -> None:
                    shop(url)
                    shop(url)

                record_through_baton(start, cart.url, cassettes["cart"], two_shoppers)
        finally:
            assert catalog_proxy.stop() == 0 and payments_proxy.stop() == 0
    yield cassettes


def _infer(*args: str) -> tuple[dict[str, Any], str]:
    result = run_baton(["contract", "infer", *args])
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout), result.stderr


def test_the_demo_shops_traffic_becomes_valid_openapi_documents(
    shop_cassettes: dict[str, Path], tmp_path: Path
) -> None:
    for name, cassette in shop_cassettes.items():
        output = tmp_path / f"{name}.yaml"
        result = run_baton(["contract", "infer", str(cassette), "-o", str(output)])
        assert result.returncode == 0, result.stderr
        assert f"written to {output}" in result.stderr
        document = yaml.safe_load(output.read_text())
        validate(document)  # openapi-spec-validator: raises on any error
        assert document["openapi"] == "3.1.0"
        assert document["servers"][0]["url"].startswith("http://127.0.0.1:")

    cart = yaml.safe_load((tmp_path / "cart.yaml").read_text())
    assert set(cart["paths"]) == {
        "/carts",
        "/carts/{id}",
        "/carts/{id}/items",
        "/carts/{id}/checkout",
    }
    add_item = cart["paths"]["/carts/{id}/items"]["post"]
    assert add_item["parameters"][0] == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    body = add_item["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["properties"]["product"] == {"type": "integer"}
    assert set(schema["required"]) == {"product", "quantity"}
    # One operation, responses per status: 200 for a product, 422 for product 99.
    assert set(add_item["responses"]) == {"200", "422"}
    assert add_item["responses"]["422"]["description"].startswith("Unprocessable")
    created = cart["paths"]["/carts"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["properties"]["cart"]["type"] == (
        "integer"
    )

    payments = yaml.safe_load((tmp_path / "payments.yaml").read_text())
    charge = payments["paths"]["/charges"]["post"]
    assert charge["security"] == [{"bearerAuth": []}]
    assert payments["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    answer = charge["responses"]["201"]["content"]["application/json"]
    assert answer["schema"]["properties"]["status"] == {"type": "string", "enum": ["captured"]}
    assert answer["schema"]["properties"]["amount"]["type"] == "number"
    request_schema = charge["requestBody"]["content"]["application/json"]["schema"]
    assert request_schema["properties"]["currency"] == {"type": "string", "enum": ["EUR"]}
    # Redacted before anything touched disk; the document holds no secret either.
    assert API_KEY not in (tmp_path / "payments.yaml").read_text()

    catalog = yaml.safe_load((tmp_path / "catalog.yaml").read_text())
    product = catalog["paths"]["/products/{id}"]["get"]["responses"]
    assert set(product) == {"200", "404"}
    fields = product["200"]["content"]["application/json"]["schema"]["properties"]
    assert fields["name"] == {"type": "string"}  # prose is never an enum
    assert fields["price"] == {"type": "number"}


def _write(path: Path, interactions: list[Interaction]) -> Path:
    writer = CassetteWriter(path, redactor=None)
    for interaction in interactions:
        writer.append(interaction)
    writer.close()
    return path


def _exchange(
    number: int,
    method: str,
    path: str,
    status: int,
    body: Any,
    *,
    query: tuple[tuple[str, str], ...] = (),
    sent: Any = None,
    host: str = "api.test",
) -> Interaction:
    request_headers: tuple[tuple[str, str], ...] = (("Host", host),)
    request_body = b""
    if sent is not None:
        request_headers += (("Content-Type", "application/json"),)
        request_body = json.dumps(sent).encode()
    return Interaction(
        id=f"i{number}",
        request=Request(
            method, "http", host, 80, path, query, headers=request_headers, body=request_body
        ),
        response=Response(
            status,
            headers=(("Content-Type", "application/json"),),
            body=json.dumps(body).encode(),
        ),
        recorded_at=1.0,
    )


def test_formats_enums_uuids_slugs_and_optional_fields(tmp_path: Path) -> None:
    uuids = [
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "c9bf9e57-1685-4c89-bafb-ff5af830be8a",
    ]
    interactions = []
    for n, uuid in enumerate(uuids):
        body = {
            "id": uuid,
            "state": ["active", "closed", "active"][n],
            "email": f"user{n}@example.com",
            "home": f"https://example.com/u/{n}",
            "born": "1990-01-0" + str(n + 1),
            "seen": f"2024-01-01T10:0{n}:00+00:00",
            "nickname": None if n else "bob",
        }
        if n == 1:
            body["extra"] = 1
        interactions.append(_exchange(n, "GET", f"/users/{uuid}", 200, body, query=(("v", "2"),)))
    for n, slug in enumerate(["espresso-cup", "milk-jug", "grinder-pro-2", "cup-2"]):
        interactions.append(_exchange(10 + n, "GET", f"/products/{slug}", 200, {"slug": slug}))
    interactions.append(_exchange(20, "GET", "/products/featured-2/reviews", 200, []))
    cassette = _write(tmp_path / "users.cassette", interactions)
    document, _ = _infer(str(cassette))
    validate(document)
    user = document["paths"]["/users/{id}"]["get"]
    assert user["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    assert user["parameters"][1] == {
        "name": "v",
        "in": "query",
        "required": True,
        "schema": {"type": "integer"},
        "example": 2,
    }
    schema = user["responses"]["200"]["content"]["application/json"]["schema"]
    properties = schema["properties"]
    assert properties["id"] == {"type": "string", "format": "uuid"}
    assert properties["email"] == {"type": "string", "format": "email"}
    assert properties["home"] == {"type": "string", "format": "uri"}
    assert properties["born"] == {"type": "string", "format": "date"}
    assert properties["seen"] == {"type": "string", "format": "date-time"}
    assert properties["state"] == {"type": "string"}  # 2 values in 3 answers: not yet a closed set
    assert properties["nickname"]["type"] == ["null", "string"]
    assert "extra" in properties and "extra" not in schema["required"]
    assert "nickname" in schema["required"] and "email" in schema["required"]
    # Slugs that vary in one place are a parameter; the one under another path stays literal.
    assert "/products/{id}" in document["paths"]
    assert "/products/featured-2/reviews" in document["paths"]
    # --enum-max 0: no enums at all; --path-template wins over the detected template.
    again, _ = _infer(str(cassette), "--path-template", "/users/{userId}", "--enum-max", "0")
    assert "/users/{userId}" in again["paths"]


def test_websocket_stored_bodies_and_other_hosts_are_left_out_and_said(tmp_path: Path) -> None:
    handshake = Interaction(
        id="ws",
        request=Request(
            "GET", "http", "api.test", 80, "/live", headers=(("Upgrade", "websocket"),)
        ),
        response=Response(101, headers=(("Upgrade", "websocket"),), body=b""),
        recorded_at=1.0,
        websocket=WebSocketConversation(
            messages=(WebSocketMessage(True, True, b"hi", 1.0),), close_code=1000
        ),
    )
    large = Interaction(
        id="big",
        request=Request("GET", "http", "api.test", 80, "/export"),
        response=Response(
            200,
            headers=(("Content-Type", "application/json"),),
            body=None,
            stored=StoredBody(path="x", spans=(), size=10**9, sha256="0" * 64),
        ),
        recorded_at=1.0,
    )
    interactions = [
        handshake,
        _exchange(1, "GET", "/export", 200, {"ok": True}),
        _exchange(2, "GET", "/elsewhere", 200, {}, host="other.test"),
    ]
    cassette = _write(tmp_path / "mixed.cassette", interactions)
    document, stderr = _infer(str(cassette), "--host", "api.test")
    assert "/live" not in document["paths"]
    assert "1 WebSocket conversation left out" in stderr and "GET /live" in stderr
    assert "1 interaction with other hosts skipped" in stderr
    # A stored body is described by its operation only (checked on the model, no file needed).
    from baton.formats.openapi import infer_openapi

    result = infer_openapi([large])
    answer = result.documents["http://api.test"]["paths"]["/export"]["get"]["responses"]["200"]
    assert "content" not in answer
    assert any("too large to hold" in note for note in result.notes())


def test_several_hosts_need_a_host_or_a_folder(tmp_path: Path) -> None:
    cassette = _write(
        tmp_path / "two.cassette",
        [_exchange(1, "GET", "/a", 200, {}), _exchange(2, "GET", "/b", 200, {}, host="b.test")],
    )
    result = run_baton(["contract", "infer", str(cassette)])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "baton: error: 2 hosts recorded (http://api.test, http://b.test); pick one with --host, "
        "or give -o a folder for one file per host"
    ]
    folder = tmp_path / "specs"
    result = run_baton(["contract", "infer", str(cassette), "-o", f"{folder}/"])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["api.test.yaml", "b.test.yaml"]
    missing = run_baton(["contract", "infer", str(tmp_path / "nope.cassette")])
    assert missing.returncode == 2 and "nope.cassette: no such cassette" in missing.stderr


def test_merge_into_keeps_what_a_person_wrote_and_adds_what_traffic_showed(
    orders_cassettes: dict[int, Path], tmp_path: Path
) -> None:
    spec = tmp_path / "orders.yaml"
    assert (
        run_baton(["contract", "infer", str(orders_cassettes[1]), "-o", str(spec)]).returncode == 0
    )
    edited = yaml.safe_load(spec.read_text())
    edited["info"]["title"] = "Orders API"
    operation = edited["paths"]["/orders/{id}"]["get"]
    operation["summary"] = "One order"
    operation["responses"]["200"]["description"] = "The order, as the shop keeps it"
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    schema["properties"]["total"]["description"] = "Euros, VAT included"
    spec.write_text(yaml.safe_dump(edited, sort_keys=False))

    # Version 2 answers 410 for an archived order: the merge adds it and changes nothing else.
    result = run_baton(["contract", "infer", str(orders_cassettes[2]), "--merge-into", str(spec)])
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(spec.read_text())
    validate(merged)
    operation = merged["paths"]["/orders/{id}"]["get"]
    assert merged["info"]["title"] == "Orders API"
    assert operation["summary"] == "One order"
    assert operation["responses"]["200"]["description"] == "The order, as the shop keeps it"
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["properties"]["total"]["description"] == "Euros, VAT included"
    assert operation["responses"]["410"]["description"] == "Gone"
