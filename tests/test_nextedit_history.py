"""Edit history from the didChange stream (fimlsp/nextedit/history.py): coalesced, bounded,
freed on close; and Sweep's next-edit prompt built from it (fimlsp/nextedit/sweep.py), exact
in tokens against the real Qwen2.5-Coder tokenizer and within the window."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types
from tokenizers import Tokenizer

from fimlsp.documents import Documents, Text
from fimlsp.models import load_tokenizer
from fimlsp.nextedit.formats import FORMATS, Viewed
from fimlsp.nextedit.history import MAX_HUNKS, EditHistory
from fimlsp.nextedit.sweep import CURSOR, build_sweep

URI = "file:///work/app.py"
SOURCE = "def area(w, h):\n    return w * h\n\n\nprint(area(2, 3))\nprint(area(4, 5))\n"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def edit(documents: Documents, history: EditHistory, line: int, start: int, end: int,
         text: str, end_line: int | None = None) -> None:
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=line, character=start),
                          end=types.Position(line=line if end_line is None else end_line,
                                             character=end)), text=text)
    documents.change(URI, [change], "utf-16", history.observer(URI, "utf-16"))


@pytest.fixture
def state() -> tuple[Documents, EditHistory, Clock]:
    clock = Clock()
    documents, history = Documents(), EditHistory(clock)
    documents.open(URI, SOURCE)
    history.open(URI, 1)
    return documents, history, clock


def test_typing_in_one_place_is_one_hunk(state: tuple[Documents, EditHistory, Clock]) -> None:
    documents, history, clock = state
    edit(documents, history, 0, 9, 10, "")  # delete "w"
    for i, ch in enumerate("width"):
        clock.now += 0.2
        edit(documents, history, 0, 9 + i, 9 + i, ch)
    (hunk,) = history.recent(6)
    assert (hunk.line, hunk.old, hunk.new) == (0, "def area(w, h):", "def area(width, h):")
    assert hunk.below == "    return w * h" and hunk.above is None


def test_a_pause_or_another_place_starts_a_new_hunk(
        state: tuple[Documents, EditHistory, Clock]) -> None:
    documents, history, clock = state
    edit(documents, history, 0, 9, 10, "width")
    edit(documents, history, 4, 11, 12, "7")  # four lines down: another place
    clock.now += 10
    edit(documents, history, 4, 14, 15, "8")  # the same line, after a pause
    assert [(h.line, h.new) for h in history.recent(6)] == [
        (0, "def area(width, h):"), (4, "print(area(7, 3))"), (4, "print(area(7, 8))")]


def test_typed_and_deleted_again_is_not_shown(
        state: tuple[Documents, EditHistory, Clock]) -> None:
    documents, history, _ = state
    edit(documents, history, 1, 16, 16, "x")
    edit(documents, history, 1, 16, 17, "")
    assert history.recent(6) == []


def test_bounded_and_freed_on_close(state: tuple[Documents, EditHistory, Clock]) -> None:
    documents, history, clock = state
    for i in range(3 * MAX_HUNKS):
        clock.now += 10
        edit(documents, history, 4, 11, 12, str(i % 10))
    assert len(history.hunks(URI)) == MAX_HUNKS
    history.viewed(URI, 3)
    history.close(URI)
    assert history.hunks(URI) == [] and history.sizes() == {
        "history_documents": 0, "history_hunks": 0, "viewed": 0}


def test_whole_text_changes_are_hunks_too(state: tuple[Documents, EditHistory, Clock]) -> None:
    documents, history, _ = state
    change = types.TextDocumentContentChangeWholeDocument(text=SOURCE.replace("w * h", "w*h"))
    documents.change(URI, [change], "utf-16", history.observer(URI, "utf-16"))
    (hunk,) = history.recent(6)
    assert (hunk.line, hunk.new) == (1, "    return w*h")


# -- the prompt ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen(shared: Path) -> tuple[Tokenizer, Tokenizer]:
    """Our tokenizer (special-token text encoded as text) and a plain one that reads
    `<|file_sep|>` in text as the token: the reference for "exact in tokens"."""
    folder = shared / "tokenizers" / "qwen2.5-coder"
    return load_tokenizer(str(folder)), Tokenizer.from_file(str(folder / "tokenizer.json"))


def sweep_prompt(tokenizer: Tokenizer, doc: Text, history: EditHistory, cursor: int,
                 window: int = 4096, viewed: list[Viewed] | None = None) -> object:
    return build_sweep(tokenizer, FORMATS["sweep"], doc, cursor, URI, "app.py",
                       history.recent(6), history.original(URI), viewed or [], window, 256,
                       {URI: "app.py"})


def test_sweep_prompt_is_their_format_and_exact_in_tokens(
        state: tuple[Documents, EditHistory, Clock], qwen: tuple[Tokenizer, Tokenizer]) -> None:
    documents, history, _ = state
    edit(documents, history, 0, 9, 10, "width")
    doc = documents.get(URI)
    assert doc is not None
    prompt = sweep_prompt(qwen[0], doc, history, doc.offset(0, 14),
                          viewed=[Viewed("util.py", "def g():\n    pass")])
    assert prompt.text == (
        "<|file_sep|>util.py\ndef g():\n    pass\n"
        f"<|file_sep|>app.py\n{SOURCE}\n"
        "<|file_sep|>app.py:1:3\noriginal:\ndef area(w, h):\n    return w * h\n"
        "updated:\ndef area(width, h):\n    return w * h\n"
        "<|file_sep|>original/app.py:1:7\ndef area(w, h):\n    return w * h\n\n\n"
        "print(area(2, 3))\nprint(area(4, 5))\n"
        f"<|file_sep|>current/app.py:1:7\ndef area(width{CURSOR}, h):\n    return w * h\n\n\n"
        "print(area(2, 3))\nprint(area(4, 5))\n"
        "<|file_sep|>updated/app.py:1:7\ndef area(width")
    assert qwen[1].encode(prompt.text, add_special_tokens=False).ids == prompt.ids
    assert prompt.region == documents.text(URI) and prompt.first_line == 0


def test_a_document_cannot_spell_the_separator(
        state: tuple[Documents, EditHistory, Clock], qwen: tuple[Tokenizer, Tokenizer]) -> None:
    documents, history, _ = state
    edit(documents, history, 1, 16, 16, "  # <|file_sep|>")
    doc = documents.get(URI)
    assert doc is not None
    prompt = sweep_prompt(qwen[0], doc, history, doc.offset(1, 4))
    separator = qwen[0].token_to_id("<|file_sep|>")
    assert prompt.ids.count(separator) == 5  # file, one edit, original, current, updated


@pytest.mark.parametrize("window", [600, 900, 2048])
def test_long_file_fits_the_window_exactly_on_whole_lines(
        qwen: tuple[Tokenizer, Tokenizer], window: int) -> None:
    lines = [f"def function_{i}(value_{i}):\n    return value_{i} * {i}\n" for i in range(1500)]
    doc = Text("".join(lines))
    history = EditHistory()
    history.open(URI, 1)
    cursor = doc.offset(1501, 8)
    prompt = sweep_prompt(qwen[0], doc, history, cursor, window)
    assert len(prompt.ids) + prompt.max_new_tokens <= window
    assert len(prompt.ids) + prompt.max_new_tokens > window - 40  # the file part fills it
    assert qwen[1].encode(prompt.text, add_special_tokens=False).ids == prompt.ids
    file_part = prompt.text.split("<|file_sep|>")[1]
    body = file_part.split("\n", 1)[1]
    assert body.startswith("def function_") and body.endswith("\n\n")  # whole lines
    assert prompt.region.startswith("    return value_749") and prompt.region.endswith("\n")


def test_no_room_is_a_clear_error(qwen: tuple[Tokenizer, Tokenizer]) -> None:
    from fimlsp.errors import FimError

    history = EditHistory()
    history.open(URI, 1)
    with pytest.raises(FimError, match="window leaves"):
        sweep_prompt(qwen[0], Text(SOURCE), history, 0, window=120)


def test_a_big_file_shows_sweeps_300_line_chunk_when_it_fits(
        qwen: tuple[Tokenizer, Tokenizer]) -> None:
    """Over 800 lines, Sweep's builder shows the 300-line chunk (at a multiple of 150) whose
    centre is nearest the cursor: so does ours, when the window has room for it."""
    lines = [f"value_{i} = compute({i})\n" for i in range(3000)]
    doc = Text("".join(lines))
    history = EditHistory()
    history.open(URI, 1)
    prompt = sweep_prompt(qwen[0], doc, history, doc.offset(1501, 3), 16384)
    body = prompt.text.split("<|file_sep|>")[1].split("\n", 1)[1]
    assert body == "".join(lines[1350:1650]) + "\n"  # its lines, then the format's two breaks
    assert qwen[1].encode(prompt.text, add_special_tokens=False).ids == prompt.ids
