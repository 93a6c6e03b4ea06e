"""Import HAR, VCR.py and mitmproxy files (the shared corpus), export HAR, textconv, lint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton.cassettes import CassetteWriter, Interaction, Request, Response, read_cassette
from baton.formats.detect import SourceError, SourceFormat, import_file
from baton.formats.har import export_har, import_har
from tests.processes import BatonProcess, Upstream, run_baton

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"

# file, interactions, the first one's (method, URL prefix, status; None: no response), skipped entries
EXPECTED = [
    ("har/haralyzer-cnn-chrome.har", 292, ("GET", "http://cnn.com/", 301), 0),
    ("har/mitmproxy-chrome.har", 3, ("GET", "https://mitmproxy.org/", 304), 0),
    ("har/mitmproxy-diff_data.har", 5, ("POST", "https://jnn-pa.googleapis.com/$rpc/", 200), 0),
    ("har/mitmproxy-firefox.har", 14, ("GET", "https://mitmproxy.org/", 304), 0),
    ("har/mitmproxy-safari.har", 19, ("GET", "https://mitmproxy.org/", 200), 0),
    (
        "har/mitmproxy-websocket.har",
        3,
        ("GET", "https://demo.piesocket.com/v3/channel_123", 101),
        0,
    ),
    (
        "har/mitmproxy-with-bom.har",
        1,
        ("POST", "https://signal-metrics-collector-beta.s-onetag.com/metrics", 200),
        0,
    ),
    ("mitmproxy/compressed.zhar", 2, ("GET", "https://example.com/", 200), 0),
    (
        "vcrpy/tweepy-test_asyncclient_get_home_timeline.yaml",
        1,
        ("GET", "https://api.twitter.com/2/users/", 200),
        0,
    ),
    (
        "vcrpy/tweepy-testmediauploadmp4.yaml",
        4,
        ("POST", "https://upload.twitter.com/1.1/media/upload.json", 202),
        0,
    ),
    (
        "vcrpy/tweepy-testupdateprofilebannerimage.yaml",
        3,
        ("POST", "https://api.twitter.com/1.1/account/update_profile_banner.json", 201),
        0,
    ),
    ("vcrpy/vcrpy-domain_redirect.yaml", 2, ("GET", "http://seomoz.org/", 301), 0),
    ("vcrpy/vcrpy-gzip_httpx_old_format.yaml", 1, ("GET", "https://httpbin.org/gzip", 200), 0),
    ("vcrpy/vcrpy-gzip_requests.yaml", 1, ("GET", "https://httpbin.org/gzip", 200), 0),
    ("vcrpy/vcrpy-old_cassette.json", 1, ("GET", "http://httpbin.org/ip", 200), 0),
    ("vcrpy/vcrpy-old_cassette.yaml", 1, ("GET", "http://httpbin.org/ip", 200), 0),
    ("mitmproxy/corrupted_gzip_body.mitm", 1, ("GET", "http://127.0.0.1:5000/", 200), 0),
    ("mitmproxy/diff_data.mitm", 5, ("POST", "https://jnn-pa.googleapis.com/$rpc/", 200), 2),
    ("mitmproxy/dumpfile-018.mitm", 1, ("GET", "https://www.example.com/", 200), 0),
    ("mitmproxy/dumpfile-19.mitm", 1, ("GET", "https://cloudflare-quic.com/", 200), 0),
    (
        "mitmproxy/dumpfile-7-websocket.mitm",
        6,
        ("GET", "http://echo.websocket.org/?encoding=text", 101),
        0,
    ),
    ("mitmproxy/error_log.mitm", 2, ("GET", "http://163.com/", None), 0),
    (
        "mitmproxy/event_stream.mitm",
        2,
        ("GET", "https://clientstream.launchdarkly.com/meval/", 200),
        0,
    ),
    (
        "mitmproxy/mitmproxy2swagger-msgpack_flows.mitm",
        1,
        ("POST", "http://localhost:8082/", 200),
        0,
    ),
    ("mitmproxy/websocket.mitm", 3, ("GET", "https://demo.piesocket.com/v3/channel_123", 101), 0),
]


@pytest.mark.parametrize(
    ("name", "count", "first", "skipped"), EXPECTED, ids=[e[0] for e in EXPECTED]
)
def test_every_corpus_file_imports(name: str, count: int, first: tuple, skipped: int) -> None:
    _, result = import_file(CORPUS / name)
    assert len(result.interactions) == count
    assert len(result.skipped) == skipped
    method, url, status = first
    interaction = result.interactions[0]
    assert interaction.request.method == method
    assert interaction.request.url.startswith(url), interaction.request.url
    if status is None:
        assert interaction.response is None and interaction.error
    else:
        assert interaction.response is not None and interaction.response.status == status


def test_corpus_details_that_matter() -> None:
    chrome = import_file(CORPUS / "har/mitmproxy-chrome.har")[1].interactions
    failed = [i for i in chrome if i.response is None]
    assert len(failed) == 1 and failed[0].error  # status 0: imported with an error, not dropped
    versions = {i.request.http_version for i in chrome}
    assert "HTTP/2.0" in versions and "HTTP/3" in versions

    websocket = import_file(CORPUS / "har/mitmproxy-websocket.har")[1].interactions
    assert websocket[0].websocket is not None  # Chrome's _webSocketMessages, in the model
    first = websocket[0].websocket.messages[0]
    assert (first.from_client, first.is_text) == (False, True)
    assert first.data == b'{"error":"Unknown api key"}'

    old_yaml = import_file(CORPUS / "vcrpy/vcrpy-old_cassette.yaml")[1].interactions[0]
    assert old_yaml.request.header("user-agent").startswith("python-requests/2.2.1")
    assert old_yaml.response.body == b'{\n  "origin": "217.122.164.194"\n}'

    httpx_old = import_file(CORPUS / "vcrpy/vcrpy-gzip_httpx_old_format.yaml")[1]
    response = httpx_old.interactions[0].response
    assert response.header("content-encoding") is None  # stored decoded: stale header dropped
    assert json.loads(response.body)["gzipped"] is True
    assert any("dropped Content-Encoding" in note for note in httpx_old.notes)

    requests_gzip = (
        import_file(CORPUS / "vcrpy/vcrpy-gzip_requests.yaml")[1].interactions[0].response
    )
    assert requests_gzip.header("content-encoding") == "gzip"  # !!binary: real gzip bytes, kept
    assert requests_gzip.body[:2] == b"\x1f\x8b" and requests_gzip.reason == "great"

    corrupted = (
        import_file(CORPUS / "mitmproxy/corrupted_gzip_body.mitm")[1].interactions[0].response
    )
    assert corrupted.header("content-encoding") == "gzip"  # byte-exact, even when not valid gzip

    streamed = import_file(CORPUS / "mitmproxy/event_stream.mitm")[1].interactions
    assert all(i.response.body is None for i in streamed)  # not captured, never empty
    assert any("CANCEL" in i.tags.get("error_after_response", "") for i in streamed)

    errors = import_file(CORPUS / "mitmproxy/error_log.mitm")[1].interactions
    assert errors[0].response is None and errors[0].error
    assert errors[1].response.status == 405

    ws_flows = import_file(CORPUS / "mitmproxy/websocket.mitm")[1].interactions
    assert [len(i.websocket.messages) for i in ws_flows] == [1, 1, 3]
    assert [m.data for m in ws_flows[2].websocket.messages][1:] == [b"foo", b"bar"]
    assert (ws_flows[1].websocket.close_code, ws_flows[1].websocket.closed_by_client) == (
        1000,
        False,
    )


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.cassette"
    result = run_baton(["import", str(CORPUS / "mitmproxy/dumpfile-010.mitm"), "-o", str(out)])
    assert result.returncode == 2
    assert "cannot read it" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not anything")
    result = run_baton(["import", str(junk), "-o", str(out)])
    assert result.returncode == 2 and "format not recognised" in result.stderr
    with pytest.raises(SourceError, match="not a har file"):
        import_file(
            CORPUS / "vcrpy/vcrpy-gzip_requests.yaml",
            forced=SourceFormat.HAR,
        )


def test_a_partly_bad_har_imports_what_it_can_and_names_the_rest(tmp_path: Path) -> None:
    good = {
        "request": {"method": "GET", "url": "https://api.test/a", "headers": []},
        "response": {"status": 200, "statusText": "OK", "headers": [], "content": {"text": "ok"}},
    }
    har = {
        "log": {
            "version": "1.2",
            "entries": [good, {"request": {"url": "not a url"}}, "junk", good],
        }
    }
    source = tmp_path / "partial.har"
    source.write_text(json.dumps(har))
    out = tmp_path / "partial.cassette"
    result = run_baton(["import", str(source), "-o", str(out)])
    assert result.returncode == 0, result.stderr
    assert "2 imported, 2 skipped" in result.stdout
    assert "skipped entry 1:" in result.stdout and "skipped entry 2:" in result.stdout
    assert len(read_cassette(out)) == 2


def test_redaction_applies_on_import(tmp_path: Path) -> None:
    out = tmp_path / "redacted.cassette"
    result = run_baton(
        [
            "import",
            str(CORPUS / "mitmproxy/event_stream.mitm"),
            str(CORPUS / "har/mitmproxy-websocket.har"),
            "-o",
            str(out),
        ]
    )
    assert result.returncode == 0, result.stderr
    interactions = read_cassette(out)
    auth = interactions[0].request.header("authorization")
    assert auth.startswith("api_key REDACTED-")
    assert dict(interactions[2].request.query)["api_key"].startswith("REDACTED-")
    lint = run_baton(["lint", str(out)])
    assert lint.returncode == 0, lint.stdout

    raw = tmp_path / "raw.cassette"
    run_baton(
        [
            "import",
            str(CORPUS / "mitmproxy/event_stream.mitm"),
            "-o",
            str(raw),
            "--no-default-redaction",
        ]
    )
    lint = run_baton(["lint", str(raw)])
    assert lint.returncode == 1
    assert "request.header.authorization" in lint.stdout


def comparable(interaction: Interaction) -> tuple:
    return (interaction.request, interaction.response, interaction.error)


def test_recorded_cassette_to_har_and_back(
    baton: Callable[..., BatonProcess], httpbin: Upstream, tmp_path: Path
) -> None:
    cassette = tmp_path / "rec.cassette"
    recorder = baton(
        "record", "-o", str(cassette), "--mode", f"reverse:{httpbin.url}", "--listen-port", "0"
    )
    with httpx.Client(base_url=recorder.url, trust_env=False, timeout=30) as client:
        for path in ("/get?a=1&a=2", "/gzip", "/brotli", "/image/png", "/status/404"):
            client.get(path)
        client.post("/post", json={"k": [1, 2]})
        client.post("/post", data={"f": "v"})
    assert recorder.stop() == 0
    har = tmp_path / "rec.har"
    assert run_baton(["export", str(cassette), "-o", str(har)]).returncode == 0
    back = tmp_path / "back.cassette"
    assert run_baton(["import", str(har), "-o", str(back)]).returncode == 0
    assert [comparable(i) for i in read_cassette(back)] == [
        comparable(i) for i in read_cassette(cassette)
    ]
    # Devtools see decoded content; the exact bytes ride along in _batonRaw.
    entries = json.loads(har.read_text())["log"]["entries"]
    gzip_entry = entries[1]["response"]["content"]
    assert json.loads(gzip_entry["text"])["gzipped"] is True and "_batonRaw" in gzip_entry


@pytest.mark.parametrize(
    "name", ["har/mitmproxy-diff_data.har", "har/mitmproxy-firefox.har", "har/mitmproxy-chrome.har"]
)
def test_corpus_har_to_cassette_to_har(name: str, tmp_path: Path) -> None:
    original = json.loads((CORPUS / name).read_bytes().decode("utf-8-sig"))["log"]["entries"]
    cassette = tmp_path / "c.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        for interaction in import_har((CORPUS / name).read_bytes()).interactions:
            writer.append(interaction)
    exported = export_har(read_cassette(cassette))["log"]["entries"]
    assert len(exported) == len(original)
    for before, after in zip(original, exported, strict=True):
        assert after["request"]["method"] == before["request"]["method"]
        assert after["request"]["url"].split("?")[0] == before["request"]["url"].split("?")[0]
        assert after["response"]["status"] == before["response"]["status"]
        names = [
            h["name"].lower()
            for h in before["response"]["headers"]
            if not h["name"].startswith(":")
        ]
        kept = [h["name"].lower() for h in after["response"]["headers"]]
        assert [n for n in names if n not in ("content-encoding", "content-length")] == [
            n for n in kept if n not in ("content-encoding", "content-length")
        ]
        if before["response"].get("content", {}).get("text") and before["response"]["status"]:
            assert body_of(after["response"]["content"]) == body_of(before["response"]["content"])


def body_of(content: dict) -> bytes:
    """A HAR content's bytes, whichever way it is written down."""
    import base64

    text = content["text"]
    if content.get("encoding") == "base64":
        return base64.b64decode(text)
    # mitmproxy writes a body it does not judge binary as Latin-1 text; its size says which.
    size, compression = content.get("size"), content.get("compression") or 0
    if size is not None and len(text.encode()) not in (size, size + compression):
        return text.encode("latin-1")
    return text.encode()


