"""gRPC end to end: a real grpcio server, recorded through baton by a grpcio client, then replayed.

The server (tests/grpc_services/server.py) runs in its own process and is
stopped before replay, so every answer after that comes from the cassette.
What the client sees — messages, initial and trailing metadata, status code
and details — must be the same through the recorder and from the replay, for
all four call kinds, over h2c and TLS, with a schema from --proto, from
reflection only, and with none at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from baton.cassettes.reader import read_cassette  # noqa: E402
from tests.grpc_services.client import exercise, load_stubs  # noqa: E402
from tests.grpc_services.server import HERE as SERVICES  # noqa: E402
from tests.grpc_services.server import compile_stubs  # noqa: E402
from tests.processes import TLSFiles, run_baton, start_baton  # noqa: E402

PROTO = SERVICES / "orders.proto"


@dataclass
class GrpcServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_grpc_server(
    stubs: Path, *, tls: TLSFiles | None = None, reflection: bool = False, build: int = 1
) -> GrpcServer:
    """The orders service in a process of its own; its port once it serves."""
    args = [sys.executable, "-m", "tests.grpc_services.server", "--stubs", str(stubs)]
    if tls is not None:
        args += ["--tls", str(tls.cert), str(tls.key)]
    if reflection:
        args.append("--reflection")
    args += ["--build", str(build)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=SERVICES.parent.parent)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("port "):
        proc.kill()
        raise RuntimeError(f"the gRPC server did not start: {line!r}")
    return GrpcServer(proc, int(line.split()[1]))


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_stubs(tmp_path_factory.mktemp("grpc-stubs"))


@pytest.fixture(scope="module")
def pb(stubs: Path) -> tuple[Any, Any]:
    return load_stubs(stubs)


@pytest.fixture(scope="module")
def tls_pem(tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificate chain and key in one PEM, as --grpc-cert takes them."""
    pem = tmp_path_factory.mktemp("grpc-tls") / "server.pem"
    pem.write_bytes(tls_files.cert.read_bytes() + tls_files.key.read_bytes())
    return pem


def _channel(port: int, tls: TLSFiles | None) -> Any:
    if tls is None:
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca.read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)


def _record_then_replay(
    tmp_path: Path,
    server: GrpcServer,
    pb: tuple[Any, Any],
    schema_args: list[str],
    *,
    tls: TLSFiles | None = None,
    tls_pem: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Path]:
    """What the client saw directly, through baton record, and from baton replay (server stopped)."""
    pb2, pb2_grpc = pb
    cassette = tmp_path / "orders.cassette"
    with _channel(server.port, tls) as channel:
        direct = exercise(channel, pb2, pb2_grpc)
    if tls is None:
        mode = f"reverse:h2c://{server.target}"
        tls_args: list[str] = []
    else:
        assert tls_pem is not None
        mode = f"reverse:grpcs://{server.target}"
        tls_args = ["--grpc-ca", str(tls.ca), "--grpc-cert", str(tls_pem)]
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--mode",
            mode,
            "--listen-port",
            "0",
            *tls_args,
            *schema_args,
        ]
    )
    try:
        with _channel(recorder.port, tls) as channel:
            through = exercise(channel, pb2, pb2_grpc)
    finally:
        assert recorder.stop() == 0, recorder.output
    assert "recorded 5 gRPC calls" in recorder.output
    server.stop()
    replay_args = [] if tls_pem is None else ["--grpc-cert", str(tls_pem)]
    replayer = start_baton(["replay", str(cassette), "--listen-port", "0", *replay_args])
    try:
        with _channel(replayer.port, tls) as channel:
            replayed = exercise(channel, pb2, pb2_grpc)
    finally:
        assert replayer.stop() == 0, replayer.output
    assert "5 gRPC calls answered, 0 missed, 0 recorded calls unused" in replayer.output
    return direct, through, replayed, cassette


@pytest.fixture
def h2c_server(stubs: Path) -> Iterator[GrpcServer]:
    server = start_grpc_server(stubs, reflection=True)
    yield server
    server.stop()


