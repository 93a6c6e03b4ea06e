"""What makes ``baton diff`` fast stays right: kept-alive connections, and every shortcut
classifies (and reports) exactly as the full path does."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from baton.cassettes import CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from baton.formats import import_file
from baton.replay.comparison import (
    Change,
    DriftClass,
    NoiseRules,
    _compare_in_full,
    compare_responses,
    endpoint_of,
)
from baton.replay.drift import DriftReport, Outcome, diff_cassettes
from baton.replay.dynamic_values import (
    DynamicRules,
    DynamicValue,
    _origin,
    _place,
    _quick_request_tokens,
    _quick_response_values,
    detect,
    request_tokens,
)
from baton.replay.report import render, report_json
from baton.replay.sharding import Shard, ShardInfo
from tests.processes import run_baton

BODY = b'{"items": [{"id": 1, "name": "one"}]}'


class _CountingServer:
    """HTTP/1.1 on 127.0.0.1 in a thread, keep-alive, counting connections and requests."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (len(BODY), BODY)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def counting() -> Iterator[_CountingServer]:
    server = _CountingServer()
    yield server
    server.stop()


def _write_gets(path: Path, count: int) -> None:
    with CassetteWriter(path, redactor=None) as writer:
        for n in range(1, count + 1):
            writer.append(
                Interaction(
                    str(n),
                    Request("GET", "http", "api.test", 80, f"/items/{n}"),
                    Response(200, "OK", headers=(("Content-Type", "application/json"),), body=BODY),
                    float(n),
                )
            )


