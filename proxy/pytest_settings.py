"""What a baton test runs with, and where each choice came from.

Every setting can be given in five places; the first that gives it wins:

    command-line option  >  @pytest.mark.baton(...) keyword  >  ini option (baton_<name>)
    >  baton's configuration ([tool.baton.pytest], then the top of [tool.baton])  >  default

The one exception is ``allow_hosts``: allow-lists add up, so a test can
allow one more host than the project does. Values are checked where they
are read (ini and configuration once per session, markers at collection),
and a bad one is a usage error naming its place, never a traceback later.

This module knows nothing of pytest's or baton's configuration objects: the
plugin hands it plain values and a lookup function, so it is tested alone.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.proxy.pytest_network import AllowList
from baton.proxy.redaction_options import redaction_addon_options
from baton.replay.faults import FaultPlan
from baton.replay.index import ExhaustedPolicy
from baton.replay.matching import MATCHERS
from baton.replay.options import ReplayOptions
from baton.replay.record_mode import RecordMode

__all__ = [
    "SETTINGS",
    "Setting",
    "SettingSources",
    "TestSettings",
    "check_marker",
    "default_cassette",
    "did_you_mean",
    "safe_file_name",
]


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'record_mode'?)`` for a near miss among ``choices``, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- checking one value --------------------------------------------------------------------
# Each takes a value from a marker, an ini file or baton's configuration, and returns it in
# the form the plugin uses, or raises ValueError saying what is allowed.


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(
                f"{value!r} is not one of {', '.join(choices)}{did_you_mean(str(value), choices)}"
            )
        return value

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected True or False, got {value!r}")
    return value


def _names(value: Any) -> tuple[str, ...]:
    # A lone string is one name: iterating it would give one name per character.
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(items)


def _matchers(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected matcher names like 'method,path,query', got {value!r}")
    names = tuple(i.strip() for i in items if i.strip())
    for name in names:
        if name not in MATCHERS:
            raise ValueError(
                f"unknown matcher {name!r}{did_you_mean(name, list(MATCHERS))}; "
                f"matchers: {', '.join(MATCHERS)}"
            )
    return names


def _status(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"expected an HTTP status 100-599, got {value!r}")
    return value


def _hosts(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    hosts = _names(items)
    AllowList.parse(hosts)  # raises ValueError for a bad entry
    return hosts


def _folder(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ValueError(f"expected a folder, got {value!r}")
    return Path(value).expanduser()


def _file(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ValueError(f"expected a file name, got {value!r}")
    return Path(value).expanduser()


def _compression(value: Any) -> str:
    from baton.cassettes.compression import BodyCompression

    if not isinstance(value, str):
        raise ValueError(f"expected zstd, zstd:LEVEL or none, got {value!r}")
    parsed = BodyCompression.parse(value)  # a ValueError naming what is accepted
    return str(parsed) if parsed else "none"


def _faults(value: Any) -> tuple[str, ...]:
    from baton.replay.faults import parse_fault

    rules = _names(value)
    for rule in rules:
        parse_fault(rule)  # FaultRuleError is a ValueError naming the rule and the fix
    return rules


def _seed(value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer seed, got {value!r}")
    return value


def _upstream(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/]+", value):
        raise ValueError(f"expected the service's URL like 'http://host:port', got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class Setting:
    """One setting: its marker keyword, ini option, configuration key and command-line option."""

    name: str
    """The marker keyword; the ini option is ``baton_`` + name."""
    help: str
    check: Callable[[Any], Any]
    default: Any
    ini_type: str | None = "string"
    """pytest's ini type; None when there is no ini option."""
    config_key: str | None = None
    """The key in [tool.baton.pytest] or at the top of [tool.baton]."""
    option: str | None = None
    """The command-line option that overrides every other source, if any."""
    marker: bool = True

    @property
    def ini(self) -> str:
        return f"baton_{self.name}"


_MODES = tuple(m.value for m in RecordMode)
_POLICIES = tuple(p.value for p in ExhaustedPolicy)

SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "record_mode",
            "When baton may touch the network: none, once, new_episodes or all.",
            _choice(*_MODES),
            RecordMode.NONE.value,
            config_key="record_mode",
            option="--baton-record-mode",
        ),
        Setting(
            "cassette_dir",
            "Folder of the default cassettes, relative to the ini file "
            "(default: cassettes/ next to each test module).",
            _folder,
            None,
            config_key="cassette_dir",
            marker=False,
        ),
        Setting(
            "match_on",
            "Comma-separated matchers making the match key (default: all).",
            _matchers,
            None,
            config_key="match_on",
        ),
        Setting(
            "match_headers",
            "Headers added to the match key.",
            _names,
            (),
            ini_type="args",
            config_key="match_header",
        ),
        Setting(
            "ignore_query",
            "Query names left out of the match key.",
            _names,
            (),
            ini_type="args",
            config_key="ignore_query",
        ),
        Setting(
            "ignore_fields",
            "JSON fields left out of the match key.",
            _names,
            (),
            ini_type="args",
            config_key="ignore_field",
        ),
        Setting(
            "match_secrets",
            "Match redacted values by their keyed hash.",
            _bool,
            False,
            ini_type="bool",
            config_key="match_secrets",
        ),
        Setting(
            "on_exhausted",
            "When identical requests outnumber their recorded answers: repeat-last or strict.",
            _choice(*_POLICIES),
            ExhaustedPolicy.REPEAT_LAST.value,
            config_key="on_exhausted",
        ),
        Setting(
            "miss_status",
            "Status of the answer to a request no recorded interaction matches.",
            _status,
            502,
            config_key="miss_status",
        ),
        Setting(
            "allow_misses",
            "Let a test pass although some of its requests matched nothing.",
            _bool,
            False,
            ini_type="bool",
            config_key="allow_misses",
        ),
        Setting(
            "fail_on_unused",
            "Fail a test that left recorded interactions unused.",
            _bool,
            False,
            ini_type="bool",
            config_key="fail_on_unused",
            option="--baton-fail-on-unused",
        ),
        Setting(
            "block_network",
            "Fail a test that connects to anything but this machine and allow_hosts.",
            _bool,
            False,
            ini_type="bool",
            config_key="block_network",
            option="--baton-block-network",
        ),
        Setting(
            "allow_hosts",
            "Hosts a test may reach with block_network: names, *.globs, addresses, networks.",
            _hosts,
            (),
            ini_type="args",
            config_key="allow_hosts",
            option="--baton-allowed-hosts",
        ),
        # What a test records (once, new_episodes, all) is redacted by the project's rules,
        # as `baton record` would redact it; set in baton's configuration only.
        *(
            Setting(name, help, check, default, ini_type=None, config_key=key, marker=False)
            for name, key, help, check, default in (
                ("redact_headers", "redact_header", "Also redact these headers.", _names, ()),
                ("redact_fields", "redact_field", "Also redact these fields.", _names, ()),
                ("redact_json_paths", "redact_json_path", "Also redact these paths.", _names, ()),
                ("redact_regex", "redact_regex", "Also redact what these match.", _names, ()),
                (
                    "no_default_redaction",
                    "no_default_redaction",
                    "Drop baton's default redaction rules.",
                    _bool,
                    False,
                ),
                (
                    "redaction_key_file",
                    "redaction_key_file",
                    "Key for redaction placeholders.",
                    _file,
                    None,
                ),
                (
                    "compress",
                    "compress",
                    "Store recorded bodies compressed: zstd, zstd:LEVEL (1-19) or none.",
                    _compression,
                    "none",
                ),
            )
        ),
        Setting(
            "faults",
            "Fault rules for replay (docs/resilience.md), e.g. ['status=503,rate=0.1', 'reset'].",
            _faults,
            (),
            ini_type="args",
        ),
        Setting(
            "fault_seed",
            "Seed of the fault coin: the same seed and requests give the same faults.",
            _seed,
            None,
        ),
        Setting(
            "upstream",
            "The real service to record from, e.g. http://127.0.0.1:8000 (marker only).",
            _upstream,
            None,
            ini_type=None,
        ),
    )
}

MARKER_KEYWORDS = tuple(sorted(name for name, s in SETTINGS.items() if s.marker))


