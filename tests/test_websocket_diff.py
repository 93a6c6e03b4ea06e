"""baton diff of WebSocket conversations: the client's side played against a live service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import TLSFiles, run_baton, start_baton
from tests.websocket_parts import SHORT_SCRIPT, converse, start_websocket_server, ws_url

pytestmark = pytest.mark.slow


def record(cassette: Path, variant: str, confdir: Path, *, client_close: bool = False) -> None:
    server = start_websocket_server(variant=variant)
    try:
        recorder = start_baton(
            ["record", "-o", str(cassette), "--mode", f"reverse:{server.url}",
             "--listen-port", "0", "--set", f"confdir={confdir}"]
        )  # fmt: skip
        try:
            converse(ws_url(recorder.url))
            if client_close:
                converse(ws_url(recorder.url, "/bye"), SHORT_SCRIPT, client_close=(1000, "done"))
        finally:
            assert recorder.stop() == 0
    finally:
        server.stop()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path) -> Path:
    """The conversation recorded from the first version of the service, which is then stopped."""
    cassette = tmp_path_factory.mktemp("ws-diff") / "v1.cassette"
    record(cassette, "v1", mitm_confdir, client_close=True)
    return cassette


def diff(*args: str) -> tuple[int, dict[str, Any], str]:
    result = run_baton(["diff", *args, "--format", "json", "--timeout", "5"])
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def changes(report: dict[str, Any]) -> list[tuple[str, str, str, str, Any, Any]]:
    return [
        (outcome["target"], c["class"], c["kind"], c["location"], c["old"], c["new"])
        for outcome in report["interactions"]
        for c in outcome["changes"]
    ]


@pytest.fixture
def same_service() -> Iterator[str]:
    server = start_websocket_server()
    yield server.url
    server.stop()


@pytest.fixture
def changed_service() -> Iterator[str]:
    server = start_websocket_server(variant="changed")
    yield server.url
    server.stop()


def test_the_same_service_shows_no_drift(recorded: Path, same_service: str) -> None:
    code, report, _ = diff(str(recorded), "--target", same_service, "--fail-on", "value")
    assert code == 0
    assert [o["outcome"] for o in report["interactions"]] == ["compared", "compared"]
    assert changes(report) == []


def test_a_changed_push_message_is_reported_and_nothing_else(
    recorded: Path, changed_service: str
) -> None:
    code, report, _ = diff(str(recorded), "--target", changed_service, "--fail-on", "value")
    assert code == 1
    # The second tick of a push: in both conversations the sixth message, as baton show numbers it.
    assert changes(report) == [
        ("/chat", "value", "value_changed", "message 6 body.n", 2, 20),
        ("/bye", "value", "value_changed", "message 6 body.n", 2, 20),
    ]
    text = run_baton(["diff", str(recorded), "--target", changed_service, "--timeout", "5"])
    assert "GET /chat" in text.stdout and "message 6 body.n: value_changed: 2 -> 20" in text.stdout


def test_noise_rules_apply_inside_messages(recorded: Path, changed_service: str) -> None:
    code, report, _ = diff(
        str(recorded), "--target", changed_service, "--fail-on", "value", "--ignore", "body.n"
    )
    assert code == 0
    assert [(c[1], c[3]) for c in changes(report)] == [("noise", "message 6 body.n")] * 2
    code, report, _ = diff(
        str(recorded), "--target", changed_service, "--fail-on", "value",
        "--ignore-regex", "^message 6 ",
    )  # fmt: skip
    assert code == 0 and [c[1] for c in changes(report)] == ["noise", "noise"]


def test_learned_noise_covers_a_field_that_changes_on_every_connection(recorded: Path) -> None:
    server = start_websocket_server(variant="stamped")  # the welcome carries the time
    try:
        code, report, _ = diff(str(recorded), "--target", server.url, "--fail-on", "additive")
        assert code == 1
        assert {c[1:4] for c in changes(report)} == {
            ("additive", "field_added", "message 1 body.at")
        }
        code, report, _ = diff(
            str(recorded), "--target", server.url, "--fail-on", "additive", "--learn-noise"
        )
        assert code == 0
        assert {c[1:4] for c in changes(report)} == {("noise", "field_added", "message 1 body.at")}
    finally:
        server.stop()


def test_wss_targets_are_verified_and_compared(recorded: Path, tls_files: TLSFiles) -> None:
    server = start_websocket_server(tls_files, variant="changed")
    try:
        target = server.url  # https://127.0.0.1:PORT: the conversation goes over wss://
        code, report, _ = diff(
            str(recorded), "--target", target, "--ca-cert", str(tls_files.ca), "--fail-on", "value"
        )
        assert code == 1
        assert [c[0] for c in changes(report)] == ["/chat", "/bye"]
        assert {c[1:] for c in changes(report)} == {
            ("value", "value_changed", "message 6 body.n", 2, 20)
        }
    finally:
        server.stop()


def test_a_message_the_service_no_longer_sends_is_breaking_and_shifts_nothing(
    recorded: Path,
) -> None:
    server = start_websocket_server(variant="fewer")  # never sends a push's last tick
    try:
        result = run_baton(
            ["diff", str(recorded), "--target", server.url, "--format", "json", "--timeout", "1"]
        )
        assert result.returncode == 1, result.stderr  # breaking fails the default gate
        report = json.loads(result.stdout)
        # /chat's third tick (message 7) and /bye's second (message 6); later turns still pair.
        assert changes(report) == [
            ("/chat", "breaking", "message_missing", "message 7", '{"type": "tick", "n": 3}', None),
            ("/bye", "breaking", "message_missing", "message 6", '{"type": "tick", "n": 2}', None),
        ]
        notes = [o["note"] for o in report["interactions"]]
        assert "1 fewer than recorded" in notes[0]
    finally:
        server.stop()


def test_two_recordings_compare_message_by_message(
    recorded: Path, tmp_path: Path, mitm_confdir: Path
) -> None:
    new = tmp_path / "changed.cassette"
    record(new, "changed", mitm_confdir, client_close=True)
    code, report, _ = diff(str(recorded), str(new), "--fail-on", "value")
    assert code == 1
    assert [c[0] for c in changes(report)] == ["/chat", "/bye"]
    assert {c[1:] for c in changes(report)} == {
        ("value", "value_changed", "message 6 body.n", 2, 20)
    }
