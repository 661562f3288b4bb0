"""Serving on stdin/stdout: a reader thread feeds the frame decoder, the event loop handles.

Why a thread: pygls's `start_io` reads with the reader whose failures `framing` lists, and
asyncio's pipe transport refuses a stdin that is a regular file (a replayed session, a test's
input), while a blocking read in a thread takes any stdin. The queue between them is bounded, so
a client that writes faster than we handle waits in its write, not in our memory.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

from pygls.io_ import StdoutWriter

from fimlsp.lsp.framing import FrameDecoder, Truncated
from fimlsp.lsp.protocol import FimProtocol, dispatch

log = logging.getLogger("fimlsp.protocol")


@dataclass(frozen=True)
class _End:
    truncated: Truncated | None


@dataclass(frozen=True)
class _Crash:
    error: BaseException


def serve_stdio(protocol: FimProtocol, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None) -> int:
    """Runs the server on stdin/stdout until `exit` or the end of input; returns the exit code.

    0: `exit` after `shutdown`, or stdin closed between messages; 1: `exit` without `shutdown`,
    stdin closed inside a message, the reader failing or stdout gone (each with a line on
    stderr)."""
    protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
    return asyncio.run(_serve(protocol, stdin or sys.stdin.buffer))


async def _serve(protocol: FimProtocol, stdin: BinaryIO) -> int:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=16)
    threading.Thread(target=_pump, args=(stdin, loop, queue), name="fimlsp-stdin",
                     daemon=True).start()
    while True:
        for item in await queue.get():
            try:
                code = _handle(protocol, item)
            except SystemExit as exit_:
                return exit_.code if isinstance(exit_.code, int) else 1
            except BrokenPipeError:
                log.error("the client closed our stdout; exiting")
                return 1
            if code is not None:
                return code
            # Let the handler just started take its first step (a completion reads the document
            # there) before the next message changes the document: messages act in order.
            await asyncio.sleep(0)


def _handle(protocol: FimProtocol, item: Any) -> int | None:
    """An event from the reader thread; the exit code once stdin has ended or failed."""
    if isinstance(item, _End):
        if item.truncated is not None:
            log.error("stdin: %s; exiting", item.truncated.reason)
            return 1
        log.info("stdin closed; exiting")
        return 0
    if isinstance(item, _Crash):
        log.error("reading stdin failed; exiting", exc_info=item.error)
        return 1
    dispatch(protocol, item)
    return None


def _pump(stdin: BinaryIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[list[Any]]
          ) -> None:
    """The reader thread: stdin → decoder → the event loop, one batch of events per read."""

    def put(items: list[Any]) -> bool:
        put = queue.put(items)
        try:
            asyncio.run_coroutine_threadsafe(put, loop).result()
            return True
        except Exception:  # the loop is closed or cancelled the put: the server is ending
            put.close()
            return False

    decoder = FrameDecoder()
    read = getattr(stdin, "read1", stdin.read)
    try:
        while True:
            chunk = read(1 << 16)
            if not chunk:
                put([_End(decoder.finish())])
                return
            events = decoder.feed(chunk)
            if events and not put(list(events)):
                return
    except BaseException as error:  # reported on the loop, which exits 1
        put([_Crash(error)])
