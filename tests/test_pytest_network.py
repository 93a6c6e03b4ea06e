"""--block-network: a test's connections beyond this machine fail at once, naming host and port.

The test projects use real clients (httpx sync and async, requests, asyncio,
raw sockets). There is no network here, so the blocked targets are a private
address (10.255.255.1) and public names: what shows that the block fired
before any DNS query or connection is the error itself — baton's, naming the
host, where a resolver or a socket would have raised something else.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.proxy.pytest_network import AllowList
from tests.processes import BatonProcess, Upstream, start_upstream
from tests.test_pytest_plugin import record_echo

BLOCKED = """
import asyncio
import socket

import httpx
import pytest
import requests

from baton.proxy.pytest_plugin import NetworkBlockedError

ECHO = "http://127.0.0.1:{port}"


def test_httpx_to_a_private_address():
    with pytest.raises(NetworkBlockedError, match=r"test_blocked.py::test_httpx_to_a_private_address tried to reach 10\\.255\\.255\\.1:80;"):
        httpx.get("http://10.255.255.1/", timeout=60)


def test_requests_to_a_public_name():
    with pytest.raises(NetworkBlockedError, match=r"tried to reach pypi\\.org:443"):
        requests.get("https://pypi.org/simple/", timeout=60)


def test_async_httpx_to_a_public_name():
    async def fetch():
        async with httpx.AsyncClient(timeout=60) as client:
            await client.get("http://example.com:8080/")

    with pytest.raises(NetworkBlockedError, match=r"tried to reach example\\.com:8080"):
        asyncio.run(fetch())


def test_asyncio_open_connection_to_an_address():
    with pytest.raises(NetworkBlockedError, match=r"tried to reach 10\\.255\\.255\\.1:443"):
        asyncio.run(asyncio.open_connection("10.255.255.1", 443))


def test_raw_sockets():
    with socket.socket() as sock, pytest.raises(NetworkBlockedError, match="10.255.255.1:22"):
        sock.connect_ex(("10.255.255.1", 22))
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(NetworkBlockedError, match="2001:db8::1"):
        sock.connect(("2001:db8::1", 80))


def test_uncaught_the_test_fails_with_the_message():
    httpx.get("http://10.255.255.1:8080/", timeout=60)


def send_telemetry():
    # Code under test that hides its connection errors: the test would pass, and reach out
    # for real on a machine with a network.
    try:
        requests.get("http://10.255.255.1:9999/", timeout=60)
    except Exception:
        pass


def test_swallowed_the_test_still_fails():
    send_telemetry()


def test_this_machine_is_still_reachable():
    assert httpx.get(ECHO + "/echo?via=httpx").json()["query"] == {{"via": "httpx"}}
    assert requests.get(ECHO + "/echo?via=requests").json()["query"] == {{"via": "requests"}}
    localhost = ECHO.replace("127.0.0.1", "localhost")
    assert requests.get(localhost + "/echo?via=localhost").json()["query"] == {{"via": "localhost"}}

    async def fetch():
        async with httpx.AsyncClient() as client:
            return (await client.get(ECHO + "/echo?via=async")).json()

    assert asyncio.run(fetch())["query"] == {{"via": "async"}}


@pytest.mark.baton({cassette!r})
def test_baton_answers_with_the_network_blocked(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?item=1").json()["query"] == {{"item": "1"}}
    proxied = httpx.get("http://127.0.0.1:{port}/echo?item=2", proxy=baton_replay.proxy_url)
    assert proxied.json()["query"] == {{"item": "2"}}


@pytest.mark.baton(block_network=False)
def test_the_command_line_beats_the_marker():
    with pytest.raises(NetworkBlockedError):
        httpx.get("http://10.255.255.1/", timeout=60)
"""

GUARDS_REMOVED = """
import socket

import pytest

ORIGINAL = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)


@pytest.fixture(autouse=True)
def guards_only_while_the_test_runs(request):
    yield
    now = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)
    with open({log!r}, "a") as log:
        log.write(f"{{request.node.name}} {{now == ORIGINAL}}\\n")
