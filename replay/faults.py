"""Fault rules for replay: which request gets which fault, decided the same way on every path.

``baton replay --fault RULE`` makes a stand-in service fail the way real
neighbours fail: an error status, a reset connection, no answer at all, a
slow or cut-off body, bytes that do not parse. A rule reads
``KIND[=ARG][,rate=R][,host=H][,method=M][,path=GLOB]``:

* ``status=503`` answers that status instead of the recording;
* ``reset`` resets the TCP connection before any answer;
* ``timeout`` accepts the request and never answers;
* ``delay=2s`` or ``delay=p50:100ms,p99:2s`` waits (fixed, or log-normal through the
  two percentiles) and then answers as recorded;
* ``slow-body=10KB/s`` sends the recorded body at that rate;
* ``truncate=50%`` sends the head and that part of the body, then closes;
* ``malformed`` (or ``malformed=http``) answers bytes that are not HTTP;
  ``malformed=json`` answers the recorded head with a body that is not JSON;
* any name registered with ``register_fault`` (a function that returns the answer).

This module only decides: which rule, if any, hits a request. The decision
is pure and seeded (``FaultPlan``), so the fast server (replay/server.py,
through replay/fault_wire.py) and the mitmproxy ``Replayer`` give the same
run the same faults. Rules are tried in the order given; the first one whose
selectors match and whose coin comes up wins. Each matching rule draws one
number per request, in arrival order, so a seed fixes the whole sequence.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from baton.cassettes.model import Request, Response

__all__ = [
    "FAULT_HEADER",
    "CustomFault",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FaultRule",
    "FaultRuleError",
    "malformed_json_response",
    "parse_fault",
    "register_fault",
    "status_response",
    "with_fault_header",
]

logger = logging.getLogger(__name__)

FAULT_HEADER = "X-Baton-Fault"
"""Names the rule on every answer a fault leaves headers on."""


class FaultRuleError(ValueError):
    """A ``--fault`` rule that cannot be read; the message names it and says what to write."""


class FaultKind(StrEnum):
    STATUS = "status"
    RESET = "reset"
    TIMEOUT = "timeout"
    DELAY = "delay"
    SLOW_BODY = "slow-body"
    TRUNCATE = "truncate"
    MALFORMED = "malformed"
    CUSTOM = "custom"


CustomFault = Callable[[Request, Response | None, str | None], Response]
"""A registered fault: (request, recorded response or None, the rule's ARG) -> the answer."""

_CUSTOM: dict[str, CustomFault] = {}


def register_fault(name: str) -> Callable[[CustomFault], CustomFault]:
    """Register a fault kind by ``name``; the decorated function returns the answer to send.

    It is called with the request, the recorded response (None on a miss or a
    recorded error) and the rule's argument (``teapot=418`` gives ``"418"``),
    and returns the ``Response`` to answer with, on both replay paths::

        @register_fault("stale")
        def stale(request, recorded, argument):
            return dataclasses.replace(recorded, headers=(*recorded.headers, ("Age", "86400")))
    """
    if name in FaultKind.__members__.values() or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"cannot register fault {name!r}: taken or not a lowercase name")

    def add(function: CustomFault) -> CustomFault:
        _CUSTOM[name] = function
        return function

    return add


def custom_fault(name: str) -> CustomFault | None:
    """The function registered as ``name``, if any."""
    return _CUSTOM.get(name)


@dataclass(frozen=True, slots=True)
class Delay:
    """A fixed wait, or a log-normal one through its median and 99th percentile (seconds)."""

    p50: float
    p99: float | None = None

    def draw(self, rng: random.Random) -> float:
        if self.p99 is None or self.p99 <= self.p50 or self.p50 <= 0:
            return self.p50
        sigma = (math.log(self.p99) - math.log(self.p50)) / 2.3263478740408408  # z of 0.99
        return rng.lognormvariate(math.log(self.p50), sigma)


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One ``--fault`` rule: a kind with its argument, a rate, and the requests it selects."""

    text: str
    kind: FaultKind
    status: int = 0
    delay: Delay | None = None
    bytes_per_second: float = 0.0
    fraction: float = 0.0
    malformed: str = "http"
    custom: str = ""
    argument: str | None = None
    rate: float = 1.0
    host: str | None = None
    method: str | None = None
    path: str | None = None

    def selects(self, request: Request) -> bool:
        """Whether the request is one this rule may hit (before the rate's coin)."""
        if self.method is not None and request.method.upper() != self.method:
            return False
        if self.host is not None and not fnmatch.fnmatchcase(request.host.lower(), self.host):
            return False
        return self.path is None or fnmatch.fnmatchcase(request.path, self.path)


@dataclass(frozen=True, slots=True)
class Fault:
    """The fault drawn for one request: its rule, and the wait it adds (delay faults)."""

    rule: FaultRule
    delay_s: float = 0.0

    @property
    def kind(self) -> FaultKind:
        return self.rule.kind


_SELECTORS = ("rate", "host", "method", "path")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s|m)?$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?i?b)?(?:/s)?$", re.IGNORECASE)
_SIZES = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}


