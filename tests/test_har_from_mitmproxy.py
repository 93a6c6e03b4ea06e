"""HAR written by mitmproxy's own exporter (``--set hardump=FILE``) imports byte for byte.

mitmproxy writes a body it judges binary as base64, and any other body as
text it decoded itself — Latin-1 for a type without a charset. The importer
must turn that text back into the same bytes, using the size the HAR states:
256 bytes in, 256 bytes out (it once gave 384, their UTF-8 encoding).

Each mitmproxy installed beside this interpreter (mitmproxy 11 in .venv,
12 in .venv-312) writes its own HAR: their exporters differ (the request's
``bodySize`` counts decoded bytes in 11, wire bytes in 12).
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from baton.cassettes import read_cassette
from tests.processes import Mitmdump, run_baton, start_mitmdump

ROOT = Path(__file__).resolve().parent.parent

ALL_BYTES = bytes(range(256))  # mitmproxy does not judge it binary: written as Latin-1 text
RANDOM_BYTES = random.Random(256).randbytes(256)  # judged binary: written as base64


class _BinaryHandler(BaseHTTPRequestHandler):
    """/all-bytes, /random, /gzip (gzip of /all-bytes) and POST /echo, all octet-stream."""

    def do_GET(self) -> None:
        extra: list[tuple[str, str]] = []
        if self.path == "/all-bytes":
            body = ALL_BYTES
        elif self.path == "/random":
            body = RANDOM_BYTES
        elif self.path == "/gzip":
            body = gzip.compress(ALL_BYTES, mtime=0)
            extra.append(("Content-Encoding", "gzip"))
        else:
            self.send_error(404)
            return
        self._answer(body, extra)

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers["Content-Length"])), [])

    def _answer(self, body: bytes, extra: list[tuple[str, str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def binary_upstream() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that serves fixed binary bodies."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BinaryHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _mitmproxy_installs() -> list[Path]:
    """This interpreter, and the other virtual environments of the checkout that hold mitmproxy."""
    found = [Path(sys.executable)]
    for venv in sorted(ROOT.glob(".venv*")):
        python = venv / "bin" / "python"
        if (venv / "bin" / "mitmdump").exists() and python.absolute() != found[0].absolute():
            found.append(python)
    return found


def _version(python: Path) -> str:
    result = subprocess.run(
        [str(python), "-c", "import mitmproxy.version as v; print(v.VERSION)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip() or "unknown"


@pytest.mark.parametrize("python", _mitmproxy_installs(), ids=lambda p: p.parent.parent.name)
def test_binary_bodies_from_mitmproxys_own_har_export_import_exactly(
    python: Path, binary_upstream: str, tmp_path: Path, mitm_confdir: Path
) -> None:
    har = tmp_path / "mitmproxy.har"
    mitmdump = start_mitmdump_of(python, binary_upstream, har, mitm_confdir)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{mitmdump.port}", trust_env=False) as client:
            for path in ("/all-bytes", "/random", "/gzip"):
                assert client.get(path).status_code == 200
            posted = client.post(
                "/echo", content=ALL_BYTES, headers={"Content-Type": "application/octet-stream"}
            )
            assert posted.content == ALL_BYTES
    finally:
        mitmdump.stop()  # mitmproxy writes the HAR when it shuts down
    entries = json.loads(har.read_text())["log"]["entries"]
    assert len(entries) == 4, f"mitmproxy {_version(python)} wrote {len(entries)} entries"
    # The case that grew: mitmproxy wrote the 256 bytes as text, not base64.
    assert "encoding" not in entries[0]["response"]["content"]
    assert entries[1]["response"]["content"]["encoding"] == "base64"

    cassette = tmp_path / "imported.cassette"
    result = run_baton(["import", str(har), "-o", str(cassette)])
    assert result.returncode == 0, result.stderr
    interactions = {i.request.path: i for i in read_cassette(cassette)}
    assert interactions["/all-bytes"].response is not None
    assert interactions["/all-bytes"].response.body == ALL_BYTES
    assert interactions["/random"].response.body == RANDOM_BYTES  # type: ignore[union-attr]
    # mitmproxy stores the body decoded; the stale Content-Encoding goes with it.
    gzipped = interactions["/gzip"].response
    assert gzipped is not None and gzipped.body == ALL_BYTES
    assert not any(name.lower() == "content-encoding" for name, _ in gzipped.headers)
    assert interactions["/echo"].request.body == ALL_BYTES
    assert interactions["/echo"].response.body == ALL_BYTES  # type: ignore[union-attr]

    # What a user sees: baton show reports 256 bytes, not 384.
    shown = run_baton(["show", str(cassette), "--no-headers"]).stdout
    assert "application/octet-stream, 256 bytes" in shown
    assert "384 bytes" not in shown


def start_mitmdump_of(python: Path, upstream: str, har: Path, confdir: Path) -> Mitmdump:
    """mitmdump of ``python``'s environment in reverse mode, writing its own HAR to ``har``."""
    args = ["--mode", f"reverse:{upstream}", "--set", f"hardump={har}"]
    return start_mitmdump(
        [*args, "--set", f"confdir={confdir}"], mitmdump=python.with_name("mitmdump")
    )
