"""Block a test's network connections, except to this machine and an allow-list.

A test that reaches the real internet is slow, flaky, and may send real data
somewhere; with ``--block-network`` it fails at its first attempt instead,
with a message naming the host and port, before any DNS query or packet.

While a test runs, ``socket.socket.connect``, ``connect_ex`` and
``socket.getaddrinfo`` are replaced by guards, and restored afterwards.
Every Python client ends in them: ``socket.create_connection`` (httpx's
sync transport, urllib3/requests) resolves with ``getaddrinfo`` and then
connects; asyncio's ``create_connection`` and ``sock_connect`` resolve with
``socket.getaddrinfo`` in an executor (IP literals skip it) and connect with
the socket's own ``connect``; ``ssl.SSLSocket.connect`` calls the socket's.
A host name is judged at ``getaddrinfo``, so a blocked name never reaches
DNS; an address is judged at ``connect``.

Always allowed: loopback (127.0.0.0/8, ::1), the unspecified address,
``localhost`` and ``*.localhost``, non-IP sockets (Unix, netlink), passive
lookups (``AI_PASSIVE``: for binding, not connecting), and threads that
baton itself started (``exempt_current_thread``): its proxies record against
the real upstream while the test's own code stays blocked.

Not covered: subprocesses, event loops with their own sockets (uvloop),
C extensions that open sockets themselves (pycurl), UDP ``sendto`` on a
socket that was never connected.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["AllowList", "NetworkBlock", "NetworkBlockedError", "exempt_current_thread"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkBlockedError(RuntimeError):
    """A connection the test may not open. A ``RuntimeError``, not an ``OSError``,
    so that clients which retry or wrap connection errors let it through."""

    def __init__(self, message: str, host: str, port: object) -> None:
        super().__init__(message)
        self.host = host
        self.port = port


_exempt = threading.local()


def exempt_current_thread() -> None:
    """Let the calling thread connect anywhere: for threads baton starts to reach a real upstream."""
    _exempt.on = True


def _is_exempt() -> bool:
    return bool(getattr(_exempt, "on", False))


def _address(text: str) -> _Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return None


@dataclass(frozen=True)
class AllowList:
    """Hosts a test may reach besides this machine: names, ``*`` globs, addresses, CIDR networks."""

    names: tuple[str, ...] = ()
    """Lower-case host names, possibly with ``*`` / ``?`` globs (``*.internal``)."""
    networks: tuple[_Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """From entries like ``api.example.com``, ``*.internal``, ``10.0.0.5``, ``10.0.0.0/8``.

        Raises ``ValueError`` for an empty entry or a malformed network.
        """
        names: list[str] = []
        networks: list[_Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                raise ValueError("an empty host name cannot be allowed")
            if entry.startswith("[") and entry.endswith("]"):
                entry = entry[1:-1]
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise ValueError(f"{raw!r} is not a network like 10.0.0.0/8: {exc}") from exc
            elif (address := _address(entry)) is not None:
                networks.append(ipaddress.ip_network(address))
            else:
                names.append(entry.rstrip("."))
        return cls(tuple(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names)

    def allows_address(self, address: _Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback or address.is_unspecified:
            return True
        return any(address in network for network in self.networks)


class NetworkBlock:
    """Guards ``connect`` and ``getaddrinfo`` while active; records every refused attempt.

    One block is active at a time in a process (tests run one after another);
    ``active()`` installs the guards and always restores what it replaced.
    """

    def __init__(self, allow: AllowList, describe: Callable[[str, object], str]) -> None:
        """``describe(host, port)`` gives the message of a refusal (the plugin names the test)."""
        self.allow = allow
        self._describe = describe
        self.refused: list[NetworkBlockedError] = []
        # Addresses that allowed names resolved to during this block: connecting to them is fine.
        self._resolved: set[_Address] = set()

    # -- the decisions -------------------------------------------------------------------

    def _refuse(self, host: str, port: object) -> NetworkBlockedError:
        error = NetworkBlockedError(self._describe(host, port), host, port)
        self.refused.append(error)
        return error

    def check_connect(self, sock: socket.socket, address: Any) -> None:
        """Raise ``NetworkBlockedError`` unless ``sock`` may connect to ``address``.

        A refused socket is closed first: ``socket.create_connection`` and
        urllib3 close theirs only after an ``OSError``, and would leak it.
        """
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or _is_exempt():
            return
        if not isinstance(address, tuple) or len(address) < 2:
            return  # malformed: let the socket itself say so
        host, port = address[0], address[1]
        if isinstance(host, bytes | bytearray):
            host = bytes(host).decode("ascii", "replace")
        parsed = _address(str(host))
        if parsed is None:
            # connect() with a name resolves in C, out of getaddrinfo's sight: judge the name.
            if self.allow.allows_name(str(host)):
                return
        elif parsed in self._resolved or self.allow.allows_address(parsed):
            return
        sock.close()
        raise self._refuse(str(host), port)

    def check_lookup(self, host: Any, port: Any, flags: int) -> bool:
        """Raise unless ``host`` may be looked up; True when its addresses become allowed."""
        if host is None or _is_exempt() or flags & socket.AI_PASSIVE:
            return False
        if isinstance(host, bytes | bytearray):
            host = bytes(host).decode("ascii", "replace")
        host = str(host)
        if not host or _address(host) is not None:
            return False  # no DNS for an address: connect() judges it
        if self.allow.allows_name(host):
            return True
        raise self._refuse(host, port)

    def remember(self, results: list[Any]) -> None:
        """Allow the addresses an allowed name resolved to."""
        for _family, _type, _proto, _canonname, sockaddr in results:
            parsed = _address(str(sockaddr[0]))
            if parsed is not None:
                self._resolved.add(parsed)

    # -- installing the guards --------------------------------------------------------------

    @contextmanager
    def active(self) -> Iterator[NetworkBlock]:
        """Install the guards for the duration of the ``with`` block."""
        # Replaced on the class, so sockets created before the test are guarded too.
        own = {name: socket.socket.__dict__.get(name) for name in ("connect", "connect_ex")}
        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex
        getaddrinfo = socket.getaddrinfo
        block = self

        def guarded_connect(sock: socket.socket, address: Any, /) -> None:
            block.check_connect(sock, address)
            return connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any, /) -> int:
            block.check_connect(sock, address)
            return connect_ex(sock, address)

        def guarded_getaddrinfo(
            host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
        ) -> list[Any]:
            allowed_name = block.check_lookup(host, port, flags)
            results = getaddrinfo(host, port, family, type, proto, flags)
            if allowed_name:
                block.remember(results)
            return results

        socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = guarded_getaddrinfo
        try:
            yield self
        finally:
            for name, original in own.items():
                if original is None:
                    delattr(socket.socket, name)  # inherited from _socket.socket again
                else:
                    setattr(socket.socket, name, original)
            socket.getaddrinfo = getaddrinfo
