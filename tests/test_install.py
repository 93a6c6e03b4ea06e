"""baton installs into someone else's project: the built wheel, a fresh venv, a user's own packages.

The rest of the suite runs baton from the repository's editable install, with
the repository's root as the working directory, which would hide a packaging
mistake: a top-level ``proxy`` or ``replay`` in the wheel, a module missing
from it, an entry point naming the wrong module. Here the wheel is built from
a copy of the working tree, installed into a venv of its own (the repository
is nowhere on its ``sys.path``), and used from a throw-away project that has
its own ``proxy/`` and ``replay/`` packages, as service repositories often do.

The wheel and the venv are made once per session; pip's cache makes the
second session fast.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from baton.cassettes import read_cassette
from tests.processes import Upstream

ROOT = Path(__file__).resolve().parent.parent
# The repository's folders that install as baton.<name>; none may install as <name>.
SUBPACKAGES = ("cassettes", "formats", "replay", "proxy")
# Variables through which the repository's environment could reach the fresh venv.
LEAKING_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run(args: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a failure shows its output."""
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


# -- the wheel, built from a copy of the working tree ---------------------------------------


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree as a clone would hold it: tracked and new files, symlinks kept.

    Built from a copy because an in-tree build leaves ``build/`` and
    ``*.egg-info`` in the shared working tree.
    """
    listed = run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    ).stdout
    copy = tmp_path_factory.mktemp("baton-source") / "baton"
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, copy / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the working tree, not yet in git
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return copy


@pytest.fixture(scope="session")
def wheel(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """baton's wheel, built by pip in an isolated build environment (setuptools from PyPI)."""
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source_tree])
    (built,) = out.glob("baton_replay-*.whl")
    return built


def wheel_metadata(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(f".dist-info/{name}")]
        return archive.read(path).decode("utf-8")


def test_the_wheel_holds_every_package_file_under_baton_and_nothing_at_the_top(
    wheel: Path, source_tree: Path
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"baton"}
    assert wheel_metadata(wheel, "top_level.txt").split() == ["baton"]
    recorded = {
        line.split(",")[0].split("/")[0] for line in wheel_metadata(wheel, "RECORD").splitlines()
    }
    assert not recorded & set(SUBPACKAGES), f"RECORD installs {recorded} at the top level"

    expected = {"baton/__init__.py", "baton/py.typed"}
    for package in SUBPACKAGES:
        for path in (source_tree / package).rglob("*"):
            # The HTML reports' templates are package data, shipped beside their module.
            template = path.parent.name == "templates" and path.parent.parent.name == "html"
            if path.is_file() and (path.suffix == ".py" or path.name == "py.typed" or template):
                expected.add(f"baton/{path.relative_to(source_tree).as_posix()}")
    packaged = {name for name in names if name.startswith("baton/")}
    assert expected - packaged == set(), "files missing from the wheel"
    assert packaged - expected == set(), "files in the wheel that the source tree does not have"
    # The parts a user reaches first, named so a wholesale loss reads plainly.
    for part in (
        "proxy/cli/__init__.py",
        "proxy/cli/record.py",
        "proxy/pytest_plugin.py",
        "proxy/mitmproxy_addon.py",
        "formats/har.py",
        "replay/server.py",
        "replay/py.typed",
        "cassettes/writer.py",
        "replay/html/templates/drift.html",
        "replay/html/templates/drift.js",
    ):
        assert f"baton/{part}" in packaged

    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel_metadata(wheel, "entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"baton": "baton.proxy.cli:main"}
    assert dict(entry_points["pytest11"]) == {"baton": "baton.proxy.pytest_plugin"}


# -- a fresh venv with the wheel and the `pytest` extra ------------------------------------------


@dataclass(frozen=True)
class FreshVenv:
    """A venv that has only the wheel, its dependencies and pytest."""

    root: Path
    site_packages: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self) -> dict[str, str]:
        """This test's environment minus the ways the repository could leak in."""
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in LEAKING_VARIABLES and not name.startswith("PYTEST_")
        }
        path = [p for p in env.get("PATH", "").split(os.pathsep) if not _inside(Path(p), ROOT)]
        env["PATH"] = os.pathsep.join([str(self.bin), *path])
        env["VIRTUAL_ENV"] = str(self.root)
        env["PYTHONNOUSERSITE"] = "1"
        return env

    def run(
        self, args: list[str | Path], cwd: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env={**self.env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


@pytest.fixture(scope="session")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    """The wheel with its `pytest` extra, installed as a user would, into a venv of its own.

    The venv is made without pip and filled by this interpreter's pip
    (``pip --python``), which saves bootstrapping a second pip; what lands in
    site-packages is the same.
    """
    root = tmp_path_factory.mktemp("fresh-venv") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", root])
    python = root / "bin" / "python"
    # --no-compile: bytecode is then written on first import instead of for all
    # of mitmproxy's dependencies up front, which halves the install.
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "-q",
            "--no-compile",
            f"{wheel}[pytest]",
        ]
    )
    purelib = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    ).stdout.strip()
    return FreshVenv(root, Path(purelib))


