"""The ``baton`` command line: one module per command, thin over the library.

Each command parses its arguments, calls one library function and renders
the result. What commands share lives in one place each: option groups in
``options.py``, user errors and their exit code (2) in ``errors.py``, the
configuration file in ``configuration.py``. A new command is a new module
here, added to ``main`` below.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from baton.proxy.cli.addon_path import addon_path
from baton.proxy.cli.config import config
from baton.proxy.cli.configuration import (
    Config,
    apply_config_options,
    config_for_args,
    default_map,
)
from baton.proxy.cli.contract import contract
from baton.proxy.cli.dedupe import dedupe
from baton.proxy.cli.diff import diff
from baton.proxy.cli.expire import expire
from baton.proxy.cli.export import export
from baton.proxy.cli.import_ import import_
from baton.proxy.cli.lint import lint
from baton.proxy.cli.load import load
from baton.proxy.cli.merge import merge
from baton.proxy.cli.prune import prune
from baton.proxy.cli.record import record
from baton.proxy.cli.repair import repair
from baton.proxy.cli.replay import replay
from baton.proxy.cli.report import report
from baton.proxy.cli.show import show
from baton.proxy.cli.textconv import textconv

__all__ = ["main"]


class BatonGroup(click.Group):
    """The ``baton`` group: reads the configuration before a command parses, errors in one line."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        apply_config_options(cmd)
        for sub in cmd.commands.values() if isinstance(cmd, click.Group) else ():
            apply_config_options(sub)
        super().add_command(cmd, name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        # The file gives the flags their defaults, so it is read before the
        # command parses (click fills defaults while parsing).
        try:
            config = config_for_args(rest)
        except click.ClickException:
            if "--help" in rest or "-h" in rest:
                config = Config()  # help must show even when the file is broken
            else:
                raise
        ctx.meta["baton.config"] = config
        ctx.default_map = default_map(config)
        return name, command, rest

    def main(self, args: Sequence[str] | None = None, *extra: Any, **kwargs: Any) -> Any:
        """Run, turning every click error into one line on stderr with its exit code.

        click's own display of a usage error takes three lines (usage, a
        hint, the error); baton's rule is one line naming the problem and
        where to look, exit 2.
        """
        kwargs["standalone_mode"] = False
        try:
            result = super().main(args, *extra, **kwargs)
        except click.exceptions.Abort:
            click.echo("baton: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            exc.show() if not isinstance(exc, click.UsageError) else _usage_line(exc)
            sys.exit(exc.exit_code)
        sys.exit(result if isinstance(result, int) else 0)


def _usage_line(exc: click.UsageError) -> None:
    command = exc.ctx.command_path if exc.ctx is not None else "baton"
    message = " ".join(exc.format_message().split())
    click.echo(f"{command}: error: {message} (see '{command} --help')", err=True)


@click.group(
    cls=BatonGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="baton-replay", prog_name="baton")
def main() -> None:
    """Record HTTP traffic between services into cassettes, and use them.

    \b
    Record:  baton record -o api.cassette --mode reverse:http://127.0.0.1:8000
    Replay:  baton replay api.cassette --listen-port 9000
    Drift:   baton diff api.cassette --target http://127.0.0.1:8000
    Load:    baton load api.cassette --target http://127.0.0.1:8000 --rate 500/s
    Look:    baton show api.cassette
    Mend:    baton repair api.cassette
    """


for _command in (
    record,
    replay,
    diff,
    load,
    contract,
    import_,
    export,
    textconv,
    lint,
    show,
    repair,
    prune,
    dedupe,
    expire,
    merge,
    report,
    addon_path,
    config,
):
    main.add_command(_command)
