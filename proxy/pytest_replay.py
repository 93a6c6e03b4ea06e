"""What a test gets from ``baton_replay``: servers answering from its cassettes, started on first use.

``url`` starts baton's own replay server (milliseconds: an in-process asyncio
server on an ephemeral 127.0.0.1 port). ``proxy_url``, ``ca_path`` and
``env`` start mitmproxy with the ``Replayer`` addon in regular mode, which
answers HTTPS and HTTP/2 with clients unchanged.

When the test records (``new_episodes``, ``all``, or ``once`` with its first
cassette missing), ``url`` is a mitmproxy reverse proxy to the real upstream
instead, recording what it forwards into the first cassette. One recording
server per test: two would write one file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from baton.cassettes.model import Interaction
from baton.proxy.pytest_network import exempt_current_thread
from baton.replay.faults import FaultPlan
from baton.replay.index import Index, Miss
from baton.replay.options import ReplayOptions, recorded_origins
from baton.replay.record_mode import RecordMode

__all__ = ["BatonReplay", "describe_interaction"]

# The loggers that log a near-miss report as they answer a miss.
_MISS_LOGGERS = ("baton.replay.server", "baton.proxy.replayer")


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


class _Proxy:
    """A mitmproxy with the Replayer, in a thread; ``initial`` interactions were loaded at start."""

    def __init__(self, thread: threading.Thread, master: Any, replayer: Any, url: str) -> None:
        self.thread = thread
        self.master = master
        self.replayer = replayer
        self.url = url
        index = replayer.index
        self.initial = len(index) if index is not None else 0


class BatonReplay:
    """What a test gets: where to send requests, and what happened to them."""

    def __init__(
        self,
        cassettes: list[Path],
        record_mode: RecordMode,
        options: ReplayOptions,
        confdir: Path,
        upstream: str | None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.cassettes = cassettes
        self.faults = faults
        """``faults=[...]`` of the marker (replay/faults.py), on whichever path answers."""
        self.record_mode = record_mode
        self._options = options
        self._confdir = confdir
        self._upstream = upstream
        # Decided once, at set-up: a cassette this test is writing must not change its mind.
        self.recording = record_mode in (RecordMode.NEW_EPISODES, RecordMode.ALL) or (
            record_mode is RecordMode.ONCE and not cassettes[0].exists()
        )
        self._rerecording = self.recording and record_mode is not RecordMode.NEW_EPISODES
        self._fast: tuple[_Thread, Any] | None = None
        self._fast_initial = 0
        self._proxies: dict[str, _Proxy] = {}
        self.index: Index | None = None

    # -- where to send requests --------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL answering in place of the recorded service (reverse mode)."""
        if self.recording:
            return self._start_proxy(f"reverse:{self._upstream_url()}")
        if self._fast is None:
            from baton.replay.server import ReplayServer

            self.index = self._options.load(self.cassettes, address=False)
            self._fast_initial = len(self.index)
            runner = _Thread("baton-replay")
            server = ReplayServer(
                self.index, miss_status=self._options.miss_status, faults=self.faults
            )
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

    # -- what happened -------------------------------------------------------------------------

    def _indexes(self) -> list[tuple[Index, int]]:
        """Every index serving this test, with how many interactions it loaded at start."""
        found = [] if self.index is None else [(self.index, self._fast_initial)]
        for proxy in self._proxies.values():
            if proxy.replayer.index is not None:
                found.append((proxy.replayer.index, proxy.initial))
        return found

    @property
    def misses(self) -> list[Miss]:
        """Requests no recorded interaction answered, each with its near-miss report."""
        return [miss for index, _ in self._indexes() for miss in index.misses]

    @property
    def unused(self) -> list[Interaction]:
        """Interactions of the cassettes whose request the test never made, on any server.

        "Made" as ``Index.unmatched`` means it: a request recorded five times
        (a poll) and asked for once is used. Every server loads the same
        cassettes in the same order, so an interaction is unused only if it
        is unused in all of them; what a server records during the test is
        not counted.
        """
        if self._rerecording:
            return []
        indexes = [(index, initial) for index, initial in self._indexes() if initial]
        if not indexes:
            # Nothing was asked at all: everything recorded went unused.
            return list(self._options.load(self.cassettes, address=False).interactions)
        unmatched = [
            ({id(i) for i in index.unmatched()}, index, initial) for index, initial in indexes
        ]
        unused = []
        for number in range(max(initial for _, initial in indexes)):
            holders = [(ids, index) for ids, index, initial in unmatched if number < initial]
            if all(id(index.interactions[number]) in ids for ids, index in holders):
                unused.append(holders[0][1].interactions[number])
        return unused

    @contextmanager
    def misses_reported_once(self) -> Iterator[None]:
        """Hold back the log record of each miss while the plugin reports the misses itself.

        The servers log every near-miss report; pytest shows captured logs
        beside the failure, so without this each miss appeared twice.
        """
        held = _ReportedMisses(self)
        loggers = [logging.getLogger(name) for name in _MISS_LOGGERS]
        for logger in loggers:
            logger.addFilter(held)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(held)

    # -- machinery -----------------------------------------------------------------------------

    def _upstream_url(self) -> str:
        if self._upstream:
            return self._upstream
        origins = recorded_origins(self.cassettes)
        if len(origins) != 1:
            pytest.fail(
                f"baton: recording {self.cassettes[0]} (record mode {self.record_mode}) needs "
                "the real service's address: @pytest.mark.baton(upstream='http://host:port')",
                pytrace=False,
            )
        return origins.pop()

    def _fault_options(self) -> dict[str, Any]:
        if self.faults is None:
            return {}
        seed = self.faults.seed
        return {
            "baton_faults": [rule.text for rule in self.faults.rules],
            "baton_fault_seed": None if seed is None else str(seed),
        }

    def _start_proxy(self, mode: str) -> str:
        started = self._proxies.get(mode)
        if started is not None:
            return started.url
        if self.recording and self._proxies:
            other = next(iter(self._proxies))
            pytest.fail(
                f"baton: this test records into {self.cassettes[0]} through {other} already; "
                "a recording test uses one of baton_replay.url and baton_replay.proxy_url",
                pytrace=False,
            )
        with warnings.catch_warnings():
            # mitmproxy's default addons import ldap3 and passlib, which warn about their own
            # dependencies at import; a user's -W error must not turn that into a failed test.
            # Imported here, on the test's thread: catch_warnings is not thread-safe.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import mitmproxy.addons  # noqa: F401

            from baton.proxy.replayer import Replayer
            from baton.proxy.running import ProxySettings, run_proxy

        if self.recording:
            self.cassettes[0].parent.mkdir(parents=True, exist_ok=True)
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
                **self._fault_options(),
            },
        )
        ready = threading.Event()
        address: list[tuple[str, int]] = []
        masters: list[Any] = []
        failure: list[BaseException] = []

        def on_ready(addresses: list[tuple[str, int]]) -> None:
            address.extend(addresses)
            ready.set()

        async def serve() -> None:
            # Name resolution runs in the loop's executor: its threads may reach the upstream too.
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(
                    thread_name_prefix="baton-proxy", initializer=exempt_current_thread
                )
            )
            await run_proxy(settings, [replayer], on_ready, on_master=masters.append)

        def run() -> None:
            # baton's proxy forwards to the real upstream when recording, --block-network or not.
            exempt_current_thread()
            try:
                asyncio.run(serve())
            except BaseException as exc:  # reported to the test below
                failure.append(exc)
            finally:
                replayer.done()
                ready.set()

        thread = threading.Thread(target=run, name=f"baton-proxy-{mode}", daemon=True)
        thread.start()
        if not ready.wait(60) or failure or not address:
            raise RuntimeError(f"baton: the replay proxy did not start: {failure or 'timeout'}")
        proxy = _Proxy(thread, masters[0], replayer, f"http://127.0.0.1:{address[0][1]}")
        self._proxies[mode] = proxy
        return proxy.url

    def close(self) -> None:
        """Stop every server this test started."""
        if self._fast is not None:
            runner, server = self._fast
            runner.run(server.close())
            runner.stop()
            self._fast = None
        for proxy in self._proxies.values():
            proxy.master.shutdown()
            proxy.thread.join(30)


class _ReportedMisses(logging.Filter):
    def __init__(self, handle: BatonReplay) -> None:
        super().__init__()
        self._handle = handle

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        message = record.getMessage()
        return all(message != miss.report() for miss in self._handle.misses)


def describe_interaction(interaction: Interaction) -> str:
    """``GET http://api:8000/items?page=2 -> 200``: one recorded interaction on one line."""
    response = interaction.response
    answer = str(response.status) if response is not None else f"error: {interaction.error}"
    return f"{interaction.request.method} {interaction.request.url} -> {answer}"
