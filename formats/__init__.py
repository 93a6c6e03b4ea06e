"""Foreign formats: recordings other tools write (HAR, VCR.py, mitmproxy flows), in and out.

Each importer turns a foreign file into ``Interaction`` values and says what
it could not keep; nothing here reaches matching or comparison. Only
``formats.mitmproxy_flows`` imports mitmproxy, and only when a flow file is
imported.
"""

from __future__ import annotations

from baton.formats.detect import SourceError, SourceFormat, detect_format, import_file
from baton.formats.har import HarError, export_har, import_har
from baton.formats.imported import ImportResult, Skipped
from baton.formats.vcr import VcrError, import_vcr

__all__ = [
    "HarError",
    "ImportResult",
    "Skipped",
    "SourceError",
    "SourceFormat",
    "VcrError",
    "detect_format",
    "export_har",
    "import_file",
    "import_har",
    "import_vcr",
]
