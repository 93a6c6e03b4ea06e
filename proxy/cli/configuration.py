"""One configuration for every command: ``[tool.baton]`` in pyproject.toml, or baton.toml.

The schema is the command line itself: every long option of a command is a
key of that command's section, spelled with underscores (``--listen-port``
is ``listen_port``, ``--mode`` is ``mode``, repeatable options take a
list), so the file and the flags cannot drift apart. A few keys have no
flag (``cassette_dir``, the pytest plugin's section, diff's per-endpoint
rules) and are declared here. Shared keys (redaction, matching, where
cassettes live) may sit at the top and apply to every command that takes
them; a command's section overrides the top, and a flag overrides both.

    [tool.baton]                      # baton.toml: the same, without "tool.baton."
    redact_header = ["X-Internal-Token"]
    [tool.baton.replay]
    listen_port = 9000
    [tool.baton.diff.endpoints."GET /products/*"]
    ignore = ["body.stock"]

The file is found by searching upward from the working directory for
``baton.toml``, or a ``pyproject.toml`` that has a ``[tool.baton]`` table
(the nearer folder wins; in one folder baton.toml wins). It is validated
whole, once, before any command runs: an unknown key, a wrong type, a value
outside its choices or a missing file is one line naming the file, the key
and what is allowed, exit 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from baton.proxy.cli.config_schema import ConfigValueError, config_schema, did_you_mean
from baton.proxy.cli.errors import InputError

__all__ = [
    "CONFIG_FILE_NAMES",
    "Config",
    "apply_config_options",
    "config_for_args",
    "current_config",
    "default_map",
    "find_config",
    "load_config",
]

CONFIG_FILE_NAMES = ("baton.toml", "pyproject.toml")


@dataclass
class Config:
    """The configuration in force: which file, and each section's validated values."""

    path: Path | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Section name ("" for the top) -> key -> value, only the keys the file sets."""

    def label(self, section: str) -> str:
        """``pyproject.toml [tool.baton.replay]``: where a value was read, for people."""
        if self.path is None:
            return "default"
        prefix = "tool.baton" if self.path.name == "pyproject.toml" else ""
        table = ".".join(part for part in (prefix, section) if part)
        return f"{_shown(self.path)} [{table}]" if table else f"{_shown(self.path)} (top level)"

    def value(self, section: str, key: str) -> tuple[Any, str] | None:
        """The value of ``key`` for ``section`` and where it came from; the section beats the top."""
        for name in (section, ""):
            values = self.sections.get(name, {})
            if key in values:
                return values[key], self.label(name)
        return None

    def values_for(self, section: str) -> dict[str, Any]:
        """Every value that applies to ``section``: shared keys, overridden by the section's."""
        schema = config_schema().get(section, {})
        merged = {k: v for k, v in self.sections.get("", {}).items() if k in schema}
        merged.update(self.sections.get(section, {}))
        return merged

    def table(self, section: str, key: str) -> dict[str, Any]:
        """A table-valued key with no flag (e.g. diff's ``endpoints``); empty when unset."""
        found = self.value(section, key)
        return dict(found[0]) if found else {}


