"""Short forms of bench/reliability.py's rows (issue 18): the same checks, smaller loads.

The bench runs 200 clients x 50 requests and 20 SIGKILLs; here 20 x 10 and 2,
through the real ``baton record`` and ``baton replay`` processes and the
tests' echo service, which sends back each request's id so a mix-up shows.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from baton.cassettes import CassetteWriter, read_cassette
from baton.cassettes.content_coding import decode_body
from baton.cassettes.model import Interaction, Request, Response
from baton.cassettes.redaction import RedactionRules, Redactor
from bench.reliability import (
    crowd,
    kill_under_load,
    lost_and_doubled,
    mutated_cassettes,
    mutation_base,
    record_into_read_only,
    record_onto_full_disk,
    recorded_ids,
    small_filesystem,
)
from tests.processes import BatonProcess, Upstream, run_baton, start_baton
from tests.websocket_parts import converse, start_websocket_server, ws_url


def test_a_crowd_through_record_and_replay_loses_and_mixes_up_nothing(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "crowd.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
    )
    recorded = crowd(recorder.url, clients=20, per_client=10)
    assert recorder.stop() == 0
    assert recorded.errors == []
    assert len(recorded.answered) == 200
    assert recorded.mismatched == []
    kept = recorded_ids(cassette)
    lost, doubled = lost_and_doubled(recorded.answered, kept)
    assert (lost, doubled) == ([], [])
    assert sum(kept.values()) == 200

    replayer = baton("replay", str(cassette), "--listen-port", "0")
    replayed = crowd(replayer.url, clients=20, per_client=10)
    assert replayer.stop() == 0
    assert replayed.errors == []
    assert len(replayed.answered) == 200
    assert replayed.mismatched == []


def test_sigkill_of_the_recorder_under_load_twice_keeps_every_answer_and_repairs(
    baton: Callable[..., BatonProcess], echo: Upstream, tmp_path: Path
) -> None:
    def start_recorder(cassette: Path) -> tuple[str, Callable[[], None]]:
        recorder = baton(
            "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
        )
        return recorder.url, recorder.kill

    def repair(cassette: Path) -> int:
        return run_baton(["repair", str(cassette)]).returncode

    for round_number in range(2):
        outcome = kill_under_load(
            start_recorder, tmp_path / f"killed-{round_number}.cassette", repair, before_kill=60
        )
        assert outcome.answered >= 60
        assert outcome.lost == 0, outcome
        # Only requests in flight at the kill (one per client at most) may be kept unanswered.
        assert outcome.unanswered_kept <= 8, outcome
        assert outcome.repair_code == 0, outcome
        assert outcome.readable_after_repair, outcome


# --- Planted secrets -------------------------------------------------------------------------------

SECRETS = {
    "authorization header": "sEcReT-authz-4f1a9c",
    "cookie header": "sEcReT-cookie-77b2e0",
    "set-cookie header": "sEcReT-setcookie-93d1",
    "x-api-key header": "sEcReT-apikey-0c5e8b",
    "query access_token": "sEcReT-query-a61f07",
    "json body password": "sEcReT-json-5d2c11",
    "nested json api_key": "sEcReT-nested-e8f4a2",
    "form body password": "sEcReT-form-3b9d60",
    "multipart password": "sEcReT-multipart-c47e",
    "gzip json token": "sEcReT-gzip-19ab5f",
    "url userinfo": "sEcReT-userinfo-6e0d",
    "websocket message password": "sEcReT-websocket-d2a7",
}


class _Reflecting(BaseHTTPRequestHandler):
    """Answers every request with its headers, path and body, and a session cookie.

    An echo is the hard case for redaction: every secret sent comes back in the
    answer, where no header or field name marks it as one.
    """

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        payload = json.dumps(
            {
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body.decode("latin-1"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", f"session={SECRETS['set-cookie header']}; HttpOnly")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _plant(url: str) -> None:
    """Send each secret in its place, as a real client would."""
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        client.get(
            "/items",
            params={"access_token": SECRETS["query access_token"]},
            headers={
                "Authorization": f"Bearer {SECRETS['authorization header']}",
                "Cookie": f"session={SECRETS['cookie header']}",
                "X-Api-Key": SECRETS["x-api-key header"],
            },
        ).raise_for_status()
        client.post(
            "/login",
            json={
                "user": "ada",
                "password": SECRETS["json body password"],
                "keys": {"api_key": SECRETS["nested json api_key"]},
            },
        ).raise_for_status()
        client.post(
            "/form", data={"user": "ada", "password": SECRETS["form body password"]}
        ).raise_for_status()
        client.post(
            "/upload",
            data={"password": SECRETS["multipart password"]},
            files={"file": ("a.txt", b"hello")},
        ).raise_for_status()
        client.post(
            "/gzipped",
            content=gzip.compress(json.dumps({"token": SECRETS["gzip json token"]}).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ).raise_for_status()
    host = url.split("://", 1)[1]
    httpx.get(
        f"http://ada:{SECRETS['url userinfo']}@{host}/userinfo", trust_env=False
    ).raise_for_status()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, mitm_confdir: Path) -> dict[str, bytes]:
    """Every artifact a recording of the planted secrets produces, as raw bytes by name."""
    folder = tmp_path_factory.mktemp("secrets")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reflecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    cassette = folder / "planted.cassette"
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--mode",
            f"reverse:{upstream}",
            "--listen-port",
            "0",
            "--set",
            f"confdir={mitm_confdir}",
            "-v",
        ]
    )
    try:
        _plant(recorder.url)
    finally:
        recorder.stop()
    interactions = read_cassette(cassette)
    assert len(interactions) == 6, recorder.output
    # A gzip body's bytes never hold the secret as such: look at it decoded too.
    decoded = b"".join(
        decode_body(message.body, message.header("content-encoding"))
        for i in interactions
        for message in (i.request, i.response)
        if message.body
    )
    assert decoded.count(b"REDACTED-") >= len(SECRETS)
    artifacts = {
        "cassette": cassette.read_bytes(),
        "cassette bodies, decoded": decoded,
        "recorder log": recorder.output.encode(),
    }
    exported = run_baton(["export", str(cassette), "--format", "har"])
    assert exported.returncode == 0, exported.stderr
    artifacts["har export"] = (exported.stdout + exported.stderr).encode()
    for report in ("text", "json", "html"):
        diffed = run_baton(
            [
                "diff",
                str(cassette),
                "--target",
                upstream,
                "--allow-side-effects",
                "--format",
                report,
            ]
        )
        assert "Traceback" not in diffed.stderr, diffed.stderr
        artifacts[f"diff {report} report"] = (diffed.stdout + diffed.stderr).encode()
    server.shutdown()
    server.server_close()

    chat = start_websocket_server()
    conversation = folder / "websocket.cassette"
    try:
        recorder = start_baton(
            [
                "record",
                "-o",
                str(conversation),
                "--mode",
                f"reverse:{chat.url}",
                "--listen-port",
                "0",
                "--set",
                f"confdir={mitm_confdir}",
                "-v",
            ]
        )
        try:
            password = SECRETS["websocket message password"]
            converse(
                ws_url(recorder.url), (("json", {"password": password}, 1), ("text", "close", 0))
            )
        finally:
            recorder.stop()
        ws_diff = run_baton(["diff", str(conversation), "--target", chat.url])
        assert "Traceback" not in ws_diff.stderr, ws_diff.stderr
    finally:
        chat.stop()
    assert b"REDACTED-" in conversation.read_bytes()
    ws_har = run_baton(["export", str(conversation), "--format", "har"])
    artifacts["websocket cassette"] = conversation.read_bytes()
    artifacts["websocket recorder log"] = recorder.output.encode()
    artifacts["websocket har export"] = (ws_har.stdout + ws_har.stderr).encode()
    artifacts["websocket diff report"] = (ws_diff.stdout + ws_diff.stderr).encode()
    return artifacts


@pytest.mark.parametrize("place", list(SECRETS))
def test_a_planted_secret_survives_in_no_artifact(planted: dict[str, bytes], place: str) -> None:
    secret = SECRETS[place].encode()
    encoded = {secret, base64.b64encode(b"ada:" + secret), secret.replace(b"-", b"%2D")}
    survived = [name for name, data in planted.items() if any(s in data for s in encoded)]
    assert survived == [], f"{place}: the secret is in {survived}"


def test_multipart_redaction_replaces_secret_fields_and_leaves_files_and_other_fields() -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="user"\r\n\r\nada\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="Password"\r\n\r\nhunter2-x\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="token"; filename="token"\r\n'
        f"Content-Type: text/plain\r\n\r\nfile contents\r\n--{boundary}--\r\n"
    ).encode()
    request = Request(
        "POST",
        "http",
        "api.test",
        80,
        "/upload",
        headers=(("Content-Type", f"multipart/form-data; boundary={boundary}"),),
        body=body,
    )
    interaction = Interaction(
        id="1", request=request, response=Response(200, "OK"), recorded_at=1.0
    )
    redacted = Redactor(RedactionRules.build(), bytes(32)).redact(interaction).request.body
    assert redacted is not None
    assert b"hunter2-x" not in redacted
    assert b'name="Password"\r\n\r\nREDACTED-' in redacted
    assert b'name="user"\r\n\r\nada\r\n' in redacted
    assert b"file contents" in redacted  # a file part named like a secret field is a file


def test_mutated_cassettes_give_interactions_or_a_cassette_error(tmp_path: Path) -> None:
    """The bench's 100k in short: every reader meets damage with a CassetteError or reads on."""
    base = tmp_path / "base.cassette"
    mutation_base(base)
    result = mutated_cassettes(base, 2000)
    assert result.other_exceptions == []
    assert result.files == 2000
    assert result.read_whole > 0 and result.cassette_errors > 0  # both ways were exercised


