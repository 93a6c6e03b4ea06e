"""baton diff against a real service in two versions, and between two recordings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from junitparser import JUnitXml

from baton.cassettes import CassetteWriter, Interaction, Request, Response
from tests.processes import BatonProcess, Upstream, run_baton, start_upstream, unused_port

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "drift-report.schema.json").read_text())

CALLS = [
    ("GET", "/products/1"),
    ("GET", "/products/2"),
    ("GET", "/products/3"),
    ("GET", "/legacy"),
    ("GET", "/catalog.gz"),
    ("GET", "/catalog.br"),
    ("GET", "/about"),
    ("POST", "/orders"),
]


@pytest.fixture(scope="module")
def shop_v1() -> Iterator[Upstream]:
    upstream = start_upstream("shop-v1")
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def shop_v2() -> Iterator[Upstream]:
    upstream = start_upstream("shop-v2")
    yield upstream
    upstream.stop()


def record_shop(baton: Callable[..., BatonProcess], upstream: Upstream, cassette: Path) -> None:
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{upstream.url}", "--listen-port", "0"
    )
    with httpx.Client(base_url=recorder.url, trust_env=False, timeout=30) as client:
        for method, path in CALLS:
            client.request(method, path, json={"item": 1} if method == "POST" else None)
    assert recorder.stop() == 0


@pytest.fixture(scope="module")
def v1_cassette(
    shop_v1: Upstream, tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path
) -> Path:
    from tests.processes import start_baton

    def starter(*args: str) -> BatonProcess:
        return start_baton([*args, "--set", f"confdir={mitm_confdir}"])

    cassette = tmp_path_factory.mktemp("drift") / "shop-v1.cassette"
    record_shop(starter, shop_v1, cassette)
    return cassette


def diff(*args: str) -> tuple[int, str, str]:
    result = run_baton(["diff", *args])
    return result.returncode, result.stdout, result.stderr


def changes_of(report: dict, cls: str) -> set[tuple[str, str, str]]:
    return {
        (i["endpoint"], c["location"], c["kind"])
        for i in report["interactions"]
        for c in i["changes"]
        if c["class"] == cls
    }


def test_the_same_build_has_no_breaking_drift(v1_cassette: Path, shop_v1: Upstream) -> None:
    code, out, err = diff(str(v1_cassette), "--target", shop_v1.url, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"]["changes"]["breaking"] == 0
    assert report["summary"]["changes"]["additive"] == 0
    # Without learning, the timestamps and ids that change on every call are value changes.
    assert ("GET /products/{id}", "body.generated_at", "value_changed") in changes_of(
        report, "value"
    )
    assert report["summary"]["skipped"] == 1  # the POST, not re-sent without --allow-side-effects


def test_learned_noise_turns_timestamps_and_ids_into_noise(
    v1_cassette: Path, shop_v1: Upstream, tmp_path: Path
) -> None:
    saved = tmp_path / "noise.json"
    code, out, err = diff(
        str(v1_cassette),
        "--target",
        shop_v1.url,
        "--learn-noise",
        "--save-noise",
        str(saved),
        "--format",
        "json",
    )
    assert code == 0, err
    report = json.loads(out)
    noise = changes_of(report, "noise")
    assert ("GET /products/{id}", "body.generated_at", "value_changed") in noise
    assert ("GET /products/{id}", "body.request_id", "value_changed") in noise
    assert report["summary"]["changes"]["value"] == 0, changes_of(report, "value")
    learned = json.loads(saved.read_text())["learned"]
    assert "body.generated_at" in learned["GET /products/{id}"]

    # The saved noise is reused without learning again.
    code, out, _ = diff(
        str(v1_cassette), "--target", shop_v1.url, "--noise", str(saved), "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["summary"]["changes"]["value"] == 0


def test_a_drifted_build_fails_with_each_change_classified(
    v1_cassette: Path, shop_v2: Upstream, tmp_path: Path
) -> None:
    code, out, err = diff(
        str(v1_cassette), "--target", shop_v2.url, "--learn-noise", "--format", "json"
    )
    assert code == 1, err
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    breaking = changes_of(report, "breaking")
    assert ("GET /products/{id}", "body.stock", "field_removed") in breaking
    assert ("GET /products/{id}", "body.price", "type_changed (number -> string)") in breaking
    assert ("GET /legacy", "status", "status_class_changed") in breaking
    assert ("GET /products/{id}", "body.currency", "field_added") in changes_of(report, "additive")
    values = changes_of(report, "value")
    assert ("GET /catalog.gz", "body.catalog.size", "value_changed") in values  # gzip decoded
    assert ("GET /catalog.br", "body.catalog.size", "value_changed") in values  # brotli decoded
    assert ("GET /about", "body:line 2", "text_changed") in values  # "version 1" -> "version 2"
    assert ("GET /about", "body:line 3", "text_changed") in changes_of(report, "noise")
    assert report["verdict"] == "drift" and report["exit_code"] == 1

    # The terminal report: grouped by endpoint, old -> new, a verdict line.
    code, text, _ = diff(str(v1_cassette), "--target", shop_v2.url, "--learn-noise")
    assert code == 1
    assert "GET /products/{id}  (3 interactions:" in text
    assert 'body.price: type_changed (number -> string) (x3): 11.0 -> "11.00"' in text
    assert "GET /legacy" in text and "status: status_class_changed: 200 -> 410" in text
    assert "POST /orders" in text and "not re-sent: it may change state" in text
    assert text.rstrip().splitlines()[-1].startswith("DRIFT: ")


def test_the_gate_and_ignore_rules(v1_cassette: Path, shop_v2: Upstream, tmp_path: Path) -> None:
    ignore = [
        "--ignore",
        "body.stock",
        "--ignore",
        "body.price",
        "--ignore-regex",
        r"^status$",
        "--ignore",
        "body.generated_at",
        "--ignore",
        "body.request_id",
    ]
    code, out, _ = diff(str(v1_cassette), "--target", shop_v2.url, *ignore, "--format", "json")
    report = json.loads(out)
    assert code == 0, changes_of(report, "breaking")
    assert ("GET /products/{id}", "body.stock", "field_removed") in changes_of(report, "noise")
    code, _, _ = diff(str(v1_cassette), "--target", shop_v2.url, *ignore, "--fail-on", "additive")
    assert code == 1  # body.currency was added


def test_per_endpoint_rules_from_pyproject(
    v1_cassette: Path, shop_v2: Upstream, tmp_path: Path
) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(
        '[tool.baton.diff]\nignore = ["body.generated_at", "body.request_id"]\n'
        '[tool.baton.diff.endpoints."GET /products/*"]\nignore = ["body.stock", "body.price"]\n'
        '[tool.baton.diff.endpoints."GET /legacy"]\nignore = ["status"]\n'
    )
    code, out, err = diff(
        str(v1_cassette), "--target", shop_v2.url, "--config", str(config), "--format", "json"
    )
    assert code == 0, (err, changes_of(json.loads(out), "breaking"))


def test_cassette_against_cassette_without_network(
    baton: Callable[..., BatonProcess], v1_cassette: Path, shop_v2: Upstream, tmp_path: Path
) -> None:
    v2_cassette = tmp_path / "shop-v2.cassette"
    record_shop(baton, shop_v2, v2_cassette)
    code, out, _ = diff(str(v1_cassette), str(v2_cassette), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert ("GET /products/{id}", "body.stock", "field_removed") in changes_of(report, "breaking")
    assert ("POST /orders", "status", "status_changed") not in changes_of(report, "breaking")
    assert report["summary"]["only_in_old"] == 0 and report["summary"]["only_in_new"] == 0


def test_junit_and_markdown_reports(v1_cassette: Path, shop_v2: Upstream, tmp_path: Path) -> None:
    junit = tmp_path / "drift.xml"
    code, _, err = diff(
        str(v1_cassette), "--target", shop_v2.url, "--format", "junit", "-o", str(junit)
    )
    assert code == 1 and "report written" in err
    suites = JUnitXml.fromfile(str(junit))
    cases = {case.name: case for suite in suites for case in suite}
    assert "GET /products/{id}" in cases
    assert (
        cases["GET /products/{id}"].result and cases["GET /products/{id}"].result[0].type == "drift"
    )
    assert not cases["GET /about"].result  # value drift does not fail the default gate
    markdown = tmp_path / "drift.md"
    diff(str(v1_cassette), "--target", shop_v2.url, "--format", "markdown", "-o", str(markdown))
    text = markdown.read_text()
    assert text.startswith("### ❌ baton drift")
    assert "| breaking | additive | value | noise |" in text


def test_side_effects_are_sent_only_when_allowed(v1_cassette: Path, shop_v1: Upstream) -> None:
    code, out, _ = diff(
        str(v1_cassette),
        "--target",
        shop_v1.url,
        "--allow-side-effects",
        "--only",
        "POST /orders",
        "--format",
        "json",
    )
    report = json.loads(out)
    assert code == 0
    assert [(i["method"], i["outcome"], i["status"]["new"]) for i in report["interactions"]] == [
        ("POST", "compared", 201)
    ]


def test_a_target_that_is_down_is_a_clear_error(v1_cassette: Path) -> None:
    code, out, err = diff(str(v1_cassette), "--target", f"http://127.0.0.1:{unused_port()}")
    assert code == 2
    assert "unreachable" in err and len(err.strip().splitlines()) == 1
    assert out == ""


def test_a_timeout_on_one_endpoint_is_breaking_for_that_endpoint_only(
    baton: Callable[..., BatonProcess], shop_v2: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "slow.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{shop_v2.url}", "--listen-port", "0"
    )
    with httpx.Client(base_url=recorder.url, trust_env=False, timeout=30) as client:
        client.get("/slow")
        client.get("/products/1")
    assert recorder.stop() == 0
    code, out, _ = diff(
        str(cassette),
        "--target",
        shop_v2.url,
        "--timeout",
        "1",
        "--learn-noise",
        "--format",
        "json",
    )
    report = json.loads(out)
    assert code == 1
    assert changes_of(report, "breaking") == {("GET /slow", "status", "no_response")}


def test_bad_usage_is_exit_2(v1_cassette: Path, tmp_path: Path) -> None:
    assert diff(str(v1_cassette))[0] == 2  # neither --target nor a second cassette
    code, _, err = diff(str(v1_cassette), "--target", "http://127.0.0.1:1", "--header", "no-colon")
    assert code == 2 and "NAME:VALUE" in err
    code, _, err = diff(str(tmp_path / "missing.cassette"), str(v1_cassette))
    assert code == 2 and "no such file" in err


def test_redacted_headers_are_replaced_never_sent_as_placeholders(
    baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    echo = start_upstream("httpbin")
    try:
        cassette = tmp_path / "auth.cassette"
        recorder = baton(
            "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
        )
        httpx.get(
            recorder.url + "/headers",
            headers={"Authorization": "Bearer real-token-1"},
            trust_env=False,
        )
        assert recorder.stop() == 0
        _, out, _ = diff(
            str(cassette), "--target", echo.url, "--format", "json", "--ignore", "body"
        )
        report = json.loads(out)
        assert "redacted header(s) authorization not sent" in report["interactions"][0]["note"]
        _code, out, _ = diff(
            str(cassette),
            "--target",
            echo.url,
            "--header",
            "Authorization: Bearer new-token-2",
            "--format",
            "json",
        )
        (change,) = [
            c
            for c in json.loads(out)["interactions"][0]["changes"]
            if "Authorization" in c["location"]
        ]
        assert change["new"] == "Bearer new-token-2" and "REDACTED" in change["old"]
    finally:
        echo.stop()


def test_ten_thousand_interactions_finish_with_bounded_memory(
    tmp_path: Path, shop_v1: Upstream
) -> None:
    cassette = tmp_path / "many.cassette"
    body = json.dumps({"id": 1, "name": "product 1", "price": 11.0, "stock": 3}).encode()
    with CassetteWriter(cassette, redactor=None) as writer:
        for n in range(10_000):
            writer.append(
                Interaction(
                    str(n),
                    Request("GET", "http", "shop", 80, f"/products/{n % 50}", (("n", str(n)),)),
                    Response(200, "OK", headers=(("content-type", "application/json"),), body=body),
                    0.0,
                )
            )
    import subprocess
    import sys

    from bench.diff_throughput import REPORTING_PEAK

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            REPORTING_PEAK,
            "diff",
            str(cassette),
            "--target",
            shop_v1.url,
            "--format",
            "json",
            "--ignore",
            "body",
            "-o",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["compared"] == 10_000
    peak_kib = int(result.stderr.rsplit("VmHWM:", 1)[1].split()[0])
    # The diff process's own peak: the cassette is streamed, answers are dropped once compared.
    # What remains is the report itself: every one of the 59,200 noise changes is listed (a
    # 15 MB JSON file, built whole before it is written), about 150 MiB of the peak.
    assert peak_kib < 256 * 1024, f"peak RSS {peak_kib} KiB"
