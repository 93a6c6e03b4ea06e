"""The pytest plugin: a test names its cassettes, baton answers in place of the services.

    @pytest.mark.baton                                       # cassettes/<module>/<test>.cassette
    def test_checkout(baton_replay):
        cart = Cart(catalog_url=baton_replay.url)            # reverse mode, baton's fast server
        ...
        subprocess.run(["curl", ...], env=baton_replay.env)  # any client, through the proxy

What a test runs with (record mode, matching, misses, the network block)
comes from the command line, the marker, the ini file or baton's own
configuration, in that order (``pytest_settings.py``). A test fails, with
one report, when a request matched nothing (unless ``allow_misses``), when
it left recorded interactions unused (with ``fail_on_unused``), and when it
opened a connection the network block refused, even if a client swallowed
the error. docs/pytest.md is the user's guide.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from baton.cassettes.wording import plural
from baton.proxy.pytest_network import AllowList, NetworkBlock, NetworkBlockedError
from baton.proxy.pytest_replay import BatonReplay, describe_interaction
from baton.proxy.pytest_settings import (
    MARKER_KEYWORDS,
    SETTINGS,
    TestSettings,
    check_marker,
    default_cassette,
)
from baton.replay.record_mode import RecordMode

__all__ = ["BatonReplay", "NetworkBlockedError"]

# pytest-recording owns --block-network and --allowed-hosts when it is installed too (a team
# moving from it to baton has both for a while); baton's --baton-* spellings always exist.
_SHORT_FLAGS = importlib.util.find_spec("pytest_recording") is None


@dataclass
class _Session:
    """The session-wide values, checked once at start: command line, ini file, configuration."""

    options: dict[str, Any] = field(default_factory=dict)
    ini: dict[str, Any] = field(default_factory=dict)
    configured: dict[str, tuple[Any, str]] = field(default_factory=dict)
    config_file: Path | None = None


_SESSION = pytest.StashKey[_Session]()
_SETTINGS = pytest.StashKey[TestSettings]()
_HANDLE = pytest.StashKey[BatonReplay]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("baton", "baton record and replay")
    group.addoption(
        "--baton-record-mode",
        choices=[m.value for m in RecordMode],
        default=None,
        help="Record mode of every @pytest.mark.baton test: none (default), once, "
        "new_episodes or all.",
    )
    group.addoption(
        *(["--block-network"] if _SHORT_FLAGS else []),
        "--baton-block-network",
        action="store_true",
        default=None,
        dest="baton_block_network",
        help="Fail a test that connects to anything but 127.0.0.1, ::1, localhost and the "
        "allowed hosts.",
    )
    group.addoption(
        *(["--allowed-hosts"] if _SHORT_FLAGS else []),
        "--baton-allowed-hosts",
        action="append",
        default=None,
        dest="baton_allowed_hosts",
        metavar="HOSTS",
        help="Comma-separated hosts a test may reach with the network blocked: names, "
        "*.globs, addresses, CIDR networks (repeatable).",
    )
    group.addoption(
        "--baton-fail-on-unused",
        action="store_true",
        default=None,
        help="Fail a test that left recorded interactions of its cassettes unused.",
    )
    for setting in SETTINGS.values():
        if setting.ini_type is not None:
            parser.addini(
                setting.ini, f"baton: {setting.help}", type=setting.ini_type, default=None
            )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "baton(*cassettes, **settings): answer this test's HTTP calls from these cassettes "
        "(paths relative to the test file; none: cassettes/<module>/<test>.cassette). "
        f"Settings: {', '.join(MARKER_KEYWORDS)}.",
    )
    config.stash[_SESSION] = _read_session(config)


def _read_session(config: pytest.Config) -> _Session:
    session = _Session()
    flags = {
        "record_mode": config.getoption("baton_record_mode"),
        "block_network": config.getoption("baton_block_network"),
        "fail_on_unused": config.getoption("baton_fail_on_unused"),
    }
    session.options = {k: v for k, v in flags.items() if v is not None}
    hosts = config.getoption("baton_allowed_hosts")
    if hosts:
        try:
            session.options["allow_hosts"] = SETTINGS["allow_hosts"].check(",".join(hosts))
        except ValueError as exc:
            raise pytest.UsageError(f"baton: --allowed-hosts: {exc}") from exc

    base = config.inipath.parent if config.inipath else config.rootpath
    for name, setting in SETTINGS.items():
        if setting.ini_type is None:
            continue
        raw = config.getini(setting.ini)
        if raw is None or raw == "" or raw == []:  # unset (pytest 8 gives "" or [] for None)
            continue
        try:
            value = setting.check(raw)
        except ValueError as exc:
            raise pytest.UsageError(f"baton: ini option {setting.ini} = {raw!r}: {exc}") from exc
        session.ini[name] = base / value if name == "cassette_dir" else value

    # baton's own configuration file: [tool.baton.pytest], then the top of [tool.baton].
    import click

    from baton.proxy.cli.configuration import load_config

    try:
        baton_config = load_config(start=config.rootpath)
    except click.ClickException as exc:  # baton's InputError: one line naming file and key
        raise pytest.UsageError(f"baton: {exc.format_message()}") from exc
    session.config_file = baton_config.path
    for name, setting in SETTINGS.items():
        found = baton_config.value("pytest", setting.config_key) if setting.config_key else None
        if found is None:
            continue
        value, where = found
        try:
            session.configured[name] = (setting.check(value), where)
        except ValueError as exc:
            raise pytest.UsageError(f"baton: {where}: {setting.config_key}: {exc}") from exc
    return session


def pytest_report_header(config: pytest.Config) -> str | None:
    session = config.stash.get(_SESSION, None)
    if session is None or session.config_file is None:
        return None
    return f"baton: configuration {session.config_file}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A typo in a marker is found before anything runs, not when its test does.
    for item in items:
        for marker in item.iter_markers("baton"):
            try:
                check_marker(marker.args, marker.kwargs)
            except ValueError as exc:
                raise pytest.UsageError(f"baton: {item.nodeid}: @pytest.mark.baton: {exc}") from exc


def _settings(item: pytest.Item) -> TestSettings:
    found = item.stash.get(_SETTINGS, None)
    if found is None:
        kwargs: dict[str, Any] = {}
        # The closest marker wins: a test's own over its class's over its module's.
        for marker in reversed(list(item.iter_markers("baton"))):
            kwargs.update({k: v for k, v in marker.kwargs.items() if v is not None})
        session = item.config.stash[_SESSION]
        found = TestSettings.resolve(
            options=session.options,
            marker=kwargs,
            ini=session.ini,
            configured=session.configured,
        )
        item.stash[_SETTINGS] = found
    return found


def _cassettes(item: pytest.Item, settings: TestSettings) -> list[Path]:
    test_file = Path(item.path)
    for marker in item.iter_markers("baton"):
        if marker.args:
            return [
                path if path.is_absolute() else test_file.parent / path
                for path in (Path(arg) for arg in marker.args)
            ]
    # No cassette named: the test's own, named after its class(es) and itself.
    names = [node.name for node in item.listchain() if isinstance(node, pytest.Class)]
    test_name = ".".join([*names, item.name])
    return [default_cassette(test_file, test_name, settings.cassette_dir, item.config.rootpath)]


@pytest.fixture(scope="session")
def _baton_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One mitmproxy CA per test session, outside the user's ~/.mitmproxy.
    return tmp_path_factory.mktemp("baton-mitmproxy")


@pytest.fixture
def baton_replay(request: pytest.FixtureRequest, _baton_confdir: Path) -> Iterator[BatonReplay]:
    """Serve the test's cassettes (``@pytest.mark.baton(...)``, or its default one)."""
    item = request.node
    settings = _settings(item)
    cassettes = _cassettes(item, settings)
    mode = settings.record_mode
    for number, path in enumerate(cassettes):
        if path.exists() or (number == 0 and mode is not RecordMode.NONE):
            continue
        hint = (
            "record it with --baton-record-mode=once (and upstream='http://host:port' "
            "in the marker, the real service to record from)"
            if number == 0
            else "only the first cassette is ever written; the others must exist"
        )
        pytest.fail(f"baton: {path}: no such cassette; {hint}", pytrace=False)
    handle = BatonReplay(
        cassettes,
        mode,
        settings.replay_options,
        _baton_confdir,
        settings.upstream,
        faults=settings.fault_plan,
    )
    item.stash[_HANDLE] = handle
    with ExitStack() as stack:
        stack.callback(handle.close)
        if not settings.allow_misses:
            stack.enter_context(handle.misses_reported_once())
        yield handle


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    settings = _settings(item)
    block = _network_block(item, settings) if settings.block_network else None
    with ExitStack() as stack:
        if block is not None:
            stack.enter_context(block.active())
        try:
            result = yield
        except BaseException as exc:
            # The test failed on its own; what baton saw goes beside that failure, once.
            problems = _problems(item, settings, block, raised=exc)
            if problems:
                item.add_report_section("call", "baton", "\n\n".join(problems))
            raise
    problems = _problems(item, settings, block, raised=None)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
    return result


