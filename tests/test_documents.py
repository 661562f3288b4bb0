"""The document store on its own: LSP lines, the three position encodings, VS Code's clamping,
and edits that touch only the chunks they change. `reference_apply` is the plain-Python
reference the stateful test (test_document_sync.py) also compares the real server against.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types as t
from lsprotocol.converters import get_converter

import fimlsp.documents as documents_module
from fimlsp.completer import Completer
from fimlsp.config import Settings
from fimlsp.context import query_words, similar_snippets
from fimlsp.documents import Documents, Text
from fimlsp.errors import ErrorKind, FimError
from fimlsp.lsp.sync import clamp_negative

ENCODINGS = ("utf-16", "utf-8", "utf-32")
_EOL = re.compile(r"\r\n|\r|\n")  # LSP's line breaks, and only these

# -- the reference: a plain string, every rule spelled out once --------------------------------


def units(text: str, encoding: str) -> int:
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-16":
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text.encode("utf-8", "surrogatepass"))


def line_spans(text: str) -> list[tuple[int, int]]:
    """(start, end before the line break) of each LSP line."""
    spans, start = [], 0
    for match in _EOL.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    return [*spans, (start, len(text))]


def reference_offset(text: str, line: int, character: int, encoding: str) -> int:
    """VS Code's clamping: line < 0 → 0:0, line past the end → end of document, character < 0 →
    start of line, past the end → end of line, inside a character → its start."""
    spans = line_spans(text)
    if line < 0:
        return 0
    if line >= len(spans):
        return len(text)
    start, end = spans[line]
    used = 0
    for index in range(start, end):
        width = units(text[index], encoding)
        if used + width > character:
            return index
        used += width
    return end


def reference_apply(text: str, changes: list[dict[str, Any]], encoding: str) -> str:
    """didChange content changes as JSON (a missing range: the whole document)."""
    for change in changes:
        if "range" not in change:
            text = change["text"]
            continue
        start, end = change["range"]["start"], change["range"]["end"]
        a = reference_offset(text, start["line"], start["character"], encoding)
        b = reference_offset(text, end["line"], end["character"], encoding)
        a, b = min(a, b), max(a, b)
        text = text[:a] + change["text"] + text[b:]
    return text


def change(start: tuple[int, int], end: tuple[int, int], text: str) -> dict[str, Any]:
    return {"range": {"start": {"line": start[0], "character": start[1]},
                      "end": {"line": end[0], "character": end[1]}}, "text": text}


def as_events(changes: list[dict[str, Any]]) -> list[t.TextDocumentContentChangeEvent]:
    converter = get_converter()
    return [converter.structure(c, t.TextDocumentContentChangePartial if "range" in c
                                else t.TextDocumentContentChangeWholeDocument) for c in changes]


def store_apply(text: str, changes: list[dict[str, Any]], encoding: str) -> str:
    """The same changes through `Documents` (what the server's didChange handler calls)."""
    store = Documents()
    store.open("file:///x.py", text)
    store.change("file:///x.py", as_events(changes), encoding)
    return str(store.get("file:///x.py"))


# -- the examples ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("text", "changes", "expected"), [
    # A character past the end of a line with a form feed lands before its "\n".
    ("a\x0cbcdef\n", [change((0, 99), (0, 99), "Z")], "a\x0cbcdefZ\n"),
    # Past the end of a last line without a line break: at its very end, not one too early.
    ("abc", [change((0, 99), (0, 99), "Z")], "abcZ"),
    # A line past the last: the end of the document.
    ("ab\ncd", [change((7, 1), (9, 0), "Z")], "ab\ncdZ"),
    # Past the end of a CRLF line: before the \r, never between \r and \n.
    ("ab\r\ncd", [change((0, 50), (0, 60), "Z")], "abZ\r\ncd"),
    # U+0085, U+2028/9, VT and \x1c are ordinary characters: line 1 is "q".
    ("x\x85y\u2028z\u2029w\x0bv\x1cu\nq", [change((1, 5), (1, 9), "Z")],
     "x\x85y\u2028z\u2029w\x0bv\x1cu\nqZ"),
    # Reversed range: applied with its ends swapped.
    ("hello", [change((0, 4), (0, 1), "")], "ho"),
])
def test_out_of_range_edits_clamp(text: str, changes: list[dict[str, Any]], expected: str,
                                  encoding: str) -> None:
    assert reference_apply(text, changes, encoding) == expected
    assert store_apply(text, changes, encoding) == expected


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_one_bad_change_among_good_ones_keeps_them_all(encoding: str) -> None:
    """A change outside the document is clamped; the valid ones before and after it apply."""
    changes = [change((0, 0), (0, 0), "A"), change((40, 3), (41, 0), "B"),
               change((1, 1), (1, 1), "C"), change((0, 200), (0, 300), "D")]
    assert store_apply("x\ny", changes, encoding) == "AxD\nyCB"
    assert reference_apply("x\ny", changes, encoding) == "AxD\nyCB"


