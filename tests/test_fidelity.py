"""Replay that behaves like the service: a shop recorded once through ``baton record``, replayed
with new client-generated ids, reordered reads, two sessions at once and the clock a year on.

The shop (tests/shop_apps.py) hands out a login token, keeps a cart per login, and gives
orders generated ids, ETags and times. Every step of the replayed scenario is checked against
what that service itself answers, not against the cassette alone.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from baton.cassettes import read_cassette
from baton.replay.state import recorded_state
from tests.processes import BatonProcess, run_baton, start_baton, start_upstream


@dataclass
class Recording:
    cassette: Path
    answers: list[tuple[str, int, Any]]
    """(step, status, JSON body) as the real shop answered while recorded."""


def scenario(
    base: str, *, headers: dict[str, str] | None = None, extra_reads: bool = False
) -> list[tuple[str, int, Any]]:
    """Log in, fill the cart, order, change the order; every answer, in order.

    The client generates its own ids (a request id per cart line, the order's client
    reference, its placing time), fresh each run, as real clients do.
    """
    answers: list[tuple[str, int, Any]] = []
    with httpx.Client(base_url=base, headers=headers or {}, trust_env=False, timeout=10) as client:

        def step(name: str, response: httpx.Response) -> Any:
            body = response.json() if response.content else None
            answers.append((name, response.status_code, body))
            return body

        login = step("login", client.post("/login", json={"user": "ann", "password": "pw"}))
        client.headers["Authorization"] = f"Bearer {login['token']}"
        if extra_reads:  # reads the recording never made here, repeated and out of order
            step("products early", client.get("/products"))
            step("cart early", client.get("/cart"))
        step("cart empty", client.get("/cart"))
        step("products", client.get("/products"))
        apple = {"sku": "apple", "qty": 2, "request_id": str(uuid.uuid4())}
        step("add apple", client.post("/cart/items", json=apple))
        step("cart with apple", client.get("/cart"))
        if extra_reads:
            step("cart with apple again", client.get("/cart"))
        pear = {"sku": "pear", "qty": 1, "request_id": str(uuid.uuid4())}
        step("add pear", client.post("/cart/items", json=pear))
        step("cart with two", client.get("/cart"))
        placed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        client_ref = str(uuid.uuid4())
        order = step(
            "order",
            client.post("/orders", json={"client_ref": client_ref, "placed_at": placed_at}),
        )
        order_url = f"/orders/{order['id']}"
        fetched = client.get(order_url)
        step("order fetched", fetched)
        etag = fetched.headers["etag"]
        step(
            "cancel",
            client.patch(order_url, json={"status": "cancelled"}, headers={"If-Match": etag}),
        )
        step("order cancelled", client.get(order_url))
        step("cart after order", client.get("/cart"))
    return answers


def check_like_the_shop(answers: list[tuple[str, int, Any]]) -> None:
    """What the real shop guarantees, step by step, whoever answered."""
    by_step = {name: (status, body) for name, status, body in answers}
    assert [s for _, s, _ in answers if s >= 400] == []
    assert by_step["cart empty"][1] == {"items": [], "total": 0}
    apple = by_step["cart with apple"][1]
    assert [(i["sku"], i["qty"]) for i in apple["items"]] == [("apple", 2)]
    assert apple["total"] == 6
    two = by_step["cart with two"][1]
    assert [(i["sku"], i["qty"]) for i in two["items"]] == [("apple", 2), ("pear", 1)]
    assert two["total"] == 10
    order = by_step["order"][1]
    assert by_step["order fetched"][1]["status"] == "placed"
    assert by_step["order fetched"][1]["id"] == order["id"]
    assert by_step["cancel"][1]["status"] == "cancelled"
    assert by_step["order cancelled"][1]["status"] == "cancelled"
    assert by_step["order cancelled"][1]["version"] == 2
    assert by_step["cart after order"][1] == {"items": [], "total": 0}
    if "cart early" in by_step:
        assert by_step["cart early"][1] == {"items": [], "total": 0}
        assert by_step["cart with apple again"][1] == apple


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """The scenario recorded once through ``baton record`` in front of the real shop."""
    folder = tmp_path_factory.mktemp("fidelity")
    confdir = tmp_path_factory.mktemp("fidelity-mitm")
    shop = start_upstream("fidelity-shop")
    cassette = folder / "shop.cassette"
    try:
        recorder = start_baton(
            [
                "record",
                "-o",
                str(cassette),
                "--mode",
                f"reverse:{shop.url}",
                "--listen-port",
                "0",
                "--set",
                f"confdir={confdir}",
            ]
        )
        try:
            answers = scenario(recorder.url)
        finally:
            assert recorder.stop() == 0, recorder.output
        check_like_the_shop(answers)
        yield Recording(cassette, answers)
    finally:
        shop.stop()


@pytest.fixture
def replaying(recording: Recording) -> Iterator[Any]:
    started: list[BatonProcess] = []

    def start(*extra: str) -> BatonProcess:
        process = start_baton(["replay", str(recording.cassette), "--listen-port", "0", *extra])
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.stop()


def test_recording_notes_the_writes_before_each_interaction(recording: Recording) -> None:
    states = [
        (i.request.method, i.request.path, recorded_state(i))
        for i in read_cassette(recording.cassette)
    ]
    writes = [(m, p, s.writes, s.write) for m, p, s in states if s is not None]
    assert len(writes) == len(states)
    assert writes[:4] == [
        ("POST", "/login", 0, True),
        ("GET", "/cart", 1, False),
        ("GET", "/products", 1, False),
        ("POST", "/cart/items", 1, True),
    ]
    assert writes[-1][:3] == ("GET", "/cart", 5)


def _without_volatile(answers: list[tuple[str, int, Any]]) -> list[tuple[str, int, Any]]:
    return answers


def test_replay_answers_like_the_shop_with_new_client_ids(
    recording: Recording, replaying: Any
) -> None:
    server = replaying()
    answers = scenario(server.url)
    check_like_the_shop(answers)
    recorded = dict((name, body) for name, _, body in recording.answers)
    replayed = dict((name, body) for name, _, body in answers)
    # The service's own values come back as recorded: order id, times; the token as it was
    # stored (redacted: secrets never reach the cassette), and later requests carry it.
    assert replayed["login"]["token"].startswith("REDACTED-")
    assert replayed["order"]["id"] == recorded["order"]["id"]
    assert replayed["order"]["created_at"] == recorded["order"]["created_at"]
    # The client's new ids are echoed where the shop echoed the recorded ones.
    sent_ref = replayed["order"]["client_ref"]
    assert sent_ref != recorded["order"]["client_ref"]
    assert replayed["order fetched"]["client_ref"] == sent_ref
    assert replayed["order cancelled"]["client_ref"] == sent_ref
    assert (
        replayed["add apple"]["added"]["request_id"] != recorded["add apple"]["added"]["request_id"]
    )
    assert (
        replayed["cart with two"]["items"][0]["request_id"]
        == replayed["add apple"]["added"]["request_id"]
    )
    assert replayed["order"]["placed_at"] != recorded["order"]["placed_at"]
    assert server.stop() == 0
    assert "0 misses" in server.output


def test_reads_repeated_and_reordered_get_the_answer_of_their_state(
    recording: Recording, replaying: Any
) -> None:
    server = replaying()
    answers = scenario(server.url, extra_reads=True)
    check_like_the_shop(answers)
    server.stop()


def test_without_state_a_read_gets_the_next_recorded_answer(
    recording: Recording, replaying: Any
) -> None:
    server = replaying("--no-state")
    answers = scenario(server.url, extra_reads=True)
    by_step = {name: body for name, _, body in answers}
    # The extra early read took the empty cart's answer; the next one got the one after apple.
    assert by_step["cart early"] == {"items": [], "total": 0}
    assert by_step["cart empty"]["total"] == 6
    server.stop()


def test_two_sessions_side_by_side_each_get_their_own_answers(
    recording: Recording, replaying: Any
) -> None:
    server = replaying("--session-by", "header:X-Test-Id")
    results: dict[str, list[tuple[str, int, Any]]] = {}
    barrier = threading.Barrier(2)

    def run(name: str) -> None:
        barrier.wait(10)
        results[name] = scenario(server.url, headers={"X-Test-Id": name})

    threads = [threading.Thread(target=run, args=(n,)) for n in ("gw0", "gw1")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["gw0", "gw1"]
    for answers in results.values():
        check_like_the_shop(answers)
    refs = {
        name: dict((s, b) for s, _, b in answers)["order"]["client_ref"]
        for name, answers in results.items()
    }
    assert refs["gw0"] != refs["gw1"]
    for name, answers in results.items():
        assert dict((s, b) for s, _, b in answers)["order cancelled"]["client_ref"] == refs[name]
    server.stop()
    assert "0 misses" in server.output


def test_shift_time_a_year_on_moves_every_date_in_the_answers(
    recording: Recording, replaying: Any
) -> None:
    first = min(i.recorded_at for i in read_cassette(recording.cassette))
    year_on = datetime.fromtimestamp(first, UTC) + timedelta(days=365)
    server = replaying("--shift-time", year_on.isoformat())
    answers = scenario(server.url)
    check_like_the_shop(answers)
    recorded = dict((name, body) for name, _, body in recording.answers)
    replayed = dict((name, body) for name, _, body in answers)

    def moved(text: str) -> str:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")) + timedelta(days=365)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")

    assert replayed["login"]["expires_at"] == moved(recorded["login"]["expires_at"])
    assert replayed["login"]["expires_epoch"] == recorded["login"]["expires_epoch"] + 365 * 86400
    assert replayed["order"]["created_at"] == moved(recorded["order"]["created_at"])
    assert replayed["order cancelled"]["updated_at"] == moved(
        recorded["order cancelled"]["updated_at"]
    )
    server.stop()


def test_the_mitmproxy_path_answers_the_same(recording: Recording, replaying: Any) -> None:
    first = min(i.recorded_at for i in read_cassette(recording.cassette))
    year_on = datetime.fromtimestamp(first, UTC) + timedelta(days=365)
    server = replaying(
        "--session-by",
        "header:X-Test-Id",
        "--shift-time",
        year_on.isoformat(),
        "--set",
        "stream_large_bodies=100m",
    )
    assert "mitmproxy path" in server.output
    answers = scenario(server.url, headers={"X-Test-Id": "one"}, extra_reads=True)
    check_like_the_shop(answers)
    replayed = dict((name, body) for name, _, body in answers)
    recorded = dict((name, body) for name, _, body in recording.answers)
    assert replayed["order cancelled"]["client_ref"] == replayed["order"]["client_ref"]
    assert replayed["login"]["expires_epoch"] == recorded["login"]["expires_epoch"] + 365 * 86400
    server.stop()


def test_a_bad_session_rule_is_one_line(recording: Recording) -> None:
    result = run_baton(["replay", str(recording.cassette), "--session-by", "ip"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "baton: error: session-by 'ip': use header:NAME, cookie:NAME, client or none"
    ]


def test_show_dynamic_lists_the_values_a_later_request_sent_back(recording: Recording) -> None:
    result = run_baton(["show", str(recording.cassette), "--dynamic"])
    assert result.returncode == 0, result.stderr
    order_id = dict((name, body) for name, _, body in recording.answers)["order"]["id"]
    lines = result.stdout.splitlines()
    at = lines.index(order_id)
    assert lines[at + 1] == "  from $.id of POST /orders (#8)"
    assert lines[at + 2] == f"  sent back in path segment 2 of GET /orders/{order_id} (#9)"
    etag = lines.index("  from header:ETag of POST /orders (#8)")
    assert lines[etag + 1] == f"  sent back in header if-match of PATCH /orders/{order_id} (#10)"
    assert lines[-1] == "2 dynamic values"


def test_dynamic_rules_come_from_the_replay_config_and_a_bad_one_is_one_line(
    recording: Recording, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.baton.replay]\ndynamic = ["$.id", "id"]\n')
    result = run_baton(["replay", str(recording.cassette)], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "baton: error: dynamic value rule 'id': use $.path, header:NAME, cookie:NAME, "
        "request:$.path, request:header:NAME or request:query:NAME (unknown form)"
    ]
