"""What replay records (new_episodes, all, the pytest plugin's once) is redacted by the project's rules.

`baton record` is not the only door to the disk: `baton replay --record-mode
new_episodes` and the pytest plugin forward misses and append them. A team's
own rules (an internal token header) must apply there too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from baton.cassettes import CassetteWriter, read_cassette
from tests.processes import BatonProcess, Upstream
from tests.test_cassette_format import sample

SECRET = "team-token-5d41402abc4b2a76"


def header(interaction: object, name: str) -> str:
    headers = interaction.request.headers  # type: ignore[attr-defined]
    return next(v for k, v in headers if k.lower() == name.lower())


@pytest.mark.parametrize("source", ["flag", "config"])
def test_new_episodes_redacts_with_the_project_rules(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, source: str
) -> None:
    cassette = tmp_path / "episodes.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(sample(1))  # something to replay; the miss below is forwarded
    flags = ["--redact-header", "X-Internal-Auth"] if source == "flag" else []
    if source == "config":
        (tmp_path / "baton.toml").write_text('redact_header = ["X-Internal-Auth"]\n')
    proxy = baton(
        "replay",
        str(cassette),
        "--record-mode",
        "new_episodes",
        "--mode",
        f"reverse:{echo.url}",
        "--listen-port",
        "0",
        *flags,
        cwd=tmp_path,
    )
    answer = httpx.get(f"{proxy.url}/echo?n=2", headers={"X-Internal-Auth": SECRET}, timeout=30)
    assert answer.status_code == 200
    assert proxy.stop() == 0
    _, recorded = read_cassette(cassette)
    assert SECRET.encode() not in cassette.read_bytes()
    assert header(recorded, "X-Internal-Auth").startswith("REDACTED-")


def test_the_pytest_plugin_records_with_the_project_rules(
    echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    pytester.makefile(".toml", pyproject='[tool.baton]\nredact_header = ["X-Internal-Auth"]\n')
    pytester.makepyfile(
        test_service=f"""
import httpx
import pytest

@pytest.mark.baton(upstream={echo.url!r})
def test_calls_the_service(baton_replay):
    answer = httpx.get(baton_replay.url + "/echo?n=1", headers={{"X-Internal-Auth": {SECRET!r}}})
    assert answer.status_code == 200
"""
    )
    result = pytester.runpytest_subprocess(
        "--baton-record-mode", "once", "-p", "no:cacheprovider", timeout=240
    )
    result.assert_outcomes(passed=1)
    (cassette,) = (pytester.path / "cassettes").rglob("*.cassette")
    (interaction,) = read_cassette(cassette)
    assert SECRET.encode() not in cassette.read_bytes()
    assert header(interaction, "X-Internal-Auth").startswith("REDACTED-")
