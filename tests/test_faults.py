"""baton replay --fault: each fault as real clients (httpx, curl) see it, on both replay paths."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from baton.cassettes import CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from baton.replay.faults import FaultKind, FaultPlan, FaultRuleError, parse_fault
from tests.processes import BatonProcess, run_baton, start_baton

BODY = json.dumps({"items": [{"id": n, "name": f"item {n}"} for n in range(200)]}).encode()
PATHS = ["/status", "/reset", "/timeout", "/truncate", "/malformed", "/json", "/slow", "/rate"]
PATHS += ["/delay", "/plain", "/teapot"]
RULES = [
    "status=503,path=/status",
    "reset,path=/reset",
    "timeout,path=/timeout",
    "truncate=50%,path=/truncate",
    "malformed,path=/malformed",
    "malformed=json,path=/json",
    "slow-body=20KB/s,path=/slow",
    "status=503,rate=0.1,path=/rate",
    "delay=50ms,path=/delay",
]
CURL = shutil.which("curl")


def _cassette(path: Path) -> Path:
    writer = CassetteWriter(path, redactor=None)
    for number, where in enumerate(PATHS):
        request = Request("GET", "http", "api.test", 80, where, headers=(("Host", "api.test"),))
        response = Response(
            200,
            "OK",
            headers=(("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))),
            body=BODY,
        )
        writer.append(Interaction(f"i{number}", request, response, 1_700_000_000.0, 1.0))
    writer.close()
    return path


def _serve(cassette: Path, *extra: str) -> BatonProcess:
    args = ["replay", str(cassette), "--listen-port", "0", "--fault-seed", "7"]
    for rule in RULES:
        args += ["--fault", rule]
    return start_baton([*args, *extra])


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cassette(tmp_path_factory.mktemp("faults") / "api.cassette")


@pytest.fixture(scope="module", params=["fast", "mitmproxy"])
def faulty(
    request: pytest.FixtureRequest, cassette: Path, mitm_confdir: Path
) -> Iterator[tuple[str, BatonProcess]]:
    # --set forces the mitmproxy path (reverse mode towards the recorded host, never reached).
    extra = ("--set", f"confdir={mitm_confdir}") if request.param == "mitmproxy" else ()
    # --replay-latency (1 ms recorded) composes with every fault; --metrics-port counts them.
    server = _serve(cassette, "--replay-latency", "--metrics-port", "0", *extra)
    assert f"{request.param} path" in server.output
    yield request.param, server
    server.stop()


def _curl(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    command = [CURL, "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", *args, url]
    return subprocess.run(command, capture_output=True, timeout=30)


# -- the rules, read ------------------------------------------------------------------------------


def test_rules_are_read_with_their_selectors_and_a_comma_inside_a_distribution() -> None:
    rule = parse_fault("delay=p50:100ms,p99:2s,rate=0.25,method=get,path=/api/*")
    assert rule.kind is FaultKind.DELAY and rule.delay is not None
    assert (rule.delay.p50, rule.delay.p99, rule.rate, rule.method) == (0.1, 2.0, 0.25, "GET")
    assert parse_fault("slow-body=10KB/s").bytes_per_second == 10_000
    assert parse_fault("truncate=50%").fraction == 0.5
    assert parse_fault("status=503,rate=10%").rate == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("explode", "unknown fault 'explode'"),
        ("status=abc", "a number from 100 to 599"),
        ("status", "needs a value"),
        ("truncate=1.5", "e.g. 50%"),
        ("delay=p50:2s,p99:1s", "p99 at least p50"),
        ("status=503,rate=3", "rate is a fraction"),
        ("reset,path=/x,oops", "after the selectors"),
    ],
)
def test_a_bad_rule_is_named_with_what_to_write(rule: str, says: str) -> None:
    with pytest.raises(FaultRuleError, match=says.replace("(", r"\(")):
        parse_fault(rule)


def test_a_bad_rule_on_the_command_line_is_one_line_and_exit_2(cassette: Path) -> None:
    result = run_baton(["replay", str(cassette), "--fault", "truncate=half"])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "baton: error: --fault 'truncate=half': write how much of the body is sent, e.g. 50%"
    ]


def test_a_seed_fixes_the_sequence_and_the_rate_stays_within_binomial_bounds() -> None:
    request = Request("GET", "http", "api.test", 80, "/rate")

    def sequence(seed: int) -> list[bool]:
        plan = FaultPlan(["status=503,rate=0.1"], seed=seed)
        return [plan.decide(request) is not None for _ in range(1000)]

    first, again, other = sequence(11), sequence(11), sequence(12)
    assert first == again and first != other
    # 1,000 draws at p = 0.1: mean 100, sd 9.5; five sd either side fails one seed in 10^6.
    bound = 5 * math.sqrt(1000 * 0.1 * 0.9)
    assert abs(sum(first) - 100) < bound and abs(sum(other) - 100) < bound


# -- each fault as a client sees it, on both paths ------------------------------------------------


def test_status_fault_answers_503_naming_the_rule(faulty: tuple[str, BatonProcess]) -> None:
    _, server = faulty
    answer = httpx.get(server.url + "/status", trust_env=False)
    assert answer.status_code == 503
    assert answer.headers["x-baton-fault"] == "status=503,path=/status"
    assert httpx.get(server.url + "/plain", trust_env=False).content == BODY
    if CURL:
        assert _curl(server.url + "/status").stdout == b"503"


def test_reset_fault_is_a_connection_error(faulty: tuple[str, BatonProcess]) -> None:
    path, server = faulty
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as raised:
        httpx.get(server.url + "/reset", trust_env=False)
    if path == "fast":  # a real TCP reset; mitmproxy closes without one
        assert "reset" in str(raised.value).lower()
    if CURL:
        result = _curl(server.url + "/reset")
        assert result.returncode in ((56,) if path == "fast" else (52, 56)), result.stderr
        assert result.stdout == b"000"


def test_timeout_fault_runs_into_the_clients_own_timeout(faulty: tuple[str, BatonProcess]) -> None:
    _, server = faulty
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url + "/timeout", trust_env=False, timeout=0.5)
    if CURL:
        assert _curl(server.url + "/timeout", "--max-time", "0.5").returncode == 28


def test_truncate_fault_leaves_the_body_incomplete(faulty: tuple[str, BatonProcess]) -> None:
    _, server = faulty
    received = bytearray()
    with (
        pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message body"),
        httpx.stream("GET", server.url + "/truncate", trust_env=False) as answer,
    ):
        assert answer.headers["content-length"] == str(len(BODY))
        for piece in answer.iter_raw():
            received += piece
    assert 0 < len(received) < len(BODY) and BODY.startswith(bytes(received))
    if CURL:
        assert _curl(server.url + "/truncate").returncode == 18  # partial file


def test_malformed_fault_is_a_parse_error(faulty: tuple[str, BatonProcess]) -> None:
    path, server = faulty
    if path == "fast":
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(server.url + "/malformed", trust_env=False)
        if CURL:
            assert _curl(server.url + "/malformed").returncode in (1, 8)  # weird server reply
    else:  # mitmproxy cannot pass bytes that are not HTTP: it answers 502 for them
        assert httpx.get(server.url + "/malformed", trust_env=False).status_code == 502
    answer = httpx.get(server.url + "/json", trust_env=False)
    assert (
        answer.status_code == 200 and answer.headers["x-baton-fault"] == "malformed=json,path=/json"
    )
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def test_slow_body_fault_sends_the_body_in_pieces(faulty: tuple[str, BatonProcess]) -> None:
    _, server = faulty
    pieces = []
    with httpx.stream("GET", server.url + "/slow", trust_env=False) as answer:
        assert answer.headers["x-baton-fault"] == "slow-body=20KB/s,path=/slow"
        pieces = list(answer.iter_raw())
    assert b"".join(pieces) == BODY
    assert len(pieces) >= 3, [len(p) for p in pieces]  # 1,000 bytes every 50 ms
    if CURL:
        result = subprocess.run(
            [CURL, "-sS", "--noproxy", "*", "-D", "-", server.url + "/slow"],
            capture_output=True,
            timeout=30,
        )
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        assert result.returncode == 0 and body == BODY
        assert b"X-Baton-Fault: slow-body=20KB/s,path=/slow" in head


def test_delay_fault_answers_as_recorded_marked(faulty: tuple[str, BatonProcess]) -> None:
    _, server = faulty
    answer = httpx.get(server.url + "/delay", trust_env=False)
    assert answer.content == BODY and answer.headers["x-baton-fault"] == "delay=50ms,path=/delay"


def test_injected_faults_are_counted_on_the_metrics_port(
    faulty: tuple[str, BatonProcess],
) -> None:
    import re

    _, server = faulty
    httpx.get(server.url + "/status", trust_env=False)
    found = re.search(r"metrics on (http://\S+/metrics)", server.output)
    assert found, server.output
    metrics = httpx.get(found.group(1), trust_env=False).text
    counted = re.search(
        r'baton_faults_injected_total\{rule="status=503,path=/status"\} (\S+)', metrics
    )
    assert counted and float(counted.group(1)) >= 1, metrics
    assert 'baton_faults_injected_total{rule="reset,path=/reset"}' in metrics


# -- rates end to end, the seed end to end --------------------------------------------------------


def _statuses(url: str) -> list[int]:
    with httpx.Client(trust_env=False) as client:
        return [client.get(url + "/rate").status_code for _ in range(1000)]


def test_a_rate_over_1000_requests_is_within_bounds_and_the_seed_repeats_it(
    cassette: Path,
) -> None:
    runs = []
    for _ in range(2):
        server = _serve(cassette)
        try:
            runs.append(_statuses(server.url))
        finally:
            server.stop()
        assert "injected" in server.output and "status=503,rate=0.1,path=/rate" in server.output
    first, second = runs
    assert first == second  # same seed, same requests: the same faults, request by request
    faults = first.count(503)
    assert set(first) == {200, 503}
    assert abs(faults - 100) < 5 * math.sqrt(1000 * 0.1 * 0.9), faults
    assert f"injected {faults} faults" in server.output


# -- a custom fault, registered in the process that serves ----------------------------------------


def test_a_registered_fault_answers_what_its_function_returns(cassette: Path) -> None:
    import asyncio
    import dataclasses

    from baton.replay.faults import register_fault
    from baton.replay.options import ReplayOptions
    from baton.replay.server import ReplayServer

    @register_fault("stale")
    def stale(request: Request, recorded: Response | None, argument: str | None) -> Response:
        assert recorded is not None
        return dataclasses.replace(recorded, headers=(*recorded.headers, ("Age", argument or "0")))

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        index = ReplayOptions().load([cassette], address=False)
        plan = FaultPlan(["stale=3600,path=/plain"])
        server = ReplayServer(index, faults=plan)
        host, port = await server.start()
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                return (
                    await client.get(f"http://{host}:{port}/plain"),
                    await client.get(f"http://{host}:{port}/delay"),
                )
        finally:
            await server.close()

    faulted, other = asyncio.run(scenario())
    assert faulted.headers["age"] == "3600" and faulted.content == BODY
    assert faulted.headers["x-baton-fault"] == "stale=3600,path=/plain"
    assert "age" not in other.headers and "x-baton-fault" not in other.headers


def test_a_body_too_large_to_hold_is_cut_or_streamed_never_read_whole(tmp_path: Path) -> None:
    import asyncio

    from baton.cassettes.reader import CassetteReader, ReadLimits
    from baton.replay.options import ReplayOptions
    from baton.replay.server import ReplayServer

    path, piece = tmp_path / "big.cassette", bytes(range(256)) * 256  # 64 KiB
    with CassetteWriter(path, redactor=None) as writer:
        for name in ("/cut", "/slow"):
            stream = writer.open_stream()
            for n in range(24):  # 1.5 MiB, above the 1 MiB held below
                stream.write(piece, float(n))
            request = Request("GET", "http", "files.test", 80, name)
            writer.append(
                Interaction(name, request, Response(200, "OK", body=None), 1.0),
                streams={"response": stream},
            )
    with CassetteReader(path, ReadLimits(max_held_stream_bytes=1 << 20)) as reader:
        index = ReplayOptions().index(list(reader), address=False)
    assert all(i.response is not None and i.response.stored for i in index.interactions)

    async def scenario() -> tuple[bytes, BaseException | None, bytes, str]:
        server = ReplayServer(
            index, faults=FaultPlan(["truncate=50%,path=/cut", "slow-body=1MB/s,path=/slow"])
        )
        host, port = await server.start()
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                cut, failure = bytearray(), None
                try:
                    async with client.stream("GET", f"http://{host}:{port}/cut") as answer:
                        async for data in answer.aiter_raw():
                            cut += data
                except httpx.HTTPError as exc:
                    failure = exc
                slow = await client.get(f"http://{host}:{port}/slow")
                return bytes(cut), failure, slow.content, slow.headers["x-baton-fault"]
        finally:
            await server.close()

    cut, failure, slow, marked = asyncio.run(scenario())
    assert (
        len(cut) < len(piece) * 24 and failure is not None
    )  # the head, then the connection closed
    assert slow == piece * 24 and marked == "slow-body=1MB/s,path=/slow"
