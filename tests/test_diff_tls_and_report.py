"""``baton diff`` against HTTPS builds (certificates checked by default), and the report's reading order.

The upstreams are the shop service of tests/upstream_apps.py, over TLS with
a throw-away trustme CA that no system store trusts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from junitparser import JUnitXml

from baton.cassettes import CassetteWriter, Interaction, Request, Response
from tests.processes import TLSFiles, Upstream, run_baton, start_upstream

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "drift-report.schema.json").read_text())
JSON = (("content-type", "application/json"),)


@pytest.fixture(scope="module")
def shop_tls(tls_files: TLSFiles) -> Iterator[Upstream]:
    upstream = start_upstream("shop-v1", tls_files)
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def shop_v2() -> Iterator[Upstream]:
    upstream = start_upstream("shop-v2")
    yield upstream
    upstream.stop()


def _product(number: int) -> bytes:
    fields = {"id": number, "name": f"product {number}", "price": 10.0 + number}
    return json.dumps(
        {**fields, "stock": number * 3, "generated_at": 1.0, "request_id": "r"}
    ).encode()


@pytest.fixture(scope="module")
def cassette(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What shop v1 answered: three products, /legacy, /about and a POST."""
    path = tmp_path_factory.mktemp("tls") / "shop.cassette"
    answers = [
        ("GET", "/products/1", 200, JSON, _product(1)),
        ("GET", "/products/2", 200, JSON, _product(2)),
        ("GET", "/legacy", 200, JSON, b'{"legacy": true, "generated_at": 1.0, "request_id": "r"}'),
        (
            "GET",
            "/about",
            200,
            (("content-type", "text/plain; charset=utf-8"),),
            b"shop\nversion 1\nserved at 1\n",
        ),
        ("POST", "/orders", 201, JSON, b'{"order": 1}'),
    ]
    with CassetteWriter(path, redactor=None) as writer:
        for number, (method, target, status, headers, body) in enumerate(answers):
            writer.append(
                Interaction(
                    str(number),
                    Request(method, "http", "shop", 80, target),
                    Response(status, "OK", headers=headers, body=body),
                    0.0,
                )
            )
    return path


