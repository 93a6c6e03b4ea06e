"""The configuration's schema: every key of every section, and how a value from a file is checked.

Built from the ``baton`` command tree itself: every long option of a
command is a key of that command's section, spelled with underscores, and
a value is checked with the option's own click type, so a file cannot say
what the flag would refuse. Keys without a flag are declared in
``_extra_keys``; how a value is checked is in ``config_values.py``. ``configuration.py``
reads files against this schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from baton.proxy.cli.config_values import (
    ConfigValueError,
    check_bool,
    check_choice,
    check_dir,
    check_endpoints,
    check_match_on,
    check_mitmproxy_set,
    check_strings,
    did_you_mean,
    option_check,
)

__all__ = [
    "SHARED_KEYS",
    "ConfigKey",
    "ConfigValueError",
    "config_schema",
    "did_you_mean",
]

# Options that are about finding the configuration, or about one run only.
_NOT_KEYS = {"help", "config", "no_config", "version"}

# Keys that may sit at the top of [tool.baton] and apply to every command taking them.
SHARED_KEYS = (
    "cassette_dir",
    "compress",
    "listen_host",
    "redact_header",
    "redact_field",
    "redact_json_path",
    "redact_regex",
    "no_default_redaction",
    "redaction_key_file",
    "match_on",
    "match_header",
    "ignore_query",
    "ignore_field",
    "match_secrets",
    "on_exhausted",
    "miss_status",
)


@dataclass(frozen=True)
class ConfigKey:
    """One key of one section: what it sets, and how a value from a file is checked."""

    name: str
    help: str
    check: Callable[[Any, Path], Any]
    """Validate a value read from the file at the given folder; returns it ready for use."""
    option: click.Option | None = None
    """The flag this key gives a default to, if any."""
    default: Any = None
    type_name: str = "str"
    to_flag: Callable[[Any], Any] | None = None
    """How a checked value becomes what the flag takes, where the two differ."""


# Keys without a flag, per section.
def _extra_keys() -> dict[str, dict[str, ConfigKey]]:
    from baton.replay.record_mode import RecordMode

    modes = tuple(m.value for m in RecordMode)
    return {
        "": {
            "cassette_dir": ConfigKey(
                "cassette_dir",
                "Where the pytest plugin keeps cassettes (a test's default cassette is "
                "CASSETTE_DIR/<module>/<test>.cassette); relative to the configuration file.",
                check_dir,
                type_name="path",
            ),
        },
        "diff": {
            "endpoints": ConfigKey(
                "endpoints",
                'Per-endpoint noise rules: [tool.baton.diff.endpoints."GET /products/*"] '
                'ignore = ["body.stock"].',
                check_endpoints,
                type_name="table",
            ),
        },
        "pytest": {
            "record_mode": ConfigKey(
                "record_mode",
                "Record mode of every @pytest.mark.baton test (--baton-record-mode wins).",
                check_choice(*modes),
                default=RecordMode.NONE.value,
                type_name="|".join(modes),
            ),
            "block_network": ConfigKey(
                "block_network",
                "Fail a test that opens a connection to anything but 127.0.0.1 or allow_hosts.",
                check_bool,
                default=False,
                type_name="bool",
            ),
            "allow_hosts": ConfigKey(
                "allow_hosts",
                "Hosts a test may still reach with block_network on: names, *.globs, addresses, "
                "CIDR networks.",
                check_strings,
                default=[],
                type_name="list",
            ),
            "fail_on_unused": ConfigKey(
                "fail_on_unused",
                "Fail a test that left recorded interactions unused.",
                check_bool,
                default=False,
                type_name="bool",
            ),
            "allow_misses": ConfigKey(
                "allow_misses",
                "Let a test pass although some of its requests matched no recorded interaction.",
                check_bool,
                default=False,
                type_name="bool",
            ),
        },
    }


# Flags whose file form differs from the flag's.
_SPECIAL_CHECKS: dict[str, Callable[[Any, Path], Any]] = {
    "match_on": check_match_on,
    "set": check_mitmproxy_set,
}


def _plain_default(option: click.Option) -> Any:
    """The default a person would write in the file: false, [], or None for "no value"."""
    default = option.default
    unset = default is None or type(default).__name__ == "Sentinel"  # click 8.2+: a sentinel
    if option.is_flag and not option.count:
        return False if unset else bool(default)
    if option.multiple:
        return [] if unset else list(default)  # type: ignore[arg-type]
    return None if unset else default


def _key_name(option: click.Option) -> str | None:
    longs = [o for o in option.opts if o.startswith("--")]
    if not longs:
        return None
    name = longs[0][2:].replace("-", "_")
    return None if name in _NOT_KEYS else name


def _type_name(option: click.Option) -> str:
    """The type as the file spells it: ``bool``, ``integer 100-599``, ``list of string``."""
    kind = option.type
    if option.is_flag and not option.count:
        name = "bool"
    elif isinstance(kind, click.Choice):
        name = "|".join(map(str, kind.choices))
    elif option.count or isinstance(kind, click.types.IntParamType):
        name = "integer"
    elif isinstance(kind, click.types.FloatParamType):
        name = "number"
    elif isinstance(kind, click.Path):
        name = "path"
    else:
        name = "string"
    if isinstance(kind, click.types.IntRange | click.types.FloatRange):
        low = "" if kind.min is None else kind.min
        high = "" if kind.max is None else kind.max
        name += f" {low}-{high}" if high != "" else f" >= {low}"
    return f"list of {name}" if option.multiple else name


_SPECIAL_TYPE_NAMES = {
    "match_on": "list of matcher names",
    "set": 'table {option = value}, or list of "option=value"',
}


_SCHEMA: dict[str, dict[str, ConfigKey]] | None = None
# Groups whose commands take no settings worth keeping in a file.
_GROUPS_WITHOUT_SETTINGS = {"config"}


def _leaf_commands(main: Any) -> list[tuple[str, click.Command]]:
    """Each command by section name: ``record``, and ``contract.infer`` for a group's command."""
    found: list[tuple[str, click.Command]] = []
    for name, command in main.all_commands().items():
        found.append((name, command))
        if isinstance(command, click.Group) and name not in _GROUPS_WITHOUT_SETTINGS:
            found += [(f"{name}.{sub}", c) for sub, c in command.commands.items()]
    return found


