"""Unit tests of the pure parts of fidelity: the state algorithm, sessions, dynamic and
generated values, trace context, time shifting and GraphQL normalisation."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from baton.cassettes.model import Interaction, Request, Response
from baton.replay.dynamic_values import DynamicRules, detect
from baton.replay.graphql import normalise, operation_type
from baton.replay.index import Hit, Index, Miss
from baton.replay.matching import MatchConfig
from baton.replay.state import SessionBy, StateCounter, StateRules, pick_state
from baton.replay.time_shift import TimeShift, parse_target

T0 = 1_780_000_000.0


def _request(method: str, path: str, body: object = None, headers: tuple = ()) -> Request:
    raw = b"" if body is None else json.dumps(body).encode()
    extra = (("Content-Type", "application/json"),) if body is not None else ()
    return Request(method, "http", "shop", 80, path, headers=(*extra, *headers), body=raw)


def _interaction(
    number: int,
    request: Request,
    body: object,
    *,
    state: dict | None = None,
    headers: tuple = (),
) -> Interaction:
    response = Response(
        200,
        "OK",
        headers=(("Content-Type", "application/json"), *headers),
        body=json.dumps(body).encode(),
    )
    tags = {"state": state} if state is not None else {}
    return Interaction(f"i{number}", request, response, T0 + number, 1.0, tags=tags)


def _body(result: Hit | Miss) -> object:
    assert isinstance(result, Hit), result.report() if isinstance(result, Miss) else result
    response = result.response or result.interaction.response
    assert response is not None and response.body is not None
    return json.loads(response.body)


# -- state --------------------------------------------------------------------------------


def test_pick_state_prefers_the_same_count_then_the_latest_before_then_the_earliest_after() -> None:
    assert pick_state([0, 2, 5], 2) == 2
    assert pick_state([0, 2, 5], 4) == 2
    assert pick_state([3, 5], 1) == 3
    assert pick_state([], 1) is None


def _cart_recording() -> list[Interaction]:
    return [
        _interaction(
            0, _request("GET", "/cart"), {"items": []}, state={"writes": 0, "write": False}
        ),
        _interaction(
            1,
            _request("POST", "/cart/items", {"sku": "apple"}),
            {"ok": 1},
            state={"writes": 0, "write": True},
        ),
        _interaction(
            2, _request("GET", "/cart"), {"items": ["apple"]}, state={"writes": 1, "write": False}
        ),
    ]


def test_reads_repeated_before_a_write_keep_the_answer_of_their_state() -> None:
    index = Index(_cart_recording())
    assert _body(index.lookup(_request("GET", "/cart"))) == {"items": []}
    assert _body(index.lookup(_request("GET", "/cart"))) == {"items": []}
    assert _body(index.lookup(_request("POST", "/cart/items", {"sku": "apple"}))) == {"ok": 1}
    assert _body(index.lookup(_request("GET", "/cart"))) == {"items": ["apple"]}
    assert _body(index.lookup(_request("GET", "/cart"))) == {"items": ["apple"]}


def test_without_state_tags_or_with_state_off_the_queue_goes_in_recorded_order() -> None:
    untagged = [
        Interaction(i.id, i.request, i.response, i.recorded_at, i.duration_ms)
        for i in _cart_recording()
    ]
    for index in (Index(untagged), Index(_cart_recording(), state=False)):
        assert _body(index.lookup(_request("GET", "/cart"))) == {"items": []}
        assert _body(index.lookup(_request("GET", "/cart"))) == {"items": ["apple"]}


def test_sessions_keep_their_own_writes_and_queue_positions() -> None:
    index = Index(_cart_recording(), session_by=SessionBy.parse("header:X-Test-Id"))
    first = (("X-Test-Id", "a"),)
    second = (("X-Test-Id", "b"),)
    index.lookup(_request("POST", "/cart/items", {"sku": "apple"}, first))
    assert _body(index.lookup(_request("GET", "/cart", headers=second))) == {"items": []}
    assert _body(index.lookup(_request("GET", "/cart", headers=first))) == {"items": ["apple"]}


def test_session_by_names_a_header_a_cookie_or_the_client() -> None:
    request = _request("GET", "/", headers=(("Cookie", "a=1; session=s-9"), ("X-Id", "w3")))
    assert SessionBy.parse("cookie:session").session_of(request) == "s-9"
    assert SessionBy.parse("header:x-id").session_of(request) == "w3"
    assert SessionBy.parse("client").session_of(request, "127.0.0.1:5000") == "127.0.0.1:5000"
    assert SessionBy.parse(None).session_of(request) == ""
    with pytest.raises(ValueError, match="session-by 'ip'"):
        SessionBy.parse("ip")


def test_writes_are_the_changing_methods_less_graphql_queries_and_declared_routes() -> None:
    rules = StateRules.build(reads=["POST /search*"], writes=["GET /logout"])
    assert rules.is_write(_request("POST", "/cart/items", {}))
    assert not rules.is_write(_request("POST", "/search/items", {}))
    assert rules.is_write(_request("GET", "/logout"))
    assert not rules.is_write(_request("POST", "/graphql", {"query": "{ products { sku } }"}))
    assert rules.is_write(_request("POST", "/graphql", {"query": "mutation { rate(sku: 1) }"}))
    counter = StateCounter(rules)
    stamps = [
        counter.stamp(_request(m, p, {})) for m, p in [("GET", "/a"), ("PUT", "/b"), ("GET", "/a")]
    ]
    assert stamps == [
        {"writes": 0, "write": False},
        {"writes": 0, "write": True},
        {"writes": 1, "write": False},
    ]
    with pytest.raises(ValueError, match="METHOD /path"):
        StateRules.build(reads=["search"])


# -- dynamic values -------------------------------------------------------------------------


def _orders_recording() -> list[Interaction]:
    return [
        _interaction(0, _request("POST", "/orders", {"sku": "apple"}), {"id": "ord-1a2b"}),
        _interaction(1, _request("POST", "/orders", {"sku": "pear"}), {"id": "ord-9f8e"}),
        _interaction(2, _request("GET", "/orders/ord-1a2b"), {"id": "ord-1a2b", "sku": "apple"}),
        _interaction(3, _request("GET", "/orders/ord-9f8e"), {"id": "ord-9f8e", "sku": "pear"}),
    ]


def test_a_response_value_sent_back_later_is_detected_with_where_it_came_from() -> None:
    found = detect(_orders_recording(), DynamicRules())
    assert sorted(found) == ["ord-1a2b", "ord-9f8e"]
    assert found["ord-1a2b"].origin == "$.id of POST /orders (#1)"
    assert found["ord-1a2b"].uses == ("path segment 2 of GET /orders/ord-1a2b (#3)",)


def test_a_dynamic_value_points_at_its_own_recording_even_out_of_order() -> None:
    index = Index(_orders_recording())
    assert _body(index.lookup(_request("GET", "/orders/ord-9f8e")))["sku"] == "pear"
    assert _body(index.lookup(_request("GET", "/orders/ord-1a2b")))["sku"] == "apple"


def test_a_different_live_value_still_matches_and_comes_back_in_the_answer() -> None:
    index = Index(_orders_recording())
    answer = _body(index.lookup(_request("GET", "/orders/ord-7777")))
    assert answer == {"id": "ord-7777", "sku": "apple"}


def test_declared_rules_make_short_ids_dynamic() -> None:
    recording = [
        _interaction(0, _request("POST", "/items", {}), {"id": 17}),
        _interaction(1, _request("GET", "/items/17"), {"id": 17, "name": "x"}),
    ]
    assert detect(recording, DynamicRules()) == {}
    index = Index(recording, dynamic=DynamicRules.parse(["$.id"]))
    assert _body(index.lookup(_request("GET", "/items/21"))) == {"id": 21, "name": "x"}
    with pytest.raises(ValueError, match="dynamic value rule 'id'"):
        DynamicRules.parse(["id"])


def test_generated_request_values_are_ignored_and_echoed() -> None:
    recorded_ref = "0b7e3c1a-1111-4a4a-8b8b-000000000001"
    live_ref = "5f0e9d2c-2222-4b4b-9c9c-000000000002"
    recording = [
        _interaction(
            0,
            _request("POST", "/orders", {"ref": recorded_ref, "at": "2026-01-01T10:00:00Z"}),
            {"ref": recorded_ref, "status": "placed"},
        )
    ]
    index = Index(recording)
    live = _request("POST", "/orders", {"ref": live_ref, "at": "2027-05-05T11:11:11Z"})
    assert _body(index.lookup(live)) == {"ref": live_ref, "status": "placed"}
    strict = Index(recording, dynamic=DynamicRules.parse([], detect=False, generated=False))
    assert isinstance(strict.lookup(live), Miss)


def test_trace_context_never_matches_and_is_echoed_as_sent() -> None:
    recording = [
        _interaction(
            0,
            _request("GET", "/a", headers=(("traceparent", "00-aaaa-bbbb-01"),)),
            {"ok": True},
            headers=(("traceparent", "00-aaaa-bbbb-01"),),
        )
    ]
    index = Index(recording, MatchConfig.build(headers=["traceparent"]))
    result = index.lookup(_request("GET", "/a", headers=(("traceparent", "00-cccc-dddd-01"),)))
    assert isinstance(result, Hit) and result.response is not None
    assert result.response.header("traceparent") == "00-cccc-dddd-01"


# -- time ---------------------------------------------------------------------------------


def test_time_shift_moves_iso_http_and_epoch_dates_keeping_their_format() -> None:
    shift = TimeShift(timedelta(days=1, hours=1), fields=("valid",))
    body = (
        b'{"created_at": "2026-01-01T10:00:00.123Z", "local": "2026-01-01 10:00+02:00",'
        b' "exp": 1767261600, "valid": 1767261600000, "count": 1767261600, "day": "2026-01-01"}'
    )
    response = Response(
        200,
        headers=(
            ("Content-Type", "application/json"),
            ("Date", "Thu, 01 Jan 2026 10:00:00 GMT"),
            ("Set-Cookie", "s=1; Expires=Thu, 01 Jan 2026 10:00:00 GMT; Path=/"),
            ("Content-Length", str(len(body))),
        ),
        body=body,
    )
    moved = shift.apply(response)
    assert json.loads(moved.body or b"") == {
        "created_at": "2026-01-02T11:00:00.123Z",
        "local": "2026-01-02 11:00+02:00",
        "exp": 1767261600 + 90000,
        "valid": 1767261600000 + 90000000,
        "count": 1767261600,
        "day": "2026-01-01",
    }
    assert moved.header("Date") == "Fri, 02 Jan 2026 11:00:00 GMT"
    assert moved.header("Set-Cookie") == "s=1; Expires=Fri, 02 Jan 2026 11:00:00 GMT; Path=/"
    assert moved.header("Content-Length") == str(len(moved.body or b""))


def test_shift_target_is_now_or_an_iso_time() -> None:
    assert parse_target("2027-01-01T00:00:00Z") == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_target("2027-01-01T00:00:00").tzinfo is UTC
    with pytest.raises(ValueError, match="shift-time 'soon'"):
        parse_target("soon")


# -- GraphQL --------------------------------------------------------------------------------


def test_graphql_operations_normalise_whitespace_field_order_fragments_and_defaults() -> None:
    one = normalise(
        {
            "query": "query P($sku: String!, $limit: Int = 10) { product(sku: $sku) { price ...F } "
            "products(limit: $limit) { sku } } fragment F on Product { name sku }",
            "variables": {"sku": "apple"},
        }
    )
    two = normalise(
        {
            "query": "query P($sku: String!, $limit: Int = 10) {\n  products(limit: $limit) "
            "{ sku }\n  product(sku: $sku) { sku name price }\n}",
            "variables": {"sku": "apple", "limit": 10},
        }
    )
    assert one is not None and two is not None
    assert one.key() == two.key()
    assert one.name == "P"
    assert operation_type("mutation M { rate(sku: 1) }") == "mutation"
    assert normalise({"query": "{ broken"}) is None


def test_a_changed_graphql_variable_names_itself_in_the_near_miss() -> None:
    def graphql(sku: str) -> Request:
        return _request(
            "POST",
            "/graphql",
            {
                "query": "query Product($sku: String!) { product(sku: $sku) { name } }",
                "variables": {"sku": sku},
            },
        )

    index = Index([_interaction(0, graphql("apple"), {"data": {"product": {"name": "Apple"}}})])
    miss = index.lookup(graphql("pear"))
    assert isinstance(miss, Miss)
    report = miss.report()
    assert "GraphQL operation Product" in report
    assert 'variables.sku: recorded "apple", got "pear"' in report


def test_a_graphql_get_matches_the_same_operation_sent_by_post() -> None:
    query = "query P($sku: String!) { product(sku: $sku) { name } }"
    post = _request("POST", "/graphql", {"query": query, "variables": {"sku": "apple"}})
    index = Index([_interaction(0, post, {"data": {"product": {"name": "Apple"}}})])
    config = MatchConfig.build(match_on=["method", "path", "query", "body"])
    get_index = Index(
        [
            _interaction(
                0,
                Request(
                    "GET",
                    "http",
                    "shop",
                    80,
                    "/graphql",
                    query=(("query", query), ("variables", '{"sku": "apple"}')),
                ),
                {"data": {"product": {"name": "Apple"}}},
            )
        ],
        config,
    )
    reformatted = "query P($sku: String!) {\n  product(sku: $sku) {\n    name\n  }\n}"
    live_get = Request(
        "GET",
        "http",
        "shop",
        80,
        "/graphql",
        query=(("variables", '{"sku":"apple"}'), ("query", reformatted)),
    )
    assert _body(get_index.lookup(live_get)) == {"data": {"product": {"name": "Apple"}}}
    live_post = _request("POST", "/graphql", {"variables": {"sku": "apple"}, "query": reformatted})
    assert _body(index.lookup(live_post)) == {"data": {"product": {"name": "Apple"}}}


def test_the_recorder_counts_writes_per_session() -> None:
    counter = StateCounter(session_by=SessionBy.parse("header:X-Test-Id"))

    def stamp(method: str, worker: str) -> dict:
        return counter.stamp(_request(method, "/cart", {}, (("X-Test-Id", worker),)))

    digest_a = hashlib.sha256(b"a").hexdigest()[:16]  # never the value: it may be a cookie
    assert stamp("POST", "a") == {"writes": 0, "write": True, "session": digest_a}
    assert stamp("POST", "b")["writes"] == 0
    assert stamp("GET", "a") == {"writes": 1, "write": False, "session": digest_a}


def test_substitution_replaces_whole_values_only_and_fixes_the_length() -> None:
    from baton.replay.dynamic_values import substitute

    body = b'{"id": "ord-1", "next": "ord-12", "link": "/orders/ord-1"}'
    response = Response(
        200, headers=(("Location", "/orders/ord-1"), ("Content-Length", str(len(body)))), body=body
    )
    changed = substitute(response, {"ord-1": "ord-99"})
    assert changed.body == b'{"id": "ord-99", "next": "ord-12", "link": "/orders/ord-99"}'
    assert changed.header("Location") == "/orders/ord-99"
    assert changed.header("Content-Length") == str(len(changed.body or b""))


def test_dedupe_keeps_a_poll_and_drops_only_trailing_repeats() -> None:
    from baton.replay.hygiene import dedupe_keep, parse_age

    def answer(number: int, body: object) -> Interaction:
        return _interaction(number, _request("GET", "/job"), body)

    items = [
        answer(0, "pending"),
        answer(1, "pending"),
        answer(2, "done"),
        answer(3, "done"),
        answer(4, "done"),
    ]
    assert dedupe_keep(items) == [True, True, True, False, False]
    assert parse_age("1w3d") == 10 * 86400
    with pytest.raises(ValueError, match="older-than '90'"):
        parse_age("90")


def test_a_graphql_near_miss_names_the_fields_that_differ() -> None:
    def graphql(fields: str) -> Request:
        return _request(
            "POST", "/graphql", {"query": f"query P {{ product(sku: 1) {{ {fields} }} }}"}
        )

    index = Index([_interaction(0, graphql("name price"), {"data": {}})])
    miss = index.lookup(graphql("name rating { stars }"))
    assert isinstance(miss, Miss)
    assert "fields differ: + product.rating.stars, - product.price" in miss.report()


def test_schema_drift_names_a_removed_field_and_a_nullability_change() -> None:
    from graphql import build_schema, graphql_sync

    from baton.replay.graphql import introspection_query, schema_changes
    from tests.shop_apps import SCHEMA_V1, SCHEMA_V2

    new = graphql_sync(build_schema(SCHEMA_V2), introspection_query())
    changes = schema_changes(SCHEMA_V1, {"data": new.data})
    assert ("breaking", "field_removed", "Field Product.legacyCode was removed.") in changes
    assert (
        "value",
        "nullability_changed",
        "Product.rating changed from Float to Float!",
    ) in changes
    old = graphql_sync(build_schema(SCHEMA_V1), introspection_query())
    assert schema_changes(json.dumps({"data": old.data}), {"data": new.data}) == changes
    with pytest.raises(ValueError, match="does not parse"):
        schema_changes("type {", {"data": new.data})
