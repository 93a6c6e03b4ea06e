"""A report over a pipe's 64 KiB reaches a reader that is slow to read it, after uvloop ran.

After uvloop has served and opened TCP connections in a process (as ``baton
diff --target`` and ``baton load`` do), a large write to a full pipe came
back short and Python's text layer dropped the rest, silently. The real
uvloop, a real pipe and a reader that lets the pipe fill before reading.
With ``click.echo`` in place of ``write_whole``, this child lost all but
64 KiB on Python 3.11 (uvloop 0.23), and on 3.12 only sometimes.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytest.importorskip("uvloop")

CHILD = """
import asyncio, sys, uvloop

async def main():
    async def answer(reader, writer):
        await reader.read(100)
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\\r\\n\\r\\n")
        await reader.read(100)
        writer.close()
    server.close()

uvloop.run(main())
REPORT = "{\\"report\\": \\"" + "x" * 156000 + "\\"}"  # compact JSON, one line
if sys.argv[1] == "write_whole":
    from baton.proxy.cli.standard_output import write_whole
    write_whole(REPORT)
else:
    import click
    click.echo(REPORT, nl=False)
"""


def _read_slowly(how: str) -> bytes:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(1.5)  # the child fills the pipe and waits on it meanwhile
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    return out


def test_write_whole_delivers_a_report_larger_than_a_pipe_after_uvloop_ran() -> None:
    out = _read_slowly("write_whole")
    assert out == b'{"report": "' + b"x" * 156000 + b'"}'
