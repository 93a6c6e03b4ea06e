"""Transparent mode for real: a client in a network namespace of the test's own, redirected by iptables.

The client runs in a namespace joined to the host by a veth pair, as a
container or a VM behind a gateway would be. The host's PREROUTING rule
redirects the client's connections to baton; baton's own connection to the
service leaves from the host, so it is not redirected again. Needs root,
`ip` and `iptables` (.ci/run installs them where it can); skipped otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.cassettes import read_cassette
from tests.processes import BatonProcess, start_upstream

HOST_ADDRESS, CLIENT_ADDRESS = "10.213.7.1", "10.213.7.2"


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


@pytest.fixture
def client_namespace() -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"):
        pytest.skip("transparent mode needs root, ip and iptables")
    name = f"baton{secrets.token_hex(3)}"
    host_side, client_side = f"vh{name[-6:]}", f"vc{name[-6:]}"
    try:
        run("ip", "netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        run("ip", "link", "add", host_side, "type", "veth", "peer", "name", client_side)
        run("ip", "link", "set", client_side, "netns", name)
        run("ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", host_side)
        run("ip", "link", "set", host_side, "up")
        run(
            "ip",
            "netns",
            "exec",
            name,
            "ip",
            "addr",
            "add",
            f"{CLIENT_ADDRESS}/24",
            "dev",
            client_side,
        )
        run("ip", "netns", "exec", name, "ip", "link", "set", client_side, "up")
        run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host_side], capture_output=True, timeout=30)


def test_transparent_mode_records_redirected_traffic(
    client_namespace: str, baton: Callable[..., BatonProcess], tmp_path: Path
) -> None:
    upstream = start_upstream("echo", host=HOST_ADDRESS)
    rule = None
    try:
        cassette = tmp_path / "transparent.cassette"
        recorder = baton(
            "record",
            "-o",
            str(cassette),
            "--mode",
            "transparent",
            "--listen-host",
            HOST_ADDRESS,
            "--listen-port",
            "0",
        )
        host_side = f"vh{client_namespace[-6:]}"
        rule = [
            "PREROUTING",
            "-i",
            host_side,
            "-p",
            "tcp",
            "--dport",
            str(upstream.port),
            "-j",
            "REDIRECT",
            "--to-port",
            str(recorder.port),
        ]
        run("iptables", "-t", "nat", "-A", *rule)
        # The client calls the service's own address; nothing tells it about baton.
        answer = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                client_namespace,
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-H",
                "Authorization: Bearer transparent-secret-1",
                f"http://{HOST_ADDRESS}:{upstream.port}/echo?via=transparent",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert answer.returncode == 0, answer.stderr
        assert '"via": "transparent"' in answer.stdout
        assert recorder.stop() == 0
    finally:
        if rule is not None:
            subprocess.run(["iptables", "-t", "nat", "-D", *rule], capture_output=True, timeout=30)
        upstream.stop()

    (interaction,) = read_cassette(cassette)
    assert interaction.tags["mode"] == "transparent"
    assert interaction.request.port == upstream.port
    assert interaction.request.query == (("via", "transparent"),)
    assert interaction.tags["client"].startswith(CLIENT_ADDRESS)
    assert b"transparent-secret-1" not in cassette.read_bytes()
