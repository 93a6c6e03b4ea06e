"""The pytest plugin: a test names its cassettes, baton answers in place of the services.

    @pytest.mark.baton("cassettes/catalog.cassette")
    def test_checkout(baton_replay):
        cart = Cart(catalog_url=baton_replay.url)           # reverse mode, baton's fast server
        ...
        subprocess.run(["curl", ...], env=baton_replay.env)  # any client, through the proxy

``baton_replay.url`` starts baton's own replay server (milliseconds: an
in-process asyncio server on an ephemeral 127.0.0.1 port). ``proxy_url``,
``ca_path`` and ``env`` start, on first use only, the mitmproxy ``Replayer``
in regular mode, which answers HTTPS and HTTP/2 with clients unchanged.

A test that caused a miss fails with the near-miss report, unless its marker
says ``allow_misses=True``. ``--baton-record-mode`` overrides the record mode
of every test (``none`` by default: never touch the network).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.replay.index import Index
from baton.replay.options import ReplayOptions, recorded_origins
from baton.replay.record_mode import RecordMode

__all__ = ["BatonReplay"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("baton", "baton record and replay")
    group.addoption(
        "--baton-record-mode",
        choices=[m.value for m in RecordMode],
        default=None,
        help="Record mode for every @pytest.mark.baton test (default: the marker's, else none).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "baton(*cassettes, record_mode=None, allow_misses=False, match_on=None, "
        "match_headers=(), ignore_query=(), ignore_fields=(), on_exhausted='repeat-last', "
        "upstream=None): answer this test's HTTP calls from these cassettes "
        "(paths relative to the test file).",
    )


class _Thread:
    """An event loop in a thread of its own, for a server that outlives one call."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class BatonReplay:
    """What a test gets: where to send requests, and what happened to them."""

    def __init__(
        self,
        cassettes: list[Path],
        record_mode: RecordMode,
        options: ReplayOptions,
        confdir: Path,
        upstream: str | None,
    ) -> None:
        self.cassettes = cassettes
        self.record_mode = record_mode
        self._options = options
        self._confdir = confdir
        self._upstream = upstream
        self._fast: tuple[_Thread, Any] | None = None
        self._proxies: dict[str, tuple[threading.Thread, Any, Any, str]] = {}
        self.index: Index | None = None

    # -- where to send requests --------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL answering in place of the recorded service (reverse mode)."""
        if self._needs_network():
            return self._start_proxy(f"reverse:{self._upstream_url()}")
        if self._fast is None:
            from baton.replay.server import ReplayServer

            self.index = self._options.load(self.cassettes, address=False)
            runner = _Thread("baton-replay")
            server = ReplayServer(self.index)
            runner.run(server.start())
            self._fast = (runner, server)
        return f"http://127.0.0.1:{self._fast[1].port}"

    @property
    def proxy_url(self) -> str:
        """An HTTP(S) proxy (mitmproxy, regular mode) answering from the cassettes."""
        return self._start_proxy("regular")

    @property
    def ca_path(self) -> Path:
        """The CA certificate a client must trust for HTTPS through ``proxy_url``."""
        self._start_proxy("regular")
        return self._confdir / "mitmproxy-ca-cert.pem"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess: proxy variables and the CA bundle."""
        proxy, ca = self.proxy_url, str(self.ca_path)
        return {
            **os.environ,
            "HTTP_PROXY": proxy,
            "HTTPS_PROXY": proxy,
            "http_proxy": proxy,
            "https_proxy": proxy,
            "NO_PROXY": "",
            "no_proxy": "",
            "SSL_CERT_FILE": ca,
            "REQUESTS_CA_BUNDLE": ca,
            "CURL_CA_BUNDLE": ca,
        }

    # -- what happened -------------------------------------------------------------

    @property
    def misses(self) -> list[Any]:
        """Requests no recorded interaction answered, each with its near-miss report."""
        indexes = [self.index] if self.index is not None else []
        indexes += [p[2].index for p in self._proxies.values() if p[2].index is not None]
        return [miss for index in indexes for miss in index.misses]

    # -- machinery -------------------------------------------------------------------

    def _needs_network(self) -> bool:
        if self.record_mode is RecordMode.NONE:
            return False
        return not (self.record_mode is RecordMode.ONCE and self.cassettes[0].exists())

    def _upstream_url(self) -> str:
        if self._upstream:
            return self._upstream
        origins = recorded_origins(self.cassettes)
        if len(origins) != 1:
            raise pytest.UsageError(
                "baton: recording needs the real service's address: "
                "@pytest.mark.baton(..., upstream='http://host:port')"
            )
        return origins.pop()

    def _start_proxy(self, mode: str) -> str:
        started = self._proxies.get(mode)
        if started is not None:
            return started[3]
        from baton.proxy.replayer import Replayer
        from baton.proxy.running import ProxySettings, run_proxy

        replayer = Replayer()
        settings = ProxySettings(
            modes=(mode,),
            listen_host="127.0.0.1",
            listen_port=0,
            options={
                "connection_strategy": "lazy",
                "confdir": str(self._confdir),
                **self._options.addon_options(
                    self.cassettes, address=not mode.startswith("reverse:")
                ),
                "baton_record_mode": self.record_mode.value,
            },
        )
        ready = threading.Event()
        address: list[tuple[str, int]] = []
        masters: list[Any] = []
        failure: list[BaseException] = []

        def on_ready(addresses: list[tuple[str, int]]) -> None:
            address.extend(addresses)
            ready.set()

        def run() -> None:
            try:
                asyncio.run(run_proxy(settings, [replayer], on_ready, on_master=masters.append))
            except BaseException as exc:  # reported to the test below
                failure.append(exc)
            finally:
                replayer.done()
                ready.set()

        thread = threading.Thread(target=run, name=f"baton-proxy-{mode}", daemon=True)
        thread.start()
        if not ready.wait(60) or failure or not address:
            raise RuntimeError(f"baton: the replay proxy did not start: {failure or 'timeout'}")
        url = f"http://127.0.0.1:{address[0][1]}"
        self._proxies[mode] = (thread, masters[0], replayer, url)
        return url

    def close(self) -> None:
        """Stop every server this test started."""
        if self._fast is not None:
            runner, server = self._fast
            runner.run(server.close())
            runner.stop()
            self._fast = None
        for thread, master, _, _ in self._proxies.values():
            master.shutdown()
            thread.join(30)


def _resolve(request: pytest.FixtureRequest, name: str | os.PathLike[str]) -> Path:
    path = Path(name)
    return path if path.is_absolute() else Path(request.path).parent / path


@pytest.fixture(scope="session")
def _baton_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One mitmproxy CA per test session, outside the user's ~/.mitmproxy.
    return tmp_path_factory.mktemp("baton-mitmproxy")


@pytest.fixture
def baton_replay(request: pytest.FixtureRequest, _baton_confdir: Path) -> Iterator[BatonReplay]:
    """Serve the cassettes named by ``@pytest.mark.baton(...)`` for this test."""
    marker = request.node.get_closest_marker("baton")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            "baton_replay needs @pytest.mark.baton('path/to.cassette', ...) on the test"
        )
    cassettes = [_resolve(request, name) for name in marker.args]
    mode = RecordMode(
        request.config.getoption("--baton-record-mode")
        or marker.kwargs.get("record_mode")
        or RecordMode.NONE.value
    )
    for path in cassettes:
        if not path.exists() and mode in (RecordMode.NONE, RecordMode.NEW_EPISODES):
            raise pytest.UsageError(f"baton: {path}: no such cassette (record mode {mode})")
    handle = BatonReplay(
        cassettes,
        mode,
        ReplayOptions.from_marker(dict(marker.kwargs)),
        _baton_confdir,
        marker.kwargs.get("upstream"),
    )
    request.node._baton_replay = handle
    try:
        yield handle
    finally:
        handle.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    handle: BatonReplay | None = getattr(item, "_baton_replay", None)
    marker = item.get_closest_marker("baton")
    if handle is None or outcome.excinfo is not None:
        return
    if marker is not None and marker.kwargs.get("allow_misses"):
        return
    misses = handle.misses
    if misses:
        reports = "\n\n".join(miss.report() for miss in misses)
        pytest.fail(
            f"baton: {len(misses)} request(s) matched no recorded interaction "
            f"(allow_misses=True to permit):\n\n{reports}",
            pytrace=False,
        )
