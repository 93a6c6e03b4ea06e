"""Drift of server-sent events: two event streams compared event by event.

A ``text/event-stream`` answer is a list of events (parsed by
``cassettes/sse.py``: id, event, data, retry), so ``baton diff`` pairs the
recording's *i*-th event with the new answer's *i*-th and compares them:

* ``data`` with the same comparison as bodies (``replay/comparison.py``:
  JSON through deepdiff, text by lines), located by the event's number as
  ``baton show`` counts it: ``event 3 body.price``. ``--ignore`` rules and
  learned noise apply to the location inside the data (``body.sent_at``
  silences it in every event) and to the whole one (``--ignore-regex
  'event \\d+ id'``);
* the event type (``event``) changed is ``breaking`` — a consumer listening
  for ``tick`` no longer hears it; ``id`` and ``retry`` changed are ``value``;
* a recorded event the new answer lacks is ``breaking``, one more is
  ``additive``.

The pieces' boundaries and times are not compared: how a server's writes
were cut into TCP segments is not drift.
"""

from __future__ import annotations

import json
from dataclasses import replace

from baton.cassettes.model import Response
from baton.cassettes.sse import SseEvent, is_event_stream, parse_events
from baton.replay.comparison import (
    Change,
    DriftClass,
    NoiseRules,
    compare_responses,
    decoded_body,
)

__all__ = ["compare_event_streams", "events_of"]


def events_of(response: Response) -> list[SseEvent]:
    """The events of a recorded or fresh answer (content-encoding undone)."""
    return parse_events(decoded_body(response))


def _shown(event: SseEvent) -> str:
    head = ", ".join(
        part
        for part in (
            f"id {event.id}" if event.id is not None else "",
            event.event or "",
        )
        if part
    )
    return f"{head}: {event.data}" if head else event.data


def _data_response(data: str) -> Response:
    try:
        json.loads(data)
    except ValueError:
        kind = "text/plain; charset=utf-8"
    else:
        kind = "application/json"
    return Response(200, headers=(("Content-Type", kind),), body=data.encode("utf-8"))


def compare_event_streams(
    recorded: Response, fresh: Response, endpoint: str, rules: NoiseRules | None = None
) -> list[Change] | None:
    """Every difference between two event streams, event by event; None unless both are streams."""
    if not (is_event_stream(recorded.headers) and is_event_stream(fresh.headers)):
        return None
    if recorded.body is None:
        return []  # not captured: nothing to hold the new answer to
    rules = rules or NoiseRules()
    old, new = events_of(recorded), events_of(fresh)
    raw: list[Change] = []
    for index, before in enumerate(old):
        where = f"event {index + 1}"
        if index >= len(new):
            raw.append(Change(DriftClass.BREAKING, "event_missing", where, _shown(before), None))
            continue
        after = new[index]
        if before.type != after.type:
            raw.append(
                Change(
                    DriftClass.BREAKING,
                    "event_type_changed",
                    f"{where} event",
                    before.type,
                    after.type,
                )
            )
        if before.id != after.id:
            raw.append(
                Change(DriftClass.VALUE, "event_id_changed", f"{where} id", before.id, after.id)
            )
        if before.retry != after.retry:
            raw.append(
                Change(
                    DriftClass.VALUE, "retry_changed", f"{where} retry", before.retry, after.retry
                )
            )
        if before.data != after.data:
            for change in compare_responses(
                _data_response(before.data), _data_response(after.data), endpoint, rules
            ):
                raw.append(replace(change, location=f"{where} {change.location}"))
    for index in range(len(old), len(new)):
        raw.append(
            Change(
                DriftClass.ADDITIVE, "event_added", f"event {index + 1}", None, _shown(new[index])
            )
        )
    out = []
    for change in raw:
        if change.drift is DriftClass.NOISE:
            out.append(change)
            continue
        rule = rules.rule_for(endpoint, change.location)
        out.append(replace(change, drift=DriftClass.NOISE, rule=rule) if rule else change)
    return out
