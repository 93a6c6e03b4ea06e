"""The run log: which recorded interactions a replay served, for ``baton prune``.

A replay (``--run-log FILE``) writes, when it stops, the cassettes it read
and the id of every interaction it answered with, with how often. Several
run logs (one per CI job, one per test session) can be given to ``baton
prune``: an interaction is used if any of them served it.

The file is JSON, written through a temporary file and ``os.replace``, so a
replay killed while writing leaves the previous log or none, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from baton.replay.index import Index

__all__ = ["RUN_LOG_FORMAT", "read_served", "write_run_log"]

RUN_LOG_FORMAT = "baton-run-log"


def write_run_log(path: Path, index: Index, cassettes: Iterable[Path]) -> None:
    """Write what ``index`` served to ``path`` (atomically)."""
    served: dict[str, int] = {}
    for number, count in enumerate(index.served):
        if count:  # only what was served: an interaction of an opened table is built on access
            identity = index.interactions[number].id
            served[identity] = served.get(identity, 0) + count
    document = {
        "format": RUN_LOG_FORMAT,
        "version": 1,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cassettes": [str(p) for p in cassettes],
        "interactions": len(index.interactions),
        "hits": index.hits,
        "misses": len(index.misses),
        "served": served,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1, sort_keys=True)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_served(path: Path) -> tuple[set[str], list[Path]]:
    """The ids a run log says were served, and the cassettes it replayed; ``ValueError``
    naming the file if it is not a run log."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no such run log") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a baton run log ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != RUN_LOG_FORMAT:
        raise ValueError(f"{path}: not a baton run log (write one with baton replay --run-log)")
    served = document.get("served")
    cassettes = document.get("cassettes")
    if not isinstance(served, dict) or not isinstance(cassettes, list):
        raise ValueError(f"{path}: a run log without its 'served' map or 'cassettes' list")
    return {str(key) for key in served}, [Path(str(c)) for c in cassettes]
