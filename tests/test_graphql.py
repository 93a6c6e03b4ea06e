"""GraphQL through baton: a catalog served by Ariadne on Starlette, recorded with ``baton
record``, replayed with the queries written differently, and diffed against a version that
removed a field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import Upstream, run_baton, start_baton, start_upstream
from tests.shop_apps import SCHEMA_V1

PRODUCT = """
query Product($sku: String!, $withRating: Boolean = true) {
  product(sku: $sku) { sku name price rating @include(if: $withRating) legacyCode }
}
"""
PRODUCT_REWRITTEN = """
# the same operation, written by another hand
query Product($sku: String!, $withRating: Boolean = true) {
  product(sku: $sku) {
    ...Basics
    legacyCode
    rating @include(if: $withRating)
  }
}
fragment Basics on Product { price name sku }
"""
LIST = "query Cheap { products(limit: 2) { sku price } }"
RATE = "mutation Rate($sku: String!) { rate(sku: $sku, stars: 5) { sku rating } }"


@dataclass
class Recorded:
    cassette: Path
    upstream: Upstream


def _post(base: str, query: str, variables: dict[str, object] | None = None) -> httpx.Response:
    return httpx.post(
        base + "/graphql",
        json={"query": query, "variables": variables or {}},
        trust_env=False,
        timeout=10,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    folder = tmp_path_factory.mktemp("graphql")
    upstream = start_upstream("graphql-v1")
    cassette = folder / "catalog.cassette"
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--mode",
            f"reverse:{upstream.url}",
            "--listen-port",
            "0",
            "--set",
            f"confdir={folder / 'mitm'}",
        ]
    )
    try:
        assert _post(recorder.url, PRODUCT, {"sku": "apple"}).status_code == 200
        assert _post(recorder.url, LIST).status_code == 200
        assert _post(recorder.url, RATE, {"sku": "pear"}).status_code == 200
        assert _post(recorder.url, PRODUCT, {"sku": "pear"}).status_code == 200
    finally:
        assert recorder.stop() == 0, recorder.output
    try:
        yield Recorded(cassette, upstream)
    finally:
        upstream.stop()


def test_reformatted_queries_match_and_a_changed_variable_names_itself(
    recorded: Recorded,
) -> None:
    server = start_baton(["replay", str(recorded.cassette), "--listen-port", "0"])
    try:
        apple = _post(server.url, PRODUCT_REWRITTEN, {"sku": "apple", "withRating": True})
        assert apple.json() == {
            "data": {
                "product": {
                    "sku": "apple",
                    "name": "Apple",
                    "price": 3,
                    "rating": 4.0,
                    "legacyCode": "L-apple",
                }
            }
        }
        # Before the mutation pear was rated 4; the mutation (a write) moves to the next state.
        assert _post(server.url, RATE, {"sku": "pear"}).json()["data"]["rate"]["rating"] == 5.0
        pear = _post(server.url, PRODUCT_REWRITTEN, {"sku": "pear"})
        assert pear.json()["data"]["product"]["rating"] == 5.0
        miss = _post(server.url, PRODUCT, {"sku": "plum"})
        assert miss.status_code == 502
        report = miss.text
        assert "GraphQL operation Product" in report
        assert 'variables.sku: recorded "apple", got "plum"' in report
    finally:
        server.stop()


def test_show_lists_the_operations_by_name(recorded: Recorded) -> None:
    result = run_baton(["show", str(recorded.cassette), "--graphql"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "query Cheap: 1 interaction (#2)",
        "query Product: 2 interactions (#1, #4)",
        "mutation Rate: 1 interaction (#3)",
    ]


def test_a_removed_field_is_breaking_in_diff_answers_and_schema(
    recorded: Recorded, tmp_path: Path
) -> None:
    schema = tmp_path / "v1.graphql"
    schema.write_text(SCHEMA_V1)
    v2 = start_upstream("graphql-v2")
    try:
        result = run_baton(
            [
                "diff",
                str(recorded.cassette),
                "--target",
                v2.url,
                "--allow-side-effects",
                "--graphql-schema",
                str(schema),
            ]
        )
    finally:
        v2.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "graphql_error_added" in result.stdout
    assert "Cannot query field 'legacyCode' on type 'Product'" in result.stdout
    assert "breaking field_removed: Field Product.legacyCode was removed." in result.stderr
    assert "value nullability_changed: Product.rating changed from Float to Float!" in result.stderr
