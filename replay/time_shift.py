"""``--shift-time``: dates in replayed answers moved by the time since the recording.

A token recorded with ``"expires_at": "2026-01-01T10:00:00Z"`` has expired
by the time the cassette is replayed a month later. With a shift, every date
in an answer moves by ``target - recorded``, where ``recorded`` is when the
cassette's first interaction started and ``target`` is now (or a moment the
user names, to replay as if it were then). One offset for the whole replay:
the intervals between dates stay as recorded.

What moves: HTTP dates in ``Date``, ``Expires``, ``Last-Modified`` and
``Set-Cookie``'s ``expires=``; ISO-8601 times anywhere in a text body, each
written back in its own format (precision and zone kept); epoch times
(seconds or milliseconds, 2000-2100) in JSON fields whose name says time
(``*_at``, ``*At``, ``expires``, ``exp``, ``iat``, ``nbf``, ``timestamp``, ``epoch``,
``time``) or that ``--time-field`` names. The body is edited as text, so
everything else in it stays byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from baton.cassettes.model import Response, header_values

__all__ = ["TimeShift", "parse_target"]

_DATE_HEADERS = frozenset({"date", "expires", "last-modified"})
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?P<sep>[T ])(?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?P<fraction>\.\d{1,9})?(?P<zone>Z|[+-]\d{2}:?\d{2})?"
)
_TIME_NAME = (
    r"[\w-]*(?:_at|At|expires|Expires|exp|iat|nbf|timestamp|Timestamp|time|Time|epoch|Epoch)"
)
_EPOCH_SECONDS = (946_684_800, 4_102_444_800)
_COOKIE_EXPIRES = re.compile(r"(?i)(expires=)([^;]+)")


def parse_target(text: str) -> datetime:
    """``now`` or an ISO-8601 time (UTC if it names no zone); ``ValueError`` otherwise."""
    if text.strip().lower() in ("", "now"):
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"shift-time {text!r}: give now or an ISO-8601 time such as 2027-01-01T00:00:00Z"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TimeShift:
    """Moves dates in answers by ``offset``."""

    offset: timedelta
    fields: tuple[str, ...] = ()
    """JSON field names (the last part of ``--time-field`` paths) holding epoch times."""

    @classmethod
    def between(cls, recorded_at: float, target: datetime, fields: Iterable[str] = ()) -> TimeShift:
        """The shift that takes ``recorded_at`` (epoch seconds) to ``target``."""
        recorded = datetime.fromtimestamp(recorded_at, UTC)
        names = tuple(re.split(r"[.\[\]]", f.strip())[-1] or f for f in fields if f.strip())
        return cls(target - recorded, names)

    def apply(self, response: Response) -> Response:
        """``response`` with its dates moved (itself when nothing moved)."""
        headers = tuple((name, self._header(name, value)) for name, value in response.headers)
        body = response.body
        encoding = header_values(response.headers, "content-encoding")
        if (
            body
            and response.chunks is None
            and response.stored is None
            and (not encoding or encoding[0].lower() == "identity")
            and not _binary(response)
        ):
            text = body.decode("utf-8", "surrogateescape")
            moved = self._text(text)
            if moved != text:
                body = moved.encode("utf-8", "surrogateescape")
                headers = tuple(
                    (name, str(len(body)) if name.lower() == "content-length" else value)
                    for name, value in headers
                )
        if body is response.body and headers == response.headers:
            return response
        return replace(response, headers=headers, body=body)

    def _header(self, name: str, value: str) -> str:
        lower = name.lower()
        if lower in _DATE_HEADERS:
            return self._http_date(value)
        if lower == "set-cookie":
            return _COOKIE_EXPIRES.sub(lambda m: m.group(1) + self._http_date(m.group(2)), value)
        return value

    def _http_date(self, value: str) -> str:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return format_datetime((moment + self.offset).astimezone(UTC), usegmt=True)

    def _text(self, text: str) -> str:
        text = _ISO.sub(self._iso, text)
        names = _TIME_NAME
        if self.fields:
            names = "(?:" + "|".join([_TIME_NAME, *map(re.escape, self.fields)]) + ")"
        epoch = re.compile(rf'("{names}"\s*:\s*)(\d{{10}}|\d{{13}})(?![\d.])')
        return epoch.sub(self._epoch, text)

    def _iso(self, match: re.Match[str]) -> str:
        zone = match.group("zone")
        fraction = match.group("fraction") or ""
        clock = match.group("time")
        try:
            moment = datetime.fromisoformat(
                f"{match.group('date')}T{clock}{fraction[:7]}"
                + ("+00:00" if zone in (None, "Z") else zone)
            )
        except ValueError:
            return match.group(0)
        moved = moment + self.offset
        text = moved.strftime("%Y-%m-%d") + match.group("sep")
        text += moved.strftime("%H:%M:%S" if clock.count(":") == 2 else "%H:%M")
        if fraction:
            digits = len(fraction) - 1
            text += "." + f"{moved.microsecond:06d}".ljust(digits, "0")[:digits]
        if zone is not None:
            text += zone
        return text

    def _epoch(self, match: re.Match[str]) -> str:
        digits = match.group(2)
        millis = len(digits) == 13
        seconds = int(digits) / (1000 if millis else 1)
        if not _EPOCH_SECONDS[0] <= seconds <= _EPOCH_SECONDS[1]:
            return match.group(0)
        moved = seconds + self.offset.total_seconds()
        return match.group(1) + str(round(moved * 1000) if millis else round(moved))


def _binary(response: Response) -> bool:
    types = header_values(response.headers, "content-type")
    kind = types[0].lower() if types else ""
    return bool(kind) and not any(t in kind for t in ("json", "text", "xml", "javascript", "form"))
