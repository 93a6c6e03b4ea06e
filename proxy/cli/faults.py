"""``--fault RULE`` and ``--fault-seed`` on ``baton replay``: one value, checked before serving.

The rules are read here (replay/faults.py parses them; a bad one is one
line, exit 2) and handed to whichever path serves: the fast server takes
the ``FaultPlan``, the mitmproxy ``Replayer`` takes the rule texts and the
seed as its ``baton_faults`` and ``baton_fault_seed`` options. Counts reach
``--metrics-port`` as ``baton_faults_injected_total{rule=...}`` and the
summary printed at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from baton.cassettes.wording import plural
from baton.proxy.cli.errors import InputError

if TYPE_CHECKING:  # loaded by plan(), with the first --fault rule
    from baton.replay.faults import FaultPlan

__all__ = ["FaultFlags", "fault_options", "fault_summary", "serve_fault_metrics"]


@dataclass(frozen=True)
class FaultFlags:
    """The ``--fault`` rules and ``--fault-seed`` of one command line."""

    rules: tuple[str, ...] = ()
    seed: int | None = None

    def plan(self) -> FaultPlan | None:
        """The plan the rules make, or None without rules; a bad rule is ``InputError``."""
        if not self.rules:
            return None
        from baton.replay.faults import FaultPlan, FaultRuleError

        try:
            return FaultPlan(self.rules, seed=self.seed)
        except FaultRuleError as exc:
            raise InputError(str(exc)) from exc

    def addon_options(self) -> dict[str, Any]:
        """The ``Replayer``'s options for the mitmproxy path (the rules checked first)."""
        self.plan()
        return {
            "baton_faults": list(self.rules),
            "baton_fault_seed": None if self.seed is None else str(self.seed),
        }


def fault_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--fault`` (repeatable) and ``--fault-seed``, handed over as ``faults: FaultFlags``."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = FaultFlags(rules=tuple(kwargs.pop("fault")), seed=kwargs.pop("fault_seed"))
        command(*args, faults=flags, **kwargs)

    decorated: Callable[..., None] = with_flags
    decorated = click.option(
        "--fault-seed",
        type=int,
        default=None,
        metavar="N",
        help="Seed the fault coin: the same seed and requests give the same faults.",
    )(decorated)
    decorated = click.option(
        "--fault",
        multiple=True,
        metavar="RULE",
        help="Inject a fault: KIND[=ARG][,rate=R][,host=H][,method=M][,path=GLOB]; kinds "
        "status=503, reset, timeout, delay=2s (or p50:100ms,p99:2s), slow-body=10KB/s, "
        "truncate=50%, malformed[=json] (docs/resilience.md).",
    )(decorated)
    return decorated


def serve_fault_metrics(rules: tuple[str, ...], plan: Callable[[], FaultPlan | None]) -> None:
    """Add ``baton_faults_injected_total`` per rule to replay's ``--metrics-port``, if served.

    ``plan()`` is read when scraped: the mitmproxy path makes its plan only once started.
    """
    from baton.proxy.cli import observability

    metrics = observability._REPLAY_METRICS
    if not rules or metrics is None:
        return

    def injected(rule: str) -> int:
        current = plan()
        return 0 if current is None else current.counts[rule.strip()]

    for rule in rules:
        metrics.read(
            "baton_faults_injected_total",
            "Requests answered with an injected --fault, per rule.",
            functools.partial(injected, rule),
            rule=rule.strip(),
        )


def fault_summary(plan: FaultPlan | None) -> list[str]:
    """The closing line: how many faults of each rule were injected."""
    if plan is None:
        return []
    each = ", ".join(f"{rule.text}: {plan.counts[rule.text]}" for rule in plan.rules)
    return [f"baton: injected {plural(plan.injected, 'fault')} ({each})"]
