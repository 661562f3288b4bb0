"""What the server keeps per document is bounded, holds no old text, and goes when it closes.

Measured with tracemalloc (bytes Python allocated and still holds), never with timings. The
completer here is the real one with the real StarCoder tokenizer (prompts need no weights); the
server tests run the real server on the tiny model.
"""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types as t

from fimlsp.completer import Completer, Stats
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
