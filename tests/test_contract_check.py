"""`baton contract check`: recorded traffic validated against a spec with openapi-core; a service
that adds an undocumented status fails, in every report format; the petstore corpus specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from baton.cassettes.model import Interaction, Request, Response, StoredBody
from baton.cassettes.writer import CassetteWriter
from tests.processes import run_baton

CORPUS = Path(__file__).resolve().parent / "corpus" / "openapi"


def _spec_from(cassette: Path, folder: Path) -> Path:
    spec = folder / "orders.yaml"
    result = run_baton(["contract", "infer", str(cassette), "-o", str(spec)])
    assert result.returncode == 0, result.stderr
    return spec


def test_the_recording_the_spec_came_from_follows_it(
    orders_cassettes: dict[int, Path], tmp_path: Path
) -> None:
    spec = _spec_from(orders_cassettes[1], tmp_path)
    result = run_baton(["contract", "check", "--spec", str(spec), str(orders_cassettes[1])])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith(
        f"OK: 11 interactions checked, all follow {spec}. Exit code 0."
    )
    assert "GET /orders/{id}  (7 checked: ok)" in result.stdout


def test_a_service_that_adds_an_undocumented_status_fails_the_check(
    orders_cassettes: dict[int, Path], tmp_path: Path
) -> None:
    spec = _spec_from(orders_cassettes[1], tmp_path)
    result = run_baton(["contract", "check", "--spec", str(spec), str(orders_cassettes[2])])
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "response undocumented-status status: status 410 is not documented for GET /orders/{id}"
        f"  (#5 /orders/3 in {orders_cassettes[2]})"
    ) in result.stdout
    assert result.stdout.rstrip().endswith(
        f"VIOLATIONS: 1 violation of {spec} in 1 interaction. Exit code 1."
    )

    report = tmp_path / "check.json"
    result = run_baton(
        [
            *("contract", "check", "--spec", str(spec), str(orders_cassettes[2])),
            *("--format", "json", "-o", str(report)),
        ]
    )
    assert result.returncode == 1
    assert f"baton: report written to {report}" in result.stderr
    data = json.loads(report.read_text())
    assert data["schema"] == "baton-contract-check/1" and data["verdict"] == "violations"
    assert data["summary"]["by_kind"] == {"undocumented-status": 1}
    assert data["violations"][0]["endpoint"] == "GET /orders/{id}"
    assert data["violations"][0]["target"] == "/orders/3"

    junit = run_baton(
        ["contract", "check", "--spec", str(spec), str(orders_cassettes[2]), "--format", "junit"]
    )
    suite = ElementTree.fromstring(junit.stdout).find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["GET /orders/{id}"]

    markdown = run_baton(
        ["contract", "check", "--spec", str(spec), str(orders_cassettes[2]), "--format", "markdown"]
    )
    assert markdown.stdout.startswith(f"### ❌ baton contract check against `{spec}`")
    assert "- response `undocumented-status` `status`" in markdown.stdout


def test_schema_violations_name_their_json_path(
    orders_cassettes: dict[int, Path], tmp_path: Path
) -> None:
    spec = _spec_from(orders_cassettes[1], tmp_path)
    result = run_baton(
        ["contract", "check", "--spec", str(spec), str(orders_cassettes[3]), "--format", "json"]
    )
    assert result.returncode == 1
    found = {
        (v["endpoint"], v["location"], v["message"])
        for v in json.loads(result.stdout)["violations"]
    }
    assert ("GET /orders/{id}", "$.total", "'12.50' is not of type 'number'") in found
    assert ("GET /orders", "$.orders[3].total", "'5.00' is not of type 'number'") in found
    # The optional `note` of version 3 is no violation: the inferred schema leaves objects open.
    assert not any("note" in location for _, location, _ in found)


def _cassette(path: Path, interactions: list[Interaction]) -> Path:
    writer = CassetteWriter(path, redactor=None)
    for interaction in interactions:
        writer.append(interaction)
    writer.close()
    return path


def _pets(
    number: int,
    method: str,
    path: str,
    status: int,
    body: Any,
    query: tuple[tuple[str, str], ...] = (),
    sent: bytes = b"",
    stored: bool = False,
) -> Interaction:
    headers = (("Content-Type", "application/json"),)
    return Interaction(
        id=f"p{number}",
        request=Request(
            method,
            "http",
            "staging.internal",
            8080,
            path,
            query,
            headers=headers if sent else (),
            body=sent,
        ),
        response=Response(
            status,
            headers=headers,
            body=None if stored else json.dumps(body).encode(),
            stored=StoredBody("x", (), 10, "0" * 64) if stored else None,
        ),
        recorded_at=1.0,
    )


def test_petstore_unknown_paths_missing_parameters_and_bodies_and_schema_errors(
    tmp_path: Path,
) -> None:
    # The spec's server is http://petstore.swagger.io/v1: only its path (/v1) matters.
    cassette = _cassette(
        tmp_path / "pets.cassette",
        [
            _pets(1, "GET", "/v1/pets", 200, [{"id": 1, "name": "rex"}], query=(("limit", "5"),)),
            _pets(2, "GET", "/v1/pets", 200, [{"id": "2", "name": 3}]),
            _pets(3, "GET", "/v1/pets", 200, [], query=(("limit", "many"),)),
            _pets(4, "GET", "/v1/owners", 200, []),
            _pets(5, "DELETE", "/v1/pets", 204, None),
            _pets(6, "POST", "/v1/pets", 201, None),
        ],
    )
    spec = CORPUS / "oai-petstore.yaml"
    result = run_baton(
        ["contract", "check", "--spec", str(spec), str(cassette), "--format", "json"]
    )
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    found = [(v["number"], v["kind"], v["location"]) for v in data["violations"]]
    assert (2, "schema", "$[0].id") in found
    assert (2, "schema", "$[0].name") in found
    assert (3, "invalid-parameter", "query.limit") in found
    assert (4, "unknown-path", "path") in found
    assert (5, "unknown-operation", "method") in found
    assert (6, "missing-body", "body") in found
    assert not [f for f in found if f[0] == 1]
    # The unknown path is reported under what was recorded; known ones under the template.
    endpoints = {v["number"]: v["endpoint"] for v in data["violations"]}
    assert endpoints[4] == "GET /v1/owners" and endpoints[2] == "GET /pets"


def test_expanded_petstore_required_query_parameter(tmp_path: Path) -> None:
    spec = tmp_path / "required.yaml"
    text = (
        (CORPUS / "oai-petstore.yaml").read_text().replace("required: false", "required: true", 1)
    )
    spec.write_text(text)
    cassette = _cassette(tmp_path / "p.cassette", [_pets(1, "GET", "/v1/pets", 200, [])])
    result = run_baton(["contract", "check", "--spec", str(spec), str(cassette)])
    assert result.returncode == 1
    assert "request missing-parameter query.limit: required query parameter 'limit' is missing" in (
        result.stdout
    )


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cassette = _cassette(tmp_path / "p.cassette", [_pets(1, "GET", "/v1/pets", 200, [])])
    not_a_spec = tmp_path / "notes.yaml"
    not_a_spec.write_text("- just\n- a list\n")
    swagger = tmp_path / "swagger.yaml"
    swagger.write_text('swagger: "2.0"\ninfo: {title: x, version: "1"}\npaths: {}\n')
    broken = tmp_path / "broken.yaml"
    broken.write_text("openapi: 3.1.0\ninfo: {title: x}\npaths:\n  /a:\n    get: {responses: 3}\n")
    cases = [
        (["--spec", str(tmp_path / "missing.yaml"), str(cassette)], "missing.yaml: no such file"),
        (["--spec", str(not_a_spec), str(cassette)], "not an OpenAPI document"),
        (["--spec", str(broken), str(cassette)], "not a valid OpenAPI document: 'version' is"),
        (["--spec", str(swagger), str(cassette)], "Swagger 2.0 is not read; convert it"),
        (
            ["--spec", str(CORPUS / "oai-petstore.yaml"), str(tmp_path / "x.cassette")],
            "no such cassette",
        ),
    ]
    for args, expected in cases:
        result = run_baton(["contract", "check", *args])
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("baton: error: ") and expected in lines[0]


def test_a_body_too_large_to_hold_is_counted_not_failed() -> None:
    import yaml

    from baton.replay.contract_check import ContractChecker
    from baton.replay.contract_report import render_check

    checker = ContractChecker(yaml.safe_load((CORPUS / "oai-petstore.yaml").read_text()), "pets")
    stored = _pets(7, "GET", "/v1/pets/7", 200, None, stored=True)
    elsewhere = _pets(8, "GET", "/v1/owners/8", 200, None, stored=True)
    report = checker.check_all([("big.cassette", [stored, elsewhere])])
    assert report.checked == 2 and report.bodies_not_held == 2
    # What is not the body is still checked: the path of the second is unknown.
    assert [(v.number, v.kind.value) for v in report.violations] == [(2, "unknown-path")]
    text = render_check(report, "text")
    assert "2 bodies too large to hold (stored in pieces) or not captured: not checked" in text
