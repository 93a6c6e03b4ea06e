"""Counts in words for people: ``1 interaction``, ``2 interactions``, ``1 miss``, ``3 misses``.

In the lowest layer so that every part that prints a count (the replay
summary in ``replay/``, the status lines in ``proxy/``, ``baton show``)
words it the same way, and none prints "1 interactions".
"""

from __future__ import annotations

__all__ = ["plural"]

_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless ``count`` is 1.

    The plural is ``many`` if given, else the noun with ``es`` after a
    sibilant (``miss`` -> ``misses``) and ``s`` otherwise; a phrase is
    pluralised in its last word (``recorded interaction`` -> ``recorded
    interactions``).
    """
    if count == 1:
        return f"{count} {noun}"
    if many is None:
        many = noun + ("es" if noun.endswith(_SIBILANT_ENDINGS) else "s")
    return f"{count} {many}"
