"""What the server keeps per document is bounded, holds no old text, and goes when it closes.

Measured with tracemalloc (bytes Python allocated and still holds), never with timings. The
completer here is the real one with the real StarCoder tokenizer (prompts need no weights); the
server tests run the real server on the tiny model.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types as t

from fimlsp.completer import Completer
from fimlsp.completion import Stats
from fimlsp.config import Settings
from fimlsp.context import split_at

CURRENT = "file:///project/app/main.py"
MAIN = ("from geometry import distance\n\n\ndef total_length(points):\n    total = 0\n"
        "    for point_a, point_b in zip(points, points[1:]):\n        total += \n"
        "    return total\n")
CURSOR = (6, 17)  # after "total += "


def neighbour(version: int, lines: int = 2000) -> str:
    """A large neighbour that shares the cursor's identifiers; every version a new text."""
    return "".join(f"def distance_{version}_{i}(point_a, point_b, points, total):\n"
                   f"    return (point_a - point_b) * {version} + total\n"
                   for i in range(lines // 2))


def completer_for(shared: Path, documents: dict[str, str]) -> Completer:
    completer = Completer(Settings(model=str(shared / "tokenizers" / "starcoder"),
                                   template="starcoder", neighbour_share=0.25,
                                   context_window=1024))
    completer.documents = lambda: documents
    return completer


@pytest.fixture
def traced() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def held() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_an_edited_neighbour_leaves_no_old_copies(shared: Path, traced: None) -> None:
    """Each version of the neighbour is ~50 kB; twenty versions later the completer holds the
    current one only (the old text-keyed cache kept up to 64 whole old versions)."""
    documents = {CURRENT: MAIN, "file:///project/app/geometry.py": neighbour(0, 1000)}
    completer = completer_for(shared, documents)
    cursor = split_at(MAIN, *CURSOR)
    assert completer.prompt_for(cursor, CURRENT).neighbour_tokens > 0
    size = len(documents["file:///project/app/geometry.py"])
    before = held()
    for version in range(1, 21):
        documents["file:///project/app/geometry.py"] = neighbour(version, 1000)
        prompt = completer.prompt_for(cursor, CURRENT)
        assert f"distance_{version}_" in prompt.text  # chosen anew from the current text
    grown = held() - before
    assert grown < 2 * size, f"{grown} bytes held after 20 versions of a {size}-character file"


@pytest.mark.slow
def test_closed_documents_leave_nothing_behind(shared: Path, traced: None) -> None:
    documents: dict[str, str] = {}
    completer = completer_for(shared, documents)

    def open_and_close(count: int) -> None:
        uris = [f"file:///project/app/module_{i}.py" for i in range(count)]
        for i, uri in enumerate(uris):
            documents[uri] = MAIN + neighbour(i, 60)
            completer.prompt_for(split_at(documents[uri], *CURSOR), uri)
        state = completer.document_state()
        assert state["edges"] <= 64 and state["neighbours"] <= 64, state  # bounded while open
        assert state["windows"] <= len(documents), state
        for uri in uris:
            del documents[uri]
            completer.forget(uri)

    open_and_close(5)  # warm up: tokenizer caches, interned strings
    before = held()
    open_and_close(70)
    assert completer.document_state() == dict.fromkeys(completer.document_state(), 0)
    grown = held() - before
    assert grown < 256 * 1024, f"{grown} bytes still held after closing 70 documents"


def test_per_document_state_is_bounded_while_documents_stay_open(shared: Path) -> None:
    documents: dict[str, str] = {}
    completer = completer_for(shared, documents)
    for i in range(90):
        uri = f"file:///project/app/open_{i}.py"
        documents[uri] = MAIN + neighbour(i, 40)
        completer.prompt_for(split_at(documents[uri], *CURSOR), uri)
    state = completer.document_state()
    assert state["edges"] <= 64 and state["neighbours"] <= 64, state
    assert state["windows"] <= len(documents), state  # one entry per open document at most


def test_counters_lose_nothing_across_threads() -> None:
    """The event loop and the model's thread both count; a read-modify-write `+=` on an
    attribute loses counts when a thread switch falls between the read and the write."""
    stats = Stats()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        def count() -> None:
            for _ in range(20_000):
                stats.add(requests=1, answered_from_cache=1)

        threads = [threading.Thread(target=count) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert stats.snapshot().requests == stats.snapshot().answered_from_cache == 160_000


@pytest.mark.slow
async def test_server_forgets_closed_documents(tiny_model: Path, tmp_path: Path) -> None:
    """didClose drops everything per document, the engine's cache included, not only the
    latter; `fimlsp.stats` reports what is held."""
    from test_lsp import Doc, running, uri_for

    async with running(tiny_model, tmp_path) as client:
        assert (await client.wait_loaded())["state"] == "ready"
        docs = [Doc(client, uri_for(tmp_path, f"module {i}.py"), MAIN + neighbour(i, 20))
                for i in range(6)]
        for doc in docs:
            await client.inline(doc.uri, doc.at("total += "))
        held = (await client.stats())["document_state"]
        assert held["edges"] == 6 and held["sessions"] >= 1, held
        for doc in docs:
            client.text_document_did_close(t.DidCloseTextDocumentParams(
                text_document=t.TextDocumentIdentifier(uri=doc.uri)))
        stats = await client.poll_stats(
            lambda s: not any(s["document_state"].values()), "no per-document state left")
        assert stats["state"] == "ready"


class _Writer:
    """Collects what the protocol writes (the in-process tests below have no client)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass

    def answer(self, request_id: int) -> object:
        answers = [json.loads(w.split(b"\r\n\r\n", 1)[1]) for w in self.written]
        return next((a for a in answers if a.get("id") == request_id), None)


def _initialized_protocol(settings: Settings) -> tuple[object, _Writer]:
    from fimlsp.server import create_server

    server = create_server(settings)
    writer = _Writer()
    server.protocol.set_writer(writer)  # type: ignore[arg-type]
    server.protocol.handle_message({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                    "params": {"processId": None, "capabilities": {}}})
    assert writer.answer(0) is not None and "result" in writer.answer(0)  # type: ignore[operator]
    return server, writer


def test_notifications_leave_no_futures_behind() -> None:
    """pygls 2.1.1 kept one finished Future per didOpen/didChange/didClose in the protocol's
    `_request_futures`, under a uuid nobody knows: ~0.5 kB per keystroke, the typing storm's RSS
    growth (tracemalloc: 2,610 Futures after 65 s at 20 keystrokes/s)."""
    server, _writer = _initialized_protocol(Settings())
    protocol = server.protocol  # type: ignore[attr-defined]

    def notify(method: str, params: dict[str, object]) -> None:
        protocol.handle_message({"jsonrpc": "2.0", "method": method, "params": params})

    document = {"uri": "file:///a.py", "version": 1}
    notify("textDocument/didOpen", {"textDocument": {**document, "languageId": "python",
                                                     "text": "x = 1\n"}})
    for version in range(2, 502):
        notify("textDocument/didChange", {
            "textDocument": {**document, "version": version},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 4},
                                          "end": {"line": 0, "character": 5}},
                                "text": str(version % 10)}]})
    assert server.documents.text("file:///a.py") == "x = 1\n"  # type: ignore[attr-defined]
    notify("textDocument/didClose", {"textDocument": {"uri": "file:///a.py"}})
    assert protocol.running() == 0
    server.scheduler.shutdown()  # type: ignore[attr-defined]


async def test_shutdown_while_a_notification_handler_still_runs() -> None:
    """Dropping a notification's future must not break shutdown, which cancels pending futures
    while iterating them: `initialized` (it loads the model) may still be pending here."""
    import asyncio

    server, writer = _initialized_protocol(Settings(model="no-such-model"))
    protocol = server.protocol  # type: ignore[attr-defined]
    protocol.handle_message({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    protocol.handle_message({"jsonrpc": "2.0", "id": 1, "method": "shutdown", "params": None})
    answer = None
    for _ in range(100):  # bounded: the answer may be written on a later loop turn
        answer = writer.answer(1)
        if answer is not None:
            break
        await asyncio.sleep(0)
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": None}
    server.scheduler.shutdown()  # type: ignore[attr-defined]
