"""`baton record --spec` and `baton replay --spec`: every exchange is checked against the spec as it
passes; violations are logged and counted, and the traffic is exactly what it would have been."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from baton.cassettes.reader import read_cassette
from tests.contract_services import service
from tests.processes import run_baton


def _spec(cassette: Path, folder: Path) -> Path:
    spec = folder / "orders.yaml"
    result = run_baton(["contract", "infer", str(cassette), "-o", str(spec)])
    assert result.returncode == 0, result.stderr
    return spec


def test_record_with_spec_logs_and_counts_violations_and_leaves_traffic_alone(
    orders_cassettes: dict[int, Path], tmp_path: Path, baton: Callable[..., Any]
) -> None:
    spec = _spec(orders_cassettes[1], tmp_path)
    cassette = tmp_path / "live.cassette"
    with service("tests.contract_services:orders_v2") as upstream:
        recorder = baton(
            *("record", "-o", str(cassette), "--mode", f"reverse:{upstream.url}"),
            *("--listen-port", "0", "--spec", str(spec)),
        )
        with httpx.Client(base_url=recorder.url, trust_env=False) as client:
            archived = client.get("/orders/3")
            fine = client.get("/orders/1")
            direct = httpx.get(upstream.url + "/orders/3", trust_env=False)
        assert recorder.stop() == 0
    # What the client got is what the service sent, violation or not.
    assert (archived.status_code, archived.content) == (410, direct.content)
    assert fine.status_code == 200 and fine.json()["id"] == 1
    out = recorder.output
    assert (
        "contract: GET /orders/3: response undocumented-status status: "
        "status 410 is not documented for GET /orders/{id}"
    ) in out
    assert f"baton: contract: 1 violation of {spec} in 1 of 2 exchanges" in out
    assert [i.response.status for i in read_cassette(cassette) if i.response] == [410, 200]


def test_replay_with_spec_checks_what_it_serves(
    orders_cassettes: dict[int, Path], tmp_path: Path, baton: Callable[..., Any]
) -> None:
    spec = _spec(orders_cassettes[1], tmp_path)
    replay = baton("replay", str(orders_cassettes[3]), "--listen-port", "0", "--spec", str(spec))
    assert "mitmproxy path" in replay.output
    with httpx.Client(base_url=replay.url, trust_env=False) as client:
        answer = client.get("/orders/1")
        assert client.get("/orders", params={"limit": 2}).status_code == 200
    assert answer.status_code == 200 and answer.json()["total"] == "12.50"
    assert replay.stop() == 0
    out = replay.output
    assert (
        "contract: GET /orders/1: response schema $.total: '12.50' is not of type 'number'" in out
    )
    assert f"baton: contract: 3 violations of {spec} in 2 of 2 exchanges" in out


def test_a_spec_that_cannot_be_used_stops_record_before_it_listens(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("openapi: 3.1.0\ninfo: {title: x}\npaths:\n  /a:\n    get: {responses: 3}\n")
    result = run_baton(
        ["record", "-o", str(tmp_path / "x.cassette"), "--listen-port", "0", "--spec", str(spec)],
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a valid OpenAPI document" in lines[0], result.stderr
    assert not (tmp_path / "x.cassette").exists()
