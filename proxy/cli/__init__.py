"""The ``baton`` command line: one module per command, thin over the library.

Each command parses its arguments, calls one library function and renders
the result. What commands share lives in one place each: option groups in
``options.py``, user errors and their exit code (2) in ``errors.py``, the
configuration file in ``configuration.py``. A new command is a new module
here, added to ``main`` below.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from baton.proxy.cli.configuration import (
    Config,
    apply_config_options,
    config_for_args,
    default_map,
)

__all__ = ["main"]

# Each command's module, imported only when that command runs (or when the
# whole tree is needed: the configuration schema, --help, the reference).
# Importing all of them costs ~0.4 s (deepdiff, grpc, Jinja2, ...), which
# every `baton replay` in a test suite would pay before its first answer.
COMMANDS = {
    "record": "baton.proxy.cli.record:record",
    "replay": "baton.proxy.cli.replay:replay",
    "diff": "baton.proxy.cli.diff:diff",
    "load": "baton.proxy.cli.load:load",
    "contract": "baton.proxy.cli.contract:contract",
    "import": "baton.proxy.cli.import_:import_",
    "export": "baton.proxy.cli.export:export",
    "textconv": "baton.proxy.cli.textconv:textconv",
    "lint": "baton.proxy.cli.lint:lint",
    "show": "baton.proxy.cli.show:show",
    "repair": "baton.proxy.cli.repair:repair",
    "prune": "baton.proxy.cli.prune:prune",
    "dedupe": "baton.proxy.cli.dedupe:dedupe",
    "expire": "baton.proxy.cli.expire:expire",
    "merge": "baton.proxy.cli.merge:merge",
    "report": "baton.proxy.cli.report:report",
    "addon-path": "baton.proxy.cli.addon_path:addon_path",
    "config": "baton.proxy.cli.config:config",
}


class BatonGroup(click.Group):
    """The ``baton`` group: reads the configuration before a command parses, errors in one line.

    Commands load lazily from ``COMMANDS``; ``all_commands()`` loads the whole tree.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        apply_config_options(cmd)
        for sub in cmd.commands.values() if isinstance(cmd, click.Group) else ():
            apply_config_options(sub)
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self.commands.get(cmd_name)
        if found is None and cmd_name in COMMANDS:
            module_name, _, attribute = COMMANDS[cmd_name].partition(":")
            found = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(found, click.Command)
            self.add_command(found, cmd_name)
        return found

    def all_commands(self) -> dict[str, click.Command]:
        """Every command, loaded: name -> command, sorted by name."""
        context = click.Context(self)
        loaded = {name: self.get_command(context, name) for name in self.list_commands(context)}
        return {name: command for name, command in loaded.items() if command is not None}

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
