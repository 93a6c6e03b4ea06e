"""baton: record the HTTP traffic between services, replay it in tests, diff new builds against it.

The repository keeps its folders at the top level; installed, they are the
subpackages of this one, each with its own public surface:

    baton.cassettes   the format: Interaction, CassetteReader/Writer, redaction
    baton.formats     foreign formats: HAR, VCR.py, mitmproxy flows
    baton.replay      matching, the replay server, comparison and drift (no mitmproxy)
    baton.proxy       the mitmproxy edge: Recorder and Replayer addons, the pytest plugin, the CLI

Imports point one way: cassettes <- formats, replay <- proxy <- proxy.cli.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Read from the installed metadata on first use only: importlib.metadata
    # costs tens of milliseconds at every start of the CLI and of pytest.
    if name != "__version__":
        raise AttributeError(f"module 'baton' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("baton-replay")
    except PackageNotFoundError:  # a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