# Generated directly in the domain HAR can hold (JSON text, absolute URLs),
# rather than filtered from arbitrary interactions: a filter that rejects
# most examples only "passes" while Hypothesis's example database is warm.
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_token = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"),
    min_size=1,
    max_size=12,
)
_pairs = st.lists(st.tuples(_token, _text), max_size=5).map(tuple)
_bodies = st.none() | st.binary(max_size=200)
_har_requests = st.builds(
    Request,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    scheme=st.sampled_from(["http", "https"]),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True),
    port=st.integers(1, 65535),
    path=st.from_regex(r"/[A-Za-z0-9._~-]{0,12}(/[A-Za-z0-9._~-]{1,8}){0,2}", fullmatch=True),
    query=st.lists(st.tuples(_token, _text), max_size=4).map(tuple),
    http_version=st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"]),
    headers=_pairs,
    body=_bodies,
)
_har_responses = st.builds(
    Response,
    status=st.integers(100, 599),
    reason=_text,
    http_version=st.sampled_from(["HTTP/1.1", "HTTP/2.0"]),
    headers=_pairs,
    body=_bodies,
)


@st.composite
def har_interactions(draw: st.DrawFn) -> Interaction:
    response = draw(st.none() | _har_responses)
    return Interaction(
        id=draw(st.uuids().map(str)),
        request=draw(_har_requests),
        response=response,
        recorded_at=draw(st.floats(0, 4e9, allow_nan=False)),
        duration_ms=draw(st.none() | st.floats(0, 1e6, allow_nan=False)),
        error=draw(st.text(min_size=1, max_size=20)) if response is None else None,
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(har_interactions(), min_size=1, max_size=3))
def test_any_cassette_exports_to_har_and_imports_back_equal(items: list[Interaction]) -> None:
    from dataclasses import replace

    items = [
        replace(
            i,
            request=replace(
                i.request,
                path="/" + i.request.path.lstrip("/").replace("?", "%3F").replace("#", "%23"),
            ),
        )
        for i in items
    ]
    document = json.dumps(export_har(items)).encode()
    back = import_har(document)
    assert not back.skipped
    for before, after in zip(items, back.interactions, strict=True):
        assert after.request.method == before.request.method.upper()
        assert (after.request.scheme, after.request.host.lower(), after.request.port) == (
            before.request.scheme,
            before.request.host.lower(),
            before.request.port,
        )
        assert after.request.query == before.request.query
        assert after.request.headers == before.request.headers
        assert after.request.body == before.request.body
        if before.response is None:
            assert after.response is None
        else:
            assert after.response.status == before.response.status
            assert after.response.headers == before.response.headers
            assert after.response.body == before.response.body


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_textconv_makes_git_diff_readable(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.test")
    git("config", "user.name", "t")
    (repo / ".gitattributes").write_text("*.cassette diff=baton\n")
    baton = f"{sys.executable} -m baton.proxy.cli"
    git("config", "diff.baton.textconv", f"{baton} textconv")
    from tests.test_cassette_format import sample

    cassette = repo / "api.cassette"
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(sample(1))
    git("add", ".")
    git("commit", "-qm", "one")
    with CassetteWriter(cassette, redactor=None) as writer:
        writer.append(sample(2))
    diff = git("diff")
    assert "Binary files" not in diff
    assert "+#2 GET http://example.test/items/2?page=1" in diff
    assert '+    "n": 2' in diff  # JSON pretty-printed with sorted keys
    log = git("log", "-p", "-1", "--format=%s")
    assert "+#1 GET http://example.test/items/1?page=1" in log


def test_lint_flags_secret_shapes_and_ignores_placeholders(tmp_path: Path) -> None:
    from baton.cassettes import Request, Response

    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    leaky = Interaction(
        "x",
        Request(
            "GET",
            "https",
            "api.test",
            443,
            "/me",
            (("sig", "Zk3xQ9aLm2Vb7TcR8pWd4YsNhEj6KuGf"),),
            "HTTP/1.1",
            (("X-Session", jwt),),
        ),
        Response(200, body=b'{"aws": "AKIAIOSFODNN7EXAMPLE", "ok": "REDACTED-0123456789abcdef"}'),
        0.0,
    )
    path = tmp_path / "leaky.cassette"
    with CassetteWriter(path, redactor=None) as writer:
        writer.append(leaky)
    result = run_baton(["lint", str(path)])
    assert result.returncode == 1
    assert "request.header.x-session: JWT" in result.stdout
    assert "response.body: AWS access key" in result.stdout
    assert "request.query.sig: high-entropy token" in result.stdout
    assert "REDACTED" not in result.stdout
    with tempfile.TemporaryDirectory() as folder:
        clean = Path(folder) / "clean.cassette"
        from tests.test_cassette_format import sample

        with CassetteWriter(clean, redactor=None) as writer:
            writer.append(sample(1))
        assert run_baton(["lint", str(clean)]).returncode == 0


def test_mitmproxy_reads_the_exported_har(tmp_path: Path) -> None:
    cassette = tmp_path / "mixed.cassette"
    sources = [CORPUS / "har/mitmproxy-diff_data.har", CORPUS / "vcrpy/vcrpy-gzip_requests.yaml"]
    assert run_baton(["import", *map(str, sources), "-o", str(cassette)]).returncode == 0
    har = tmp_path / "mixed.har"
    assert run_baton(["export", str(cassette), "-o", str(har)]).returncode == 0
    mitmdump = Path(sys.executable).with_name("mitmdump")
    result = subprocess.run(
        [
            str(mitmdump),
            "-n",
            "-r",
            str(har),
            "--set",
            "flow_detail=1",
            "--set",
            f"confdir={tmp_path / 'mitm'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "https://httpbin.org/gzip" in result.stdout
    assert result.stdout.count("<< ") == len(read_cassette(cassette))
