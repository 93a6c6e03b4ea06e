"""Which exchanges a sampling recorder keeps: a stable hash of a request key, and a per-endpoint cap.

``--sample 0.1 --sample-key header:traceparent`` keeps a tenth of the
conversations, the same tenth on every recorder of a fleet: the decision is
a SHA-256 of the key (not Python's ``hash()``, which is salted per process),
so two recorders that see the same trace keep it both, or both drop it.

Keys (joined with ``+``): ``method``, ``host``, ``path`` (without the query),
``query``, ``url`` (all of them), ``header:NAME``, and ``trace`` (the W3C
``traceparent``'s trace id, else B3's). For ``header:traceparent`` and the
B3 headers only the trace id is hashed: the span id changes at every hop,
and a fleet samples whole traces. A request without the key's header falls
back to method+host+path+query, so the decision stays deterministic.

``--per-endpoint-limit N`` keeps at most N exchanges per endpoint (method,
host and path) per shard, so a health check polled every second cannot fill
a shard that should also hold the rare calls; ``reset`` starts the counts
over (the rotating writer calls it when it opens a shard).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["SampleDecision", "Sampler", "SamplingAddon", "trace_id"]

_FIELDS = ("method", "host", "path", "query", "url", "trace")


class SampleDecision(StrEnum):
    """What the sampler decided for one exchange."""

    KEEP = "keep"
    SAMPLED_OUT = "sampled_out"
    OVER_LIMIT = "over_limit"


def trace_id(headers: Mapping[str, str]) -> str | None:
    """The trace id of a request: W3C ``traceparent``, else B3 (single or multi-header)."""
    parent = headers.get("traceparent")
    if parent:
        fields = parent.strip().split("-")
        if len(fields) >= 4 and len(fields[1]) == 32:
            return fields[1].lower()
    single = headers.get("b3")
    if single and single not in ("0", "1", "d"):
        return single.split("-", 1)[0].strip().lower()
    multi = headers.get("x-b3-traceid")
    if multi:
        return multi.strip().lower()
    return None


@dataclass(frozen=True, slots=True)
class Sampler:
    """Keep ``rate`` of the exchanges by a hash of ``key``, at most ``per_endpoint_limit`` each."""

    rate: float = 1.0
    key: str = "trace"
    per_endpoint_limit: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"--sample {self.rate}: a fraction above 0 and at most 1 (e.g. 0.1)")
        for part in self.key.split("+"):
            name = part.strip().lower()
            if name.startswith("header:") and name[len("header:") :].strip():
                continue
            if name not in _FIELDS:
                raise ValueError(
                    f"--sample-key {self.key!r}: {part!r} is not a key; use header:NAME, "
                    "trace, method, host, path, query or url, joined with +"
                )
        if self.per_endpoint_limit is not None and self.per_endpoint_limit < 1:
            raise ValueError("--per-endpoint-limit: at least 1")

    @property
    def active(self) -> bool:
        """True when anything can be left out."""
        return self.rate < 1.0 or self.per_endpoint_limit is not None

    def describe(self) -> dict[str, Any]:
        """The cassette header's ``meta.sampling`` map (docs/cassette-format.md)."""
        described: dict[str, Any] = {"rate": self.rate, "key": self.key, "hash": "sha256"}
        if self.per_endpoint_limit is not None:
            described["per_endpoint_limit"] = self.per_endpoint_limit
            described["limit_scope"] = "shard"
        return described

    def key_of(
        self, method: str, host: str, path: str, query: str, headers: Mapping[str, str]
    ) -> str:
        """The text hashed for a request (``headers`` with lowercase names)."""
        values: list[str] = []
        for part in self.key.split("+"):
            name = part.strip().lower()
            if name.startswith("header:"):
                header = name[len("header:") :].strip()
                if header in ("traceparent", "b3", "x-b3-traceid"):
                    value = trace_id(headers)
                else:
                    value = headers.get(header)
            elif name == "trace":
                value = trace_id(headers)
            elif name == "url":
                value = f"{method.upper()} {host.lower()}{path}?{query}"
            else:
                value = {
                    "method": method.upper(),
                    "host": host.lower(),
                    "path": path,
                    "query": query,
                }[name]
            if value is None:
                # The key is missing: hash the request itself, still the same on every recorder.
                return f"{method.upper()} {host.lower()}{path}?{query}"
            values.append(value)
        return "\x1f".join(values)

    def kept_by_hash(self, key: str) -> bool:
        """True when ``key`` falls in the kept fraction: the first 8 bytes of its SHA-256."""
        if self.rate >= 1.0:
            return True
        point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        return point < self.rate * (1 << 64)


class SamplingAddon:
    """mitmproxy addon, placed before the Recorder: marks exchanges the Recorder leaves out.

    The decision is made once per flow, at ``requestheaders`` (before any
    body streams), and kept in ``flow.metadata["baton_sample"]``; the Recorder
    records only flows marked ``keep`` (or unmarked).
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self._lock = threading.Lock()
        self._per_endpoint: dict[tuple[str, str, str], int] = {}
        self.counts: dict[SampleDecision, int] = dict.fromkeys(SampleDecision, 0)

    def reset(self) -> None:
        """Start the per-endpoint counts over (a new shard)."""
        with self._lock:
            self._per_endpoint.clear()

    def decide(
        self, method: str, host: str, path: str, query: str, headers: Mapping[str, str]
    ) -> SampleDecision:
        """Keep, sample out, or leave out as over the endpoint's limit; counted."""
        key = self.sampler.key_of(method, host, path, query, headers)
        if not self.sampler.kept_by_hash(key):
            decision = SampleDecision.SAMPLED_OUT
        elif self.sampler.per_endpoint_limit is None:
            decision = SampleDecision.KEEP
        else:
            endpoint = (method.upper(), host.lower(), path)
            with self._lock:
                seen = self._per_endpoint.get(endpoint, 0)
                if seen >= self.sampler.per_endpoint_limit:
                    decision = SampleDecision.OVER_LIMIT
                else:
                    self._per_endpoint[endpoint] = seen + 1
                    decision = SampleDecision.KEEP
        with self._lock:
            self.counts[decision] += 1
        return decision

    def requestheaders(self, flow: Any) -> None:
        request = flow.request
        path, _, query = request.path.partition("?")
        headers = {name.lower(): value for name, value in request.headers.items()}
        decision = self.decide(request.method, request.pretty_host, path, query, headers)
        flow.metadata["baton_sample"] = decision.value
