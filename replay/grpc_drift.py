"""gRPC drift: re-send recorded calls to a live build and compare what comes back, field by field.

Every recorded call — unary, server-streaming, client-streaming or a chat —
is opened again on the target with its recorded request messages (the wire
bytes) and its metadata, secrets left out (a redacted value is replaced by a
``--header`` one, or the call is skipped with the reason). The answers are
decoded and held to the recording with baton's JSON comparison
(replay/comparison.py), so the classes are the HTTP ones: a field gone or
of another type is breaking, a new field additive, a changed value value
drift; a changed status code is breaking. Locations name the method and the
message: ``OrderService/Get.response[0].items[2].price``,
``OrderService/Fail.status``. Noise rules (``--ignore``, per-method rules,
learned noise) apply to those locations, the endpoint being
``gRPC OrderService/Get``.

Decoding: the recording's messages with the recording's schema, the fresh
ones with the target's own (asked of its reflection service once, when it
has one) — so a renamed field shows as removed and added even though the
wire did not change — else with the recording's, else from the wire.
"""

from __future__ import annotations

import asyncio
import fnmatch
import gzip
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from baton.cassettes.grpc_model import (
    GRPC_STATUS_NAMES,
    GrpcCall,
    GrpcMessage,
    decode_binary_header,
    grpc_call_of,
    metadata_from_headers,
    status_from_headers,
)
from baton.cassettes.model import Interaction
from baton.cassettes.protobuf_schema import ProtoSchema, decode_call
from baton.cassettes.redaction import PLACEHOLDER_PATTERN
from baton.replay.comparison import Change, DriftClass, NoiseRules, _compare_json
from baton.replay.drift import DriftReport, Outcome

__all__ = ["FreshCall", "GrpcTarget", "compare_calls", "diff_grpc_target", "parse_grpc_target"]


@dataclass(frozen=True, slots=True)
class GrpcTarget:
    """The build to hold to the recording: where it listens, and TLS with what to trust."""

    address: str
    tls: bool = False
    trust: bytes | None = None

    def channel(self) -> aio.Channel:
        if self.tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.trust)
            return aio.secure_channel(self.address, credentials)
        return aio.insecure_channel(self.address)