def test_re_sent_requests_share_kept_alive_connections(
    counting: _CountingServer, tmp_path: Path
) -> None:
    # httptools forgets whether an answer allows keep-alive once feed_data returns: asked
    # after it, every request opened (and the build accepted) a connection of its own.
    cassette = tmp_path / "gets.cassette"
    _write_gets(cassette, 40)
    done = run_baton(
        ["diff", str(cassette), "--target", f"http://127.0.0.1:{counting.port}",
         "--concurrency", "2", "--format", "json"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["compared"] == 40
    assert counting.requests == 40
    # One connection for the reachability check, at most two for the requests.
    assert counting.connections <= 3


# -- dynamic value detection: only what some request sends is offered ------------------------

CORPUS = Path(__file__).resolve().parent / "corpus"


def _reference_detect(
    interactions: Sequence[Interaction], rules: DynamicRules
) -> dict[str, DynamicValue]:
    """``detect`` as it was before it offered only the values some request sends."""
    offered: dict[str, int] = {}
    found: dict[str, DynamicValue] = {}
    looking = rules.detect or rules.response_paths or rules.response_headers or rules.cookies
    for number, interaction in enumerate(interactions):
        request = interaction.request
        if offered and any(token in offered for token in _quick_request_tokens(request)):
            for location, token in request_tokens(request):
                source = offered.get(token)
                if source is None:
                    continue
                use = f"{_place(location)} of {request.method} {request.path} (#{number + 1})"
                known = found.get(token)
                if known is None:
                    found[token] = DynamicValue(
                        token, _origin(token, interactions[source], source, rules), (use,)
                    )
                elif len(known.uses) < 20:
                    found[token] = replace(known, uses=(*known.uses, use))
        response = interaction.response
        if not looking or response is None or response.chunks is not None:
            continue
        if response.stored is not None:
            continue
        for value in _quick_response_values(response, rules):
            offered.setdefault(value, number)
    return found


def _json_exchange(
    number: int, method: str, path: str, sent: bytes | None, answer: bytes, headers: tuple = ()
) -> Interaction:
    request_headers = (("Content-Type", "application/json"),) if sent is not None else ()
    return Interaction(
        str(number),
        Request(method, "http", "shop", 80, path, headers=request_headers, body=sent or b""),
        Response(200, "OK", headers=(("Content-Type", "application/json"), *headers), body=answer),
        float(number),
    )


def _tricky_recording() -> list[Interaction]:
    """Values sent back in every place a request holds them, spelled every way JSON allows."""
    return [
        _json_exchange(1, "POST", "/orders", b'{"sku": "apple"}', b'{"id": "ord-1a2b"}'),
        _json_exchange(2, "GET", "/orders/ord-1a2b", None, b'{"id": "ord-1a2b", "n": 12345678}'),
        # sent back inside a JSON body, once with an escape the quick search cannot see
        _json_exchange(3, "POST", "/pay", b'{"order": "\\u006frd-1a2b"}', b'{"token": "tok-77aa"}'),
        _json_exchange(4, "POST", "/pay", b'{"n": [12345678], "t": "tok-77aa"}', b"{}"),
        # padded: the quick search's strings misalign, so neither version offers it
        _json_exchange(5, "GET", "/p", None, b'{"a": "xy",     "ref": "ref-0042zz"}'),
        _json_exchange(6, "PUT", "/p", b'["xy",     "ref-0042zz"]', b"{}"),
        # headers: ETag, Location, a cookie; sent back in If-Match, a path, a Cookie header
        _json_exchange(
            7,
            "POST",
            "/docs",
            b"{}",
            b"{}",
            (
                ("ETag", 'W/"v-9f9f9f"'),
                ("Location", "/docs/d-31337"),
                ("Set-Cookie", "sid=s3ss10n99; Path=/"),
            ),
        ),
        Interaction(
            "8",
            Request(
                "GET",
                "http",
                "shop",
                80,
                "/docs/d-31337",
                query=(("v", "v-9f9f9f"),),
                headers=(("If-Match", '"v-9f9f9f"'), ("Cookie", "sid=s3ss10n99")),
            ),
            Response(200, "OK", headers=(("Content-Type", "application/json"),), body=b"{}"),
            8.0,
        ),
        # non-ASCII, and a value in a query string
        _json_exchange(9, "GET", "/u", None, '{"name": "zoë-1234"}'.encode()),
        _json_exchange(10, "GET", "/u/zo%C3%AB-1234", None, b"{}"),
        _json_exchange(11, "GET", "/search", None, b'{"cursor": "c_0987"}'),
        Interaction(
            "12",
            Request("GET", "http", "shop", 80, "/search", query=(("cursor", "c_0987"),)),
            Response(200, "OK", headers=(("Content-Type", "application/json"),), body=b"{}"),
            12.0,
        ),
    ]


@functools.cache
def _corpus_recordings() -> list[list[Interaction]]:
    recordings = [_tricky_recording()]
    for path in sorted(CORPUS.rglob("*")):
        if path.suffix in (".har", ".yaml", ".json", ".mitm", ".zhar"):
            try:
                recordings.append(import_file(path)[1].interactions)
            except Exception:  # a file the importers refuse has nothing to detect
                continue
    return recordings


@pytest.mark.parametrize(
    "rules",
    [
        DynamicRules(),
        DynamicRules.parse(["$.id", "$.n", "header:ETag", "cookie:sid"]),
        DynamicRules(detect=False),
    ],
    ids=["detected", "declared", "off"],
)
def test_detection_finds_what_it_found_before_on_the_corpus(rules: DynamicRules) -> None:
    recordings = _corpus_recordings()
    assert len(recordings) > 15
    for recording in recordings:
        assert detect(recording, rules) == _reference_detect(recording, rules)
    if rules.detect:
        found = detect(_tricky_recording(), rules)
        assert {"ord-1a2b", "tok-77aa", "v-9f9f9f", "d-31337", "zoë-1234", "c_0987"} <= set(found)


# -- the JSON report: the fast writer is json.dumps(indent=2), byte for byte -----------------


def _varied_report() -> DriftReport:
    changes = [
        Change(DriftClass.BREAKING, "field_removed", "body.items[0].price", 11.0, None),
        Change(DriftClass.VALUE, "value_changed", "body.name", "zoë\n<b>", "zoe\t\u2028"),
        Change(DriftClass.NOISE, "header_changed", "header.x-id", ["a"], ["b"], "learned"),
        Change(DriftClass.VALUE, "binary_changed", "body", b"\x00\xff", {"k": [1, 2.5, None]}),
    ]
    outcomes = [
        Outcome(1, "1", "GET", "/a?q=1", "GET /a", "compared", 200, 200),
        Outcome(2, 'id-\u00e9"\\', "GET", "/b\n", "GET /b", "compared", 200, 500, changes),
        Outcome(3, "3", "POST", "/c", "POST /c", "skipped", 201, None, note="not re-sent: \u2603"),
        Outcome(4, "4", "GET", "/d", "GET /d", "only-in-old", None, None, note="x"),
        Outcome(5, "5", "GET", "/e", "GET /e", "compared", 204, 204, [], 'note "q"'),
    ]
    report = DriftReport("old.cassette", "http://127.0.0.1:1", outcomes=outcomes, insecure=True)
    report.recorded = 5
    return report


def test_the_json_report_is_written_as_json_dumps_writes_it(tmp_path: Path) -> None:
    report = _varied_report()
    assert (
        render(report, "json")
        == json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n"
    )
    empty = DriftReport("a", "b")
    assert (
        render(empty, "json") == json.dumps(report_json(empty), indent=2, ensure_ascii=False) + "\n"
    )
    # A shard's report (the section after the interactions) and a real run over the corpus.
    recording = [i for r in _corpus_recordings() for i in r]
    real = diff_cassettes(recording, recording[::2], shard=Shard(1, 2))
    real.shard = ShardInfo(
        Shard(1, 2), [{"path": "x", "size": 1}], 9, False, {"GET /a": ["body.x"]}
    )
    assert real.outcomes
    assert (
        render(real, "json") == json.dumps(report_json(real), indent=2, ensure_ascii=False) + "\n"
    )


# -- comparison: equal answers take a shortcut; it must agree with the full comparison ---------


def test_the_shortcut_for_equal_answers_agrees_with_the_full_comparison() -> None:
    rules = NoiseRules(paths=["body.id"], ignore_order=True)
    pairs = 0
    for recording in [*_corpus_recordings(), _tricky_recording()]:
        for interaction in recording:
            recorded = interaction.response
            if recorded is None:
                continue
            variants = [
                replace(recorded),  # equal, another object (as read from a second cassette)
                replace(recorded, status=recorded.status + 1),
                replace(recorded, headers=(*recorded.headers, ("X-New", "1"))),
                replace(recorded, headers=recorded.headers[1:]),
                # headers never compared, added or changed; names in another case or order
                replace(recorded, headers=(*recorded.headers, ("Date", "now"), ("server", "x"))),
                replace(recorded, headers=tuple((n.upper(), v) for n, v in recorded.headers)),
                replace(recorded, headers=recorded.headers[::-1]),
                replace(
                    recorded,
                    headers=(
                        ("Content-Type", "text/event-stream"),
                        *recorded.headers,
                        ("Age", "1"),
                    ),
                ),
                replace(recorded, headers=(*recorded.headers, ("Date", "now")), status=500),
            ]
            if recorded.body is not None:
                variants.append(replace(recorded, body=recorded.body + b" "))
                variants.append(replace(recorded, body=b'{"id": 1, "items": [2, 1]}'))
            for fresh in variants:
                endpoint = endpoint_of(interaction.request.method, interaction.request.path)
                full = _compare_in_full(recorded, fresh, endpoint, rules)
                assert compare_responses(recorded, fresh, endpoint, rules) == full
                pairs += 1
            assert _compare_in_full(recorded, replace(recorded), "GET /", rules) == []
    assert pairs > 1500


# -- pairing two recordings: by position while the requests agree, else the replay index ------


def _tagged(recording: list[Interaction], writes: int, write: bool) -> list[Interaction]:
    state = {"writes": writes, "write": write, "session": ""}
    return [replace(i, tags={**i.tags, "state": state}) for i in recording]


def _crafted(recording: list[Interaction]) -> Iterator[list[Interaction]]:
    """New recordings to pair with ``recording``: equal, each kind of answer change, and
    requests that differ (dropped, added, moved, repeated, changed), so pairing falls back."""
    yield [replace(i) for i in recording]  # equal, other objects (as a second file reads them)
    answered = [n for n, i in enumerate(recording) if i.response is not None]
    for n in answered[:2] + answered[-1:]:
        response = recording[n].response
        assert response is not None
        body = response.body or b""
        changes = [
            replace(response, status=response.status + 100),
            replace(response, headers=(*response.headers, ("X-Added", "1"))),
            replace(response, body=body.replace(b'"', b'"renamed_', 1)),
            replace(response, body=b'{"id": "1", "items": {}}'),  # a type change, most likely
        ]
        for changed in changes:
            yield [*recording[:n], replace(recording[n], response=changed), *recording[n + 1 :]]
    if len(recording) > 2:
        middle = len(recording) // 2
        moved = replace(recording[middle], request=replace(recording[middle].request, path="/x"))
        yield [*recording[:middle], moved, *recording[middle + 1 :]]
        yield recording[:middle] + recording[middle + 1 :]  # one dropped
        yield [*recording[:middle], recording[-1], *recording[middle:]]  # one added, a repeat
        yield recording[::-1]
    yield recording + recording  # every request twice: queues of two
    yield recording[: len(recording) // 2]  # the new recording ends first
    yield _tagged(recording, 0, False)
    yield _tagged(recording, 1, False)  # state: always the index
    # recorded in states that send the replay index elsewhere than the request's own place
    yield [
        replace(i, tags={"state": {"writes": len(recording) - n, "write": n % 2 == 0}})
        for n, i in enumerate(recording)
    ]


def test_pairing_by_position_pairs_as_the_replay_index_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every report equals the one pairing by the index alone, on the corpus and crafted
    recordings; and recordings that agree request for request build no index."""
    import baton.replay.drift as drift
    from baton.replay.index import Index

    built: list[int] = []
    new_index = drift._new_index

    def counted(interactions: list[Interaction]) -> Index:
        built.append(len(interactions))
        return new_index(interactions)

    monkeypatch.setattr(drift, "_new_index", counted)
    rules = NoiseRules(paths=["body.id"])
    reports = 0
    for whole in _corpus_recordings():
        recording = whole[:30]  # the largest has 292: its first 30 show as much, in less time
        cases = [(recording, new, {}) for new in _crafted(recording)]
        cases.append((_tagged(recording, 0, False), _tagged(recording, 0, False), {}))
        for new in (recording, recording[::-1]):
            cases += [
                (recording, new, {"shard": Shard(1, 2)}),
                (recording, new, {"only": ["GET *"]}),
            ]
        for old, new, options in cases:
            built.clear()
            fast = report_json(diff_cassettes(old, new, rules=rules, **options))
            if [i.request for i in old] == [i.request for i in new] and not any(
                "state" in i.tags and i.tags["state"]["writes"] for i in new
            ):
                assert built == [], "equal requests in order are paired without an index"
            with monkeypatch.context() as without:
                without.setattr(drift, "_pairs_in_order", lambda new: False)
                slow = report_json(diff_cassettes(old, new, rules=rules, **options))
            assert fast == slow
            reports += 1
    assert reports > 500


def test_endpoints_fold_the_segments_they_folded_before() -> None:
    """endpoint_of skips its regexes for short segments: the same folding as trying them all."""
    import random

    from baton.replay.comparison import _ID, _UUID

    def before(method: str, path: str) -> str:
        segments = [
            "{id}" if s.isdecimal() or _UUID.match(s) or _ID.match(s) else s
            for s in path.split("/")
        ]
        return f"{method.upper()} {'/'.join(segments) or '/'}"

    shapes = random.Random(17)
    letters = "0123456789abcdefABCDEF-_xyzé٣\n "
    paths = ["", "/", "/items/12", "/a/123\n", "/x/\n", "/u/" + "0" * 15 + "\n", "/p/" + "a" * 20]
    paths.append("/o/123e4567-e89b-12d3-a456-426614174000/x/deadbeefdeadbeef")
    for _ in range(4000):
        size = shapes.randrange(0, 40)
        paths.append("/v/" + "".join(shapes.choice(letters) for _ in range(size)))
    for path in paths:
        assert endpoint_of("get", path) == before("get", path), repr(path)


def test_requests_are_re_sent_with_the_headers_they_were_before() -> None:
    """outgoing_request keeps the headers to send per recorded set: the same as computing them."""
    from urllib.parse import urlencode

    from baton.cassettes.redaction import PLACEHOLDER_PATTERN
    from baton.replay.drift import _NOT_FORWARDED, outgoing_request

    def before(request: Request, supplied: dict[str, str]) -> tuple[object, str]:
        headers, dropped = [], []
        for name, value in request.headers:
            lowered = name.lower()
            if lowered in _NOT_FORWARDED or lowered.startswith(":") or lowered in supplied:
                continue
            if PLACEHOLDER_PATTERN.search(value):
                dropped.append(lowered)
                continue
            headers.append((name, value))
        headers += list(supplied.items())
        if any(PLACEHOLDER_PATTERN.search(v) for _, v in request.query):
            return None, "query"
        if request.stored is not None or (
            request.body and PLACEHOLDER_PATTERN.search(request.body.decode("latin-1"))
        ):
            return None, "body"
        target = request.path + ("?" + urlencode(list(request.query)) if request.query else "")
        note = ", ".join(sorted(set(dropped)))
        return (request.method, target, tuple(headers), request.body or b""), note

    secret = "REDACTED-0123456789abcdef"
    requests = [i.request for r in _corpus_recordings() for i in r]
    requests += [
        Request("GET", "http", "h", 80, "/", headers=(("X-Key", secret), ("Cookie", secret))),
        Request("GET", "http", "h", 80, "/", headers=[("Accept", "*/*"), ("Host", "h")]),  # type: ignore[arg-type]
        Request("GET", "http", "h", 80, "/", query=(("k", secret),)),
    ]
    for supplied in ({}, {"x-key": "v", "accept": "text/plain"}, {"cookie": "c=1"}):
        for request in requests * 2:  # the second time from what was kept
            outgoing, note = outgoing_request(request, supplied)
            expected, expected_note = before(request, supplied)
            if outgoing is None:
                assert expected is None
                continue
            sent = (outgoing.method, outgoing.target, outgoing.headers, outgoing.body)
            assert sent == expected
            assert (expected_note in note) if expected_note else note == ""
