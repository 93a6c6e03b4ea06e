"""``baton config show``: the settings in force for each command, and where each came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from baton.proxy.cli.config_schema import config_schema
from baton.proxy.cli.configuration import current_config, find_config

__all__ = ["config"]


@click.group()
def config() -> None:
    """Look at baton's configuration ([tool.baton] in pyproject.toml, or baton.toml).

    \b
    Example:
      baton config show replay
    """


@config.command()
@click.argument("command", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: TOML-like, one key per line with its source; json: for machines.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file [default: the nearest baton.toml, or pyproject.toml "
    "with [tool.baton], searched upward].",
)
@click.option("--no-config", is_flag=True, help="Show the defaults only.")
def show(command: str | None, fmt: str, config_path: Path | None, no_config: bool) -> None:
    """Print the effective settings of COMMAND (default: every command) and their sources.

    The file is validated whole first, as every command does; a value set
    in the file shows the file and table it came from, anything else says
    ``default``. Flags given to a command override all of these.

    \b
    Example:
      baton config show replay
    """
    loaded = current_config()  # read (and validated) before any command runs
    schema = config_schema()
    sections = sorted(name for name in schema if name)
    if command is not None and command not in schema:
        from baton.proxy.cli.config_schema import did_you_mean

        raise click.UsageError(
            f"no settings for {command!r}{did_you_mean(command, sections)}; "
            f"commands with settings: {', '.join(sections)}"
        )
    chosen = [command] if command else ["", *sections]
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for section in chosen:
        rows: dict[str, dict[str, Any]] = {}
        for name, key in sorted(schema[section].items()):
            found = loaded.value(section, name)
            value, source = found if found is not None else (key.default, "default")
            rows[name] = {"value": _plain(value), "source": source}
        table[section] = rows
    if fmt == "json":
        where = str(loaded.path) if loaded.path else None
        click.echo(json.dumps({"file": where, "sections": table}, indent=2))
        return
    if loaded.path is not None:
        click.echo(f"# configuration: {loaded.path}")
    elif no_config:
        click.echo("# configuration: none (--no-config)")
    else:
        searched = find_config(Path.cwd())
        click.echo(
            "# configuration: none found (searched upward from "
            f"{Path.cwd()} for baton.toml or pyproject.toml with [tool.baton])"
            if searched is None
            else f"# configuration: {searched}"
        )
    for section, rows in table.items():
        click.echo(f"\n[{section or 'shared'}]" if section or command is None else "")
        width = max((len(n) + len(_toml(r["value"])) for n, r in rows.items()), default=0) + 4
        for name, row in rows.items():
            text = f"{name} = {_toml(row['value'])}"
            click.echo(f"{text:<{width}}# {row['source']}")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if type(value).__name__ == "Sentinel":  # click's "no default"
        return None
    return value


def _toml(value: Any) -> str:
    """A value the way it would be written in the file (``unset`` for no value)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)
