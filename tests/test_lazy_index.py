"""Opening from the index record's columns (layout 2) gives the very replay index a full read gives.

A plain request (no query, no body, no header a value could sit in) is
placed from its method, address and path without being built; anything else
is built from its head, and a cassette whose requests send a recorded value
back is read in full. Each case is compared with the ``Index`` built from
``read_cassette``: keys, captures, states, queues, dynamic values, and what
a run of lookups answers.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from baton.cassettes import CassetteError, CassetteWriter, read_cassette
from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.reader import InteractionTable, load_indexed, load_lazily
from baton.replay.dynamic_values import DynamicRules
from baton.replay.index import Hit, Index
from baton.replay.options import ReplayOptions, recorded_origins
from tests.test_cassette_format2 import conversation, streamed

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_1_WRITER = "bb00be5"  # the last commit whose writer wrote index layout 1
UUID = "550e8400-e29b-41d4-a716-446655440000"


def exchange(
    n: int,
    method: str = "GET",
    path: str | None = None,
    *,
    query: tuple[tuple[str, str], ...] = (),
    headers: tuple[tuple[str, str], ...] = (("Host", "api.test"), ("Accept", "*/*")),
    body: bytes = b"",
    answer_headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
    state: dict[str, Any] | None = None,
) -> Interaction:
    request = Request(
        method, "http", "api.test", 80, path or f"/items/{n}", query, "HTTP/1.1", headers, body
    )
    return Interaction(
        f"id-{n}",
        request,
        Response(200, "OK", headers=answer_headers, body=b'{"n": %d}' % n),
        1.7e9 + n,
        1.0,
        tags={"state": state} if state is not None else {},
    )


def varied(*, sends_a_value_back: bool = False, id_in_a_path: bool = False) -> list[Interaction]:
    """Plain and not, repeated, stateful, errors, streams, messages; an id-like path
    segment or a value sent back make ``detect`` read every body (the full read)."""
    items = [
        exchange(0),
        exchange(1, state={"writes": 0, "write": False}),
        exchange(2, "POST", "/items", body=b'{"name": "x"}', state={"writes": 0, "write": True}),
        exchange(3, path="/items/1", state={"writes": 1, "write": False}),
        exchange(4, path="/items/1", state={"writes": 1, "write": False, "session": "ab12"}),
        exchange(5, path=f"/orders/{UUID}" if id_in_a_path else "/orders/5"),
        exchange(6, path="/search", query=(("q", "shoes"),)),
        exchange(
            7, headers=(("Host", "api.test"), ("Authorization", "Bearer REDACTED-0123456789abcdef"))
        ),
        exchange(8, path="/Items/%7E8", answer_headers=(("ETag", '"v8"'),)),
        exchange(9, "get", "/items/9/"),
        exchange(10, path="/items/0"),  # the same key as the first
        Interaction(
            "id-11",
            Request("GET", "http", "api.test", 80, "/down"),
            None,
            1.7e9 + 11,
            error="refused",
        ),
        streamed([(0.0, b"data: 1\n\n")]),
        conversation(),
    ]
    if sends_a_value_back:
        items.append(exchange(12, headers=(("Host", "api.test"), ("If-None-Match", '"v8"'))))
    return items


def write(path: Path, items: list[Interaction]) -> Path:
    with CassetteWriter(path, redactor=None) as writer:
        for item in items:
            writer.append(item)
    return path


def queues(index: Index) -> dict[Any, tuple[Any, ...]]:
    out = {}
    for key in list(index._queues):
        queue = index._queue(key)
        assert queue is not None
        out[key] = (queue.numbers, queue.by_state, queue.untagged, queue.states)
    return out


def answers(index: Index, requests: list[Request]) -> list[Any]:
    out: list[Any] = []
    for request in requests:
        found = index.lookup(request)
        if isinstance(found, Hit):
            response = found.response or found.interaction.response
            out.append((found.number, found.repeated, response))
        else:
            out.append(found.report())
    return out


def same_index(first: Index, second: Index) -> None:
    assert list(first.interactions) == list(second.interactions)
    assert first._keys == second._keys
    assert first._captures == second._captures
    assert [first._states[n] for n in range(len(first))] == [
        second._states[n] for n in range(len(second))
    ]
    assert first.dynamic_values == second.dynamic_values
    assert first.config == second.config
    assert first.time_shift == second.time_shift
    assert queues(first) == queues(second)


OPTIONS = [
    ReplayOptions(),
    ReplayOptions(match_on=("method", "path")),
    ReplayOptions(state=False),
    ReplayOptions(detect_dynamic=False),
    ReplayOptions(shift_time="2030-01-01T00:00:00Z"),
    ReplayOptions(match_headers=("accept",)),
    ReplayOptions(ignore_query=("q",)),
]


@pytest.mark.parametrize("case", ["columns", "id in a path", "a value sent back"])
def test_the_index_from_columns_is_the_index_of_a_full_read(tmp_path: Path, case: str) -> None:
    items = varied(sends_a_value_back=case == "a value sent back", id_in_a_path=case != "columns")
    path = write(tmp_path / "a.cassette", items)
    full = read_cassette(path)
    asked = [i.request for i in full] + [full[0].request, full[3].request]
    asked.append(Request("GET", "http", "api.test", 80, f"/orders/{UUID.replace('5', '6')}"))
    asked.append(Request("DELETE", "http", "api.test", 80, "/nothing"))
    for options in OPTIONS:
        for address in (False, True):
            opened = options.load([path], address=address)
            from_columns = not options.match_headers and (
                case == "columns" or not options.detect_dynamic
            )
            assert isinstance(opened.interactions, InteractionTable) is from_columns
            same_index(opened, options.index(full, address=address))
            expected = answers(options.index(full, address=address), asked)
            assert answers(opened, asked) == expected, (options, address)
    # Generated values by shape (a UUID in a path) without detection: from the columns too.
    rules = DynamicRules(detect=False)
    by_shape = Index(load_indexed(path), dynamic=rules)
    assert isinstance(by_shape.interactions, InteractionTable)
    same_index(by_shape, Index(full, dynamic=rules))
    assert answers(by_shape, asked) == answers(Index(full, dynamic=rules), asked)
    assert any(by_shape._captures) is (case != "columns")
    found = ReplayOptions().load([path], address=False).dynamic_values
    assert (found != {}) is (case == "a value sent back")


def test_plain_requests_open_without_being_built_or_their_bodies_read(tmp_path: Path) -> None:
    items = [exchange(n, path=f"/items/{n % 40}") for n in range(100)]
    path = write(tmp_path / "a.cassette", items)
    index = ReplayOptions().load([path], address=False)
    table = index.interactions
    assert isinstance(table, InteractionTable)
    assert not any(table.built(n) for n in range(len(table)))
    hit = index.lookup(items[7].request)
    assert isinstance(hit, Hit) and hit.number == 7
    assert [n for n in range(len(table)) if table.built(n)] == [7]
    assert hit.interaction.response is not None and hit.interaction.response.body == b'{"n": 7}'
    assert recorded_origins([path]) == {"http://api.test"}
    assert not any(table.built(n) for n in range(len(table)) if n != 7)


def test_a_cassette_indexed_by_the_layout_1_writer_still_opens_from_its_record(
    tmp_path: Path,
) -> None:
    older = tmp_path / "older"
    older.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", LAYOUT_1_WRITER, "baton", "cassettes"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(older)], input=archive.stdout, check=True)
    path = tmp_path / "layout1.cassette"
    script = (
        "import pickle, sys\n"
        "from baton.cassettes.writer import CassetteWriter\n"
        "items = pickle.load(sys.stdin.buffer)\n"
        f"with CassetteWriter({str(path)!r}, redactor=None) as writer:\n"
        "    for item in items:\n"
        "        writer.append(item)\n"
    )
    import pickle

    items = varied()
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=older,
        env={"PYTHONPATH": str(older)},
        input=pickle.dumps(items),
        check=True,
        timeout=60,
    )
    opened = load_lazily(path)
    assert opened.source == "index"
    assert opened.interactions == read_cassette(path) == items
    index = ReplayOptions().load([path], address=False)
    same_index(index, ReplayOptions().index(read_cassette(path), address=False))


def test_damage_to_the_columns_only_ever_scans_or_refuses(tmp_path: Path) -> None:
    path = write(tmp_path / "a.cassette", varied())
    clean = path.read_bytes()
    start = int.from_bytes(clean[-8:], "big")
    expected = read_cassette(path)
    damaged = tmp_path / "damaged.cassette"
    rng = random.Random(29)
    for _ in range(150):
        data = bytearray(clean)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(start, len(data))] = rng.randrange(256)
        damaged.write_bytes(bytes(data))
        try:
            table = load_indexed(damaged)
            assert list(table) == expected
        except CassetteError:
            continue


def test_several_cassettes_indexed_and_scanned_open_as_one_index(tmp_path: Path) -> None:
    first = write(tmp_path / "first.cassette", varied())
    second = write(tmp_path / "second.cassette", [exchange(n) for n in range(20, 30)])
    scanned = tmp_path / "scanned.cassette"
    scanned.write_bytes(second.read_bytes()[: int.from_bytes(second.read_bytes()[-8:], "big")])
    paths = [first, scanned, second]
    full = [i for path in paths for i in read_cassette(path)]
    opened = ReplayOptions().load(paths, address=True)
    assert isinstance(opened.interactions, InteractionTable)
    same_index(opened, ReplayOptions().index(full, address=True))
    asked = [i.request for i in full]
    assert answers(opened, asked) == answers(ReplayOptions().index(full, address=True), asked)


def test_what_keeps_workers_out_is_found_alike_from_columns(tmp_path: Path) -> None:
    from baton.replay.answer_cache import order_dependence

    reads = [exchange(n) for n in range(30)]
    cases = {
        "reads only": reads,
        "a write without a state tag": [*reads, exchange(30, "post", "/items/new")],
        "a write recorded as one": [*reads, exchange(31, state={"writes": 0, "write": True})],
        "a read recorded as one": [exchange(32, "DELETE", state={"writes": 0, "write": False})],
    }
    found = {}
    for name, items in cases.items():
        path = write(tmp_path / f"{len(found)}.cassette", items)
        opened = ReplayOptions().load([path], address=False)
        assert isinstance(opened.interactions, InteractionTable)
        found[name] = order_dependence(opened)
        assert found[name] == order_dependence(
            ReplayOptions().index(read_cassette(path), address=False)
        )
    assert found == {
        "reads only": None,
        "a write without a state tag": (
            "stateful replay counts writes (post /items/new is one); --no-state turns it off"
        ),
        "a write recorded as one": (
            "stateful replay counts writes (GET /items/31 is one); --no-state turns it off"
        ),
        "a read recorded as one": None,
    }
