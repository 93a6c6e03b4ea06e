"""``append_async``: small interactions on an idle writer are appended on the loop, in order.

The recorder's response hook awaits ``append_async``. A hop to the writer
thread and back cost more CPU than redacting, packing and writing a small
interaction, so an idle writer appends it on the event loop; anything with
streams, a batch already on the thread, ``fsync=every`` or a disk that was
slow goes to the thread. These tests hold the order of appends and the way
back to the thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from baton.cassettes import read_cassette
from baton.cassettes.model import Chunk, Interaction, Request, Response
from baton.cassettes.writer import CassetteWriter

EVENTS = b"e" * 512 * 400
"""A streamed body long enough that its batch is still on the thread when later appends come."""


def _small(number: int) -> Interaction:
    return Interaction(
        f"small-{number}",
        Request("GET", "http", "api.test", 80, f"/items/{number}"),
        Response(200, "OK", headers=(("Content-Type", "application/json"),), body=b'{"n": 1}'),
        float(number),
    )


def _streamed(number: int) -> Interaction:
    return Interaction(
        f"streamed-{number}",
        Request("GET", "http", "api.test", 80, "/events"),
        Response(
            200, "OK", body=EVENTS, chunks=tuple(Chunk(float(n), b"e" * 512) for n in range(400))
        ),
        float(number),
    )


def test_appends_keep_their_order_when_some_go_to_the_thread(tmp_path: Path) -> None:
    cassette = tmp_path / "order.cassette"
    calls = [_streamed(n) if n % 7 == 3 else _small(n) for n in range(60)]

    async def record() -> None:
        with CassetteWriter(cassette, redactor=None) as writer:
            tasks = []
            for interaction in calls:  # each hook starts while earlier ones may be on the thread
                tasks.append(asyncio.create_task(writer.append_async(interaction)))
                await asyncio.sleep(0)
            await asyncio.gather(*tasks)
            for interaction in calls[:5]:  # one at a time: each finds the writer idle
                await writer.append_async(interaction)

    asyncio.run(record())
    assert [i.id for i in read_cassette(cassette)] == [i.id for i in calls + calls[:5]]


def test_a_slow_inline_append_sends_the_next_ones_to_the_thread(tmp_path: Path) -> None:
    cassette = tmp_path / "slow.cassette"

    async def record() -> tuple[bool, bool]:
        with CassetteWriter(cassette, redactor=None) as writer:
            await writer.append_async(_small(1))
            inline_first = writer._executor is None
            writer.SLOW_INLINE = -1.0  # every append now looks slow: as a stalled disk would
            await writer.append_async(_small(2))
            await writer.append_async(_small(3))
            return inline_first, writer._executor is not None

    inline_first, threaded_after = asyncio.run(record())
    assert inline_first and threaded_after
    assert [i.id for i in read_cassette(cassette)] == ["small-1", "small-2", "small-3"]


def test_fsync_every_always_uses_the_thread(tmp_path: Path) -> None:
    cassette = tmp_path / "fsync.cassette"

    async def record() -> bool:
        with CassetteWriter(cassette, redactor=None, fsync="every") as writer:
            await writer.append_async(_small(1))
            return writer._executor is not None

    assert asyncio.run(record())
    assert [i.id for i in read_cassette(cassette)] == ["small-1"]
