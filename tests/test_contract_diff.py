"""`baton contract diff`: specs inferred from two recordings (or written ones) compared with
oasdiff's rules; a breaking change fails (exit 1), an added optional field is additive."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from baton.replay.spec_diff import RULES, diff_specs
from tests.contract_services import record_through_baton, service
from tests.processes import run_baton

CORPUS = Path(__file__).resolve().parent / "corpus" / "openapi"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "contracts.md"


@pytest.fixture(scope="module")
def catalog_specs(
    tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path
) -> Iterator[dict[int, Path]]:
    """The demo's catalog, v1 and then v2 (name renamed title, price a string), recorded and inferred."""
    import httpx

    from tests.processes import start_baton

    def start(*args: str) -> Any:
        return start_baton([*args, "--set", f"confdir={mitm_confdir}"])

    def browse(url: str) -> None:
        with httpx.Client(base_url=url, trust_env=False) as client:
            client.get("/products")
            for number in (1, 2, 3, 99):
                client.get(f"/products/{number}")

    folder = tmp_path_factory.mktemp("catalog")
    specs = {}
    for version in (1, 2):
        with service("demo.shop.catalog:app", {"CATALOG_VERSION": str(version)}) as catalog:
            cassette = folder / f"catalog-v{version}.cassette"
            record_through_baton(start, catalog.url, cassette, browse)
        specs[version] = folder / f"catalog-v{version}.yaml"
        result = run_baton(["contract", "infer", str(cassette), "-o", str(specs[version])])
        assert result.returncode == 0, result.stderr
    yield specs


def test_the_demo_catalogs_breaking_release_is_reported_breaking(
    catalog_specs: dict[int, Path],
) -> None:
    result = run_baton(["contract", "diff", str(catalog_specs[1]), str(catalog_specs[2])])
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert (
        "response 200 application/json: body.name: required property removed  "
        "[response-required-property-removed, error]"
    ) in out
    assert (
        "response 200 application/json: body.price: type number -> string  "
        "[response-property-type-changed, error]"
    ) in out
    assert (
        "response 200 application/json: body.products[].currency: required property added  "
        "[response-required-property-added, info]"
    ) in out
    assert "GET /products/{id}  (" in out and "  breaking [fails the gate]:" in out
    assert out.rstrip().splitlines()[-1].startswith("DRIFT: ")
    assert out.rstrip().endswith("Exit code 1.")


def test_a_breaking_change_and_an_added_optional_field_are_told_apart(
    orders_cassettes: dict[int, Path], tmp_path: Path
) -> None:
    # Cassettes straight in: a document is inferred from each first.
    report = tmp_path / "changes.json"
    result = run_baton(
        [
            "contract",
            "diff",
            str(orders_cassettes[1]),
            str(orders_cassettes[3]),
            "--format",
            "json",
            "-o",
            str(report),
        ]
    )
    assert result.returncode == 1, result.stderr
    assert "DRIFT: 2 changes fail the gate (--fail-on breaking)" in result.stderr
    data = json.loads(report.read_text())
    assert data["schema"] == "baton-spec-diff/1" and data["verdict"] == "drift"
    found = {(c["class"], c["rule"], c["endpoint"], c["location"]) for c in data["changes"]}
    body = "response 200 application/json: body"
    assert (
        "breaking",
        "response-property-type-changed",
        "GET /orders/{id}",
        f"{body}.total",
    ) in found
    assert (
        "additive",
        "response-optional-property-added",
        "GET /orders/{id}",
        f"{body}.note",
    ) in found
    assert (
        "additive",
        "response-optional-property-added",
        "GET /orders",
        f"{body}.orders[].note",
    ) in found
    assert data["summary"]["changes"]["breaking"] == 2

    # Version 2 only added a status: additive, so the default gate passes and --fail-on
    # additive fails, as with `baton diff`.
    relaxed = run_baton(["contract", "diff", str(orders_cassettes[1]), str(orders_cassettes[2])])
    assert relaxed.returncode == 0, relaxed.stdout
    assert "response 410: status added  [response-non-success-status-added, info]" in relaxed.stdout
    strict = run_baton(
        [
            "contract",
            "diff",
            str(orders_cassettes[1]),
            str(orders_cassettes[2]),
            "--fail-on",
            "additive",
        ]
    )
    assert strict.returncode == 1

    junit = run_baton(
        [
            "contract",
            "diff",
            str(orders_cassettes[1]),
            str(orders_cassettes[3]),
            "--format",
            "junit",
        ]
    )
    suite = ElementTree.fromstring(junit.stdout).find("testsuite")
    assert suite is not None and suite.get("failures") == "2"
    markdown = run_baton(
        [
            "contract",
            "diff",
            str(orders_cassettes[1]),
            str(orders_cassettes[3]),
            "--format",
            "markdown",
        ]
    )
    assert "#### Breaking (2) — fails the gate" in markdown.stdout
    assert "#### Additive (3)" in markdown.stdout  # the 410 of version 2 is there too


