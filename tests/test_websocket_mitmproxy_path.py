"""WebSocket replay through mitmproxy: ws:// and wss:// in regular mode, the client trusting mitmproxy's CA.

The Replayer matches the handshake and routes it to baton's own replay
server on 127.0.0.1, which plays the conversation; mitmproxy terminates TLS
and relays the WebSocket (docs/streams.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from baton.cassettes import read_cassette
from tests.processes import BatonProcess, TLSFiles, start_baton, trusting
from tests.websocket_parts import SCRIPT, Transcript, converse, start_websocket_server, ws_url

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Recorded:
    cassette: Path
    plain_url: str
    secure_url: str
    plain: Transcript
    secure: Transcript


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TLSFiles, mitm_confdir: Path
) -> Iterator[Recorded]:
    """A ws:// and a wss:// conversation recorded in regular mode; then both services stop."""
    cassette = tmp_path_factory.mktemp("ws-mitm") / "chat.cassette"
    plain, secure = start_websocket_server(), start_websocket_server(tls_files)
    try:
        recorder = start_baton(
            ["record", "-o", str(cassette), "--listen-port", "0",
             "--set", f"confdir={mitm_confdir}",
             "--set", f"ssl_verify_upstream_trusted_ca={tls_files.ca}"]
        )  # fmt: skip
        ca = trusting(mitm_confdir / "mitmproxy-ca-cert.pem")
        try:
            seen_plain = converse(ws_url(plain.url), proxy=recorder.url)
            seen_secure = converse(ws_url(secure.url), proxy=recorder.url, ssl_context=ca)
        finally:
            assert recorder.stop() == 0
    finally:
        plain.stop()
        secure.stop()
    assert [i.request.scheme for i in read_cassette(cassette)] == ["http", "https"]
    yield Recorded(cassette, ws_url(plain.url), ws_url(secure.url), seen_plain, seen_secure)


def replay_regular(
    baton: Callable[..., BatonProcess], recorded: Recorded, confdir: Path, *extra: str
) -> BatonProcess:
    return baton(
        "replay", str(recorded.cassette), "--mode", "regular", "--listen-port", "0",
        "--set", f"confdir={confdir}", *extra,
    )  # fmt: skip


def test_ws_and_wss_replay_through_regular_mode(
    baton: Callable[..., BatonProcess], recorded: Recorded, mitm_confdir: Path
) -> None:
    replayer = replay_regular(baton, recorded, mitm_confdir)
    assert "mitmproxy path" in replayer.output
    ca = trusting(mitm_confdir / "mitmproxy-ca-cert.pem")
    assert converse(recorded.plain_url, proxy=replayer.url) == recorded.plain
    assert converse(recorded.secure_url, proxy=replayer.url, ssl_context=ca) == recorded.secure
    assert recorded.secure.close == (4000, "bye now") and len(recorded.secure.received) == 7
    assert replayer.stop() == 0
    assert "2 hits, 0 misses, 0 of 2 recorded interactions unused" in replayer.output


def test_a_near_miss_over_wss_closes_with_4404_and_is_counted(
    baton: Callable[..., BatonProcess], recorded: Recorded, mitm_confdir: Path
) -> None:
    replayer = replay_regular(baton, recorded, mitm_confdir, "--replay-latency", "1")
    changed = list(SCRIPT)
    changed[0] = ("text", "goodbye", 1)
    ca = trusting(mitm_confdir / "mitmproxy-ca-cert.pem")
    seen = converse(recorded.secure_url, changed, proxy=replayer.url, ssl_context=ca)
    assert seen.received == recorded.secure.received[:1]  # the welcome, then the close
    assert seen.close == (4404, "baton: no recorded message matches (see the replay log)")
    assert replayer.stop() == 0
    assert "no recorded message matches GET /chat message 2 (client, text)" in replayer.output
    assert "1 hit, 1 miss" in replayer.output
