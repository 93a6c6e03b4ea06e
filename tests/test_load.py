"""baton load against a real Starlette/uvicorn service that stalls 50 ms on every 100th request."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from junitparser import JUnitXml

from baton.cassettes import CassetteReader, CassetteWriter
from baton.cassettes.model import Interaction, Request, Response
from tests.processes import _stop, run_baton, start_baton

# The HTML report tests' headless Chromium (skipped without it) and their page helpers.
from tests.test_html_report import all_css, assert_quiet, browser, by_css, open_page  # noqa: F401

HERE = Path(__file__).parent
SCHEMA = json.loads((HERE.parent / "docs" / "load-report.schema.json").read_text())


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "load_apps.py"), str(sock.fileno())], pass_fds=[sock.fileno()]
    )
    sock.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/count", trust_env=False, timeout=5)
            break
        except httpx.HTTPError:
            assert proc.poll() is None and time.monotonic() < deadline, "service did not start"
            time.sleep(0.1)
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("load") / "items.cassette"
    writer = CassetteWriter(path, redactor=None)
    for number, method in enumerate(["GET", "GET", "POST"]):
        request = Request(
            method, "http", "shop.test", 80, "/items", headers=(("Host", "shop.test"),)
        )
        body = b'{"items": [1, 2, 3]}'
        response = Response(200, "OK", headers=(("Content-Length", str(len(body))),), body=body)
        writer.append(Interaction(f"i{number}", request, response, 1_700_000_000 + number, 1.0))
    writer.close()
    return path


def _load(cassette: Path, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_baton(["load", str(cassette), "--target", target, *args])


def test_the_open_model_shows_the_stall_a_closed_loop_hides(
    service: str, cassette: Path, tmp_path: Path
) -> None:
    reports = {}
    for model, args in [
        ("closed", ["--concurrency", "1"]),  # the next request leaves when an answer came
        ("open", ["--rate", "500/s"]),  # 1,000 requests on schedule, whatever the service does
    ]:
        httpx.post(service + "/reset", trust_env=False)
        path = tmp_path / f"{model}.json"
        result = _load(
            cassette, service, *args, "--duration", "2s", "--format", "json", "-o", str(path)
        )
        assert result.returncode == 0, result.stderr
        reports[model] = json.loads(path.read_text())
        jsonschema.validate(reports[model], SCHEMA)
    closed, opened = reports["closed"], reports["open"]
    print(
        "stall of 50 ms every 100th request: closed loop "
        f"{closed['requests']} requests p95 {closed['latency_ms']['p95']} ms "
        f"p99 {closed['latency_ms']['p99']} ms; open model at 500/s p95 "
        f"{opened['latency_ms']['p95']} ms p99 {opened['latency_ms']['p99']} ms"
    )
    assert (opened["requests"], opened["errors"], opened["mode"]) == (1000, 0, "open"), opened
    assert closed["mode"] == "closed" and closed["errors"] == 0, closed
    assert closed["requests"] > 200, closed
    assert list(opened["endpoints"]) == ["GET /items"]  # POST is not sent unless allowed
    assert opened["skipped"] == {"POST (not safe; --allow-side-effects sends it)": 1}
    assert httpx.get(service + "/count", trust_env=False).text == "1000"
    # Both saw the stalls (max); the closed loop counts one slow sample per stall (1 %), so its
    # percentiles up to p99 stay fast, while every request due during a stall waited in the open
    # model: a quarter of them, and its p95 and p99 show it.
    assert closed["latency_ms"]["max"] >= 50 and opened["latency_ms"]["max"] >= 50
    assert closed["latency_ms"]["p95"] * 2 < opened["latency_ms"]["p95"]
    assert opened["latency_ms"]["p95"] >= 20 and opened["latency_ms"]["p99"] >= 40


def test_a_slower_build_fails_the_p99_gate_with_exit_1(
    service: str, cassette: Path, tmp_path: Path
) -> None:
    baseline, page = tmp_path / "base.json", tmp_path / "load.html"
    first = _load(
        cassette,
        service + "/fast",
        "--rate",
        "200/s",
        "--duration",
        "1s",
        "--save-baseline",
        str(baseline),
        "--format",
        "html",
        "-o",
        str(page),
        "--max-p99-regression",
        "20%",
        "--baseline",
        str(baseline),
    )
    assert first.returncode == 2 and "no such file" in first.stderr  # no baseline yet
    first = _load(
        cassette,
        service + "/fast",
        "--rate",
        "200/s",
        "--duration",
        "1s",
        "--save-baseline",
        str(baseline),
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert first.returncode == 0, first.stderr
    jsonschema.validate(json.loads(baseline.read_text()), SCHEMA)
    html = page.read_text()
    assert "GET /items" in html and "<svg" in html and "200 requests" in html
    # The same recording against the slower build (every answer 20 ms later).
    second = _load(
        cassette,
        service + "/slow",
        "--rate",
        "200/s",
        "--duration",
        "1s",
        "--baseline",
        str(baseline),
        "--max-p99-regression",
        "20%",
    )
    print(second.stdout)  # the figure in docs/load.md
    assert second.returncode == 1, second.stdout + second.stderr
    assert "FAIL: p99" in second.stdout and "against the baseline's" in second.stdout
    assert "(gate: at most +20.0%)" in second.stdout
    # The same gate for CI in JUnit (a testcase per endpoint and per gate) and Markdown.
    junit, markdown = tmp_path / "load.xml", tmp_path / "load.md"
    for fmt, path in (("junit", junit), ("markdown", markdown)):
        again = _load(
            cassette,
            service + "/slow",
            "--rate",
            "200/s",
            "--duration",
            "1s",
            "--baseline",
            str(baseline),
            "--max-p99-regression",
            "20%",
            "--format",
            fmt,
            "-o",
            str(path),
        )
        assert again.returncode == 1, again.stderr
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    cases = {(case.classname, case.name): case for case in suite}
    assert set(cases) == {("baton.load", "GET /items"), ("baton.load.gate", "max-p99-regression")}
    assert cases["baton.load", "GET /items"].is_passed
    (failure,) = cases["baton.load.gate", "max-p99-regression"].result
    assert failure.message.startswith("p99 ") and "(gate: at most +20.0%)" in failure.message
    lines = markdown.read_text().splitlines()
    assert lines[0].startswith("### ❌ baton load: `http://127.0.0.1:")
    assert lines[2].startswith("**FAIL: p99 ")
    assert any(line.startswith("| `GET /items` | 200 | 0 |") for line in lines)


def test_the_error_rate_gate_counts_errors_by_kind(cassette: Path, tmp_path: Path) -> None:
    # The target is baton replay itself, answering 503 to a tenth of the requests.
    replay = start_baton(
        [
            "replay",
            str(cassette),
            "--listen-port",
            "0",
            "--fault",
            "status=503,rate=0.1",
            "--fault-seed",
            "3",
        ]
    )
    try:
        result = _load(
            cassette,
            replay.url,
            "--rate",
            "500/s",
            "--duration",
            "1s",
            "--max-error-rate",
            "1%",
            "--format",
            "json",
        )
    finally:
        replay.stop()
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    assert set(report["errors_by_kind"]) == {"http 503"}
    assert 20 <= report["errors"] <= 90 and report["requests"] == 500
    assert report["failures"][0].startswith("error rate")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "fast"], "--rate 'fast': write requests per second, e.g. 500/s"),
        (["--rate", "5/s", "--speed", "2x"], "give --rate N/s or --speed Nx, not both"),
        (["--max-p99-regression", "20%"], "give --baseline FILE"),
        (["--duration", "soon"], "--duration 'soon': write a duration"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cassette: Path, args: list[str], says: str) -> None:
    result = _load(cassette, "http://127.0.0.1:9", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr


def test_an_unreachable_target_is_one_line(cassette: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _load(cassette, f"http://127.0.0.1:{port}", "--rate", "10/s", "--duration", "1s")
    assert result.returncode == 2 and "is unreachable" in result.stderr, result.stderr


def test_speed_replays_the_recorded_timing_faster_over_two_workers(
    service: str, cassette: Path
) -> None:
    # The two GETs were recorded a second apart: one cycle is 2 s, so 1 request/s; at 100x,
    # 100/s. Two worker processes take one GET each; the warmup's requests are not counted.
    result = _load(
        cassette,
        service + "/fast",
        "--speed",
        "100x",
        "--duration",
        "1s",
        "--warmup",
        "0.2s",
        "--workers",
        "2",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["mode"], report["speed"], report["rate"], report["workers"]) == (
        "open",
        100,
        None,
        2,
    )
    assert report["requests"] == 100 and report["errors"] == 0, report
    assert report["warmup_s"] == 0.2


def test_a_real_load_page_opens_in_chromium_with_its_chart(
    browser: Any,  # noqa: F811 (the fixture imported above)
    service: str,
    cassette: Path,
    tmp_path: Path,
) -> None:
    page = tmp_path / "load.html"
    result = _load(
        cassette,
        service + "/fast",
        "--rate",
        "200/s",
        "--duration",
        "1s",
        "--format",
        "html",
        "-o",
        str(page),
    )
    assert result.returncode == 0, result.stderr
    open_page(browser, page)
    assert by_css(browser, "#total-requests").text == "200"
    lines = all_css(browser, "svg.chart polyline")
    assert [line.get_attribute("data-series") for line in lines] == ["p50", "p99"]
    assert_quiet(browser, page)


def test_an_https_target_is_verified_like_diff_does(
    httpbin_tls: Any, tls_files: Any, tmp_path: Path
) -> None:
    path = tmp_path / "get.cassette"
    writer = CassetteWriter(path, redactor=None)
    request = Request("GET", "https", "httpbin.test", 443, "/get", headers=(("Host", "x"),))
    writer.append(Interaction("1", request, Response(200, "OK", body=b"{}"), 1.0, 1.0))
    writer.close()
    untrusted = _load(path, httpbin_tls.url, "--rate", "50/s", "--duration", "0.5s")
    assert untrusted.returncode == 2, untrusted.stderr
    assert untrusted.stderr.count("\n") == 1 and "certificate not trusted" in untrusted.stderr
    trusted = _load(
        path,
        httpbin_tls.url,
        "--rate",
        "50/s",
        "--duration",
        "0.5s",
        "--ca-cert",
        str(tls_files.ca),
        "--format",
        "json",
    )
    assert trusted.returncode == 0, trusted.stderr
    report = json.loads(trusted.stdout)
    assert (report["requests"], report["errors"]) == (25, 0)


def test_a_sender_running_late_still_waits_for_every_answer(service: str, cassette: Path) -> None:
    """On a loaded machine the schedule runs behind the clock; the run must not end (and close
    connections under requests in flight) just because the window's end has passed."""
    from baton.replay.load import LoadSettings, plan_requests, run_worker

    with CassetteReader(cassette) as reader:
        plan = plan_requests(reader, service + "/fast")
    port = int(service.rpartition(":")[2])

    def lagging(_: object) -> None:
        time.sleep(0.08)  # the event loop falls 80 ms behind every 50 ms

    samples = run_worker(plan, LoadSettings("127.0.0.1", port, rate=1000, duration_s=1.0), lagging)
    assert (samples.requests, dict(samples.errors)) == (1000, {})


def test_metrics_port_counts_the_run_while_it_runs(service: str, cassette: Path) -> None:
    import re

    from tests.processes import BATON

    proc = subprocess.Popen(
        [
            *BATON,
            "load",
            str(cassette),
            "--target",
            service + "/fast",
            "--rate",
            "200/s",
            "--duration",
            "2s",
            "--metrics-port",
            "0",
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"metrics on (http://\S+/metrics)", line)
        assert found, line
        time.sleep(1.0)
        during = httpx.get(found.group(1), trust_env=False).text
        health = httpx.get(found.group(1).replace("/metrics", "/healthz"), trust_env=False)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            _stop(proc)
    sent = re.search(r"^baton_load_sent_total (\S+)", during, re.M)
    assert sent and 0 < float(sent.group(1)) < 400, during
    assert "baton_load_errors_total 0.0" in during and health.status_code == 200
    assert proc.returncode == 0 and "requests   400" in out
