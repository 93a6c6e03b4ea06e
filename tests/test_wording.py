"""Counts are worded for people: "1 interaction", never "1 interactions", in every command."""

from __future__ import annotations

from pathlib import Path

from baton.cassettes import CassetteWriter
from tests.processes import run_baton
from tests.test_cassette_format import sample

CORPUS = Path(__file__).resolve().parent / "corpus"


def test_import_repair_and_lint_word_a_count_of_one(tmp_path: Path) -> None:
    imported = tmp_path / "one.cassette"
    result = run_baton(
        ["import", str(CORPUS / "vcrpy" / "vcrpy-gzip_requests.yaml"), "-o", str(imported)]
    )
    assert result.returncode == 0, result.stderr
    assert f"baton: 1 interaction written to {imported}" in result.stderr

    sound = tmp_path / "sound.cassette"
    with CassetteWriter(sound, redactor=None) as writer:
        writer.append(sample(1))
    result = run_baton(["repair", str(sound)])
    assert f"{sound}: nothing to repair (1 interaction, all sound)" in result.stdout

    result = run_baton(["lint", str(sound)])
    assert result.returncode == 0
    assert "baton: no likely secrets in 1 cassette" in result.stderr
    assert "cassette(s)" not in result.stderr
