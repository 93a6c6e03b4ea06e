"""A grpcio client that calls every method of orders.proto and keeps everything a caller sees.

``exercise`` returns, per call, the response messages (as bytes), the initial
and trailing metadata, the status code and its details: two runs compare
equal exactly when a client could not tell them apart.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import grpc

# grpcio adds these itself; they differ between any two servers.
_VOLATILE = frozenset({"date", "server", "user-agent", "grpc-accept-encoding", "content-type"})


def load_stubs(stubs: Path) -> tuple[Any, Any]:
    """``orders_pb2`` and ``orders_pb2_grpc`` from a folder made by ``compile_stubs``."""
    if str(stubs) not in sys.path:
        sys.path.insert(0, str(stubs))
    return importlib.import_module("orders_pb2"), importlib.import_module("orders_pb2_grpc")


def _metadata(pairs: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in (pairs or ()) if k not in _VOLATILE]


def _outcome(call: Any, messages: list[Any]) -> dict[str, Any]:
    return {
        "messages": [m.SerializeToString() for m in messages],
        "initial": _metadata(call.initial_metadata()),
        "trailing": _metadata(call.trailing_metadata()),
        "code": call.code().name,
        "details": call.details(),
    }


def _error(exc: grpc.RpcError, messages: list[Any]) -> dict[str, Any]:
    return _outcome(exc, messages)


def exercise(
    channel: grpc.Channel, pb2: Any, pb2_grpc: Any, stream_length: int = 5
) -> dict[str, Any]:
    """Call Get, List, Upload, Chat and Fail once each; what the client saw, by method."""
    stub = pb2_grpc.OrderServiceStub(channel)
    seen: dict[str, Any] = {}

    response, call = stub.Get.with_call(
        pb2.GetOrderRequest(id="order-7", token="s3cr3t-token"),
        metadata=[("x-request-id", "req-1")],
    )
    seen["Get"] = _outcome(call, [response])

    stream = stub.List(pb2.ListOrdersRequest(count=stream_length))
    seen["List"] = _outcome(stream, list(stream))

    uploads = [
        pb2.Order(id=f"up-{n}", items=[pb2.Item(sku="a"), pb2.Item(sku="b")]) for n in range(3)
    ]
    count, call = stub.Upload.with_call(iter(uploads))
    seen["Upload"] = _outcome(call, [count])

    chat = stub.Chat(iter([pb2.ChatLine(text=f"line {n}", seq=n) for n in range(4)]))
    seen["Chat"] = _outcome(chat, list(chat))

    try:
        stub.Fail(pb2.GetOrderRequest(id="order-42"))
    except grpc.RpcError as exc:
        seen["Fail"] = _error(exc, [])
    return seen