def test_h2c_calls_of_every_kind_replay_as_recorded_with_a_proto_schema(
    tmp_path: Path, h2c_server: GrpcServer, pb: tuple[Any, Any]
) -> None:
    direct, through, replayed, cassette = _record_then_replay(
        tmp_path, h2c_server, pb, ["--proto", str(PROTO)]
    )
    assert through == direct
    assert replayed == direct
    # What the client saw, spelled out for the calls the issue names.
    assert replayed["Get"]["initial"] == [("x-echo", "req-1")]
    assert replayed["Get"]["trailing"] == [("x-served-by", "build-1")]
    assert len(replayed["List"]["messages"]) == 5
    assert len(replayed["Chat"]["messages"]) == 4
    assert replayed["Fail"]["code"] == "NOT_FOUND"
    assert replayed["Fail"]["details"] == "order order-42 not found"
    assert replayed["Fail"]["trailing"] == [
        (
            "grpc-status-details-bin",
            pb[0].Order(id="order-42", customer="nobody").SerializeToString(),
        )
    ]
    calls = {i.grpc.method: i.grpc for i in read_cassette(cassette) if i.grpc is not None}
    assert calls["Get"].schema == "proto"
    assert calls["Get"].responses[0].decoded["items"][2]["price"] == 7.5
    assert [m.decoded["seq"] for m in calls["Chat"].responses[1:]] == [1, 2, 3]
    offsets = [m.offset_ms for m in calls["List"].responses]
    assert offsets == sorted(offsets)
    # What git diff shows through baton textconv: the decoded messages, no times.
    text = run_baton(["textconv", str(cassette)]).stdout
    assert '  > [0] {"id": "order-7", "token": "s3cr3t-token"}' in text
    shown = json.loads(
        run_baton(["show", str(cassette), "--format", "json"]).stdout.splitlines()[0]
    )
    assert shown["grpc"]["response"][0]["decoded"]["items"][0]["sku"] == "sku-7-0"


