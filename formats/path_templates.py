"""URL paths as OpenAPI path templates: ``/orders/42`` and ``/orders/43`` are ``/orders/{id}``.

Three rules, in order:

1. A template the user gave (``--path-template /carts/{cart}/items``) wins
   wherever it matches, with its own parameter names.
2. A segment that can only be an identifier is a parameter at once:
   digits, a UUID, a hex string of 8 or more characters with a digit in it,
   or a long token mixing letters and digits.
3. A segment that looks like a slug (``espresso-cup``, ``ch_1001``,
   ``v2-beta``) is a parameter only when several such values were seen in
   the same place (the same segments before and after): one slug is a name,
   many are data.

Parameters are called ``id`` when a path has one, else after the literal
segment before each (``/carts/{cartId}/items/{itemId}``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PARAMETER", "PathTemplate", "TemplateRules", "parameter_kind"]

PARAMETER = "{}"
"""A templated segment before it is named."""

_DIGITS = re.compile(r"^\d+$")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_HEX = re.compile(r"^(?=.*\d)[0-9a-fA-F]{8,}$")
_TOKEN = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{16,}$")
_SLUG = re.compile(
    r"^(?=.*[A-Za-z])[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)+$|^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9]+$"
)
_SLUG_SIBLINGS = 3
_USER_PARAMETER = re.compile(r"\{([^{}/]+)\}")


def _is_identifier(segment: str) -> bool:
    return bool(
        _DIGITS.match(segment)
        or _UUID.match(segment)
        or _HEX.match(segment)
        or _TOKEN.match(segment)
    )


def parameter_kind(values: Iterable[str]) -> dict[str, str]:
    """The schema of a path parameter from the values seen: integer, uuid string, or string."""
    seen = list(values)
    if seen and all(_DIGITS.match(v) for v in seen):
        return {"type": "integer"}
    if seen and all(_UUID.match(v) and "-" in v for v in seen):
        return {"type": "string", "format": "uuid"}
    return {"type": "string"}


@dataclass(frozen=True)
class PathTemplate:
    """A template, and which segments of it are parameters (with their names)."""

    segments: tuple[str, ...]
    """Literal segments, and ``{name}`` for parameters."""

    @property
    def text(self) -> str:
        return "/" + "/".join(self.segments) if self.segments else "/"

    @property
    def parameters(self) -> list[tuple[int, str]]:
        """(segment index, name) of each parameter, in order."""
        return [
            (n, s[1:-1])
            for n, s in enumerate(self.segments)
            if s.startswith("{") and s.endswith("}")
        ]


class TemplateRules:
    """Turns the paths of one host into templates (see the module's docstring)."""

    def __init__(self, user_templates: Iterable[str] = ()) -> None:
        self._user: list[tuple[re.Pattern[str], tuple[str, ...]]] = []
        for template in user_templates:
            segments = tuple(s for s in template.strip().split("/") if s)
            parts = []
            for segment in segments:
                match = _USER_PARAMETER.fullmatch(segment)
                parts.append("([^/]+)" if match else re.escape(segment))
            self._user.append((re.compile("^/" + "/".join(parts) + "/?$"), segments))

    def first_pass(self, path: str) -> tuple[str, ...]:
        """Segments with identifiers (and user templates) already replaced; slugs kept for now."""
        for pattern, segments in self._user:
            if pattern.match(path):
                return segments
        return tuple(PARAMETER if _is_identifier(s) else s for s in _split(path))

    def second_pass(self, paths: Iterable[tuple[str, ...]]) -> dict[tuple[str, ...], PathTemplate]:
        """Each first-pass path -> its final template, slugs that vary in one place merged."""
        found = set(paths)
        merged = {p: list(p) for p in found}
        groups: dict[tuple[int, tuple[str, ...], tuple[str, ...]], set[str]] = defaultdict(set)
        for path in found:
            if self._is_user(path):
                continue
            for n, segment in enumerate(path):
                if n > 0 and _SLUG.match(segment) and not segment.startswith("{"):
                    groups[(n, path[:n], path[n + 1 :])].add(segment)
        for (n, before, after), values in groups.items():
            if len(values) < _SLUG_SIBLINGS:
                continue
            for value in values:
                merged[(*before, value, *after)][n] = PARAMETER
        return {path: _named(tuple(segments)) for path, segments in merged.items()}

    def _is_user(self, path: tuple[str, ...]) -> bool:
        return any(path == segments for _, segments in self._user)


def _split(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _named(segments: tuple[str, ...]) -> PathTemplate:
    """Name every unnamed parameter: ``id`` alone, else after the literal before it."""
    unnamed = [n for n, s in enumerate(segments) if s == PARAMETER]
    taken = {s[1:-1] for s in segments if s.startswith("{") and s != PARAMETER}
    named = list(segments)
    for n in unnamed:
        if len(unnamed) == 1 and not taken:
            name = "id"
        else:
            before = segments[n - 1] if n > 0 and not segments[n - 1].startswith("{") else "item"
            name = _camel(_singular(before)) + "Id"
        base, number = name, 2
        while name in taken:
            name, number = f"{base}{number}", number + 1
        taken.add(name)
        named[n] = "{" + name + "}"
    return PathTemplate(tuple(named))


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith("ses") or word.endswith("xes"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 1:
        return word[:-1]
    return word


def _camel(word: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", word) if p]
    if not parts:
        return "item"
    first, rest = parts[0], parts[1:]
    return first[0].lower() + first[1:] + "".join(p[:1].upper() + p[1:] for p in rest)
