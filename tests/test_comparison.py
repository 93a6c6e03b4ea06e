"""Drift classification and pairing on their own (pure functions, no network)."""

from __future__ import annotations

import json

from baton.cassettes import Interaction, Request, Response
from baton.replay.comparison import DriftClass, NoiseRules, compare_responses, endpoint_of
from baton.replay.drift import diff_cassettes, gate_includes, outgoing_request, supplied_headers

JSON = (("Content-Type", "application/json"),)


def answer(document: object, status: int = 200, headers: tuple = JSON) -> Response:
    return Response(status, headers=headers, body=json.dumps(document).encode())


def kinds(changes: list) -> set[tuple[str, str, str]]:
    return {(c.drift.value, c.kind, c.location) for c in changes}


def test_each_kind_of_json_change_gets_its_class_and_location() -> None:
    old = answer({"items": [{"price": 1.5, "tags": ["a"]}], "owner": None, "total": 3, "gone": 1})
    new = answer(
        {"items": [{"price": "1.50", "tags": ["a"]}], "owner": "ann", "total": 4.0, "new": 1}
    )
    found = kinds(compare_responses(old, new, "GET /cart"))
    assert ("breaking", "type_changed (number -> string)", "body.items[0].price") in found
    assert ("breaking", "type_changed (null -> string)", "body.owner") in found
    assert ("breaking", "field_removed", "body.gone") in found
    assert ("additive", "field_added", "body.new") in found
    assert ("value", "value_changed", "body.total") in found  # int -> float is still a number


def test_status_headers_and_content_type() -> None:
    old = Response(
        200,
        headers=(("Content-Type", "application/json"), ("Location", "/a"), ("Date", "x")),
        body=b"{}",
    )
    new = Response(
        503, headers=(("Content-Type", "text/html"), ("X-New", "1"), ("Date", "y")), body=b"<p>"
    )
    found = kinds(compare_responses(old, new, "GET /a"))
    assert ("breaking", "status_class_changed", "status") in found
    assert ("breaking", "content_type_changed", "header.content-type") in found
    assert ("breaking", "header_removed", "header.location") in found
    assert ("additive", "header_added", "header.x-new") in found
    assert not any(location == "header.date" for _, _, location in found)  # default noise list
    redirect = kinds(compare_responses(Response(301), Response(302), "GET /a"))
    assert redirect == {("value", "status_changed", "status")}


def test_ignore_order_compares_lists_as_multisets() -> None:
    old, new = answer({"ids": [1, 2, 3]}), answer({"ids": [3, 1, 2]})
    assert compare_responses(old, new, "GET /ids")
    assert compare_responses(old, new, "GET /ids", NoiseRules(ignore_order=True)) == []


def test_rules_in_every_syntax_make_noise() -> None:
    old = answer({"meta": {"ts": 1, "id": "a"}, "items": [{"at": 1}, {"at": 2}]})
    new = answer({"meta": {"ts": 2, "id": "b"}, "items": [{"at": 3}, {"at": 4}]})
    rules = NoiseRules(paths=["$.meta.ts", "root['meta']['id']", "items[*].at"])
    changes = compare_responses(old, new, "GET /x", rules)
    assert changes and all(c.drift is DriftClass.NOISE and c.rule for c in changes)
    per_endpoint = NoiseRules(per_endpoint={"GET /x": ["meta"], "GET /other": ["items"]})
    classes = {c.location: c.drift for c in compare_responses(old, new, "GET /x", per_endpoint)}
    assert classes["body.meta.ts"] is DriftClass.NOISE
    assert classes["body.items[0].at"] is DriftClass.VALUE


def test_learned_noise_covers_every_item_of_a_list() -> None:
    rules = NoiseRules()
    rules.learn("GET /feed", {"body.items[0].seen_at"})
    old = answer({"items": [{"seen_at": 1}] * 3})
    new = answer({"items": [{"seen_at": 2}] * 3})
    assert all(c.drift is DriftClass.NOISE for c in compare_responses(old, new, "GET /feed", rules))


def test_endpoints_fold_ids_and_uuids() -> None:
    assert endpoint_of("get", "/products/17") == "GET /products/{id}"
    assert (
        endpoint_of("GET", "/orders/3f2b8a9c-1d2e-4f5a-9b8c-7d6e5f4a3b2c/items")
        == "GET /orders/{id}/items"
    )
    assert endpoint_of("GET", "/products/featured") == "GET /products/featured"


def test_the_gate_widens_from_breaking_to_value() -> None:
    assert gate_includes(DriftClass.BREAKING, DriftClass.BREAKING)
    assert not gate_includes(DriftClass.ADDITIVE, DriftClass.BREAKING)
    assert gate_includes(DriftClass.ADDITIVE, DriftClass.ADDITIVE)
    assert gate_includes(DriftClass.VALUE, DriftClass.VALUE)
    assert not gate_includes(DriftClass.NOISE, DriftClass.VALUE)


def interaction(path: str, document: object, n: int) -> Interaction:
    return Interaction(str(n), Request("GET", "http", "api", 80, path), answer(document), float(n))


def test_two_recordings_pair_in_order_and_list_the_unpaired() -> None:
    old = [
        interaction("/a", {"v": 1}, 1),
        interaction("/a", {"v": 2}, 2),
        interaction("/gone", {}, 3),
    ]
    new = [
        interaction("/a", {"v": 1}, 4),
        interaction("/a", {"v": 9}, 5),
        interaction("/fresh", {}, 6),
    ]
    report = diff_cassettes(old, new)
    outcomes = [(o.target, o.outcome) for o in report.outcomes]
    assert outcomes == [
        ("/a", "compared"),
        ("/a", "compared"),
        ("/gone", "only-in-old"),
        ("/fresh", "only-in-new"),
    ]
    assert report.outcomes[0].changes == []
    assert kinds(report.outcomes[1].changes) == {("value", "value_changed", "body.v")}
    assert report.exit_code == 0


def test_placeholders_are_never_sent() -> None:
    request = Request(
        "GET",
        "http",
        "api",
        80,
        "/me",
        (("page", "1"),),
        "HTTP/1.1",
        (("Authorization", "Bearer REDACTED-0123456789abcdef"), ("Accept", "*/*")),
    )
    outgoing, note = outgoing_request(request, {})
    assert outgoing is not None and outgoing.header("authorization") is None
    assert outgoing.target == "/me?page=1" and outgoing.header("accept") == "*/*"
    assert "not sent" in note
    supplied = supplied_headers(["Authorization: Bearer live"], {"BATON_HEADER_X_API_KEY": "k"})
    outgoing, note = outgoing_request(request, supplied)
    assert outgoing is not None
    assert outgoing.header("authorization") == "Bearer live"
    assert outgoing.header("x-api-key") == "k"
    assert note == ""
    secret_query = Request(
        "GET", "http", "api", 80, "/x", (("token", "REDACTED-0123456789abcdef"),)
    )
    assert outgoing_request(secret_query, {})[0] is None