def _petstore() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CORPUS / "oai-petstore.yaml").read_text())
    return loaded


def _rules(old: dict[str, Any], new: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(c.rule, c.endpoint, c.location) for c in diff_specs(old, new).changes}


def test_petstore_paths_operations_parameters_and_statuses() -> None:
    old = _petstore()
    new = copy.deepcopy(old)
    pets = new["paths"]["/pets"]
    del pets["post"]
    pets["get"]["parameters"][0]["required"] = True
    pets["get"]["parameters"].append(
        {"name": "sort", "in": "query", "required": False, "schema": {"type": "string"}}
    )
    pets["get"]["parameters"].append(
        {"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string"}}
    )
    pets["get"]["responses"]["404"] = {"description": "none"}
    # Renaming a path parameter is no change; removing the success status is.
    item = new["paths"].pop("/pets/{petId}")
    item["get"]["parameters"][0]["name"] = "id"
    del item["get"]["responses"]["200"]
    new["paths"]["/pets/{id}"] = item
    new["paths"]["/stores"] = {"get": {"responses": {"200": {"description": "ok"}}}}
    found = _rules(old, new)
    assert found == {
        ("api-removed-without-deprecation", "POST /pets", ""),
        ("request-parameter-became-required", "GET /pets", "query.limit"),
        ("new-optional-request-parameter", "GET /pets", "query.sort"),
        ("new-required-request-parameter", "GET /pets", "header.X-Tenant"),
        ("response-non-success-status-added", "GET /pets", "response 404"),
        ("response-success-status-removed", "GET /pets/{id}", "response 200"),
        ("endpoint-added", "GET /stores", ""),
    }
    assert diff_specs(old, copy.deepcopy(old)).changes == []


def test_petstore_schemas_through_refs_by_direction() -> None:
    old = _petstore()
    new = copy.deepcopy(old)
    pet = new["components"]["schemas"]["Pet"]
    pet["properties"]["tag"] = {"type": "string", "enum": ["dog", "cat"]}
    pet["properties"]["id"] = {"type": "integer", "format": "int64", "maximum": 1000}
    pet["properties"]["age"] = {"type": "integer"}
    pet["required"] = ["id", "name", "age"]
    found = _rules(old, new)
    body = "application/json: body"
    # The same component, read by direction: POST /pets sends it, GET /pets/{petId} returns it.
    assert ("request-property-became-enum", "POST /pets", f"request {body}.tag") in found
    assert ("request-property-max-set", "POST /pets", f"request {body}.id") in found
    assert ("new-required-request-property", "POST /pets", f"request {body}.age") in found
    assert (
        "response-required-property-added",
        "GET /pets/{petId}",
        f"response 200 {body}.age",
    ) in found
    assert ("response-required-property-added", "GET /pets", f"response 200 {body}[].age") in found
    breaking = {c.rule for c in diff_specs(old, new).changes if c.drift.value == "breaking"}
    assert breaking == {
        "request-property-became-enum",
        "request-property-max-set",
        "new-required-request-property",
    }
    # Narrowing a response type is safe; widening it is not (integer -> number).
    wider = copy.deepcopy(old)
    wider["components"]["schemas"]["Pet"]["properties"]["id"] = {"type": "number"}
    changes = {(c.rule, c.drift.value) for c in diff_specs(old, wider).changes}
    assert ("response-property-type-generalized", "breaking") in changes
    assert ("request-property-type-generalized", "value") in changes


def test_every_rule_covered_is_listed_in_the_docs() -> None:
    text = DOCS.read_text()
    missing = [rule for rule in RULES if f"`{rule}`" not in text]
    assert not missing, f"docs/contracts.md does not list: {missing}"


def test_bad_documents_are_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = CORPUS / "oai-petstore.yaml"
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for args, expected in [
        ([str(tmp_path / "gone.yaml"), str(spec)], "gone.yaml: no such file"),
        ([str(spec), str(text)], "not an OpenAPI document"),
    ]:
        result = run_baton(["contract", "diff", *args])
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr


def test_the_gate_comes_from_the_contract_diff_section_of_the_configuration(
    orders_cassettes: dict[int, Path], tmp_path: Path
) -> None:
    (tmp_path / "baton.toml").write_text('[contract.diff]\nfail_on = "additive"\n')
    args = ["contract", "diff", str(orders_cassettes[1]), str(orders_cassettes[2])]
    result = run_baton(args, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "(--fail-on additive)" in result.stdout
    assert run_baton([*args, "--fail-on", "breaking"], cwd=tmp_path).returncode == 0
    (tmp_path / "baton.toml").write_text("[contract.difff]\nfail_on = 1\n")
    wrong = run_baton(args, cwd=tmp_path)
    assert wrong.returncode == 2
    assert "unknown section [contract.difff] (did you mean 'diff'?)" in wrong.stderr