def test_site_packages_holds_baton_and_no_top_level_proxy_replay_cassettes_or_formats(
    fresh_venv: FreshVenv,
) -> None:
    installed = {entry.name.removesuffix(".py") for entry in fresh_venv.site_packages.iterdir()}
    assert "baton" in installed
    assert not installed & set(SUBPACKAGES), (
        f"site-packages holds {sorted(installed & set(SUBPACKAGES))}"
    )
    (dist_info,) = fresh_venv.site_packages.glob("baton_replay-*.dist-info")
    record = (dist_info / "RECORD").read_text(encoding="utf-8").splitlines()
    top_level = {line.split(",")[0].split("/")[0] for line in record}
    assert {n for n in top_level if not n.endswith(".dist-info") and n != ".."} == {"baton"}


def test_baton_imports_and_its_cli_runs_in_the_fresh_venv(
    fresh_venv: FreshVenv, tmp_path: Path
) -> None:
    imported = fresh_venv.run(
        ["python", "-c", "import baton.replay, baton.proxy.cli; print(baton.replay.__file__)"],
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()) == fresh_venv.site_packages / "baton/replay/__init__.py"

    version = fresh_venv.run(["baton", "--version"], cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"baton, version \d+\.\d+\.\d+\S*\n", version.stdout), version.stdout

    addon = fresh_venv.run(["baton", "addon-path"], cwd=tmp_path)
    assert addon.returncode == 0, addon.stderr
    script = Path(addon.stdout.strip())
    assert script == fresh_venv.site_packages / "baton/proxy/mitmproxy_addon.py"
    assert script.is_file()


