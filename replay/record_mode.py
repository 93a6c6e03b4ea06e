"""Record modes, with VCR.py's names and meanings."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RecordMode"]


class RecordMode(StrEnum):
    """When replay may touch the network.

    ``none``: never; every request is answered from the cassettes or missed.
    ``once``: record if the cassette does not exist yet, else as ``none``.
    ``new_episodes``: answer what the cassettes hold, forward the rest to the
    real upstream and append it.
    ``all``: forward everything and record it afresh (the old cassette is kept
    as ``.bak``).
    """

    NONE = "none"
    ONCE = "once"
    NEW_EPISODES = "new_episodes"
    ALL = "all"