def diff(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run_baton(["diff", *args], env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr


# -- certificates ------------------------------------------------------------------


def test_an_untrusted_certificate_is_one_line_naming_the_target_and_the_fix(
    cassette: Path, shop_tls: Upstream
) -> None:
    code, out, err = diff(str(cassette), "--target", shop_tls.url)
    assert code == 2
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("baton: error: target " + shop_tls.url)
    assert "certificate not trusted" in line
    assert "--ca-cert PATH" in line and "--insecure" in line


def test_the_ca_given_with_ca_cert_is_trusted(
    cassette: Path, shop_tls: Upstream, tls_files: TLSFiles
) -> None:
    code, out, err = diff(
        str(cassette), "--target", shop_tls.url, "--ca-cert", str(tls_files.ca), "--format", "json"
    )
    assert code == 0, err
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"]["compared"] == 4
    assert report["insecure"] is False
    assert {i["status"]["new"] for i in report["interactions"] if i["outcome"] == "compared"} == {
        200
    }


def test_ssl_cert_file_is_honoured(cassette: Path, shop_tls: Upstream, tls_files: TLSFiles) -> None:
    code, out, err = diff(
        str(cassette),
        "--target",
        shop_tls.url,
        "--format",
        "json",
        env={"SSL_CERT_FILE": str(tls_files.ca)},
    )
    assert code == 0, err
    assert json.loads(out)["summary"]["compared"] == 4


def test_insecure_runs_and_every_report_says_so(
    cassette: Path, shop_tls: Upstream, tmp_path: Path
) -> None:
    code, text, err = diff(str(cassette), "--target", shop_tls.url, "--insecure")
    assert code == 0, err
    assert text.splitlines()[1] == (
        "warning: certificates were not verified (--insecure): "
        "the answers may not come from the target"
    )
    assert "4 compared, 1 skipped" in text

    code, out, _ = diff(str(cassette), "--target", shop_tls.url, "--insecure", "--format", "json")
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert report["insecure"] is True and report["summary"]["compared"] == 4

    code, markdown, _ = diff(
        str(cassette), "--target", shop_tls.url, "--insecure", "--format", "markdown"
    )
    assert "> ⚠️ certificates were not verified (`--insecure`)" in markdown

    junit = tmp_path / "drift.xml"
    diff(
        str(cassette), "--target", shop_tls.url, "--insecure", "--format", "junit", "-o", str(junit)
    )
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    assert {p.name: p.value for p in suite.properties()}["insecure"] == "true"

    # Verified runs say nothing of the kind.
    code, text, _ = diff(str(cassette), str(cassette))
    assert "not verified" not in text


def test_the_noise_reference_follows_the_same_tls_settings(
    cassette: Path, shop_v2: Upstream, shop_tls: Upstream, tls_files: TLSFiles
) -> None:
    args = [str(cassette), "--target", shop_v2.url, "--learn-noise", "--reference", shop_tls.url]
    code, out, err = diff(*args)
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert f"reference {shop_tls.url}: certificate not trusted" in line

    code, out, err = diff(*args, "--ca-cert", str(tls_files.ca), "--format", "json")
    assert code == 1, err  # v2 drifted; the noise came from v1 over HTTPS
    noise = {
        c["location"]
        for i in json.loads(out)["interactions"]
        for c in i["changes"]
        if c["class"] == "noise"
    }
    assert "body.generated_at" in noise


def test_a_bad_ca_cert_is_exit_2_with_one_line(
    cassette: Path, shop_tls: Upstream, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.pem"
    code, out, err = diff(str(cassette), "--target", shop_tls.url, "--ca-cert", str(missing))
    assert (code, out) == (2, "")
    assert err.strip() == f"baton: error: --ca-cert {missing}: no such file"

    not_pem = tmp_path / "notes.pem"
    not_pem.write_text("not a certificate\n")
    code, _, err = diff(str(cassette), "--target", shop_tls.url, "--ca-cert", str(not_pem))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"--ca-cert {not_pem}: not a PEM CA bundle" in line

    code, _, err = diff(
        str(cassette), "--target", shop_tls.url, "--ca-cert", str(not_pem), "--insecure"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--ca-cert PATH or --insecure, not both" in err


def test_plain_http_spoken_to_an_https_url_is_named(cassette: Path, shop_v2: Upstream) -> None:
    https_url = shop_v2.url.replace("http://", "https://")
    code, _, err = diff(str(cassette), "--target", https_url)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"target {https_url}: TLS handshake failed" in line and "http://" in line


# -- the report's reading order ----------------------------------------------------


def test_the_markdown_report_reads_top_down(cassette: Path, shop_v2: Upstream) -> None:
    code, markdown, _ = diff(
        str(cassette), "--target", shop_v2.url, "--learn-noise", "--format", "markdown"
    )
    assert code == 1
    lines = markdown.splitlines()
    headings = [line for line in lines if line.startswith("#")]
    assert headings[0].startswith("### ❌ baton drift: ")
    assert [re.sub(r" \(\d+\).*", "", h) for h in headings[1:]] == [
        "#### Breaking",
        "#### Additive",
        "#### Value",
        "#### Noise",
        "#### Not compared",
    ]
    assert headings[1].endswith("— fails the gate") and "fails the gate" not in headings[2]
    # The verdict comes right under the title, before the counts and any change.
    first_text = next(line for line in lines[1:] if line.strip())
    assert first_text.startswith("**DRIFT: ") and first_text.endswith("Exit code 1.**")
    assert lines.index(first_text) < next(i for i, line in enumerate(lines) if line.startswith("|"))
    # Each change sits under its class: the removed field under Breaking, the added one under Additive.
    section = {h: lines.index(h) for h in headings}
    breaking, additive, value, noise, skipped = (section[h] for h in headings[1:])
    stock = lines.index("- `body.stock` field_removed (x2): was: 3")
    assert breaking < stock < additive
    assert additive < lines.index('- `body.currency` field_added (x2): added: "EUR"') < value
    assert noise < lines.index(
        "<details><summary>matched an ignore rule or learned noise</summary>"
    )
    assert skipped < lines.index(
        "- `POST /orders` (1x): not re-sent: it may change state (--allow-side-effects sends it)"
    )
    assert markdown.endswith("\n") and not markdown.endswith("\n\n")


def test_the_text_report_puts_the_worst_endpoints_first_and_the_verdict_last(
    cassette: Path, shop_v2: Upstream
) -> None:
    code, text, _ = diff(str(cassette), "--target", shop_v2.url, "--learn-noise")
    assert code == 1
    endpoints = [line.split("  (")[0] for line in text.splitlines() if "  (" in line]
    # Breaking first (by name), then value-only, then nothing compared.
    assert endpoints == ["GET /legacy", "GET /products/{id}", "GET /about", "POST /orders"]
    assert text.rstrip().splitlines()[-1].startswith("DRIFT: 5 changes fail the gate")