def test_an_html_drift_report_renders_from_the_installed_wheel(
    fresh_venv: FreshVenv, tmp_path: Path
) -> None:
    cassette = ROOT / "tests" / "fixtures" / "format-v1.cassette"
    page = tmp_path / "drift.html"
    result = fresh_venv.run(
        ["baton", "diff", cassette, cassette, "--format", "html", "-o", page], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    text = page.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and 'id="baton-data"' in text
    assert "OK: no breaking drift" in text


# -- a user's project with its own proxy/ and replay/ -------------------------------------------

PROJECT_FILES = {
    "pyproject.toml": """
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
    """,
    "proxy/__init__.py": '"""The project\'s own proxy package (nothing to do with baton)."""\n',
    "proxy/app.py": """
        import json
        import urllib.request

        OWNER = "the user's project"


        def item_query(base_url, item):
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"{base_url}/echo?item={item}", timeout=30) as response:
                return json.load(response)["query"]
    """,
    "replay/__init__.py": '"""The project\'s own replay package: it replays domain events."""\n',
    "replay/thing.py": """
        def replay_events(events):
            state = {}
            for key, value in events:
                state[key] = value
            return state
    """,
    "tests/test_own.py": """
        from pathlib import Path

        import proxy
        from proxy.app import OWNER
        from replay.thing import replay_events

        PROJECT = Path(__file__).resolve().parent.parent


        def test_the_project_imports_its_own_proxy_and_replay():
            assert OWNER == "the user's project"
            assert Path(proxy.__file__).resolve().parent == PROJECT / "proxy"


        def test_replay_events():
            assert replay_events([("a", 1), ("a", 2), ("b", 3)]) == {"a": 2, "b": 3}
    """,
    "tests/test_with_baton.py": """
        import sys
        from pathlib import Path

        import baton
        import pytest

        from proxy.app import item_query


        def test_baton_comes_from_the_venv():
            assert Path(baton.__file__).resolve().is_relative_to(Path(sys.prefix).resolve())


        @pytest.mark.baton("cassettes/echo.cassette")
        def test_the_projects_client_against_the_recording(baton_replay):
            assert item_query(baton_replay.url, 1) == {"item": "1"}
            assert baton_replay.misses == []
    """,
}


def make_project(folder: Path) -> Path:
    import textwrap

    for name, text in PROJECT_FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


@dataclass
class FreshMitmdump:
    proc: subprocess.Popen[bytes]
    port: int
    output: list[str]

    def stop(self) -> int:
        """SIGTERM by PID, killed if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def fresh_mitmdump(fresh_venv: FreshVenv) -> Iterator[list[FreshMitmdump]]:
    """Started ``mitmdump`` processes of the fresh venv, each stopped when the test ends."""
    started: list[FreshMitmdump] = []
    yield started
    for mitmdump in started:
        mitmdump.stop()


def start_fresh_mitmdump(
    venv: FreshVenv, args: list[str], cwd: Path, started: list[FreshMitmdump]
) -> FreshMitmdump:
    """The fresh venv's ``mitmdump ARGS`` on an ephemeral 127.0.0.1 port, once it listens."""
    proc = subprocess.Popen(
        [str(venv.bin / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port", "0", *args],
        cwd=cwd,
        env=venv.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    mitmdump = FreshMitmdump(proc, 0, [])
    started.append(mitmdump)
    listening = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            mitmdump.output.append(line)
            match = re.search(r"listening at .*?:(\d+)", line)
            if match and not mitmdump.port:
                mitmdump.port = int(match.group(1))
                listening.set()
        listening.set()

    threading.Thread(target=watch, daemon=True).start()
    if not listening.wait(60) or not mitmdump.port:
        mitmdump.stop()
        raise AssertionError("mitmdump did not start:\n" + "".join(mitmdump.output))
    return mitmdump


def test_a_project_with_its_own_proxy_and_replay_runs_its_suite_and_the_baton_fixture(
    fresh_venv: FreshVenv,
    fresh_mitmdump: list[FreshMitmdump],
    echo: Upstream,
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project")
    cassette = project / "tests" / "cassettes" / "echo.cassette"
    cassette.parent.mkdir()

    # Record with the installed addon, loaded the way README shows: mitmdump -s "$(baton addon-path)".
    addon_path = fresh_venv.run(["baton", "addon-path"], cwd=project)
    assert addon_path.returncode == 0, addon_path.stderr
    addon = addon_path.stdout.strip()
    recorder = start_fresh_mitmdump(
        fresh_venv,
        [
            "-s",
            addon,
            "--mode",
            f"reverse:{echo.url}",
            "--set",
            f"confdir={tmp_path / 'mitm'}",
            "--set",
            f"baton_cassette={cassette}",
        ],
        project,
        fresh_mitmdump,
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{recorder.port}/echo?item=1", timeout=30) as response:
        assert json.load(response)["query"] == {"item": "1"}
    recorder.stop()
    assert [i.request.target for i in read_cassette(cassette)] == ["/echo?item=1"], "".join(
        recorder.output
    )

    # The project's own suite, as its developers run it: from its root, in its venv.
    suite = fresh_venv.run(["python", "-m", "pytest", "-p", "no:cacheprovider"], cwd=project)
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert re.search(r"\b4 passed\b", suite.stdout), suite.stdout

    # The fixture comes from the `pytest11` entry point named `baton`, and only from there.
    without = fresh_venv.run(
        ["python", "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:baton"], cwd=project
    )
    assert without.returncode == 1, without.stdout + without.stderr
    assert "fixture 'baton_replay' not found" in without.stdout
    assert re.search(r"\b3 passed\b.*\b1 error\b", without.stdout), without.stdout

    # With autoloading off, naming the module turns it back on.
    named = fresh_venv.run(
        ["python", "-m", "pytest", "-p", "no:cacheprovider", "-p", "baton.proxy.pytest_plugin"],
        cwd=project,
        extra_env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert named.returncode == 0, named.stdout + named.stderr
    assert re.search(r"\b4 passed\b", named.stdout), named.stdout


# -- the install commands README shows --------------------------------------------------------

README_INSTALL_BLOCK = re.compile(r"<!-- install-commands[^>]*-->\s*```sh\n(.*?)```", re.S)


def readme_install_commands() -> list[list[str]]:
    """The ``pip install`` lines of README's "Use baton in your project", comments cut."""
    import shlex

    (block,) = README_INSTALL_BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_readme_install_commands_install_baton_with_its_pytest_extra(
    source_tree: Path, tmp_path: Path
) -> None:
    """Each local form resolves, as written, to baton-replay with the `pytest` extra.

    ``--dry-run --report`` makes pip build the metadata as it would for the
    install; the install itself is the wheel's, tested above. The GitHub form
    needs the network beyond PyPI and differs from the git+file one only in
    the URL.
    """
    clone = tmp_path / "baton"
    # Without the wheel build's leftovers in the copy, as a clone would be.
    shutil.copytree(
        source_tree, clone, symlinks=True, ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    git = [
        "git",
        "-C",
        clone,
        "-c",
        "user.name=baton",
        "-c",
        "user.email=baton@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ]
    run([*git, "init", "-q"])
    run([*git, "add", "-A"])
    run([*git, "commit", "-q", "-m", "a clone of baton"])

    commands = readme_install_commands()
    assert all(c[:2] == ["pip", "install"] for c in commands), commands
    local = [c for c in commands if not any("github.com/OWNER" in a for a in c)]
    assert len(commands) - len(local) == 1, "README shows one GitHub form, with OWNER"
    for command in local:
        args = [a.replace("/path/to/baton", str(clone)) for a in command[2:]]
        report = tmp_path / "report.json"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--no-deps",
                "-q",
                "--report",
                report,
                *args,
            ]
        )
        (install,) = json.loads(report.read_text(encoding="utf-8"))["install"]
        assert install["metadata"]["name"] == "baton-replay", command
        assert install["requested_extras"] == ["pytest"], command
        assert install["metadata"]["provides_extra"].count("pytest") == 1, command
        assert install["download_info"]["url"] == clone.as_uri(), command
        assert ("-e" in args) == install["download_info"].get("dir_info", {}).get(
            "editable", False
        ), command
