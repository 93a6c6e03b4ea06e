"""Live contract checking: a mitmproxy addon that checks each exchange against an OpenAPI document.

``baton record --spec openapi.yaml`` and ``baton replay --spec openapi.yaml``
add it next to the Recorder or the Replayer; ``mitmdump -s`` users set
``baton_contract_spec``. Each violation is logged as it happens and counted,
and the command prints the count at the end. Traffic is never touched: the
check runs after the answer exists and only reads the flow, and a failure of
the check itself is logged and counted, never raised into mitmproxy.

The validation is ``replay/contract_check.py``'s (openapi-core), on the same
``Interaction`` the Recorder writes (``proxy/flows.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mitmproxy import exceptions, http

from baton.cassettes.wording import plural
from baton.proxy.flows import interaction_from_flow
from baton.replay.contract_check import CheckReport, ContractChecker, SpecError

__all__ = ["LiveContractCheck", "load_checker"]

logger = logging.getLogger(__name__)


def load_checker(spec: str | Path) -> ContractChecker:
    """A checker for the document at ``spec``; ``ValueError`` saying why when it cannot be used."""
    from baton.formats.openapi import load_document

    document = load_document(Path(spec))
    try:
        return ContractChecker(document, name=str(spec))
    except SpecError as exc:
        raise ValueError(str(exc)) from exc


class LiveContractCheck:
    """Checks every exchange that passes against ``baton_contract_spec``; idle without it."""

    def __init__(self, checker: ContractChecker | None = None) -> None:
        self.checker = checker
        self.report = CheckReport(spec=checker.name if checker else "")
        self.failures = 0

    def load(self, loader: Any) -> None:
        loader.add_option(
            "baton_contract_spec",
            str | None,
            None,
            "Check every exchange against this OpenAPI document: violations are logged and "
            "counted, traffic is untouched.",
        )

    def configure(self, updated: set[str]) -> None:
        if "baton_contract_spec" not in updated:
            return
        from mitmproxy import ctx

        spec = ctx.options.baton_contract_spec
        if spec is None:
            self.checker = None
            return
        if self.checker is not None and self.checker.name == str(spec):
            return  # the command line loaded it already
        try:
            self.checker = load_checker(spec)
        except ValueError as exc:
            raise exceptions.OptionsError(str(exc)) from exc
        self.report = CheckReport(spec=str(spec))

    def response(self, flow: http.HTTPFlow) -> None:
        self._check(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            self._check(flow)

    def _check(self, flow: http.HTTPFlow) -> None:
        if self.checker is None or flow.websocket is not None:
            return
        try:
            number = self.report.checked + 1
            found = self.checker.add_to(
                self.report, interaction_from_flow(flow), source="live", number=number
            )
        except Exception:  # fail-open: the check never breaks the traffic
            self.failures += 1
            logger.exception(
                "contract check failed for %s %s", flow.request.method, flow.request.url
            )
            return
        for violation in found:
            logger.warning(
                "contract: %s %s: %s %s %s: %s",
                flow.request.method,
                flow.request.path,
                violation.side,
                violation.kind.value,
                violation.location,
                violation.message,
            )

    def summary(self) -> list[str]:
        """What the command prints at the end (nothing when no spec was given)."""
        if self.checker is None:
            return []
        report = self.report
        if report.violations:
            where = len({v.number for v in report.violations})
            line = (
                f"baton: contract: {plural(len(report.violations), 'violation')} of "
                f"{report.spec} in {where} of {plural(report.checked, 'exchange')}"
            )
        else:
            line = (
                f"baton: contract: {plural(report.checked, 'exchange')} checked, "
                f"all follow {report.spec}"
            )
        lines = [line] + [f"baton: contract: note: {note}" for note in report.notes()]
        if self.failures:
            lines.append(
                f"baton: contract: the check itself failed {plural(self.failures, 'time')}"
            )
        return lines
