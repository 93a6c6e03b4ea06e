"""The replay options for answers that behave like the service: state, sessions, dynamic
values, time, and what a run served (``--run-log``, ``--fail-on-unused``).

Gathered into one ``fidelity: FidelityFlags`` argument, as the redaction
flags are, so ``baton replay`` stays one function over its paths; each flag
is still a key of ``[tool.baton.replay]`` (``dynamic = ["$.id"]``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from baton.cassettes.wording import plural
from baton.proxy.cli.errors import InputError

if TYPE_CHECKING:  # `baton diff` and `record` load these options, and need no replay index
    from baton.replay.index import Index
    from baton.replay.options import ReplayOptions

__all__ = [
    "FidelityFlags",
    "fidelity_options",
    "finish_replay",
    "graphql_schema_option",
    "record_state_options",
    "state_addon_options",
]


@dataclass(frozen=True)
class FidelityFlags:
    """The fidelity flags of one ``baton replay`` command line."""

    state: bool = True
    session_by: str = "none"
    dynamic: tuple[str, ...] = ()
    detect_dynamic: bool = True
    shift_time: str | None = None
    time_fields: tuple[str, ...] = ()
    run_log: Path | None = None
    fail_on_unused: bool = False

    def replay_options(self) -> dict[str, Any]:
        """``ReplayOptions`` fields, checked first: a bad rule is one line, exit 2."""
        from baton.replay.dynamic_values import DynamicRules
        from baton.replay.state import SessionBy
        from baton.replay.time_shift import parse_target

        try:
            SessionBy.parse(self.session_by)
            DynamicRules.parse(self.dynamic)
            if self.shift_time is not None:
                parse_target(self.shift_time)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        return {
            "state": self.state,
            "session_by": self.session_by,
            "dynamic": self.dynamic,
            "detect_dynamic": self.detect_dynamic,
            "shift_time": self.shift_time,
            "time_fields": self.time_fields,
            "run_log": None if self.run_log is None else str(self.run_log),
            "fail_on_unused": self.fail_on_unused,
        }


def finish_replay(
    index: Index | None, options: ReplayOptions, cassettes: tuple[Path, ...], *, write_log: bool
) -> bool:
    """After a replay: write the run log (``write_log``: the fast path, which has no addon to
    do it) and list the unused interactions under ``--fail-on-unused``. True: exit 1."""
    if index is None:
        return False
    if write_log and options.run_log is not None:
        from baton.replay.run_log import write_run_log

        try:
            write_run_log(Path(options.run_log), index, cassettes)
        except OSError as exc:
            click.echo(f"baton: could not write the run log {options.run_log}: {exc}", err=True)
    if not options.fail_on_unused:
        return False
    unused = index.unmatched()
    if not unused:
        return False
    click.echo(
        f"baton: {plural(len(unused), 'recorded interaction')} unused (--fail-on-unused):",
        err=True,
    )
    for interaction in unused[:20]:
        answer = interaction.response.status if interaction.response is not None else "error"
        click.echo(
            f"  {interaction.request.method} {interaction.request.url} -> {answer}", err=True
        )
    if len(unused) > 20:
        click.echo(f"  ... and {len(unused) - 20} more", err=True)
    return True


def fidelity_options(command: Callable[..., None]) -> Callable[..., None]:
    """The fidelity flags of ``baton replay``, handed over as ``fidelity: FidelityFlags``."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        flags = FidelityFlags(
            state=not kwargs.pop("no_state"),
            session_by=kwargs.pop("session_by"),
            dynamic=tuple(kwargs.pop("dynamic")),
            detect_dynamic=not kwargs.pop("no_detect_dynamic"),
            shift_time=kwargs.pop("shift_time"),
            time_fields=tuple(kwargs.pop("time_field")),
            run_log=kwargs.pop("run_log"),
            fail_on_unused=kwargs.pop("fail_on_unused"),
        )
        command(*args, fidelity=flags, **kwargs)

    decorators = [
        click.option(
            "--no-state",
            is_flag=True,
            help="Answer in recorded order only, not from the recording made in the same state.",
        ),
        click.option(
            "--session-by",
            default="none",
            show_default=True,
            metavar="header:NAME|cookie:NAME|client|none",
            help="Keep state and queue positions per session.",
        ),
        click.option(
            "--dynamic",
            multiple=True,
            metavar="RULE",
            help="A dynamic value: $.path, header:NAME, cookie:NAME (in answers), or a "
            "generated one: request:$.path, request:header:NAME, request:query:NAME.",
        ),
        click.option(
            "--no-detect-dynamic",
            is_flag=True,
            help="Only declared dynamic values; no detection in the recording, no UUIDs and "
            "times ignored by shape.",
        ),
        click.option(
            "--shift-time",
            is_flag=False,
            flag_value="now",
            default=None,
            metavar="[WHEN]",
            help="Move dates in answers by the time since the recording, to now or WHEN "
            "(an ISO-8601 time).",
        ),
        click.option(
            "--time-field",
            multiple=True,
            metavar="JSONPATH",
            help="A JSON field holding epoch times to shift (with --shift-time).",
        ),
        click.option(
            "--run-log",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="FILE",
            help="Write which recorded interactions were served (for baton prune).",
        ),
        click.option(
            "--fail-on-unused",
            is_flag=True,
            help="Exit 1 at the end if a recorded interaction's request was never made.",
        ),
    ]
    for decorator in reversed(decorators):
        with_flags = decorator(with_flags)
    return with_flags


