"""How a value from a configuration file is checked: with the flag's own click type.

A file cannot say what the flag would refuse; where the file's form differs
from the flag's (``match_on`` as a list, mitmproxy's ``set`` as a table),
the check says so. ``config_schema.py`` pairs each key with its check.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

__all__ = [
    "ConfigValueError",
    "check_bool",
    "check_choice",
    "check_dir",
    "check_endpoints",
    "check_match_on",
    "check_mitmproxy_set",
    "check_strings",
    "did_you_mean",
    "option_check",
]


class ConfigValueError(ValueError):
    """A value the schema refuses; the message says what is allowed."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'path'?)`` for a near miss among ``choices``, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_scalar(param: click.Option, value: Any, base: Path) -> Any:
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag and not param.count:
        if not isinstance(value, bool):
            raise ConfigValueError("expected true or false")
        return value
    if isinstance(kind, click.Choice):
        choices = [str(c) for c in kind.choices]
        if not isinstance(value, str) or value not in choices:
            hint = did_you_mean(str(value), choices)
            raise ConfigValueError(f"not one of {', '.join(choices)}{hint}")
        return value
    if isinstance(kind, click.types.IntParamType) or param.count:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigValueError("expected an integer")
    elif isinstance(kind, click.types.FloatParamType):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigValueError("expected a number")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # On the command line every value is text; a number in the file is the text the user
        # would have typed (max_body_size = 1048576, rotate_interval = 3600), checked as such.
        value = str(value)
        if isinstance(kind, click.ParamType) and type(kind).__module__ != click.types.__name__:
            try:
                kind.convert(value, param, None)
            except click.BadParameter as exc:
                raise ConfigValueError(exc.message) from exc
    elif not isinstance(value, str):
        raise ConfigValueError("expected a string")
    if isinstance(kind, click.Path):
        if "://" in value:
            return value  # a URL (record's -o s3://bucket/prefix/): nothing to resolve
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if value.endswith("/"):
            return f"{path}/"  # a directory prefix (record's shards), kept one
        if kind.exists and not path.exists():
            raise ConfigValueError(f"{path}: no such file")
        if not kind.dir_okay and path.is_dir():
            raise ConfigValueError(f"{path}: is a folder, a file is needed")
        return str(path)
    if isinstance(kind, click.types.IntRange | click.types.FloatRange):
        try:
            kind.convert(value, param, None)
        except click.BadParameter as exc:
            raise ConfigValueError(exc.message) from exc
    return value


def option_check(param: click.Option) -> Callable[[Any, Path], Any]:
    def check(value: Any, base: Path) -> Any:
        if param.multiple:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list):
                raise ConfigValueError("expected a list")
            return [_check_scalar(param, item, base) for item in items]
        return _check_scalar(param, value, base)

    return check


def check_match_on(value: Any, base: Path) -> Any:
    """``match_on``: a list in the file (a comma-separated string, as the flag takes, also does)."""
    from baton.replay.matching import MATCHERS

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigValueError("expected a list of matcher names")
    for item in items:
        if item.strip() not in MATCHERS:
            hint = did_you_mean(item.strip(), MATCHERS)
            raise ConfigValueError(
                f"unknown matcher {item.strip()!r}{hint}; matchers: {', '.join(MATCHERS)}"
            )
    return [i.strip() for i in items]


def check_mitmproxy_set(value: Any, base: Path) -> Any:
    """``set``: a list of ``option=value`` as the flag takes, or a table of them."""
    if isinstance(value, dict):
        return [f"{k}={_toml_scalar(v)}" for k, v in value.items()]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigValueError('expected a table {option = value} or a list of "option=value"')
    return value


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def check_bool(value: Any, base: Path) -> Any:
    if not isinstance(value, bool):
        raise ConfigValueError("expected true or false")
    return value


def check_strings(value: Any, base: Path) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigValueError("expected a list of strings")
    return items


def check_dir(value: Any, base: Path) -> Any:
    if not isinstance(value, str):
        raise ConfigValueError("expected a folder name")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def check_choice(*choices: str) -> Callable[[Any, Path], Any]:
    def check(value: Any, base: Path) -> Any:
        if not isinstance(value, str) or value not in choices:
            hint = did_you_mean(str(value), choices)
            raise ConfigValueError(f"not one of {', '.join(choices)}{hint}")
        return value

    return check


def check_endpoints(value: Any, base: Path) -> Any:
    """diff's ``endpoints``: ``{"GET /products/*": {ignore = ["body.stock"]}}``."""
    if not isinstance(value, dict):
        raise ConfigValueError('expected tables like [tool.baton.diff.endpoints."GET /path/*"]')
    checked: dict[str, dict[str, list[str]]] = {}
    for pattern, rule in value.items():
        if not isinstance(rule, dict):
            raise ConfigValueError(f"{pattern!r}: expected a table with ignore = [...]")
        unknown = set(rule) - {"ignore"}
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigValueError(
                f"{pattern!r}: unknown key {name!r}{did_you_mean(name, ['ignore'])}; "
                "allowed: ignore"
            )
        checked[pattern] = {"ignore": check_strings(rule.get("ignore", []), base)}
    return checked