def test_positions_clamp_for_edits_as_vscode_does_and_are_refused_for_requests() -> None:
    cases = [  # text, line, character, encoding → offset
        ("ab\ncd", -1, 3, "utf-16", 0), ("ab\ncd", -5, -5, "utf-16", 0),
        ("ab\ncd", 1, -2, "utf-16", 3), ("ab\ncd", 0, -1, "utf-16", 0),
        ("ab\ncd", 2, 0, "utf-16", 5), ("ab\ncd", 9, 9, "utf-16", 5),
        ("ab\ncd", 1, 99, "utf-16", 5), ("ab\r\ncd", 0, 3, "utf-8", 2),
        # "😀x": a surrogate pair in UTF-16, 4 bytes in UTF-8, one code point in UTF-32; a
        # position inside a character means its start.
        ("😀x\n", 0, 1, "utf-16", 0), ("😀x\n", 0, 2, "utf-16", 1),
        ("😀x\n", 0, 3, "utf-16", 2), ("😀x\n", 0, 9, "utf-16", 2),
        ("😀x\n", 0, 1, "utf-8", 0), ("😀x\n", 0, 3, "utf-8", 0), ("😀x\n", 0, 4, "utf-8", 1),
        ("😀x\n", 0, 5, "utf-8", 2), ("😀x\n", 0, 1, "utf-32", 1), ("😀x\n", 0, 3, "utf-32", 2),
    ]
    for text, line, character, encoding, index in cases:
        assert reference_offset(text, line, character, encoding) == index
        assert Text(text).offset(line, character, encoding) == index, (text, line, character)
        inside = 0 <= line < len(line_spans(text)) and \
            0 <= character <= units(text[slice(*line_spans(text)[line])], encoding)
        if not inside:  # a request's position outside the document is the client's bug
            with pytest.raises(FimError) as error:
                Text(text).offset(line, character, encoding, clamp=False)
            assert error.value.kind is ErrorKind.INVALID_PARAMS


def test_negative_positions_in_a_did_change_are_clamped_before_lsprotocol() -> None:
    """lsprotocol would refuse the whole notification (uinteger); VS Code clamps them."""
    params = {"textDocument": {"uri": "file:///x", "version": 2},
              "contentChanges": [change((-1, 4), (0, 1), "A"), change((1, -3), (1, -1), "B")]}
    clamp_negative(params)
    assert params["contentChanges"] == [change((0, 0), (0, 1), "A"), change((1, 0), (1, 0), "B")]


# -- random edits against the reference ---------------------------------------------------------

ATOMS = ["a", "b", " ", "\t", "\n", "\r", "\r\n", "\x0c", "\x0b", "\x1c", "\x85", "\u2028",
         "\u2029", "\x00", "😀", "𝄞", "é", "你", "\ufeff"]
texts = st.lists(st.sampled_from(ATOMS) | st.text(max_size=2), max_size=40).map("".join)


@st.composite
def positions(draw: st.DrawFn, text: str, encoding: str) -> tuple[int, int]:
    """Mostly valid (inside a character included), else past the end or negative."""
    spans = line_spans(text)
    line = draw(st.integers(0, len(spans) - 1) | st.integers(-2, len(spans) + 1))
    width = units(text[slice(*spans[line])], encoding) if 0 <= line < len(spans) else 4
    return line, draw(st.integers(0, width) | st.integers(-2, width + 3))


@st.composite
def edits(draw: st.DrawFn, text: str, encoding: str) -> list[dict[str, Any]]:
    """1-4 changes, each with positions drawn against the text the previous one left: valid,
    inside a character, past the end of the line or document, or negative."""
    changes = []
    for _ in range(draw(st.integers(1, 4))):
        new = change(draw(positions(text, encoding)), draw(positions(text, encoding)),
                     draw(texts))
        changes.append(new)
        text = reference_apply(text, [new], encoding)
    return changes