@pytest.mark.parametrize("command", ["export", "show"])
def test_a_recorded_at_no_date_can_hold_is_one_line_not_an_overflow(
    command: str, tmp_path: Path
) -> None:
    """The mutation row's finding: a damaged recorded_at made the HAR export and show overflow."""
    cassette = tmp_path / "far-future.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(
            Interaction(
                id="1",
                request=Request("GET", "http", "api.test", 80, "/"),
                response=Response(200, "OK", body=b"x"),
                recorded_at=1e20,
            )
        )
    result = run_baton([command, str(cassette)])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"baton: error: {cassette}: interaction 1 at byte 79: field recorded_at: "
        "expected a time between the years 1900 and 9999, got float"
    ]


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 256 KB tmpfs: a disk that really fills (ENOSPC), mounted for the test."""
    try:
        with small_filesystem("256k") as folder:
            yield folder
    except PermissionError as exc:
        pytest.skip(
            f"{exc} (run as root to check a real full disk; the rlimit form is in test_record_robustness.py)"
        )


def test_a_disk_that_fills_under_the_recorder_harms_no_answer_and_leaves_a_readable_cassette(
    baton: Callable[..., BatonProcess], echo: Upstream, small_disk: Path
) -> None:
    result = record_onto_full_disk(
        lambda cassette: baton(
            "record", "-o", str(cassette), "--mode", f"reverse:{echo.url}", "--listen-port", "0"
        ),
        small_disk,
        requests=30,
        size=20_000,
    )
    assert result.answered_ok == 30  # fail-open: every client got its answer
    assert result.failed > 0 and result.written > 0
    assert result.written + result.failed == 30
    assert any("No space left on device" in line for line in result.log_lines), result.log_lines
    assert result.readable  # what was written reads whole; failed writes were cut back off
    assert result.exit_code == 1  # the run says something was lost


def test_a_read_only_output_folder_is_one_line_exit_2_and_the_cassette_there_is_untouched(
    echo: Upstream, small_disk: Path
) -> None:
    def run(args: list[str]) -> tuple[int, str]:
        done = run_baton(args)
        return done.returncode, done.stdout + done.stderr

    code, output, kept = record_into_read_only(run, small_disk, echo.url)
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 2, output  # one line per attempt, no traceback
    assert all(
        "Read-only file system" in line and line.startswith("baton: error:") for line in lines
    )
    assert kept