def check_marker(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first argument of ``@pytest.mark.baton`` that is wrong."""
    for arg in args:
        if not isinstance(arg, str | os.PathLike) or not str(arg):
            raise ValueError(f"cassettes are paths, got {arg!r}")
    for name, value in kwargs.items():
        if name not in MARKER_KEYWORDS:
            raise ValueError(
                f"unknown keyword {name!r}{did_you_mean(name, MARKER_KEYWORDS)}; "
                f"keywords: {', '.join(MARKER_KEYWORDS)}"
            )
        if value is None:
            continue  # "not set here", as in the documented signature
        try:
            SETTINGS[name].check(value)
        except ValueError as exc:
            raise ValueError(f"{name}={value!r}: {exc}") from exc


# -- one test's settings --------------------------------------------------------------------


SettingSources = dict[str, str]


@dataclass(frozen=True)
class TestSettings:
    """The resolved settings of one test, and where each came from (for messages)."""

    __test__ = False  # not a test class, whatever pytest's collector thinks of the name

    values: dict[str, Any]
    sources: SettingSources = field(default_factory=dict)

    @property
    def record_mode(self) -> RecordMode:
        return RecordMode(self.values["record_mode"])

    @property
    def replay_options(self) -> ReplayOptions:
        v = self.values
        return ReplayOptions(
            match_on=v["match_on"] or None,
            match_headers=v["match_headers"],
            ignore_query=v["ignore_query"],
            ignore_fields=v["ignore_fields"],
            match_secrets=v["match_secrets"],
            on_exhausted=v["on_exhausted"],
            miss_status=v["miss_status"],
            record_mode=v["record_mode"],
            redaction=redaction_addon_options(
                headers=v["redact_headers"],
                fields=v["redact_fields"],
                json_paths=v["redact_json_paths"],
                patterns=v["redact_regex"],
                defaults=not v["no_default_redaction"],
                key_file=None if v["redaction_key_file"] is None else str(v["redaction_key_file"]),
            ),
            compress=v["compress"],
        )

    @property
    def allow_misses(self) -> bool:
        return bool(self.values["allow_misses"])

    @property
    def fail_on_unused(self) -> bool:
        return bool(self.values["fail_on_unused"])

    @property
    def block_network(self) -> bool:
        return bool(self.values["block_network"])

    @property
    def allow_hosts(self) -> tuple[str, ...]:
        return tuple(self.values["allow_hosts"])

    @property
    def cassette_dir(self) -> Path | None:
        folder = self.values["cassette_dir"]
        return None if folder is None else Path(folder)

    @property
    def fault_plan(self) -> FaultPlan | None:
        """The ``faults`` rules as a fresh plan (its own seeded coin) for one test, or None."""
        rules = self.values["faults"]
        return FaultPlan(rules, seed=self.values["fault_seed"]) if rules else None

    @property
    def upstream(self) -> str | None:
        upstream = self.values["upstream"]
        return None if upstream is None else str(upstream)

    @classmethod
    def resolve(
        cls,
        *,
        options: Mapping[str, Any],
        marker: Mapping[str, Any],
        ini: Mapping[str, Any],
        configured: Mapping[str, tuple[Any, str]],
    ) -> TestSettings:
        """Apply the precedence to checked values, each keyed by setting name.

        ``options``: the command line's (None when not given); ``marker``: the
        test's keywords, unchecked; ``ini`` and ``configured``: only what is set,
        already checked, ``configured`` with where each came from.
        """
        values: dict[str, Any] = {}
        sources: SettingSources = {}
        for name, setting in SETTINGS.items():
            found: list[tuple[Any, str]] = []
            if options.get(name) is not None:
                found.append((options[name], "the command line"))
            if setting.marker and marker.get(name) is not None:
                found.append((setting.check(marker[name]), "@pytest.mark.baton"))
            if name in ini:
                found.append((ini[name], f"ini option {setting.ini}"))
            if name in configured:
                found.append(configured[name])
            if not found:
                values[name], sources[name] = setting.default, "default"
            elif name == "allow_hosts":
                values[name] = tuple(dict.fromkeys(h for hosts, _ in found for h in hosts))
                sources[name] = ", ".join(where for _, where in found)
            else:
                values[name], sources[name] = found[0]
        return cls(values, sources)


# -- default cassettes ------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._\-\[\]=,+@]")
_MAX_NAME = 150


def safe_file_name(name: str) -> str:
    """``name`` as a file name every OS takes: unsafe characters become ``-``, and a name that
    changed (or was too long) gains a short hash of the original, so two ids never share a file."""
    safe = _UNSAFE.sub("-", name)
    if safe == name and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe[: _MAX_NAME - 9]}-{digest}"


def default_cassette(
    test_file: Path, test_name: str, cassette_dir: Path | None, rootpath: Path
) -> Path:
    """``cassettes/<module>/<test>.cassette`` next to the test module, like pytest-recording.

    With a configured ``cassette_dir`` shared by every module, ``<module>`` is the module's
    path from the rootdir (``tests/api/test_users``), so two ``test_users.py`` never collide.
    """
    name = safe_file_name(test_name) + ".cassette"
    if cassette_dir is None:
        return test_file.parent / "cassettes" / test_file.stem / name
    try:
        module = test_file.with_suffix("").relative_to(rootpath)
    except ValueError:
        module = Path(test_file.stem)
    return cassette_dir / module / name