def parse_grpc_target(url: str, trust: bytes | None = None) -> GrpcTarget:
    """``h2c://HOST:PORT`` (or ``http://``, ``grpc://``) and ``grpcs://`` / ``https://`` for TLS."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "h2c", url
    scheme = scheme.lower()
    if scheme not in ("h2c", "http", "grpc", "grpcs", "https"):
        raise ValueError(f"--target {url}: a gRPC target is h2c://HOST:PORT or grpcs://HOST:PORT")
    address = rest.rstrip("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--target {url}: a gRPC target names its port, e.g. h2c://HOST:PORT")
    return GrpcTarget(address, tls=scheme in ("grpcs", "https"), trust=trust)


@dataclass(frozen=True, slots=True)
class FreshCall:
    """What the target answered: messages, metadata, status."""

    responses: tuple[bytes, ...]
    initial: tuple[tuple[str, Any], ...]
    trailing: tuple[tuple[str, Any], ...]
    code: int
    details: str


def _metadata_to_send(
    headers: Iterable[tuple[str, str]], supplied: Mapping[str, str]
) -> tuple[list[tuple[str, str | bytes]], str]:
    """The recorded metadata as it may be sent again; ``""`` or why the call must not be."""
    out: list[tuple[str, str | bytes]] = []
    for name, value in metadata_from_headers(tuple(headers)):
        key = name.lower()
        if key in supplied:
            continue
        if PLACEHOLDER_PATTERN.search(value):
            return [], f"metadata {key} was redacted; give it with --header '{key}: VALUE'"
        out.append((key, decode_binary_header(value) if key.endswith("-bin") else value))
    out.extend((name.lower(), value) for name, value in supplied.items())
    return out, ""


async def resend_call(
    channel: aio.Channel, call: GrpcCall, metadata: list[tuple[str, Any]], timeout: float
) -> FreshCall:
    """Open ``call`` again on ``channel`` with its recorded request messages; what came back."""
    method = channel.stream_stream(call.path)
    requests = [gzip.decompress(m.data) if m.compressed else m.data for m in call.requests]

    async def send() -> Any:
        for data in requests:
            yield data

    fresh = method(send(), metadata=metadata, timeout=timeout)
    responses: list[bytes] = []
    try:
        async for message in fresh:
            responses.append(message)
    except aio.AioRpcError as exc:
        return FreshCall(
            tuple(responses),
            tuple(exc.initial_metadata() or ()),
            tuple(exc.trailing_metadata() or ()),
            exc.code().value[0],
            exc.details() or "",
        )
    return FreshCall(
        tuple(responses),
        tuple(await fresh.initial_metadata() or ()),
        tuple(await fresh.trailing_metadata() or ()),
        (await fresh.code()).value[0],
        await fresh.details() or "",
    )


def _rule_location(location: str) -> str:
    """A location as noise rules see it: rules not naming body, header or status get ``body.``.

    So ``--ignore 'OrderService/*.response[*].items[*].price'`` covers
    ``OrderService/Get.response[0].items[2].price``.
    """
    return f"body.{location}"


def _name(code: int) -> str:
    return GRPC_STATUS_NAMES[code] if 0 <= code < len(GRPC_STATUS_NAMES) else str(code)


def compare_calls(
    recorded: GrpcCall,
    recorded_code: int,
    fresh: GrpcCall,
    fresh_code: int,
    endpoint: str,
    rules: NoiseRules,
) -> list[Change]:
    """Every difference between a recorded call's answers and a fresh one's, classified."""
    where = recorded.short_name
    raw: list[tuple[DriftClass, str, str, Any, Any]] = []
    if recorded_code != fresh_code:
        raw.append(
            (
                DriftClass.BREAKING,
                "status_changed",
                f"{where}.status",
                _name(recorded_code),
                _name(fresh_code),
            )
        )
    for n, (old, new) in enumerate(zip(recorded.responses, fresh.responses, strict=False)):
        for drift, kind, location, before, after in _compare_json(
            old.decoded, new.decoded, rules.ignore_order
        ):
            raw.append(
                (drift, kind, f"{where}.response[{n}]{location[len('body') :]}", before, after)
            )
    extra = len(fresh.responses) - len(recorded.responses)
    if extra and recorded_code == fresh_code:
        raw.append(
            (
                DriftClass.VALUE,
                "messages_added" if extra > 0 else "messages_removed",
                f"{where}.response",
                len(recorded.responses),
                len(fresh.responses),
            )
        )
    changes = []
    for drift, kind, location, before, after in raw:
        rule = rules.rule_for(endpoint, _rule_location(location))
        if rule is not None:
            changes.append(Change(DriftClass.NOISE, kind, location, before, after, rule))
        else:
            changes.append(Change(drift, kind, location, before, after))
    return changes


def _fresh_as_call(recorded: GrpcCall, fresh: FreshCall, schema: ProtoSchema | None) -> GrpcCall:
    call = GrpcCall(
        recorded.service,
        recorded.method,
        recorded.requests,
        tuple(GrpcMessage(data) for data in fresh.responses),
    )
    return decode_call(call, schema)


async def diff_grpc_target(
    interactions: Iterable[Interaction],
    target: GrpcTarget,
    *,
    source: str,
    recorded_schema: ProtoSchema | None,
    fresh_schema: ProtoSchema | None,
    rules: NoiseRules,
    fail_on: DriftClass = DriftClass.BREAKING,
    supplied: Mapping[str, str] | None = None,
    learn_noise: bool = False,
    reference: GrpcTarget | None = None,
    timeout: float = 30.0,
    only: Iterable[str] = (),
) -> DriftReport:
    """Re-send every recorded gRPC call to ``target`` and report how its answers differ.

    ``learn_noise``: each call first goes twice to ``reference`` (the target
    when None), and what differs between those two answers is noise.
    """
    supplied = {k.lower(): v for k, v in (supplied or {}).items()}
    wanted = list(only)
    report = DriftReport(
        source=source,
        target=f"{'grpcs' if target.tls else 'h2c'}://{target.address}",
        fail_on=fail_on,
        learned_noise=rules if learn_noise else None,
    )
    channel = target.channel()
    reference_channel = (reference or target).channel() if learn_noise else None
    try:
        for number, interaction in enumerate(interactions, 1):
            report.recorded += 1
            call = grpc_call_of(interaction)
            response = interaction.response
            if call is None or response is None:
                continue
            endpoint = f"gRPC {call.short_name}"
            if wanted and not any(
                fnmatch.fnmatchcase(endpoint, p) or fnmatch.fnmatchcase(call.path, p)
                for p in wanted
            ):
                continue
            recorded = decode_call(call, recorded_schema)
            status = status_from_headers(response.trailers, response.headers)
            recorded_code = status.code if status is not None else 2
            metadata, reason = _metadata_to_send(interaction.request.headers, supplied)
            if reason:
                report.outcomes.append(
                    Outcome(
                        number, interaction.id, "gRPC", call.path, endpoint, "skipped", note=reason
                    )
                )
                continue
            if reference_channel is not None:
                first = await resend_call(reference_channel, call, metadata, timeout)
                second = await resend_call(reference_channel, call, metadata, timeout)
                a = _fresh_as_call(call, first, fresh_schema or recorded_schema)
                b = _fresh_as_call(call, second, fresh_schema or recorded_schema)
                learned = compare_calls(a, first.code, b, second.code, endpoint, NoiseRules())
                rules.learn(endpoint, [_rule_location(change.location) for change in learned])
            fresh = await resend_call(channel, call, metadata, timeout)
            fresh_call = _fresh_as_call(call, fresh, fresh_schema or recorded_schema)
            report.outcomes.append(
                Outcome(
                    number,
                    interaction.id,
                    "gRPC",
                    call.path,
                    endpoint,
                    "compared",
                    recorded_status=recorded_code,
                    new_status=fresh.code,
                    changes=compare_calls(
                        recorded, recorded_code, fresh_call, fresh.code, endpoint, rules
                    ),
                )
            )
    finally:
        await channel.close()
        if reference_channel is not None:
            await reference_channel.close()
    return report


def run_grpc_diff(**kwargs: Any) -> DriftReport:
    """``diff_grpc_target`` on an event loop of its own."""
    return asyncio.run(diff_grpc_target(**kwargs))
