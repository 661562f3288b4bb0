"""split_at: LSP positions (line, code unit) → prefix/suffix, in every position encoding."""

from __future__ import annotations

import pytest
from lsprotocol import types

from fimlsp.context import Cursor, split_at
from fimlsp.documents import Text
from fimlsp.errors import ErrorKind, FimError
from fimlsp.positions import index_of_units, units_len

EMOJI = "\N{GRINNING FACE}"  # U+1F600: 2 UTF-16 units, 4 UTF-8 bytes, 1 UTF-32 unit
CJK = "\u4e2d\u6587"  # 中文: 1 UTF-16 unit, 3 UTF-8 bytes each

# (id, text, line, character, encoding, expected prefix)
SPLITS = [
    ("ascii-mid", "abc\ndef\n", 1, 2, "utf-16", "abc\nde"),
    ("start", "abc\ndef", 0, 0, "utf-16", ""),
    ("line-start", "abc\ndef", 1, 0, "utf-16", "abc\n"),
    ("end-of-line", "abc\ndef", 0, 3, "utf-16", "abc"),
    ("end-of-doc", "abc\ndef", 1, 3, "utf-16", "abc\ndef"),
    ("end-of-doc-after-newline", "abc\n", 1, 0, "utf-16", "abc\n"),
    ("empty-doc", "", 0, 0, "utf-16", ""),
    ("utf16-after-emoji", f"x{EMOJI}y", 0, 3, "utf-16", f"x{EMOJI}"),
    ("utf16-before-emoji", f"x{EMOJI}y", 0, 1, "utf-16", "x"),
    ("utf16-inside-emoji", f"x{EMOJI}y", 0, 2, "utf-16", "x"),
    ("utf16-two-emoji", f"{EMOJI}{EMOJI}z", 0, 4, "utf-16", EMOJI * 2),
    ("utf16-inside-second-emoji", f"{EMOJI}{EMOJI}z", 0, 3, "utf-16", EMOJI),
    ("utf16-cjk", f"{CJK}ab", 0, 1, "utf-16", CJK[0]),
    ("utf16-cjk-end", f"{CJK}ab", 0, 4, "utf-16", f"{CJK}ab"),
    ("utf8-cjk", f"{CJK}ab", 0, 3, "utf-8", CJK[0]),
    ("utf8-inside-cjk", f"{CJK}ab", 0, 4, "utf-8", CJK[0]),
    ("utf8-after-cjk", f"{CJK}ab", 0, 7, "utf-8", f"{CJK}a"),
    ("utf8-emoji", f"a{EMOJI}b", 0, 5, "utf-8", f"a{EMOJI}"),
    ("utf8-inside-emoji", f"a{EMOJI}b", 0, 3, "utf-8", "a"),
    ("utf8-accent", "caf\u00e9!", 0, 5, "utf-8", "caf\u00e9"),
    ("utf32-emoji", f"a{EMOJI}b", 0, 2, "utf-32", f"a{EMOJI}"),
    ("utf32-cjk", f"{CJK}ab", 0, 3, "utf-32", f"{CJK}a"),
    ("crlf-second-line", "ab\r\ncd\r\nef", 1, 1, "utf-16", "ab\r\nc"),
    ("crlf-end-of-line", "ab\r\ncd\r\nef", 1, 2, "utf-16", "ab\r\ncd"),
    ("crlf-last-line", "ab\r\ncd\r\nef", 2, 2, "utf-16", "ab\r\ncd\r\nef"),
    ("lone-cr", "ab\rcd\ref", 2, 1, "utf-16", "ab\rcd\re"),
    ("mixed-breaks", "a\nb\r\nc\rd", 3, 1, "utf-16", "a\nb\r\nc\rd"),
    ("emoji-on-later-crlf-line", f"x\r\n{EMOJI}=1", 1, 2, "utf-16", f"x\r\n{EMOJI}"),
]


@pytest.mark.parametrize(("text", "line", "character", "encoding", "prefix"),
                         [row[1:] for row in SPLITS], ids=[row[0] for row in SPLITS])
def test_split_at(text: str, line: int, character: int, encoding: str, prefix: str) -> None:
    cursor = split_at(text, line, character, encoding)
    assert cursor.prefix == prefix
    assert cursor.prefix + cursor.suffix == text
    assert (cursor.line, cursor.character) == (line, character)