def record_state_options(command: Callable[..., None]) -> Callable[..., None]:
    """``baton record``'s state flags, handed over as ``state_options`` (the addon's options)."""

    @functools.wraps(command)
    def with_flags(*args: Any, **kwargs: Any) -> None:
        session_by = kwargs.pop("session_by")
        reads, writes = kwargs.pop("state_read"), kwargs.pop("state_write")
        command(*args, state_options=state_addon_options(session_by, reads, writes), **kwargs)

    decorators = [
        click.option(
            "--session-by",
            default="none",
            show_default=True,
            metavar="header:NAME|cookie:NAME|client|none",
            help="Count writes per session, for stateful replay.",
        ),
        click.option(
            "--state-read",
            multiple=True,
            metavar="'METHOD /GLOB'",
            help="A route that changes nothing though its method would (POST /search).",
        ),
        click.option(
            "--state-write",
            multiple=True,
            metavar="'METHOD /GLOB'",
            help="A route that changes state though its method would not (GET /logout).",
        ),
    ]
    for decorator in reversed(decorators):
        with_flags = decorator(with_flags)
    return with_flags


def state_addon_options(
    session_by: str, reads: tuple[str, ...], writes: tuple[str, ...]
) -> dict[str, Any]:
    """The Recorder's ``baton_session_by``/``baton_state_*`` options; bad ones exit 2 here."""
    from baton.replay.state import SessionBy, StateRules

    try:
        SessionBy.parse(session_by)
        StateRules.build(reads, writes)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return {
        "baton_session_by": session_by,
        "baton_state_reads": list(reads),
        "baton_state_writes": list(writes),
    }


def show_dynamic(cassette: Path) -> None:
    """``baton show --dynamic``: the values replay treats as dynamic, one block per value."""
    from baton.cassettes.reader import read_cassette
    from baton.replay.dynamic_values import DynamicRules, detect

    found = detect(read_cassette(cassette), DynamicRules())
    if not found:
        click.echo(f"{cassette}: no response value comes back in a later request")
        return
    for value in found.values():
        click.echo(f"{value.value}\n  from {value.origin}")
        for use in value.uses:
            click.echo(f"  sent back in {use}")
    click.echo(f"{plural(len(found), 'dynamic value')}")


