"""`make demo` tells its story end to end, with real processes, and leaves none behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_runs_its_four_steps() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run.py")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "the payments API key in the cassette: redacted" in out
    assert "3 passed" in out  # the cart's tests, against replay, upstreams stopped
    assert "body.price: type_changed (number -> string)" in out
    assert "exit code 1" in out
    report = json.loads((ROOT / "demo" / "out" / "drift.json").read_text())
    assert report["verdict"] == "drift" and report["summary"]["changes"]["breaking"] > 0
