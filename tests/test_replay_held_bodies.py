"""Large bodies held whole (imported, or recorded without streaming) on the fast path."""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from baton.cassettes.model import Interaction, Request, Response
from baton.replay.index import Index
from baton.replay.matching import MatchConfig
from baton.replay.server import HELD_BODY_LIMIT, HeldBody, ReplayServer

BODY = bytes(range(256)) * ((HELD_BODY_LIMIT * 2) // 256)


def _interaction(path: str, headers: tuple[tuple[str, str], ...]) -> Interaction:
    request = Request("GET", "http", "files.test", 80, path)
    return Interaction(path, request, Response(200, "OK", headers=headers, body=BODY), 1.0, 1.0)


def test_a_large_held_body_goes_out_as_recorded_without_a_joined_copy() -> None:
    index = Index(
        [
            _interaction("/length", (("Content-Length", str(len(BODY))),)),
            _interaction("/chunked", (("Transfer-Encoding", "chunked"),)),
        ],
        MatchConfig.build(address=False),
    )

    async def run() -> tuple[list[tuple[int, str, str]], list[object]]:
        server = ReplayServer(index)
        host, port = await server.start()
        seen = []
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                for path in ("/length", "/chunked", "/length"):  # twice on one connection
                    answer = await client.get(f"http://{host}:{port}{path}")
                    digest = hashlib.sha256(answer.content).hexdigest()
                    seen.append((answer.status_code, digest, answer.headers.get("content-length")))
        finally:
            await server.close()
        return seen, list(server._responses)

    seen, kept = asyncio.run(run())
    whole = hashlib.sha256(BODY).hexdigest()
    assert seen == [(200, whole, str(len(BODY))), (200, whole, None), (200, whole, str(len(BODY)))]
    # Kept as pieces that share the recorded body's bytes, not as one more copy of them.
    assert all(isinstance(answer, HeldBody) for answer in kept)
    assert all(any(piece is BODY for piece in answer.pieces) for answer in kept)  # type: ignore[union-attr]