def _network_block(item: pytest.Item, settings: TestSettings) -> NetworkBlock:
    allow_flag = "--allowed-hosts" if _SHORT_FLAGS else "--baton-allowed-hosts"
    where = settings.sources["block_network"]

    def describe(host: str, port: object) -> str:
        return (
            f"baton: network blocked: {item.nodeid} tried to reach {host}:{port}; "
            f"with block_network ({where}) a test reaches only 127.0.0.1, ::1, localhost "
            f"and allow_hosts ({allow_flag}={host} would allow this one)"
        )

    return NetworkBlock(AllowList.parse(settings.allow_hosts), describe)


def _problems(
    item: pytest.Item,
    settings: TestSettings,
    block: NetworkBlock | None,
    raised: BaseException | None,
) -> list[str]:
    problems = []
    handle = item.stash.get(_HANDLE, None)
    if handle is not None and not settings.allow_misses:
        misses = handle.misses
        if misses:
            count = plural(len(misses), "request")
            problems.append(
                f"baton: {count} matched no recorded interaction (allow_misses=True to permit):"
                "\n\n" + "\n\n".join(miss.report() for miss in misses)
            )
    if block is not None:
        shown = _exception_chain(raised)
        test_code = _test_code(item)
        swallowed = [
            error
            for error in block.refused
            if not any(error is s for s in shown) and not _reached(error, test_code)
        ]
        if swallowed:
            problems.append(
                "baton: the network block refused a connection the test did not see fail "
                "(a client or a thread caught the error):\n"
                + "\n".join(f"  {error}" for error in swallowed)
            )
    if handle is not None and settings.fail_on_unused:
        unused = handle.unused
        if unused:
            count = plural(len(unused), "recorded interaction")
            problems.append(
                f"baton: {count} unused (fail_on_unused, from {settings.sources['fail_on_unused']}):\n"
                + "\n".join(
                    f"  {number}. {describe_interaction(interaction)}"
                    for number, interaction in enumerate(unused, 1)
                )
            )
    return problems


def _test_code(item: pytest.Item) -> object:
    function = getattr(item, "obj", None)
    function = getattr(function, "__func__", function)
    return getattr(function, "__code__", None)


def _reached(error: BaseException, test_code: object) -> bool:
    """Whether ``error`` propagated up to the test function itself (which then caught it,
    say with ``pytest.raises``), rather than dying inside a client or another thread."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code is test_code:
            return True
        frame = frame.tb_next
    return False


def _exception_chain(raised: BaseException | None) -> list[BaseException]:
    """``raised``, its causes and contexts, and the members of exception groups among them."""
    seen: list[BaseException] = []
    pending = [raised]
    while pending:
        error = pending.pop()
        if error is None or any(error is s for s in seen):
            continue
        seen.append(error)
        pending += [error.__cause__, error.__context__]
        if isinstance(error, BaseExceptionGroup):
            pending += list(error.exceptions)
    return seen