def _seconds(text: str, rule: str) -> float:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise FaultRuleError(
            f"--fault {rule!r}: {text!r} is not a duration; write e.g. 250ms, 2s or 1m"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def _delay(argument: str, rule: str) -> Delay:
    if ":" not in argument:
        return Delay(_seconds(argument, rule))
    points: dict[str, float] = {}
    for part in argument.split(","):
        name, _, value = part.partition(":")
        if name.strip().lower() not in ("p50", "p99"):
            raise FaultRuleError(f"--fault {rule!r}: write the distribution as p50:100ms,p99:2s")
        points[name.strip().lower()] = _seconds(value, rule)
    if set(points) != {"p50", "p99"} or points["p99"] < points["p50"]:
        raise FaultRuleError(
            f"--fault {rule!r}: give both p50 and p99, p99 at least p50 (p50:100ms,p99:2s)"
        )
    return Delay(points["p50"], points["p99"])


def parse_fault(text: str) -> FaultRule:
    """The rule ``text`` names; ``FaultRuleError`` (one line, the rule and the fix) if it is wrong."""
    tokens = [t.strip() for t in text.split(",")]
    head: list[str] = []
    selectors: dict[str, str] = {}
    for token in tokens:
        name, equals, value = token.partition("=")
        if equals and name.strip().lower() in _SELECTORS:
            selectors[name.strip().lower()] = value.strip()
        elif selectors:
            raise FaultRuleError(
                f"--fault {text!r}: {token!r} after the selectors; write "
                "KIND[=ARG][,rate=R][,host=H][,method=M][,path=GLOB]"
            )
        else:
            head.append(token)
    kind_text, _, argument_text = ",".join(head).partition("=")
    kind_name = kind_text.strip().lower()
    argument = argument_text.strip() or None
    fields: dict[str, object] = {}
    if kind_name in _CUSTOM:
        kind = FaultKind.CUSTOM
        fields["custom"] = kind_name
    else:
        try:
            kind = FaultKind(kind_name)
        except ValueError:
            known = ", ".join(
                [k.value for k in FaultKind if k is not FaultKind.CUSTOM] + sorted(_CUSTOM)
            )
            raise FaultRuleError(
                f"--fault {text!r}: unknown fault {kind_name!r}; use one of {known}"
            ) from None
        if kind is FaultKind.CUSTOM:
            raise FaultRuleError(f"--fault {text!r}: register a custom fault by its own name")
    needs_argument = {
        FaultKind.STATUS: "status=503",
        FaultKind.DELAY: "delay=2s or delay=p50:100ms,p99:2s",
        FaultKind.SLOW_BODY: "slow-body=10KB/s",
        FaultKind.TRUNCATE: "truncate=50%",
    }
    if kind in needs_argument and argument is None:
        raise FaultRuleError(
            f"--fault {text!r}: {kind.value} needs a value, e.g. {needs_argument[kind]}"
        )
    if kind in (FaultKind.RESET, FaultKind.TIMEOUT) and argument is not None:
        raise FaultRuleError(f"--fault {text!r}: {kind.value} takes no value")
    if kind is FaultKind.STATUS:
        assert argument is not None
        if not argument.isdigit() or not 100 <= int(argument) <= 599:
            raise FaultRuleError(f"--fault {text!r}: the status is a number from 100 to 599")
        fields["status"] = int(argument)
    elif kind is FaultKind.DELAY:
        assert argument is not None
        fields["delay"] = _delay(argument, text)
    elif kind is FaultKind.SLOW_BODY:
        assert argument is not None
        match = _SIZE.match(argument.replace(" ", ""))
        if not match or float(match.group(1)) <= 0:
            raise FaultRuleError(
                f"--fault {text!r}: write the rate as bytes per second, e.g. 10KB/s"
            )
        fields["bytes_per_second"] = float(match.group(1)) * _SIZES[(match.group(2) or "b").lower()]
    elif kind is FaultKind.TRUNCATE:
        assert argument is not None
        number = argument.rstrip("%")
        try:
            fraction = float(number) / 100.0
        except ValueError:
            fraction = -1.0
        if not argument.endswith("%") or not 0 <= fraction < 1:
            raise FaultRuleError(f"--fault {text!r}: write how much of the body is sent, e.g. 50%")
        fields["fraction"] = fraction
    elif kind is FaultKind.MALFORMED:
        if (argument or "http") not in ("http", "json"):
            raise FaultRuleError(f"--fault {text!r}: malformed is malformed=http or malformed=json")
        fields["malformed"] = argument or "http"
    rate = 1.0
    if "rate" in selectors:
        raw = selectors["rate"]
        try:
            rate = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
        except ValueError:
            rate = -1.0
        if not 0 <= rate <= 1:
            raise FaultRuleError(f"--fault {text!r}: rate is a fraction from 0 to 1 (or 0-100%)")
    return FaultRule(
        text=text.strip(),
        kind=kind,
        argument=argument,
        rate=rate,
        host=selectors["host"].lower() if "host" in selectors else None,
        method=selectors["method"].upper() if "method" in selectors else None,
        path=selectors.get("path"),
        **fields,  # type: ignore[arg-type]
    )


class FaultPlan:
    """The rules of one run and the seeded coin that decides them; counts what it injected."""

    def __init__(self, rules: Iterable[FaultRule | str], seed: int | None = None) -> None:
        self.rules: tuple[FaultRule, ...] = tuple(
            parse_fault(r) if isinstance(r, str) else r for r in rules
        )
        self.seed = seed
        self._rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        """Injected faults per rule text."""

    def decide(self, request: Request) -> Fault | None:
        """The fault for this request, or None; draws from the seeded sequence and counts it."""
        for rule in self.rules:
            if not rule.selects(request):
                continue
            if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                continue
            delay = rule.delay.draw(self._rng) if rule.delay is not None else 0.0
            self.counts[rule.text] += 1
            logger.info("baton: fault %s on %s %s", rule.text, request.method, request.path)
            return Fault(rule, delay)
        return None

    def rule_number(self, rule: FaultRule) -> int:
        """The rule's position, as named between the mitmproxy path and its loopback server."""
        return self.rules.index(rule)

    @property
    def injected(self) -> int:
        return sum(self.counts.values())


def status_response(status: int, rule: str) -> Response:
    """The answer of a ``status=N`` fault: that status, a one-line body naming the rule."""
    body = f"baton: injected fault {rule}\n".encode()
    return Response(
        status=status,
        headers=(
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            (FAULT_HEADER, rule),
        ),
        body=body,
    )


def malformed_json_response(recorded: Response | None, rule: str) -> Response:
    """The recorded head with a body that no JSON parser accepts (length fixed to match)."""
    base = recorded if recorded is not None else Response(status=200)
    original = base.body or b""
    body = original[: len(original) // 2] + b'{"baton": malformed'
    dropped = ("content-length", "transfer-encoding", "content-encoding")
    headers = tuple((n, v) for n, v in base.headers if n.lower() not in dropped)
    headers += (("Content-Length", str(len(body))), (FAULT_HEADER, rule))
    if not any(n.lower() == "content-type" for n, _ in headers):
        headers += (("Content-Type", "application/json"),)
    return replace(base, headers=headers, body=body, chunks=None, stored=None, trailers=None)


def with_fault_header(response: Response, rule: str) -> Response:
    """``response`` carrying ``X-Baton-Fault: rule`` (for custom faults that forgot it)."""
    if any(n.lower() == FAULT_HEADER.lower() for n, _ in response.headers):
        return response
    return replace(response, headers=(*response.headers, (FAULT_HEADER, rule)))
