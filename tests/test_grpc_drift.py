"""gRPC drift against live builds, and the proto-level diff from the command line.

One cassette recorded from build 1 of the orders service is held to build 1
again (no drift, exit 0) and to build 2, where ``Item.price`` is renamed
``unit_price`` and ``Fail`` answers PERMISSION_DENIED instead of NOT_FOUND:
both changes are reported at their locations with their classes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

from tests.grpc_services.client import exercise, load_stubs  # noqa: E402
from tests.grpc_services.server import HERE as SERVICES  # noqa: E402
from tests.grpc_services.server import compile_stubs  # noqa: E402
from tests.processes import run_baton, start_baton  # noqa: E402
from tests.test_grpc import GrpcServer, start_grpc_server  # noqa: E402


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_stubs(tmp_path_factory.mktemp("grpc-stubs"))


@pytest.fixture(scope="module")
def build_2_stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_stubs(tmp_path_factory.mktemp("grpc-stubs-2"), build=2)


@pytest.fixture(scope="module")
def build_1(stubs: Path) -> Iterator[GrpcServer]:
    server = start_grpc_server(stubs, reflection=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def build_2(build_2_stubs: Path) -> Iterator[GrpcServer]:
    server = start_grpc_server(build_2_stubs, reflection=True, build=2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def recorded(build_1: GrpcServer, stubs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every method of build 1, recorded through baton with the schema from reflection."""
    pb2, pb2_grpc = load_stubs(stubs)
    cassette = tmp_path_factory.mktemp("grpc-drift") / "orders.cassette"
    recorder = start_baton(
        [
            "record",
            "-o",
            str(cassette),
            "--mode",
            f"reverse:h2c://{build_1.target}",
            "--listen-port",
            "0",
            "--reflection",
        ]
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{recorder.port}") as channel:
            exercise(channel, pb2, pb2_grpc)
    finally:
        assert recorder.stop() == 0, recorder.output
    return cassette


def test_the_same_build_shows_no_drift(recorded: Path, build_1: GrpcServer) -> None:
    result = run_baton(["diff", str(recorded), "--target", f"h2c://{build_1.target}"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 compared, 0 skipped" in result.stdout
    assert "0 breaking, 0 additive, 0 value" in result.stdout


def test_a_renamed_field_and_a_changed_status_are_reported_with_their_classes(
    recorded: Path, build_2: GrpcServer
) -> None:
    result = run_baton(
        ["diff", str(recorded), "--target", f"h2c://{build_2.target}", "--format", "json"]
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    changes = {
        (change["location"], change["class"], change["kind"]): (change["old"], change["new"])
        for outcome in report["interactions"]
        for change in outcome["changes"]
    }
    assert changes[("OrderService/Fail.status", "breaking", "status_changed")] == (
        "NOT_FOUND",
        "PERMISSION_DENIED",
    )
    assert (
        changes[("OrderService/Get.response[0].items[2].price", "breaking", "field_removed")][0]
        == 7.5
    )
    assert (
        changes[("OrderService/Get.response[0].items[2].unit_price", "additive", "field_added")][1]
        == 7.5
    )
    # The chat and the upload answer as before.
    assert not any(
        location.startswith(("OrderService/Chat", "OrderService/Upload"))
        for location, _, _ in changes
    )


def test_noise_rules_apply_to_grpc_locations(recorded: Path, build_2: GrpcServer) -> None:
    result = run_baton(
        [
            "diff",
            str(recorded),
            "--target",
            f"h2c://{build_2.target}",
            "--ignore",
            "OrderService/*.response[*].items[*].price",
            "--ignore",
            "OrderService/Fail.status",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 breaking" in result.stdout


def test_proto_diff_from_the_command_line(tmp_path: Path) -> None:
    renamed = run_baton(
        ["diff", str(SERVICES / "orders.proto"), str(SERVICES / "orders_v2" / "orders.proto")]
    )
    assert renamed.returncode == 0, renamed.stderr
    assert (
        "value     field_renamed          shop.Item.price (field 3): price -> unit_price"
        in renamed.stdout
    )
    retyped = tmp_path / "orders.proto"
    retyped.write_text(
        (SERVICES / "orders.proto")
        .read_text()
        .replace("int32 quantity = 2;", "string quantity = 2;")
    )
    broken = run_baton(["diff", str(SERVICES / "orders.proto"), str(retyped)])
    assert broken.returncode == 1
    assert (
        "breaking  type_changed           shop.Item.quantity (field 2): int32 -> string"
        in broken.stdout
    )
    assert "wire-incompatible changes found" in broken.stdout
    # The same with the options the issue names, and a descriptor set for the new schema.
    from baton.cassettes.protobuf_schema import compile_protos

    new_set = tmp_path / "orders.pb"
    new_set.write_bytes(compile_protos([retyped]))
    flags = run_baton(
        ["diff", "--proto", str(SERVICES / "orders.proto"), "--proto-new", str(new_set)]
    )
    assert flags.returncode == 1
    assert flags.stdout == broken.stdout