def show_graphql(cassette: Path) -> None:
    """``baton show --graphql``: the GraphQL operations of a cassette by name, with counts."""
    import json

    from baton.cassettes.reader import read_cassette
    from baton.replay.graphql import normalise

    operations: dict[tuple[str, str], list[int]] = {}
    for number, interaction in enumerate(read_cassette(cassette), 1):
        body = interaction.request.body or b""
        document: object = None
        if b'"query"' in body:
            try:
                document = json.loads(body)
            except (ValueError, RecursionError):
                continue
        elif interaction.request.method == "GET":
            fields = dict(interaction.request.query)
            if "query" in fields:
                document = {"query": fields["query"], "operationName": fields.get("operationName")}
        operation = normalise(document) if document is not None else None
        if operation is not None:
            operations.setdefault((operation.kind, operation.name), []).append(number)
    if not operations:
        click.echo(f"{cassette}: no GraphQL operations")
        return
    for (kind, name), numbers in sorted(operations.items(), key=lambda item: item[0][1]):
        shown = ", ".join(f"#{n}" for n in numbers[:10]) + (" ..." if len(numbers) > 10 else "")
        click.echo(
            f"{kind} {name or '(anonymous)'}: {plural(len(numbers), 'interaction')} ({shown})"
        )


def graphql_schema_option(command: Callable[..., None]) -> Callable[..., None]:
    """``baton diff --graphql-schema SDL``: schema-level drift beside the answer-by-answer one.

    The SDL is the schema the cassette was recorded against; the target's comes
    from introspection at the cassette's GraphQL path. The drift report runs
    first, untouched; the schema changes follow on stderr (a JSON report on
    stdout stays JSON), and a breaking one makes the exit code 1.
    """

    @functools.wraps(command)
    def with_schema(*args: Any, **kwargs: Any) -> None:
        sdl_path: Path | None = kwargs.pop("graphql_schema")
        if sdl_path is None:
            command(*args, **kwargs)
            return
        target = kwargs.get("target")
        if target is None:
            raise InputError(
                "--graphql-schema compares the schema with the target's introspection: "
                "give --target URL"
            )
        try:
            sdl = sdl_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{sdl_path}: cannot read the GraphQL schema: {exc.strerror}") from exc
        code: int = 0
        try:
            command(*args, **kwargs)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        breaking = _schema_drift(sdl_path, sdl, str(target), Path(kwargs["cassette"]))
        raise SystemExit(max(code, 1 if breaking else 0))

    return click.option(
        "--graphql-schema",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="SDL",
        help="GraphQL: the schema the cassette was recorded against (SDL, or an introspection "
        "result as JSON); schema drift (removed fields, nullability) against the target's "
        "introspection is reported too.",
    )(with_schema)


def _schema_drift(sdl_path: Path, sdl: str, target: str, cassette: Path) -> bool:
    """Print the schema changes; True when one is breaking."""
    import httpx

    from baton.cassettes.reader import CassetteReader
    from baton.replay.graphql import introspection_query, schema_changes

    path = "/graphql"
    with CassetteReader(cassette) as reader:
        for interaction in reader:
            body = interaction.request.body or b""
            if interaction.request.method == "POST" and b'"query"' in body:
                path = interaction.request.path
                break
    url = target.rstrip("/") + path
    try:
        answer = httpx.post(url, json={"query": introspection_query()}, timeout=30)
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise InputError(f"{url}: no GraphQL introspection answer ({exc})") from exc
    try:
        changes = schema_changes(sdl, document)
    except ValueError as exc:
        raise InputError(f"{sdl_path}: {exc}") from exc
    breaking = sum(1 for drift, _, _ in changes if drift == "breaking")
    click.echo(
        f"baton: GraphQL schema drift of {url} against {sdl_path}: "
        f"{plural(breaking, 'breaking change')}, {len(changes) - breaking} other",
        err=True,
    )
    for drift, kind, description in changes:
        click.echo(f"  {drift} {kind}: {description}", err=True)
    return breaking > 0
