"""The documentation stays true: the generated reference is current, README commands run."""

from __future__ import annotations

from pathlib import Path

from baton.proxy.cli.reference import render_reference

ROOT = Path(__file__).resolve().parent.parent


def test_the_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(), "docs/reference.md is stale: run `make docs`"


def test_every_command_gives_an_example_in_its_help() -> None:
    from baton.proxy.cli import main

    for name, command in main.all_commands().items():
        assert "Example" in (command.help or ""), f"baton {name} --help has no example"


def runnable_blocks(markdown: str) -> list[list[str]]:
    """Shell blocks marked ``<!-- runnable -->`` in a Markdown page, as lists of commands."""
    import re

    blocks = re.findall(r"<!-- runnable -->\s*```sh\n(.*?)```", markdown, re.S)
    return [
        [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
        for block in blocks
    ]


def test_the_readme_commands_marked_runnable_run_as_written() -> None:
    import os
    import subprocess
    import sys

    blocks = runnable_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "the README has no runnable block"
    if not (ROOT / "demo" / "out" / "catalog.cassette").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "demo" / "run.py")],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=240,
        )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in (c for block in blocks for c in block):
        result = subprocess.run(
            command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"README command failed: {command}\n{result.stderr}"
