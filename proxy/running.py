"""Run mitmproxy in-process with baton's addons, for ``baton record`` and ``baton replay``.

mitmproxy's own ``DumpMaster`` prints flows and exits the process from inside
on a start-up error. baton needs neither: it builds a plain ``Master`` with
mitmproxy's default addons, turns start-up errors (a port in use, a bad
option) into one exception with a readable message, and reports the address
it actually bound, so ``--listen-port 0`` works for tests.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mitmproxy import addons as mitm_addons
from mitmproxy import exceptions, log, master, options

from baton.proxy.status import listen_failure

__all__ = ["ProxySettings", "ProxyStartupError", "run_proxy"]


class ProxyStartupError(Exception):
    """mitmproxy could not start with the given settings; the message says why."""


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The mitmproxy options baton sets, plus the user's ``--set`` pass-through."""

    modes: Sequence[str] = ("regular",)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    options: dict[str, object] = field(default_factory=dict)
    """Typed option values (baton's addon options, baton's mitmproxy defaults)."""
    extra: Sequence[str] = ()
    """``option=value`` strings, as mitmproxy's ``--set`` takes them; applied last, so they win."""


class _StartupErrors(log.MitmLogHandler):
    """Collect error records logged while the proxy starts, and hold them back from stderr.

    They are raised as one ``ProxyStartupError`` instead, so the person at the
    terminal reads the problem once, in baton's words.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self._held: list[logging.Handler] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(_one_line(record.getMessage()))

    def install(self) -> None:
        super().install()
        for handler in logging.getLogger().handlers:
            if handler is not self:
                handler.addFilter(self._hold)
                self._held.append(handler)

    def uninstall(self) -> None:
        super().uninstall()
        for handler in self._held:
            handler.removeFilter(self._hold)
        self._held.clear()

    @staticmethod
    def _hold(record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


# mitmproxy 11 and 12: "[Errno 98] HTTP(S) proxy failed to listen on 127.0.0.1:8080 with
# [Errno 98] error while attempting to bind on address ('127.0.0.1', 8080): address already in use"
_BIND_FAILURE = re.compile(r"\[Errno (\d+)\].*bind on address \('([^']*)', (\d+)[^)]*\): (.+)$")


def _one_line(message: str) -> str:
    """The first line of a mitmproxy message, in baton's words where mitmproxy's would mislead."""
    first = message.strip().splitlines()[0] if message.strip() else message
    bind = _BIND_FAILURE.search(first)
    if bind is not None:
        code, host, port, reason = bind.groups()
        return listen_failure(host, int(port), int(code), reason)
    return first


class _ErrorCheck:
    # Named like mitmproxy's addon so Master.run consults it at the same points.
    name = "errorcheck"

    def __init__(self) -> None:
        self.handler = _StartupErrors()
        self.handler.install()

    async def shutdown_if_errored(self) -> None:
        await asyncio.sleep(0)
        if self.handler.messages:
            raise ProxyStartupError("; ".join(dict.fromkeys(self.handler.messages)))

    def finish(self) -> None:
        self.handler.uninstall()


class _Ready:
    def __init__(self, on_ready: Callable[[list[tuple[str, int]]], None]) -> None:
        self._on_ready = on_ready

    def running(self) -> None:
        from mitmproxy import ctx

        server = ctx.master.addons.get("proxyserver")
        addresses = [(str(a[0]), int(a[1])) for a in server.listen_addrs()]
        self._on_ready(addresses)


async def run_proxy(
    settings: ProxySettings,
    addons: Sequence[object],
    on_ready: Callable[[list[tuple[str, int]]], None],
    on_tick: Callable[[], None] | None = None,
    on_master: Callable[[master.Master], None] | None = None,
) -> None:
    """Run mitmproxy until SIGINT or SIGTERM; raise ``ProxyStartupError`` if it cannot start.

    ``on_ready`` gets the bound addresses once the proxy listens; ``on_tick``,
    if given, runs four times a second (for a live status line); ``on_master``
    receives the master, whose thread-safe ``shutdown()`` stops it from
    another thread. Signals are handled only when running on the main thread.
    """
    loop = asyncio.get_running_loop()
    opts = options.Options()
    proxy = master.Master(opts, event_loop=loop)
    if on_master is not None:
        on_master(proxy)
    error_check = _ErrorCheck()
    try:
        proxy.addons.add(*mitm_addons.default_addons(), *addons, error_check, _Ready(on_ready))
        try:
            # Options declared by addons exist only once the addons are added.
            opts.update(
                mode=list(settings.modes),
                listen_host=settings.listen_host,
                listen_port=settings.listen_port,
                **settings.options,
            )
            if settings.extra:
                opts.set(*settings.extra)
        except (exceptions.OptionsError, KeyError, TypeError, ValueError) as exc:
            raise ProxyStartupError(_one_line(str(exc).strip("'\""))) from exc
        await error_check.shutdown_if_errored()
        signals = (
            (signal.SIGINT, signal.SIGTERM)
            if threading.current_thread() is threading.main_thread()
            else ()
        )
        for signum in signals:
            loop.add_signal_handler(signum, proxy.shutdown)
        ticker = None
        if on_tick is not None:
            ticker = asyncio.create_task(_tick(on_tick, proxy.should_exit))
        try:
            await proxy.run()
        finally:
            if ticker is not None:
                ticker.cancel()
            for signum in signals:
                loop.remove_signal_handler(signum)
    finally:
        error_check.finish()


async def _tick(on_tick: Callable[[], None], stop: asyncio.Event) -> None:
    while not stop.is_set():
        on_tick()
        await asyncio.sleep(0.25)