def _shown(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


# -- finding and loading --------------------------------------------------------------


def find_config(start: Path) -> Path | None:
    """The nearest ``baton.toml``, or ``pyproject.toml`` with ``[tool.baton]``, from ``start`` up."""
    for folder in (start.resolve(), *start.resolve().parents):
        candidate = folder / "baton.toml"
        if candidate.is_file():
            return candidate
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _has_baton_table(candidate):
            return candidate
    return None


def _has_baton_table(pyproject: Path) -> bool:
    try:
        text = pyproject.read_bytes()
    except OSError:
        return False
    if b"baton" not in text and b"\\u" not in text and b"\\U" not in text:
        return False  # no key can name baton without those letters or an escape
    import tomllib  # only for a file that may name baton: it compiles large regexes on import

    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        # A broken pyproject.toml of someone else's is not ours to refuse,
        # unless it names baton: then loading it says what is wrong.
        try:
            return "[tool.baton" in pyproject.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    return isinstance(data.get("tool"), dict) and "baton" in data["tool"]


def load_config(path: Path | None = None, *, start: Path | None = None) -> Config:
    """Read and validate the configuration at ``path``, or the one found from ``start``.

    Raises ``InputError`` (exit 2, one line) for anything the schema refuses.
    """
    if path is None:
        path = find_config(start or Path.cwd())
        if path is None:
            return Config()
    elif not path.is_file():
        raise InputError(f"{path}: no such configuration file (drop --config, or create it)")
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    config = Config(path=path)
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        table = tool.get("baton", {}) if isinstance(tool, dict) else {}
        if not isinstance(table, dict):
            raise InputError(f"{path}: [tool.baton] must be a table")
    else:
        table = data
    config.sections = _validate(table, config, path.parent.resolve())
    return config


def _validate(table: Mapping[str, Any], config: Config, base: Path) -> dict[str, dict[str, Any]]:
    schema = config_schema()
    sections = sorted(name for name in schema if name)
    result: dict[str, dict[str, Any]] = {"": {}}
    for name, value in table.items():
        if isinstance(value, dict) and name not in schema[""] and _is_group(name, schema):
            # [tool.baton.contract.infer]: one section per command of a group.
            for sub, sub_value in value.items():
                section = f"{name}.{sub}"
                if section not in schema or not isinstance(sub_value, dict):
                    inner = sorted(s.split(".", 1)[1] for s in schema if s.startswith(name + "."))
                    raise InputError(
                        f"{_shown(path_of(config))}: unknown section [{_table(config, section)}]"
                        f"{did_you_mean(sub, inner)}; {name} has: {', '.join(inner)}"
                    )
                result[section] = _validate_section(section, sub_value, config, base)
        elif isinstance(value, dict) and name not in schema[""]:
            if name not in schema:
                raise InputError(
                    f"{_shown(path_of(config))}: unknown section [{_table(config, name)}]"
                    f"{did_you_mean(name, sections)}; sections: {', '.join(sections)}"
                )
            result[name] = _validate_section(name, value, config, base)
        else:
            result[""].update(_validate_section("", {name: value}, config, base))
    return result


def _is_group(name: str, schema: Mapping[str, Any]) -> bool:
    return any(section.startswith(name + ".") for section in schema)


def _validate_section(
    section: str, table: Mapping[str, Any], config: Config, base: Path
) -> dict[str, Any]:
    keys = config_schema()[section]
    values: dict[str, Any] = {}
    for raw_name, value in table.items():
        name = raw_name.replace("-", "_")
        key = keys.get(name)
        where = config.label(section)
        if key is None:
            allowed = sorted(keys)
            if section == "":
                commands = sorted(s for s in config_schema() if s)
                raise InputError(
                    f"{where}: unknown key {raw_name!r}{did_you_mean(name, allowed)}; "
                    f"the top takes only shared keys ({', '.join(allowed)}); "
                    f"other keys go in a command's section ({', '.join(commands)})"
                )
            raise InputError(
                f"{where}: unknown key {raw_name!r}{did_you_mean(name, allowed)}; "
                f"allowed: {', '.join(allowed)}"
            )
        try:
            values[name] = key.check(value, base)
        except ConfigValueError as exc:
            raise InputError(f"{where}: {raw_name} = {_brief(value)}: {exc}") from exc
    return values


def path_of(config: Config) -> Path:
    """The file ``config`` was read from (only called once one was)."""
    assert config.path is not None
    return config.path


def _table(config: Config, name: str) -> str:
    return f"tool.baton.{name}" if path_of(config).name == "pyproject.toml" else name


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- applying to the command line --------------------------------------------------------


def _config_flags(args: Sequence[str]) -> tuple[Path | None, bool]:
    """``--config PATH`` / ``--no-config`` among a command's arguments, before click parses them.

    The file must be read before click fills in defaults, and click reads
    defaults while it parses; so the two flags are looked for first.
    """
    path: Path | None = None
    skip = False
    items = list(args)
    for index, arg in enumerate(items):
        if arg == "--":
            break
        if arg == "--no-config":
            skip = True
        elif arg == "--config" and index + 1 < len(items):
            path = Path(items[index + 1])
        elif arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
    return path, skip


def default_map(config: Config) -> dict[str, dict[str, Any]]:
    """click's ``default_map``: for each command, the file's values for its flags."""
    if config.path is None:
        return {}  # no file: nothing to map, and no need to load every command's schema
    schema = config_schema()
    defaults: dict[str, dict[str, Any]] = {}
    for section, keys in schema.items():
        if not section:
            continue
        values = config.values_for(section)
        flags = {}
        for name, value in values.items():
            key = keys[name]
            if key.option is not None and key.option.name:
                flags[key.option.name] = key.to_flag(value) if key.to_flag else value
        if flags:
            # click looks a group's commands up inside the group's own default map.
            group, _, command = section.rpartition(".")
            holder = defaults.setdefault(group, {}) if group else defaults
            holder[command] = flags
    return defaults


def apply_config_options(command: click.Command) -> None:
    """Give ``command`` the ``--config`` and ``--no-config`` options every command takes."""
    flags = {opt for p in command.params for opt in getattr(p, "opts", ())}
    if "config" in {p.name for p in command.params} or "--config" in flags:
        return
    command.params.append(
        click.Option(
            ["--config"],
            type=click.Path(dir_okay=False, path_type=Path),
            expose_value=False,
            help="Configuration file [default: the nearest baton.toml, or pyproject.toml "
            "with [tool.baton], searched upward].",
        )
    )
    command.params.append(
        click.Option(
            ["--no-config"],
            is_flag=True,
            expose_value=False,
            help="Ignore configuration files; flags and defaults only.",
        )
    )


def config_for_args(args: Sequence[str]) -> Config:
    """The configuration a command line asks for (its ``--config`` / ``--no-config``)."""
    path, skip = _config_flags(args)
    if skip:
        return Config()
    return load_config(path)


def current_config() -> Config:
    """The configuration of the command running now (empty outside a command)."""
    context = click.get_current_context(silent=True)
    while context is not None:
        found = context.meta.get("baton.config")
        if isinstance(found, Config):
            return found
        context = context.parent
    return Config()
