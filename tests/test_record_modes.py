"""The recorder in mitmproxy's other modes, with real clients."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from baton.cassettes import read_cassette
from tests.processes import BatonProcess, Upstream


def test_upstream_mode_records_through_a_corporate_proxy(
    baton: Callable[..., BatonProcess], httpbin: Upstream, tmp_path: Path
) -> None:
    # The "corporate proxy" is a second, plain proxy: baton's own recorder in
    # regular mode, recording into a cassette of its own.
    corporate_cassette = tmp_path / "corporate.cassette"
    corporate = baton("record", "-o", str(corporate_cassette), "--listen-port", "0")
    cassette = tmp_path / "upstream.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"upstream:{corporate.url}", "--listen-port", "0"
    )
    response = httpx.get(
        httpbin.url + "/get?via=upstream", proxy=recorder.url, trust_env=False, timeout=30
    )
    assert response.status_code == 200
    assert recorder.stop() == 0 and corporate.stop() == 0

    (interaction,) = read_cassette(cassette)
    assert interaction.request.query == (("via", "upstream"),)
    assert interaction.request.port == httpbin.port
    assert interaction.tags["mode"].startswith("upstream:")
    # The request really went through the corporate proxy.
    assert [i.request.path for i in read_cassette(corporate_cassette)] == ["/get"]


def test_socks5_mode_records_a_curl_client(
    baton: Callable[..., BatonProcess], httpbin: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "socks.cassette"
    recorder = baton("record", "-o", str(cassette), "--mode", "socks5", "--listen-port", "0")
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--noproxy",
            "",
            "--socks5",
            f"127.0.0.1:{recorder.port}",
            "-H",
            "Authorization: Bearer socks-secret-123",
            f"{httpbin.url}/headers",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "REDACTED-" not in result.stdout  # the client sees the real answer
    assert "socks-secret-123" in result.stdout
    assert recorder.stop() == 0

    (interaction,) = read_cassette(cassette)
    assert interaction.tags["mode"] == "socks5"
    assert interaction.response.status == 200
    assert b"socks-secret-123" not in cassette.read_bytes()