@settings(max_examples=200, deadline=None)
@given(text=texts, encoding=st.sampled_from(ENCODINGS), data=st.data())
def test_random_edits_match_the_reference(text: str, encoding: str, data: st.DataObject) -> None:
    # Tiny chunks, so that edits cross chunk boundaries, merge and split chunks all the time.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(documents_module, "TARGET_CHUNK", 4)
        doc, expected = Text(text), text
        for _ in range(8):
            changes = data.draw(edits(expected, encoding))
            for raw in changes:  # Text.offset directly: lsprotocol refuses negative positions
                start, end = raw["range"]["start"], raw["range"]["end"]
                doc = doc.replace(doc.offset(start["line"], start["character"], encoding),
                                  doc.offset(end["line"], end["character"], encoding),
                                  raw["text"])
            expected = reference_apply(expected, changes, encoding)
            low, high = sorted(data.draw(st.tuples(st.integers(0, len(expected)),
                                                   st.integers(0, len(expected)))))
            assert doc.slice(low, high) == expected[low:high]
            assert (len(doc), doc.line_count) == (len(expected), len(line_spans(expected)))
            chunks = doc._chunks
            assert all(chunks) and all(len(c) <= 9 for c in chunks)
            assert not any(a.endswith("\r") and b.startswith("\n")
                           for a, b in itertools.pairwise(chunks))
        assert str(doc) == expected


# -- cost: what an edit touches ----------------------------------------------------------------


def test_an_edit_shares_every_chunk_it_does_not_touch() -> None:
    """O(edit): a keystroke in a 5 MB one-line file or a 100k-line file makes a new version
    that reuses every chunk object but the one or two around the edit."""
    for text, line, character in (("x" * 5_000_000, 0, 2_500_000), ("".join(
            f"line {i} = {i} * 2\n" for i in range(100_000)), 50_000, 3)):
        old = Text(text)
        middle = old.offset(line, character)
        new = old.replace(middle, middle, "Z")
        kept = set(map(id, old._chunks))
        fresh = [c for c in new._chunks if id(c) not in kept]
        assert len(old._chunks) > 500 and 1 <= len(fresh) <= 3
        assert new.slice(middle - 3, middle + 4) == text[middle - 3:middle] + "Z" + \
            text[middle:middle + 3]
        assert old.slice(middle - 3, middle + 3) == text[middle - 3:middle + 3]  # unchanged


def test_the_cursor_holds_only_the_text_near_the_position() -> None:
    """Everything after `cursor_for` (prompt, policy, typing-through) sees a bounded window of
    the document, so a 5 MB line costs what a small file costs."""
    completer = Completer(Settings())
    text = "ab" * 2_500_000
    cursor = completer.cursor_for(Text(text), 0, 3_000_000)
    assert 16_384 <= len(cursor.prefix) <= 200_000 and 16_384 <= len(cursor.suffix) <= 200_000
    assert text[:3_000_000].endswith(cursor.prefix) and text[3_000_000:].startswith(cursor.suffix)
    # Typing at the cursor keeps where the prefix starts and what the suffix is.
    typed = completer.cursor_for(Text(text[:3_000_000] + "Q" + text[3_000_000:]), 0, 3_000_001)
    assert typed.prefix == cursor.prefix + "Q" and typed.suffix == cursor.suffix


class _Guarded(Mapping[str, str]):
    """Documents whose `exclude` entry must not be read."""

    def __init__(self, texts: dict[str, str], exclude: str) -> None:
        self.texts, self.exclude = texts, exclude

    def __getitem__(self, uri: str) -> str:
        assert uri != self.exclude, "the document being typed in was read for neighbours"
        return self.texts[uri]

    def __iter__(self) -> Iterator[str]:
        return iter(self.texts)

    def __len__(self) -> int:
        return len(self.texts)


def test_neighbours_never_read_the_document_being_typed_in() -> None:
    """Reading it would join its text, O(document), per keystroke."""
    other = "def parse_header(stream):\n    return stream.read_header()\n" * 3
    docs = _Guarded({"file:///a.py": "x = 1\n", "file:///b.py": other}, "file:///a.py")
    query = query_words(Completer(Settings()).cursor_for(
        "parse_header(stream)\nstream.read_header()\n\n", 2, 0))
    assert similar_snippets(query, docs, "file:///a.py", 10_000)


def test_documents_over_the_limit_are_kept_but_never_offered_for_scanning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents_module, "MAX_DOCUMENT_CHARS", 100)
    store = Documents()
    store.open("file:///big.min.js", "x" * 101)
    store.open("file:///small.py", "y = 2\n")
    store.change("file:///big.min.js", as_events([change((0, 1), (0, 2), "Z")]), "utf-16")
    assert str(store.get("file:///big.min.js")) == "x" + "Z" + "x" * 99
    assert list(store.all()) == ["file:///small.py"]
