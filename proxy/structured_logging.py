"""``--log-format json``: one JSON object per line on stderr, for log shippers.

Each line has ``ts`` (UTC, RFC 3339 with milliseconds), ``level``,
``logger`` and ``message``, plus the fields a record was logged with
(``extra=``): the access records of ``baton.access`` carry ``method``,
``url``, ``status``, ``duration_ms`` and ``trace_id`` (W3C ``traceparent``
or B3, when the request had one). In JSON mode those access records are on
by default (INFO); ``-q`` turns them off. A line is never split: newlines
inside a message are escaped by JSON.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "JsonLinesStderr", "use_log_format"]

LOG_FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def use_log_format(fmt: str, *, quiet: bool) -> None:
    """Switch the handlers ``configure_logging`` installed to ``fmt`` (text leaves them alone)."""
    access = logging.getLogger("baton.access")
    if fmt != "json":
        return
    if not isinstance(sys.stderr, JsonLinesStderr):
        sys.stderr = JsonLinesStderr(sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
    if not quiet and access.getEffectiveLevel() > logging.INFO:
        access.setLevel(logging.INFO)


class JsonLinesStderr(io.TextIOBase):
    """stderr for JSON mode: a line that is not JSON already becomes ``{"message": line}``.

    ``baton record`` and ``baton replay`` print their start and summary lines
    with ``click.echo``; wrapping them here keeps every line of stderr one
    JSON object without changing each place that prints.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            while "\n" in self._pending:
                line, self._pending = self._pending.split("\n", 1)
                self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if not line.strip():
            return
        if not line.startswith("{"):
            level = "error" if line.startswith("baton: error:") else "info"
            line = json.dumps(
                {
                    "ts": datetime.now(UTC)
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                    "level": level,
                    "logger": "baton",
                    "message": line.removeprefix("baton: "),
                },
                ensure_ascii=False,
            )
        self._target.write(line + "\n")
        self._target.flush()

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._emit(self._pending)
                self._pending = ""
        self._target.flush()
