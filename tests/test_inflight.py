"""A keystroke typed into a generation that is still running takes it over (fimlsp/inflight.py).

In process, on the real server object with the trained fixture and its real completer: the
generation of the first request is held at its first token by a gated `Progress` (the one seam:
without it, whether the client's cancel lands before the generation ends is a race on the
machine's speed). Every answer must equal what a fresh completer computes at that cursor.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types as t

from fimlsp import answering, inflight
from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.context import Cursor
from fimlsp.server import FimServer, create_server

pytestmark = pytest.mark.slow

TEXT = ('import os\n\n\ndef read_config(path):\n    """Read the configuration file."""\n'
        "    with open(path) as handle:\n        return handle.read()\n\n\n"
        "def write_config(path, text):\n    with open(path, ")
URI = "file:///work/inflight.py"


class Gate(inflight.Progress):
    """Holds the generation at its first token until the test lets it go."""

    started = threading.Event()
    release = threading.Event()

    def wrote(self, text: str) -> bool:
        Gate.started.set()
        Gate.release.wait(timeout=120)
        return super().wrote(text)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Gate]]:
    Gate.started, Gate.release = threading.Event(), threading.Event()
    monkeypatch.setattr(answering, "Progress", Gate)
    yield Gate
    Gate.release.set()


def settings_for(model: Path) -> Settings:
    # fp32, no time budget, no prefetch: answers that depend only on the prompt
    return Settings(model=str(model), quantization="none", max_new_tokens=24,
                    time_budget_ms=600000, prefetch=False, repo_context=False)


class Discard:
    """The transport's writer: what the server sends the client is not looked at here."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


async def ready_server(model: Path) -> FimServer:
    ls = create_server(settings_for(model))
    ls.protocol.set_writer(Discard())  # type: ignore[arg-type]
    ls.protocol.handle_message({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                "params": {"processId": None, "capabilities": {}}})
    await ls.load_model()
    assert ls.state == "ready", ls.load_error
    return ls


def cursor_at_end(ls: FimServer, text: str) -> Cursor:
    ls.documents.open(URI, text)
    lines = text.split("\n")
    return ls.cursor(URI, t.Position(line=len(lines) - 1, character=len(lines[-1])), None)


def reference(model: Path, text: str) -> str:
    completer = Completer(settings_for(model))
    completer.load()
    lines = text.split("\n")
    return completer.complete("ref.py", completer.cursor_for(text, len(lines) - 1,
                                                             len(lines[-1]))).text


async def cancelled_while_generating(ls: FimServer, gate: type[Gate], text: str) -> None:
    task = asyncio.ensure_future(ls.answerer.complete(URI, cursor_at_end(ls, text)))
    await asyncio.get_running_loop().run_in_executor(None, gate.started.wait, 120)
    task.cancel()  # the client's $/cancelRequest: the user typed
    with pytest.raises(asyncio.CancelledError):
        await task
    flight = ls.answerer.flights.get(URI)
    assert flight is not None and flight.orphan


async def test_typing_what_the_generation_writes_takes_it_over(
        trained_model: Path, gated: type[Gate]) -> None:
    full = reference(trained_model, TEXT)
    assert len(full) > 2, full
    ls = await ready_server(trained_model)
    try:
        await cancelled_while_generating(ls, gated, TEXT)
        typed = full[0]
        follow = asyncio.ensure_future(
            ls.answerer.complete(URI, cursor_at_end(ls, TEXT + typed)))
        await asyncio.sleep(0)  # the follower is waiting on the held generation
        gated.release.set()
        answer = await follow
        assert answer is not None and answer.text == full[1:]
        stats = ls.completer.stats_report()
        assert stats["taken_over"] == 1 and stats["orphaned"] == 1
        assert stats["generated"] == answer.generated_tokens  # one generation, not two
    finally:
        ls.scheduler.shutdown()


async def test_typing_something_else_starts_over(trained_model: Path, gated: type[Gate]
                                                 ) -> None:
    ls = await ready_server(trained_model)
    try:
        await cancelled_while_generating(ls, gated, TEXT)
        first = reference(trained_model, TEXT)
        typed = "#" if not first.startswith("#") else "@"
        gated.release.set()
        answer = await ls.answerer.complete(URI, cursor_at_end(ls, TEXT + typed))
        expected = reference(trained_model, TEXT + typed)
        assert (answer.text if answer else "") == expected
        assert ls.completer.stats_report().get("taken_over", 0) == 0
    finally:
        ls.scheduler.shutdown()


async def test_an_orphan_nobody_took_over_is_typed_into_later(
        trained_model: Path, gated: type[Gate]) -> None:
    full = reference(trained_model, TEXT)
    ls = await ready_server(trained_model)
    try:
        await cancelled_while_generating(ls, gated, TEXT)
        flight = ls.answerer.flights.get(URI)
        assert flight is not None
        gated.release.set()
        await asyncio.wrap_future(flight.future)
        await asyncio.sleep(0)  # its landing callback, queued on the loop
        assert ls.answerer.flights.get(URI) is None
        answer = await ls.answerer.complete(URI, cursor_at_end(ls, TEXT + full[0]))
        assert answer is not None and answer.text == full[1:] and answer.source == "cache"
    finally:
        ls.scheduler.shutdown()


def test_progress_follows_only_consistent_typing() -> None:
    progress = inflight.Progress()
    assert progress.wrote("ret")
    assert progress.follow("re") and progress.follow("retu")
    assert not progress.wrote("rex")  # parts from what was typed
    assert not progress.follow("x")
    fresh = inflight.Progress()
    assert fresh.follow("abc") and fresh.wrote("ab") and not fresh.wrote("abd")
