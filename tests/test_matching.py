"""Matching and the replay index, on their own (pure functions, no proxy)."""

from __future__ import annotations

import json

import pytest

from baton.cassettes import Interaction, RedactionRules, Redactor, Request, Response
from baton.replay.index import ExhaustedPolicy, Hit, Index, Miss
from baton.replay.matching import MatchConfig, SecretPolicy

KEY = bytes(range(32))


def req(
    path: str = "/items",
    *,
    method: str = "GET",
    query: tuple = (),
    body: bytes = b"",
    headers: tuple = (),
    host: str = "api.test",
) -> Request:
    return Request(method, "http", host, 80, path, query, "HTTP/1.1", headers, body)


def recorded(*requests: Request) -> list[Interaction]:
    return [
        Interaction(f"id-{n}", r, Response(200, body=b"answer %d" % n), float(n))
        for n, r in enumerate(requests)
    ]


def answer(result: Hit | Miss) -> bytes:
    assert isinstance(result, Hit), result.report() if isinstance(result, Miss) else result
    return result.interaction.response.body


JSON = (("Content-Type", "application/json"),)


def test_json_key_order_and_whitespace_do_not_matter_but_values_do() -> None:
    index = Index(recorded(req(method="POST", body=b'{"a": 1, "b": {"c": [1, 2]}}', headers=JSON)))
    same = req(method="POST", body=b'{"b":{"c":[1,2]},\n "a":1}', headers=JSON)
    assert answer(index.lookup(same)) == b"answer 0"
    changed = req(method="POST", body=b'{"a": 1, "b": {"c": [1, 3]}}', headers=JSON)
    miss = index.lookup(changed)
    assert isinstance(miss, Miss)
    report = miss.report()
    assert "POST /items" in report
    assert "b.c[1]: recorded 2, got 3" in report


def test_query_is_a_multiset() -> None:
    index = Index(recorded(req(query=(("a", "1"), ("b", "2"), ("a", "3")))))
    assert answer(index.lookup(req(query=(("b", "2"), ("a", "3"), ("a", "1"))))) == b"answer 0"
    miss = index.lookup(req(query=(("a", "1"), ("b", "2"))))
    assert isinstance(miss, Miss)
    assert "query: recorded a=1&a=3&b=2 | got a=1&b=2" in miss.report()


def test_identical_requests_are_answered_in_recorded_order_then_by_policy() -> None:
    interactions = recorded(req(), req(), req())
    index = Index(interactions)
    assert [answer(index.lookup(req())) for _ in range(5)] == [
        b"answer 0",
        b"answer 1",
        b"answer 2",
        b"answer 2",
        b"answer 2",
    ]
    strict = Index(interactions, on_exhausted=ExhaustedPolicy.STRICT)
    assert [answer(strict.lookup(req())) for _ in range(3)] == [
        b"answer 0",
        b"answer 1",
        b"answer 2",
    ]
    miss = strict.lookup(req())
    assert isinstance(miss, Miss) and "all 3 recorded answers were used" in miss.report()
    assert strict.summary() == "3 hits, 1 miss, 0 of 3 recorded interactions unused"


def test_address_matchers_are_dropped_in_reverse_mode() -> None:
    interactions = recorded(req(host="catalog.internal"))
    assert isinstance(Index(interactions).lookup(req(host="127.0.0.1")), Miss)
    reverse = MatchConfig.build(address=False)
    assert isinstance(Index(interactions, reverse).lookup(req(host="127.0.0.1")), Hit)


def test_redacted_secrets_match_any_credential_unless_asked_otherwise() -> None:
    redactor = Redactor(RedactionRules.build(), KEY)
    original = recorded(
        req(
            query=(("access_token", "tok-alice-1"),),
            headers=(("Authorization", "Bearer tok-alice-1"),),
        )
    )
    stored = [redactor.redact(i) for i in original]
    config = MatchConfig.build(headers=["Authorization"])
    index = Index(stored, config)
    bob = req(
        query=(("access_token", "tok-bob-22"),), headers=(("Authorization", "Bearer tok-bob-22"),)
    )
    assert isinstance(index.lookup(bob), Hit)

    strict = MatchConfig.build(
        headers=["Authorization"], secrets=SecretPolicy(placeholder=redactor.placeholder)
    )
    by_user = Index(stored, strict)
    assert isinstance(by_user.lookup(bob), Miss)
    alice = req(
        query=(("access_token", "tok-alice-1"),), headers=(("Authorization", "Bearer tok-alice-1"),)
    )
    assert isinstance(by_user.lookup(alice), Hit)


def test_fields_redacted_by_a_user_rule_are_learned_from_the_cassette() -> None:
    redactor = Redactor(RedactionRules.build(fields=["session"]), KEY)
    stored = [
        redactor.redact(i) for i in recorded(req(query=(("session", "s-12345"), ("page", "1"))))
    ]
    index = Index(stored)  # replay knows nothing of the recording's rules
    assert isinstance(index.lookup(req(query=(("session", "other-999"), ("page", "1")))), Hit)


def test_ignored_query_names_and_json_fields() -> None:
    body = json.dumps({"order": 7, "meta": {"sent_at": "2026-01-01T00:00:00Z"}}).encode()
    config = MatchConfig.build(ignore_query=["ts"], ignore_fields=["$.meta.sent_at"])
    index = Index(
        recorded(req(method="POST", query=(("ts", "1"),), body=body, headers=JSON)), config
    )
    later = json.dumps({"order": 7, "meta": {"sent_at": "2026-06-30T12:00:00Z"}}).encode()
    assert isinstance(
        index.lookup(req(method="POST", query=(("ts", "999"),), body=later, headers=JSON)), Hit
    )


def test_match_on_picks_the_matchers_and_unknown_ones_are_refused() -> None:
    index = Index(
        recorded(req(query=(("a", "1"),))), MatchConfig.build(match_on=["method", "path"])
    )
    assert isinstance(index.lookup(req(query=(("a", "2"),))), Hit)
    with pytest.raises(ValueError, match="unknown matcher 'verb'"):
        MatchConfig.build(match_on=["verb"])


def test_unused_interactions_are_reported() -> None:
    index = Index(recorded(req("/a"), req("/b")))
    index.lookup(req("/a"))
    assert [i.request.path for i in index.unused()] == ["/b"]


def test_a_miss_names_the_closest_recorded_request_first() -> None:
    index = Index(recorded(req("/orders"), req("/items", query=(("id", "2"),)), req("/users")))
    miss = index.lookup(req("/items", query=(("id", "3"),)))
    assert isinstance(miss, Miss)
    assert miss.near[0][0].path == "/items"
    assert [m.matcher for m in miss.near[0][1]] == ["query"]


def test_a_miss_on_another_port_is_explained_with_both_ports() -> None:
    """The port's key part is an int: the near-miss report showed a TypeError instead."""
    index = Index(recorded(req("/items")))
    other = Request("GET", "http", "api.test", 8080, "/items", (), "HTTP/1.1", (), b"")
    miss = index.lookup(other)
    assert isinstance(miss, Miss)
    assert "port: recorded 80 | got 8080" in miss.report()