"""


def test_block_network_refuses_every_client_and_keeps_this_machine(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    cassette = tmp_path / "echo.cassette"
    record_echo(baton, echo, cassette)
    log = tmp_path / "guards.log"
    pytester.makeconftest(GUARDS_REMOVED.format(log=str(log)))
    pytester.makepyfile(test_blocked=BLOCKED.format(port=echo.port, cassette=str(cassette)))

    result = pytester.runpytest_subprocess(
        "--block-network", "-p", "no:cacheprovider", "-W", "error", timeout=240
    )

    result.assert_outcomes(passed=8, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_uncaught_the_test_fails_with_the_message _*",
            "*NetworkBlockedError: baton: network blocked: "
            "test_blocked.py::test_uncaught_the_test_fails_with_the_message tried to reach "
            "10.255.255.1:8080; with block_network (the command line) a test reaches only "
            "127.0.0.1, ::1, localhost and allow_hosts (--allowed-hosts=10.255.255.1 would "
            "allow this one)",
            "*_ test_swallowed_the_test_still_fails _*",
            "baton: the network block refused a connection the test did not see fail*",
            "  baton: network blocked: *test_swallowed_the_test_still_fails tried to reach "
            "10.255.255.1:9999;*",
        ]
    )
    # Restored after every test, before its fixtures are torn down.
    lines = log.read_text().splitlines()
    assert len(lines) == 10 and all(line.endswith(" True") for line in lines), lines


def test_without_the_flag_nothing_is_guarded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_free="""
import socket

def test_connect_is_socket_s_own():
    assert "connect" not in vars(socket.socket)
    assert socket.getaddrinfo.__module__ == "socket"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)


def _own_address() -> str:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.1", 80))
        except OSError:
            pytest.skip("this machine has no network interface besides loopback")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no network interface besides loopback")
    return address


@pytest.fixture(scope="module")
def echo_off_loopback() -> Iterator[Upstream]:
    """The echo service on this machine's own non-loopback address: reachable, not loopback."""
    upstream = start_upstream("echo", host=_own_address())
    yield upstream
    upstream.stop()


ALLOWED = """
import httpx
import pytest

from baton.proxy.pytest_plugin import NetworkBlockedError

SERVICE = {url!r}


def test_not_allowed():
    with pytest.raises(NetworkBlockedError, match="tried to reach {host}:{port}"):
        httpx.get(SERVICE + "/echo")


@pytest.mark.baton(allow_hosts=[{host!r}])
def test_allowed_by_address():
    assert httpx.get(SERVICE + "/echo?ok=1").json()["query"] == {{"ok": "1"}}


@pytest.mark.baton(allow_hosts="{network}")
def test_allowed_by_network():
    assert httpx.get(SERVICE + "/echo?ok=2").json()["query"] == {{"ok": "2"}}


@pytest.mark.baton(upstream=SERVICE)
def test_recording_reaches_the_upstream_while_the_test_may_not(baton_replay):
    assert httpx.get(baton_replay.url + "/echo?rec=1").json()["query"] == {{"rec": "1"}}
    with pytest.raises(NetworkBlockedError):
        httpx.get(SERVICE + "/echo?rec=2")
"""


def test_allow_hosts_and_baton_s_own_recording_proxy(
    echo_off_loopback: Upstream, pytester: pytest.Pytester
) -> None:
    upstream = echo_off_loopback
    network = f"{upstream.host.rsplit('.', 1)[0]}.0/24"
    pytester.makefile(".toml", pyproject="[tool.pytest.ini_options]\nbaton_block_network = true\n")
    pytester.makepyfile(
        test_allowed=ALLOWED.format(
            url=upstream.url, host=upstream.host, port=upstream.port, network=network
        )
    )

    result = pytester.runpytest_subprocess(
        "--baton-record-mode", "once", "-p", "no:cacheprovider", timeout=240
    )

    result.assert_outcomes(passed=4)
    recorded = pytester.path / "cassettes" / "test_allowed"
    assert [p.name for p in recorded.iterdir()] == [
        "test_recording_reaches_the_upstream_while_the_test_may_not.cassette"
    ]


# -- the allow-list alone ----------------------------------------------------------------------


def test_allow_list_entries() -> None:
    allow = AllowList.parse(
        ["API.example.com", "*.internal", "10.1.2.3", "192.168.0.0/16", "[::2]"]
    )
    assert allow.allows_name("api.example.com.")
    assert allow.allows_name("db.internal") and not allow.allows_name("internal")
    assert allow.allows_name("localhost") and allow.allows_name("app.localhost")
    assert not allow.allows_name("example.com")
    import ipaddress

    for allowed in ("10.1.2.3", "192.168.7.7", "::2", "127.0.0.5", "::1", "::ffff:127.0.0.1"):
        assert allow.allows_address(ipaddress.ip_address(allowed)), allowed
    for refused in ("10.1.2.4", "8.8.8.8", "2001:db8::1"):
        assert not allow.allows_address(ipaddress.ip_address(refused)), refused


@pytest.mark.parametrize("entry", ["", "10.0.0.0/33", "  "])
def test_allow_list_refuses_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList.parse([entry])