def config_schema() -> dict[str, dict[str, ConfigKey]]:
    """Section -> key -> ``ConfigKey``, built from the ``baton`` command tree once.

    Section ``""`` holds the shared keys that may sit at the top of the file.
    """
    global _SCHEMA
    if _SCHEMA is not None:
        return _SCHEMA
    from baton.proxy.cli import main

    schema: dict[str, dict[str, ConfigKey]] = {}
    shared: dict[str, ConfigKey] = {}
    for command_name, command in sorted(_leaf_commands(main)):
        keys: dict[str, ConfigKey] = {}
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            name = _key_name(param)
            if name is None:
                continue
            default = _plain_default(param)
            keys[name] = ConfigKey(
                name,
                param.help or "",
                _SPECIAL_CHECKS.get(name, option_check(param)),
                option=param,
                default=default,
                type_name=_SPECIAL_TYPE_NAMES.get(name) or _type_name(param),
                to_flag=",".join if name == "match_on" else None,
            )
            if name in SHARED_KEYS and name not in shared:
                shared[name] = keys[name]
        if keys:
            schema[command_name] = keys
    for section, extra in _extra_keys().items():
        schema.setdefault(section, {}).update(extra)
    schema[""] = {**shared, **schema.get("", {})}
    # The pytest plugin takes the shared keys (matching, redaction, cassette_dir) in its own
    # section too, so [tool.baton.pytest] can differ from the command line's defaults.
    schema["pytest"] = {
        **{k: v for k, v in schema[""].items() if k != "listen_host"},  # the plugin binds 127.0.0.1
        **schema["pytest"],
    }
    _SCHEMA = schema
    return schema
