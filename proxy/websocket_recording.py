"""Record WebSocket conversations as they pass: every message as a part, the handshake at the end.

mitmproxy calls ``response`` for the ``101`` and then ``websocket_start``,
one ``websocket_message`` per message (either direction) and
``websocket_end``. A conversation can last hours and carry any number of
messages, so none is held: each is written to the cassette as a part record
the moment it passes (redacted on the way, ``Redactor.conversation``), and
the interaction holding the handshake — request, the ``101``, how the
connection closed — is appended once, at ``websocket_end``, naming those
parts. The ``Recorder`` therefore skips WebSocket flows in ``response``.

A recorder stopped mid-conversation (SIGTERM, Ctrl-C, a new cassette
configured): mitmproxy does not end the conversations it still holds, so the
Recorder appends each one as it closes its writer — every message that
passed, no close code, tagged ``websocket_unfinished``. A recorder killed
outright (SIGKILL) leaves the messages as parts that no interaction names;
readers skip them and ``baton repair`` removes them.

Offsets are milliseconds from the moment the ``101`` was complete, the
start of the conversation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from mitmproxy import http

from baton.cassettes.model import Interaction, WebSocketConversation
from baton.cassettes.redaction import MessageRedaction, Redactor
from baton.cassettes.writer import CassetteWriter, PartStream
from baton.proxy.flows import interaction_from_flow

__all__ = ["ConversationRecorder"]

logger = logging.getLogger(__name__)


@dataclass
class _Live:
    """One conversation being recorded."""

    flow: http.HTTPFlow
    writer: CassetteWriter
    stream: PartStream
    started: float
    """Epoch seconds when the 101 was complete."""
    redaction: MessageRedaction | None
    written: int = 0
    lost: int = 0


class ConversationRecorder:
    """The WebSocket conversations the ``Recorder`` is writing, by flow id."""

    def __init__(self) -> None:
        self._live: dict[str, _Live] = {}

    def __len__(self) -> int:
        return len(self._live)

    def start(self, flow: http.HTTPFlow, writer: CassetteWriter, redactor: Redactor | None) -> None:
        """Open a stream of parts for ``flow``'s messages."""
        response = flow.response
        started = (response.timestamp_end if response is not None else None) or (
            flow.request.timestamp_start
        )
        redaction = (
            redactor.conversation(interaction_from_flow(flow)) if redactor is not None else None
        )
        stream = writer.open_stream(transform=redaction)
        self._live[flow.id] = _Live(flow, writer, stream, started, redaction)

    async def message(self, flow: http.HTTPFlow) -> None:
        """Write the newest message of ``flow`` as a part; a failure is logged, the traffic goes on."""
        live = self._live.get(flow.id)
        if live is None or flow.websocket is None or not flow.websocket.messages:
            return
        message = flow.websocket.messages[-1]
        offset_ms = max(0.0, round((message.timestamp - live.started) * 1000.0, 3))
        try:
            await live.stream.write_async(
                message.content,
                offset_ms,
                from_client=message.from_client,
                is_text=message.is_text,
            )
        except Exception as exc:  # fail open: the conversation must go on
            live.lost += 1
            logger.error(
                "baton: could not record a WebSocket message of %s (%d lost): %s",
                flow.request.pretty_url,
                live.lost,
                exc,
            )
        else:
            live.written += 1

    def finish(self, flow: http.HTTPFlow) -> tuple[Interaction, dict[str, PartStream]] | None:
        """The interaction to append for a conversation that ended, with its stream; None if unknown."""
        live = self._live.pop(flow.id, None)
        if live is None:
            return None
        websocket = flow.websocket
        conversation = WebSocketConversation(
            (),
            websocket.close_code if websocket is not None else None,
            (websocket.close_reason or "") if websocket is not None else "",
            websocket.closed_by_client if websocket is not None else None,
        )
        return self._closing(flow, live, conversation), {"websocket": live.stream}

    def unfinished(self) -> list[tuple[Interaction, dict[str, PartStream]]]:
        """Every conversation still open (the recorder is stopping): its interaction, unclosed.

        Each is forgotten here, so a late ``websocket_end`` records nothing twice.
        """
        out = []
        for live in self._live.values():
            interaction = self._closing(live.flow, live, WebSocketConversation())
            out.append(
                (interaction.with_tags(websocket_unfinished=True), {"websocket": live.stream})
            )
        self._live.clear()
        return out

    @staticmethod
    def _closing(
        flow: http.HTTPFlow, live: _Live, conversation: WebSocketConversation
    ) -> Interaction:
        interaction = replace(interaction_from_flow(flow), websocket=conversation)
        tags: dict[str, object] = {}
        if live.lost:
            tags["websocket_messages_lost"] = live.lost
        if live.redaction is not None and live.redaction.changed:
            tags["redacted"] = [MessageRedaction.WHERE]
        return interaction.with_tags(**tags) if tags else interaction
