"""Next edits through the real server on stdio (`textDocument/copilotInlineEdit`).

The model is a tiny random-weight Qwen2 built in code (tests/test_engine_archs.py's shrunk
Qwen2.5-Coder-1.5B config) with the real Qwen2.5-Coder tokenizer from shared/: the prompt, the
engine, the cancellation and the protocol are real; the rewrite it writes is meaningless, so the
tests check the shape of every answer, that whatever edits come back apply exactly, and the
guarantees (stale versions, yielding to completions), not which edit it proposes.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rawlsp import WAIT_S, RawServer, notification
from test_engine_archs import build_arch_model

from fimlsp.documents import Text
from fimlsp.scheduler import Cancelled, CancelToken, Scheduler

pytestmark = pytest.mark.slow

URI = "file:///work/shapes.py"
SOURCE = ("class Box:\n    def __init__(self, w, h):\n        self.w = w\n        self.h = h\n\n"
          "    def area(self):\n        return self.w * self.h\n\n\n"
          "def total(boxes):\n    return sum(b.area() for b in boxes)\n")


@pytest.fixture(scope="module")
def qwen_model(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Path:
    return build_arch_model(tmp_path_factory.mktemp("tiny-qwen2-nextedit"), "qwen2", shared)


def ready(server: RawServer) -> None:
    server.initialize()
    deadline = time.monotonic() + WAIT_S
    for n in itertools.count():
        state = server.ask(f"ready?{n}", "workspace/executeCommand",
                           {"command": "fimlsp.stats"})["result"]["state"]
        assert state != "failed", server.tail()
        if state == "ready" or time.monotonic() > deadline:
            return
        time.sleep(0.05)  # poll interval, not synchronisation


def change(server: RawServer, version: int, line: int, start: int, end: int, text: str) -> None:
    server.send(notification("textDocument/didChange", {
        "textDocument": {"uri": URI, "version": version},
        "contentChanges": [{"range": {"start": {"line": line, "character": start},
                                      "end": {"line": line, "character": end}},
                            "text": text}]}))


def apply(text: str, edits: list[dict[str, Any]]) -> str:
    doc = Text(text)
    spans = [(doc.offset(e["range"]["start"]["line"], e["range"]["start"]["character"],
                         clamp=False),
              doc.offset(e["range"]["end"]["line"], e["range"]["end"]["character"], clamp=False),
              e["text"]) for e in edits]
    for start, end, new in sorted(spans, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def logs(server: RawServer, pattern: str) -> list[str]:
    return [m["params"]["message"] for m in server.received
            if m.get("method") == "window/logMessage"
            and re.search(pattern, m["params"]["message"])]


def test_edit_list_for_an_edited_document_and_it_applies_exactly(qwen_model: Path) -> None:
    with RawServer(str(qwen_model), "--time-budget-ms", "60000") as server:
        ready(server)
        server.send(notification("textDocument/didOpen", {"textDocument": {
            "uri": URI, "languageId": "python", "version": 1, "text": SOURCE}}))
        text = SOURCE
        change(server, 2, 1, 26, 27, "height")  # h → height in the signature
        text = text.replace("w, h):", "w, height):")
        answer = server.ask("ne", "textDocument/copilotInlineEdit", {
            "textDocument": {"uri": URI, "version": 2},
            "position": {"line": 1, "character": 32}, "context": {"triggerKind": 2}})
        edits = answer["result"]["edits"]
        assert isinstance(edits, list)
        for edit in edits:
            assert set(edit) == {"text", "range", "textDocument", "command"}
            assert edit["textDocument"] == {"uri": URI, "version": 2}
            assert edit["command"]["command"] == "fimlsp.acceptNextEdit"
            start, end = edit["range"]["start"], edit["range"]["end"]
            assert (start["line"], start["character"]) <= (end["line"], end["character"])
            assert start["line"] >= 0 and end["line"] <= 1 + 5 + 1  # the editable region
        # The model ran on the Sweep prompt (the log line of the request says what it did).
        (line,) = server.wait_for(lambda: logs(server, r"^next edit .*@2: edits="),
                                  "the next edit's log line")
        assert int(re.search(r"generated=(\d+)", line).group(1)) > 0
        # Whatever came back applies exactly: the server's copy agrees after the client applies.
        if edits:
            new_text = apply(text, edits)
            server.send(notification("textDocument/didChange", {
                "textDocument": {"uri": URI, "version": 3},
                "contentChanges": [{"range": e["range"], "text": e["text"]}
                                   for e in sorted(edits, key=lambda e: (
                                       e["range"]["start"]["line"],
                                       e["range"]["start"]["character"]), reverse=True)]}))
            text = new_text
        copy = server.ask("text", "workspace/executeCommand",
                          {"command": "fimlsp.documentText", "arguments": [URI]})["result"]
        assert copy == text
        # Copilot clients' notifications are taken without complaint.
        server.send(notification("textDocument/didShowInlineEdit", {"item": {"command": None}}))
        server.send(notification("textDocument/didFocus", {"textDocument": {"uri": URI}}))
        stats = server.ask("stats", "workspace/executeCommand", {"command": "fimlsp.stats"})
        assert stats["result"]["next_edits"]["history_documents"] == 1
        server.send(notification("textDocument/didClose", {"textDocument": {"uri": URI}}))
        stats = server.ask("stats2", "workspace/executeCommand", {"command": "fimlsp.stats"})
        assert stats["result"]["next_edits"]["history_documents"] == 0
        assert stats["result"]["next_edits"]["history_hunks"] == 0
        assert "ignored the notification" not in server.tail()


def test_stale_versions_never_get_edits_and_bad_params_are_refused(qwen_model: Path) -> None:
    with RawServer(str(qwen_model)) as server:
        ready(server)
        server.send(notification("textDocument/didOpen", {"textDocument": {
            "uri": URI, "languageId": "python", "version": 1, "text": SOURCE}}))
        change(server, 2, 2, 13, 14, "width")
        for version in (1, 3):  # behind and ahead of the document
            answer = server.ask(f"stale{version}", "textDocument/copilotInlineEdit", {
                "textDocument": {"uri": URI, "version": version},
                "position": {"line": 2, "character": 16}})
            assert answer["result"] == {"edits": []}
        assert len(logs(server, r"stale \(the document is at 2\)")) == 2
        missing = server.ask("bad", "textDocument/copilotInlineEdit", {
            "textDocument": {"uri": URI}, "position": {"line": 0, "character": 0}})
        assert missing["error"]["code"] == -32602
        assert "version" in missing["error"]["message"]
        outside = server.ask("far", "textDocument/copilotInlineEdit", {
            "textDocument": {"uri": URI, "version": 2},
            "position": {"line": 400, "character": 0}})
        assert outside["error"]["code"] == -32602
        # The server goes on serving.
        answer = server.ask("ok", "textDocument/copilotInlineEdit", {
            "textDocument": {"uri": URI, "version": 2}, "position": {"line": 2, "character": 18}})
        assert isinstance(answer["result"]["edits"], list)


def test_inline_completion_is_answered_while_a_next_edit_runs(qwen_model: Path) -> None:
    """Both asked at once: both answered; the completion is never an error and never waits
    for a rewrite (the scheduler test below shows the next edit yields to it)."""
    with RawServer(str(qwen_model), "--time-budget-ms", "60000",
                   "--next-edit-max-tokens", "4096") as server:
        ready(server)
        server.send(notification("textDocument/didOpen", {"textDocument": {
            "uri": URI, "languageId": "python", "version": 1, "text": SOURCE}}))
        server.send({"jsonrpc": "2.0", "id": "ne", "method": "textDocument/copilotInlineEdit",
                     "params": {"textDocument": {"uri": URI, "version": 1},
                                "position": {"line": 6, "character": 8}}})
        server.send({"jsonrpc": "2.0", "id": "ic", "method": "textDocument/inlineCompletion",
                     "params": {"textDocument": {"uri": URI},
                                "position": {"line": 6, "character": 8},
                                "context": {"triggerKind": 2}}})
        completion = server.response("ic")
        assert "items" in completion["result"]
        assert isinstance(server.response("ne")["result"]["edits"], list)


def test_a_next_edit_yields_to_a_completion_request() -> None:
    """Deterministic: the next-edit job runs until it is told to stop; a completion submitted
    meanwhile cancels it between tokens and runs, where a warm start does not."""
    scheduler = Scheduler(1)
    started = threading.Event()

    def long_rewrite(token: CancelToken) -> str:
        started.set()
        while token() is None:
            threading.Event().wait(0.005)  # one "token" of decoding
        return str(token())

    edit, _ = scheduler.submit("a.py#nextedit", long_rewrite, yields=True)
    assert started.wait(WAIT_S)
    scheduler.submit_background(lambda token: None)  # a warm start: does not stop it
    assert not edit.done()
    completion, _ = scheduler.submit("a.py", lambda token: "completed")
    assert edit.result(WAIT_S) == "superseded"
    assert completion.result(WAIT_S) == "completed"
    queued, _ = scheduler.submit("b.py#nextedit", lambda token: "ran", yields=True)
    blocker, _ = scheduler.submit("b.py", lambda token: "first")
    assert blocker.result(WAIT_S) == "first"
    with pytest.raises(Cancelled):
        queued.result(WAIT_S)
    scheduler.shutdown()


def test_a_cursor_line_edit_is_also_an_inline_completion_with_a_replacing_range() -> None:
    """The last next edit of the current version, on the cursor's line only, becomes an LSP 3.18
    inline completion item whose range covers the edit and the cursor; any other is not."""
    from types import SimpleNamespace

    from lsprotocol import types

    from fimlsp.documents import Documents
    from fimlsp.nextedit.history import EditHistory
    from fimlsp.nextedit.lsp import NextEditState, inline_item
    from fimlsp.nextedit.service import Answer

    documents, history, state = Documents(), EditHistory(), NextEditState()
    documents.open(URI, SOURCE)
    history.open(URI, 7)
    ls = SimpleNamespace(documents=documents, history=history, next_edits=state,
                         encoding="utf-16")

    def remember(*edits: tuple[int, int, int, str], version: int = 7) -> None:
        answer = Answer(URI, version, [types.TextEdit(
            range=types.Range(start=types.Position(line=line, character=a),
                              end=types.Position(line=line, character=b)), new_text=text)
            for line, a, b, text in edits])
        state.remember(6, 8, answer)

    at = types.Position(line=3, character=8)  # "        self.h = h": the cursor before "self"
    remember((3, 13, 14, "height"))
    item = inline_item(ls, URI, at)
    assert item is not None and item.insert_text == "self.height"
    assert (item.range.start.character, item.range.end.character) == (8, 14)
    assert apply_text(SOURCE, 3, item) == SOURCE.replace("self.h = h", "self.height = h")
    remember((3, 13, 14, "height"), (4, 0, 0, "x"))  # two edits: not one line's
    assert inline_item(ls, URI, at) is None
    remember((2, 13, 14, "width"))  # another line
    assert inline_item(ls, URI, at) is None
    remember((3, 13, 14, "height"), version=6)  # an older version
    assert inline_item(ls, URI, at) is None


def apply_text(text: str, line: int, item: Any) -> str:
    lines = text.split("\n")
    row = lines[line]
    lines[line] = row[:item.range.start.character] + item.insert_text + \
        row[item.range.end.character:]
    return "\n".join(lines)