def test_replay_without_schema_and_a_miss_names_the_differing_field(
    tmp_path: Path, h2c_server: GrpcServer, pb: tuple[Any, Any]
) -> None:
    pb2, pb2_grpc = pb
    direct, through, replayed, cassette = _record_then_replay(tmp_path, h2c_server, pb, [])
    assert replayed == through == direct
    calls = {i.grpc.method: i.grpc for i in read_cassette(cassette) if i.grpc is not None}
    assert calls["Get"].schema == "wire"
    assert calls["Get"].requests[0].decoded == {"1": "order-7", "2": "s3cr3t-token"}

    replayer = start_baton(["replay", str(cassette), "--listen-port", "0"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{replayer.port}") as channel:
            stub = pb2_grpc.OrderServiceStub(channel)
            with pytest.raises(grpc.RpcError) as missed:
                stub.Get(pb2.GetOrderRequest(id="order-8", token="s3cr3t-token"))
    finally:
        replayer.stop()
    assert missed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "request[0].1: recorded 'order-7', got 'order-8'" in missed.value.details()
    assert "1 missed" in replayer.output


def test_tls_calls_replay_as_recorded_with_the_schema_from_reflection_only(
    tmp_path: Path,
    stubs: Path,
    pb: tuple[Any, Any],
    tls_files: TLSFiles,
    tls_pem: Path,
) -> None:
    server = start_grpc_server(stubs, tls=tls_files, reflection=True)
    try:
        direct, through, replayed, cassette = _record_then_replay(
            tmp_path, server, pb, ["--reflection"], tls=tls_files, tls_pem=tls_pem
        )
    finally:
        server.stop()
    assert replayed == through == direct
    interactions = list(read_cassette(cassette))
    get = next(i for i in interactions if i.grpc is not None and i.grpc.method == "Get")
    assert get.grpc is not None and get.grpc.schema == "reflection"
    assert get.grpc.requests[0].decoded == {"id": "order-7", "token": "s3cr3t-token"}
    assert get.request.scheme == "https"

    # baton show reads the decoded calls back without being given any schema.
    shown = run_baton(["show", str(cassette)])
    assert shown.returncode == 0, shown.stderr
    assert "OrderService/Fail" in shown.stdout
    assert "NOT_FOUND" in shown.stdout


def test_recorded_metadata_and_message_fields_are_redacted(
    tmp_path: Path, h2c_server: GrpcServer, pb: tuple[Any, Any]
) -> None:
    pb2, pb2_grpc = pb
    cassette = tmp_path / "redacted.cassette"
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--mode",
            f"reverse:h2c://{h2c_server.target}",
            "--listen-port",
            "0",
            "--proto",
            str(PROTO),
            "--redact-grpc-field",
            "token",
        ]
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{recorder.port}") as channel:
            stub = pb2_grpc.OrderServiceStub(channel)
            stub.Get(
                pb2.GetOrderRequest(id="order-7", token="s3cr3t-token"),
                metadata=[("authorization", "Bearer hunter2-key")],
            )
    finally:
        recorder.stop()
    raw = cassette.read_bytes()
    assert b"s3cr3t-token" not in raw
    assert b"hunter2-key" not in raw
    (get,) = read_cassette(cassette)
    assert get.grpc is not None
    assert get.grpc.requests[0].decoded == {"id": "order-7", "token": "[REDACTED]"}
    assert get.request.header("authorization") != "Bearer hunter2-key"


def test_grpc_mode_errors_are_one_line(tmp_path: Path) -> None:
    result = run_baton(
        ["record", "-o", str(tmp_path / "x.cassette"), "--mode", "reverse:h2c://nohost"]
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "baton: error: --mode reverse:h2c://nohost: write it as reverse:h2c://HOST:PORT"
    )
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3"; message X { strin a = 1; }')
    result = run_baton(
        [
            "record",
            "-o",
            str(tmp_path / "x.cassette"),
            "--mode",
            "reverse:h2c://127.0.0.1:1",
            "--proto",
            str(bad),
        ]
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert '"strin" is not defined' in result.stderr


def test_a_hundred_message_server_stream_passes_as_it_flows_and_replays_whole(
    tmp_path: Path, h2c_server: GrpcServer, pb: tuple[Any, Any]
) -> None:
    pb2, pb2_grpc = pb
    cassette = tmp_path / "stream.cassette"
    recorder = start_baton(
        [
            *("record", "-o", str(cassette), "--listen-port", "0"),
            "--mode",
            f"reverse:h2c://{h2c_server.target}",
        ]
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{recorder.port}") as channel:
            stream = pb2_grpc.OrderServiceStub(channel).List(pb2.ListOrdersRequest(count=100))
            first = next(stream)  # the first message arrives before the stream ends
            recorded = [first, *stream]
    finally:
        recorder.stop()
    assert len(recorded) == 100
    replayer = start_baton(["replay", str(cassette), "--listen-port", "0"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{replayer.port}") as channel:
            replayed = list(
                pb2_grpc.OrderServiceStub(channel).List(pb2.ListOrdersRequest(count=100))
            )
    finally:
        replayer.stop()
    assert [m.SerializeToString() for m in replayed] == [m.SerializeToString() for m in recorded]


def test_regular_mode_through_mitmproxy_records_tls_calls_that_replay(
    tmp_path: Path,
    stubs: Path,
    pb: tuple[Any, Any],
    tls_files: TLSFiles,
    tls_pem: Path,
    mitm_confdir: Path,
) -> None:
    """gRPC over TLS through mitmproxy (regular mode, CONNECT): HTTP/2 exchanges that read as calls."""
    pb2, pb2_grpc = pb
    server = start_grpc_server(stubs, tls=tls_files)
    cassette = tmp_path / "regular.cassette"
    recorder = start_baton(
        [
            *("record", "-o", str(cassette), "--listen-port", "0"),
            *("--set", f"confdir={mitm_confdir}"),
            *("--set", f"ssl_verify_upstream_trusted_ca={tls_files.ca}"),
        ]
    )
    try:
        with _channel(server.port, tls_files) as channel:
            direct = exercise(channel, pb2, pb2_grpc)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(mitm_confdir / "mitmproxy-ca-cert.pem").read_bytes()
        )
        options = [("grpc.http_proxy", f"http://127.0.0.1:{recorder.port}")]
        with grpc.secure_channel(f"localhost:{server.port}", credentials, options) as channel:
            through = exercise(channel, pb2, pb2_grpc)
    finally:
        recorder.stop()
        server.stop()
    shown = run_baton(["show", str(cassette), "--summary"])
    assert "shop.OrderService/Chat  200" in shown.stdout
    assert "grpc: OK, 4 -> 4 messages" in shown.stdout
    assert "grpc: NOT_FOUND, 1 -> 0 messages" in shown.stdout
    replayer = start_baton(
        ["replay", str(cassette), "--listen-port", "0", "--grpc-cert", str(tls_pem)]
    )
    try:
        with _channel(replayer.port, tls_files) as channel:
            replayed = exercise(channel, pb2, pb2_grpc)
    finally:
        replayer.stop()
    assert replayed == direct
    # mitmproxy relays a trailers-only answer (Fail's) as headers and then an empty end, so
    # its client saw the status details as initial metadata; the rest passed unchanged.
    assert {k: v for k, v in through.items() if k != "Fail"} == {
        k: v for k, v in direct.items() if k != "Fail"
    }


def test_a_ping_pong_chat_is_replayed_turn_by_turn(
    tmp_path: Path, h2c_server: GrpcServer, pb: tuple[Any, Any]
) -> None:
    """Each answer of a chat waits for the request it followed, as recorded, and no longer."""
    import queue

    pb2, pb2_grpc = pb

    def chat(port: int) -> list[bytes]:
        lines: queue.Queue[Any] = queue.Queue()

        def requests() -> Iterator[Any]:
            while (line := lines.get()) is not None:
                yield line

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answers = pb2_grpc.OrderServiceStub(channel).Chat(requests())
            seen = []
            for n in range(4):
                lines.put(pb2.ChatLine(text=f"turn {n}", seq=n))
                seen.append(next(answers).SerializeToString())  # waits for this turn's answer
            lines.put(None)
            assert list(answers) == []
        return seen

    cassette = tmp_path / "chat.cassette"
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--listen-port",
            "0",
            "--mode",
            f"reverse:h2c://{h2c_server.target}",
        ]
    )
    try:
        recorded = chat(recorder.port)
    finally:
        recorder.stop()
    replayer = start_baton(["replay", str(cassette), "--listen-port", "0"])
    try:
        assert chat(replayer.port) == recorded
    finally:
        replayer.stop()
    assert "1 gRPC calls answered, 0 missed" in replayer.output


def test_without_the_grpc_extra_baton_starts_and_names_the_extra(tmp_path: Path) -> None:
    """Core baton imports without grpcio and protobuf; a gRPC feature then says what to install."""
    code = (
        "import sys\n"
        "for name in ('grpc', 'google.protobuf', 'grpc_tools', 'grpc_reflection'):\n"
        "    sys.modules[name] = None\n"
        "from baton.proxy.cli import main\n"
        "sys.argv = ['baton', *sys.argv[1:]]\n"
        "main()\n"
    )
    out = str(tmp_path / "x.cassette")
    result = subprocess.run(
        [sys.executable, "-c", code, "record", "-o", out, "--mode", "reverse:h2c://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "baton: error: gRPC support needs the grpc extra: pip install 'baton-replay[grpc]' "
        "(grpcio, grpcio-tools, grpcio-reflection, protobuf)\n"
    )
    assert not Path(out).exists()


def test_grpc_calls_and_http_exchanges_are_replayed_on_one_port(
    tmp_path: Path, h2c_server: GrpcServer, pb: tuple[Any, Any]
) -> None:
    import httpx

    from baton.cassettes.model import Interaction, Request, Response
    from baton.cassettes.writer import CassetteWriter

    pb2, pb2_grpc = pb
    recorded = tmp_path / "grpc.cassette"
    recorder = start_baton(
        [
            "record",
            "-o",
            str(recorded),
            "--listen-port",
            "0",
            "--mode",
            f"reverse:h2c://{h2c_server.target}",
        ]
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{recorder.port}") as channel:
            answer = pb2_grpc.OrderServiceStub(channel).Get(pb2.GetOrderRequest(id="order-3"))
    finally:
        recorder.stop()
    health = Interaction(
        id="health",
        request=Request("GET", "http", "127.0.0.1", 8000, "/health"),
        response=Response(200, "OK", headers=(("content-type", "text/plain"),), body=b"ok"),
        recorded_at=1.0,
    )
    mixed = tmp_path / "mixed.cassette"
    with CassetteWriter(mixed, redactor=None) as writer:
        writer.append(health)
        for interaction in read_cassette(recorded):
            writer.append(interaction)
    replayer = start_baton(["replay", str(mixed), "--listen-port", "0"])
    try:
        assert httpx.get(f"http://127.0.0.1:{replayer.port}/health").text == "ok"
        with grpc.insecure_channel(f"127.0.0.1:{replayer.port}") as channel:
            again = pb2_grpc.OrderServiceStub(channel).Get(pb2.GetOrderRequest(id="order-3"))
        assert again == answer
    finally:
        replayer.stop()
    assert "1 HTTP interactions answered on the same port" in replayer.output
    assert "1 gRPC calls answered, 0 missed" in replayer.output
