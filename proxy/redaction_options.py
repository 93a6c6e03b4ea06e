"""The redaction options of every addon that writes a cassette, declared and read in one place.

The Recorder writes what it proxies; the Replayer writes what it forwards in
``new_episodes`` and ``all``. Both must apply the same rules, or a secret the
team configured would reach the disk through the second door. mitmproxy
accepts the same option declared identically by two addons, so both declare
these and both can be loaded together (``mitmdump -s "$(baton addon-path)"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from baton.cassettes.redaction import RedactionRules, Redactor, load_or_create_key

__all__ = [
    "REDACTION_OPTIONS",
    "declare_redaction_options",
    "redaction_addon_options",
    "redactor_from_options",
]

REDACTION_OPTIONS = frozenset(
    {
        "baton_redact_headers",
        "baton_redact_fields",
        "baton_redact_json_paths",
        "baton_redact_regex",
        "baton_redact_defaults",
        "baton_redaction_key_file",
    }
)


def declare_redaction_options(add: Callable[..., None]) -> None:
    """Declare the ``baton_redact_*`` options with ``loader.add_option``."""
    add("baton_redact_headers", Sequence[str], [], "Also redact these headers (globs allowed).")
    add(
        "baton_redact_fields",
        Sequence[str],
        [],
        "Also redact query, form and JSON fields of these names.",
    )
    add(
        "baton_redact_json_paths",
        Sequence[str],
        [],
        "Also redact the values at these JSON paths, e.g. $.user.ssn.",
    )
    add(
        "baton_redact_regex",
        Sequence[str],
        [],
        "Also redact whatever these regular expressions match (group 1 if any).",
    )
    add("baton_redact_defaults", bool, True, "Apply baton's default redaction rules.")
    add(
        "baton_redaction_key_file",
        str | None,
        None,
        "Key for redaction placeholders (default ~/.config/baton/redaction.key).",
    )


def redactor_from_options(options: Any) -> Redactor:
    """The ``Redactor`` the options describe; ``RedactionError`` for a bad rule or key."""
    rules = RedactionRules.build(
        headers=options.baton_redact_headers,
        fields=options.baton_redact_fields,
        json_paths=options.baton_redact_json_paths,
        patterns=options.baton_redact_regex,
        defaults=options.baton_redact_defaults,
    )
    return Redactor(rules, load_or_create_key(options.baton_redaction_key_file))


def redaction_addon_options(
    *,
    headers: Sequence[str] = (),
    fields: Sequence[str] = (),
    json_paths: Sequence[str] = (),
    patterns: Sequence[str] = (),
    defaults: bool = True,
    key_file: str | None = None,
) -> dict[str, Any]:
    """The ``baton_redact_*`` option values for these rules, for ``ProxySettings.options``."""
    return {
        "baton_redact_headers": list(headers),
        "baton_redact_fields": list(fields),
        "baton_redact_json_paths": list(json_paths),
        "baton_redact_regex": list(patterns),
        "baton_redact_defaults": defaults,
        "baton_redaction_key_file": key_file,
    }