@pytest.mark.parametrize(
    ("text", "line", "character", "encoding", "mentions"),
    [
        ("abc\ndef", 2, 0, "utf-16", "line 2"),
        ("abc\ndef\n", 3, 0, "utf-16", "line 3"),
        ("", 1, 0, "utf-16", "line 1"),
        ("abc\ndef", 0, 4, "utf-16", "character 4"),
        ("abc\r\ndef", 0, 4, "utf-16", "character 4"),  # the \r is not part of the line
        ("ab\rcd", 0, 3, "utf-16", "character 3"),
        (f"x{EMOJI}", 0, 4, "utf-16", "character 4"),
        (f"x{EMOJI}", 0, 6, "utf-8", "character 6"),
        (f"x{EMOJI}", 0, 3, "utf-32", "character 3"),
        ("abc", -1, 0, "utf-16", "negative"),
        ("abc", 0, -1, "utf-16", "negative"),
    ],
    ids=["line-beyond", "line-beyond-trailing-newline", "empty-doc-line-1", "char-beyond",
         "char-beyond-crlf", "char-beyond-lone-cr", "char-beyond-utf16", "char-beyond-utf8",
         "char-beyond-utf32", "negative-line", "negative-character"],
)
def test_outside_the_document_is_invalid_params(text: str, line: int, character: int,
                                                encoding: str, mentions: str) -> None:
    with pytest.raises(FimError) as info:
        split_at(text, line, character, encoding)
    assert info.value.kind is ErrorKind.INVALID_PARAMS
    assert mentions in info.value.message


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_every_offset_splits_on_a_character_boundary(encoding: str) -> None:
    line = f"a{EMOJI}{CJK}\u00e9\tz{EMOJI}"
    text = f"first\n{line}\nlast"
    for character in range(units_len(line, encoding) + 1):
        cursor = split_at(text, 1, character, encoding)
        assert cursor.prefix + cursor.suffix == text
        # Never a lone surrogate or a broken character: both halves encode cleanly.
        cursor.prefix.encode("utf-8")
        cursor.suffix.encode("utf-8")
        # The split is at or before the requested offset, and as far as it can go.
        index = index_of_units(line, character, encoding)
        assert units_len(line[:index], encoding) <= character
        if index < len(line):
            assert units_len(line[:index + 1], encoding) > character


@pytest.mark.parametrize(
    ("text", "encoding", "units"),
    [("abc", "utf-16", 3), (EMOJI, "utf-16", 2), (EMOJI, "utf-8", 4), (EMOJI, "utf-32", 1),
     (CJK, "utf-16", 2), (CJK, "utf-8", 6), ("\u00e9", "utf-8", 2), ("", "utf-16", 0)],
    ids=["ascii", "emoji-16", "emoji-8", "emoji-32", "cjk-16", "cjk-8", "accent-8", "empty"],
)
def test_units_len(text: str, encoding: str, units: int) -> None:
    assert units_len(text, encoding) == units


def line_starts(text: str) -> list[int]:
    doc = Text(text)
    return [doc.line_start(line) for line in range(doc.line_count)]


def test_line_starts() -> None:
    assert line_starts("a\nb\r\nc\rd") == [0, 2, 5, 7]
    assert line_starts("") == [0]
    assert line_starts("x\n") == [0, 2]


@pytest.mark.parametrize(
    ("prefix", "suffix", "line_prefix", "line_suffix"),
    [
        ("a\n    def f", "(x):\n    pass", "    def f", "(x):"),
        ("", "", "", ""),
        ("only", "line", "only", "line"),
        ("x\r\n  y", " z\r\nw", "  y", " z"),
        ("x\ry", "z\rw", "y", "z"),
        ("x\n", "\n", "", ""),
        ("x\r\n", "", "", ""),
    ],
    ids=["lf", "empty", "one-line", "crlf", "lone-cr", "empty-line", "after-crlf"],
)
def test_line_prefix_and_suffix(prefix: str, suffix: str, line_prefix: str,
                                line_suffix: str) -> None:
    cursor = Cursor(prefix=prefix, suffix=suffix, line=0, character=0)
    assert cursor.line_prefix == line_prefix
    assert cursor.line_suffix == line_suffix


def test_line_prefix_and_suffix_from_split_at_crlf() -> None:
    cursor = split_at("def f():\r\n    return 1\r\n", 1, 4)
    assert cursor.line_prefix == "    "
    assert cursor.line_suffix == "return 1"


@pytest.mark.parametrize(("negotiated", "expected"), [
    (types.PositionEncodingKind.Utf16, "utf-16"),  # what pygls stores when none was offered
    (types.PositionEncodingKind.Utf8, "utf-8"),
    ("utf-32", "utf-32"),
    (None, "utf-16"),
])
def test_negotiated_encoding_name(negotiated: object, expected: str) -> None:
    from fimlsp.server import encoding_name

    assert encoding_name(negotiated) == expected
    # …and it is a name split_at understands: "😀x" is 3 UTF-16 units, 5 UTF-8 bytes, 2 chars.
    width = {"utf-16": 3, "utf-8": 5, "utf-32": 2}[expected]
    assert split_at("😀x", 0, width, encoding_name(negotiated)).prefix == "😀x"
