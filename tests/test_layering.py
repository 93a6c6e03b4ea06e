"""The package layout: imports point one way, nothing top-level, no oversized CLI module.

    cassettes  <-  formats, replay  <-  proxy  <-  proxy.cli

Checked twice: statically (every ``import`` in every module, including the
ones inside functions) and by importing each layer in a fresh interpreter
and listing what it loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cassettes", "formats", "replay", "proxy")

# What each layer may import from baton; anything else is an upward import.
ALLOWED = {
    "cassettes": {"cassettes"},
    "formats": {"cassettes", "formats"},
    "replay": {"cassettes", "replay"},
    "proxy": {"cassettes", "formats", "replay", "proxy"},
}
# The one sanctioned exception: mitmproxy flow files are converted by the same
# code that converts live flows, imported only when such a file is met.
EXCEPTIONS = {("formats.mitmproxy_flows", "proxy.flows")}
MITMPROXY_ALLOWED = {"proxy", "formats.mitmproxy_flows"}
CONFIGURATION = {"proxy.cli.configuration", "proxy.cli.config_schema"}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            found.append((".".join(relative.parts).removesuffix(".__init__"), path))
    return found


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_one_way(module: str, path: Path) -> None:
    layer = module.split(".")[0]
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in PACKAGES, f"{module} imports {name!r}: import baton.{name} instead"
        if top == "mitmproxy":
            assert layer == "proxy" or module in MITMPROXY_ALLOWED, f"{module} imports mitmproxy"
        if not name.startswith("baton."):
            continue
        target = name.removeprefix("baton.")
        target_layer = target.split(".")[0]
        if target_layer == "__init__" or target == "baton":
            continue
        if (module, ".".join(target.split(".")[:2])) in EXCEPTIONS:
            continue
        assert target_layer in ALLOWED[layer], f"{module} imports {name}: an upward import"
        if layer == "proxy" and not module.startswith("proxy.cli"):
            # The pytest plugin is a front end too: it reads the same configuration.
            shared = module == "proxy.pytest_plugin" and target in CONFIGURATION
            assert shared or not target.startswith("proxy.cli"), f"{module} imports the CLI"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("baton.cassettes", ("mitmproxy", "baton.replay", "baton.proxy", "baton.formats")),
        ("baton.formats", ("mitmproxy", "baton.replay", "baton.proxy")),
        ("baton.replay", ("mitmproxy", "baton.proxy", "baton.formats")),
    ],
)
def test_a_layer_loads_nothing_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    submodules = sorted(
        f"{package}.{p.stem}"
        for p in (ROOT / package.removeprefix("baton.")).glob("*.py")
        if p.stem not in ("__init__", "__main__", "mitmproxy_flows")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {submodules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({forbidden!r}))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_baton_replay_loads_only_what_replaying_needs() -> None:
    """Start-up (issue 17): the CLI loads one command's module; replay pays for no other's."""
    heavy = ("deepdiff", "rich", "jinja2", "grpc", "openapi_core", "mitmproxy", "httpx", "yaml")
    code = (
        "import sys, click\n"
        "from baton.proxy.cli import main\n"
        "main.get_command(click.Context(main), 'replay')\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_baton_diff_of_two_recordings_loads_no_network_or_report_libraries(
    tmp_path: Path,
) -> None:
    """Start-up (issue 17): comparing two equal recordings needs neither the re-sender (its
    event loop, httptools) nor deepdiff (loaded when two JSON bodies first differ) nor rich,
    nor the replay index (they pair by position)."""
    heavy = ("deepdiff", "rich", "jinja2", "grpc", "httpx", "yaml", "httptools", "uvloop")
    heavy += ("baton.replay.resend", "xml.etree", "mitmproxy", "openapi_core", "baton.replay.index")
    code = (
        "import sys\n"
        "from baton.cassettes import CassetteWriter, Interaction, Request, Response\n"
        "from baton.proxy.cli import main\n"
        f"path = {str(tmp_path / 'api.cassette')!r}\n"
        "with CassetteWriter(path, redactor=None) as writer:\n"
        "    writer.append(Interaction('1', Request('GET', 'http', 'h', 80, '/a', (), 'HTTP/1.1',"
        " ()), Response(200, 'OK', headers=(('content-type', 'application/json'),),"
        " body=b'{\"a\": 1}'), 1.0))\n"
        "try:\n"
        "    main(['diff', path, path, '--format', 'json'])\n"
        "except SystemExit as exit:\n"
        "    print(exit.code)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert '"verdict": "ok"' in result.stdout
    assert result.stdout.splitlines()[-2:] == ["0", "[]"], result.stdout[-500:]


def test_no_cli_module_outgrows_one_command() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / "proxy" / "cli").glob("*.py")}
    assert sizes, "proxy/cli/ is a package of command modules"
    too_long = {name: n for name, n in sizes.items() if n > 400}
    assert not too_long, f"split these CLI modules: {too_long}"


def test_the_baton_folder_holds_only_links_to_the_top_level_folders() -> None:
    # The folders stay at the top of the repository (the project's layout);
    # baton/ makes them baton.* without moving them.
    for package in PACKAGES:
        link = ROOT / "baton" / package
        assert link.is_symlink(), f"baton/{package} should be a symlink to ../{package}"
        assert link.resolve() == (ROOT / package).resolve()


def test_baton_replay_serving_a_request_loads_no_mitmproxy_and_no_other_commands_libraries(
    tmp_path: Path,
) -> None:
    """Start-up (issue 17): the fast path answers its first request without mitmproxy (its
    --mode check skips the bare `reverse`), TOML (no configuration here) or another command's
    libraries; each would cost every `baton replay` milliseconds before the first answer."""
    heavy = ("deepdiff", "rich", "jinja2", "grpc", "openapi_core", "mitmproxy", "httpx", "yaml")
    heavy += ("tomllib", "http.cookies")
    code = (
        "import os, signal, socket, sys, threading, time\n"
        "from baton.cassettes import CassetteWriter, Interaction, Request, Response\n"
        f"path = {str(tmp_path / 'api.cassette')!r}\n"
        "with CassetteWriter(path, redactor=None) as writer:\n"
        "    writer.append(Interaction('1', Request('GET', 'http', 'h', 80, '/a', (), 'HTTP/1.1',"
        " ()), Response(200, 'OK', body=b'recorded'), 1.0))\n"
        "probe = socket.socket(); probe.bind(('127.0.0.1', 0)); port = probe.getsockname()[1]\n"
        "probe.close()\n"
        "answer = []\n"
        "def ask():\n"
        "    for _ in range(2000):\n"
        "        try:\n"
        "            with socket.create_connection(('127.0.0.1', port)) as s:\n"
        "                s.sendall(b'GET /a HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n')\n"
        "                answer.append(s.recv(4096))\n"
        "            break\n"
        "        except OSError:\n"
        "            time.sleep(0.01)\n"
        f"    answer.append(sorted(m for m in {heavy!r} if m in sys.modules))\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=ask, daemon=True).start()\n"
        "from baton.proxy.cli import main\n"
        "try:\n"
        "    main(['replay', '-q', path, '--listen-port', str(port)])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(answer)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "recorded" in result.stdout, result.stdout + result.stderr
    assert result.stdout.strip().endswith(", []]"), result.stdout
