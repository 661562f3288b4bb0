"""Rewritten region → minimal TextEdits (fimlsp/nextedit/edits.py): exact round trips, for any
region and rewrite, in every position encoding, with \\r\\n and characters outside the BMP."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types

from fimlsp.documents import Text
from fimlsp.nextedit.edits import apply, match_line_breaks, minimal_replacements, text_edits
from fimlsp.nextedit.service import edits_from_rewrite

# Few characters, so that random strings share lines and the diff has work to do.
TEXT = st.lists(st.sampled_from(["a", "b", " ", "\n", "\r\n", "\r", "é", "😀", "x"]),
                max_size=40).map("".join)


def apply_lsp(document: str, edits: list[types.TextEdit], encoding: str) -> str:
    """Applies edits as an editor does: positions in `encoding`, back to front."""
    doc = Text(document)
    spans = [(doc.offset(e.range.start.line, e.range.start.character, encoding, clamp=False),
              doc.offset(e.range.end.line, e.range.end.character, encoding, clamp=False),
              e.new_text) for e in edits]
    for start, end, text in sorted(spans, reverse=True):
        document = document[:start] + text + document[end:]
    return document


@settings(max_examples=400, deadline=None)
@given(TEXT, TEXT)
def test_replacements_rebuild_the_rewrite_exactly(region: str, rewrite: str) -> None:
    replacements = minimal_replacements(region, rewrite)
    assert apply(region, replacements) == rewrite
    last_end = -1
    for r in replacements:
        assert 0 <= r.start <= r.end <= len(region)
        assert r.start > last_end  # ordered, apart (touching runs are merged)
        last_end = r.end
        assert r.text or r.start < r.end  # no no-ops
        assert region[r.start:r.end] != r.text
        for cut in (r.start, r.end):  # never between the \r and \n of one break
            assert not (region[cut - 1:cut] == "\r" and region[cut:cut + 1] == "\n")


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, TEXT, TEXT, st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_text_edits_round_trip_in_the_document(before: str, region: str, rewrite: str,
                                               after: str, encoding: str) -> None:
    """The region sits in a document (starting a line); the edits touch only the region and
    applying them in the editor's encoding gives the document with the rewrite in it."""
    head = before + ("\n" if before and not before.endswith(("\n", "\r")) else "")
    if head.endswith("\r") and (region + after).startswith("\n"):  # an empty region too
        head += "\n"  # the region must start a line, not finish a \r\n
    if region.endswith("\r") and after.startswith("\n"):
        after = "x" + after  # nor end inside one
    first_line = Text(head).line_count - 1
    document = head + region + after
    edits = text_edits(region, first_line, rewrite, encoding)
    expected = head + match_line_breaks(rewrite, region) + after
    assert apply_lsp(document, edits, encoding) == expected
    doc = Text(document)
    for edit in edits:
        start = doc.offset(edit.range.start.line, edit.range.start.character, encoding)
        end = doc.offset(edit.range.end.line, edit.range.end.character, encoding)
        assert len(head) <= start <= end <= len(head) + len(region)


def test_unchanged_rewrite_has_no_edits() -> None:
    assert text_edits("a = 1\nb = 2\n", 3, "a = 1\nb = 2\n", "utf-16") == []


def test_a_rename_on_two_lines_is_two_small_edits() -> None:
    region = "def f(a, b):\n    return a + b\n    # end\n"
    rewrite = "def f(first, b):\n    return first + b\n    # end\n"
    edits = text_edits(region, 10, rewrite, "utf-16")
    assert [(e.range.start.line, e.range.start.character, e.range.end.character, e.new_text)
            for e in edits] == [(10, 6, 7, "first"), (11, 11, 12, "first")]


def test_crlf_region_keeps_its_line_breaks() -> None:
    region = "x = 1\r\ny = 2\r\n"
    edits = edits_from_rewrite(region, 0, "x = 1\nz = 3\ny = 2\n", "utf-16")
    assert apply_lsp(region, edits, "utf-16") == "x = 1\r\nz = 3\r\ny = 2\r\n"


def test_utf16_columns_count_surrogate_pairs() -> None:
    region = 's = "😀"; t = 1\n'
    (edit,) = text_edits(region, 0, 's = "😀"; t = 2\n', "utf-16")
    assert (edit.range.start.character, edit.new_text) == (14, "2")  # 😀 is two units
    (edit,) = text_edits(region, 0, 's = "😀"; t = 2\n', "utf-32")
    assert edit.range.start.character == 13


def test_the_format_end_and_cursor_marker_are_not_text() -> None:
    """The model ends its region with a line break the region at the end of the file lacks, and
    may echo the cursor marker: neither becomes an edit."""
    assert edits_from_rewrite("a = 1\nb = 2", 0, "a = 1\nb = 2\n", "utf-16") == []
    assert edits_from_rewrite("a = 1\n", 0, "a = 1<|cursor|>\n", "utf-16") == []
    assert edits_from_rewrite("a = 1\n", 0, "a = 1<|file_sep|>\n", "utf-16") == []
