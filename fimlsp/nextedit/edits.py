"""From the model's rewrite of the editable region to the fewest, smallest LSP `TextEdit`s.

A next-edit model answers with the whole editable region rewritten, mostly copied. Sending that
back as one replacement would make every client redraw (and its undo record) the whole region and
would move the user's cursor; sending nothing for the unchanged lines is what an editor's own
inline-edit UI expects. So the rewrite is diffed against the region by lines first (a rename on
two lines is two edits, not one spanning everything between), then each changed run of lines is
trimmed to the characters that differ.

Guarantees, property-tested in tests/test_nextedit_edits.py:
- applying the replacements to the region, back to front, gives the rewrite exactly;
- no replacement is a no-op, none overlaps another, none reaches outside the region;
- no boundary falls between the \\r and \\n of a line break (a position there is not a position
  any editor can show), and the region's own line-break style is kept (a model that writes \\n
  into a \\r\\n file does not turn the file's endings into a mix).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from lsprotocol import types

from fimlsp.positions import LINE_BREAK, units_len

_LONE_LF = re.compile(r"(?<!\r)\n")


@dataclass(frozen=True)
class Replacement:
    """region[start:end] becomes `text` (offsets into the region, in characters)."""

    start: int
    end: int
    text: str


def match_line_breaks(rewrite: str, region: str) -> str:
    """The rewrite with the region's line breaks: models write \\n, files may use \\r\\n."""
    if "\r\n" in region and _LONE_LF.search(rewrite):
        return _LONE_LF.sub("\r\n", rewrite)
    return rewrite


def _lines(text: str) -> list[str]:
    """Lines with their breaks, split only at \\r\\n, \\r and \\n (as LSP counts lines)."""
    out: list[str] = []
    start = 0
    for match in LINE_BREAK.finditer(text):
        out.append(text[start:match.end()])
        start = match.end()
    if start < len(text):
        out.append(text[start:])
    return out


def _trim(old: str, new: str) -> tuple[int, int]:
    """(common prefix, common suffix) of two strings, neither cutting a \\r\\n in two, and the
    suffix never overlapping the prefix in either string."""
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    # A cut right after a \r that a \n follows (in either string) would split that break.
    while prefix > 0 and old[prefix - 1] == "\r" and (old[prefix:prefix + 1] == "\n"
                                                     or new[prefix:prefix + 1] == "\n"):
        prefix -= 1
    suffix = 0
    limit -= prefix
    while suffix < limit and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    while suffix > 0 and old[len(old) - suffix] == "\n" and (
            old[len(old) - suffix - 1:len(old) - suffix] == "\r"
            or new[len(new) - suffix - 1:len(new) - suffix] == "\r"):
        suffix -= 1
    return prefix, suffix


def minimal_replacements(region: str, rewrite: str) -> list[Replacement]:
    """The changes that turn `region` into `rewrite`, in order, no-ops dropped."""
    if region == rewrite:
        return []
    old_lines, new_lines = _lines(region), _lines(rewrite)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    old_starts = [0]
    for line in old_lines:
        old_starts.append(old_starts[-1] + len(line))
    new_starts = [0]
    for line in new_lines:
        new_starts.append(new_starts[-1] + len(line))
    out: list[Replacement] = []
    runs: list[tuple[int, int, int, int]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:  # line for line: each line its own edit
            runs.extend((i1 + k, i1 + k + 1, j1 + k, j1 + k + 1) for k in range(i2 - i1))
        else:
            runs.append((i1, i2, j1, j2))
    for i1, i2, j1, j2 in runs:
        start, end = old_starts[i1], old_starts[i2]
        old, new = region[start:end], rewrite[new_starts[j1]:new_starts[j2]]
        prefix, suffix = _trim(old, new)
        replacement = Replacement(start + prefix, end - suffix, new[prefix:len(new) - suffix])
        if replacement.start == replacement.end and not replacement.text:
            continue
        if out and out[-1].end >= replacement.start:  # touching runs: one edit
            last = out.pop()
            between = region[last.end:replacement.start]
            replacement = Replacement(last.start, replacement.end,
                                      last.text + between + replacement.text)
        out.append(replacement)
    return out


def apply(region: str, replacements: list[Replacement]) -> str:
    """`region` with `replacements` applied (back to front, as an editor applies a TextEdit[])."""
    for r in sorted(replacements, key=lambda r: r.start, reverse=True):
        region = region[:r.start] + r.text + region[r.end:]
    return region


def position_in(region: str, offset: int, line: int, encoding: str) -> types.Position:
    """The LSP position of `offset` in a region that starts at column 0 of document line `line`."""
    if not 0 <= offset <= len(region):
        raise ValueError(f"offset {offset} is outside the region")
    head = region[:offset]
    breaks = list(LINE_BREAK.finditer(head))
    line_start = breaks[-1].end() if breaks else 0
    return types.Position(line=line + len(breaks),
                          character=units_len(head[line_start:], encoding))


def text_edits(region: str, first_line: int, rewrite: str, encoding: str
               ) -> list[types.TextEdit]:
    """`rewrite` of `region` (which starts at column 0 of `first_line`) as minimal TextEdits."""
    rewrite = match_line_breaks(rewrite, region)
    edits = []
    for r in minimal_replacements(region, rewrite):
        if not 0 <= r.start <= r.end <= len(region):  # by construction; never sent if not
            raise ValueError("an edit reached outside the editable region")
        edits.append(types.TextEdit(
            range=types.Range(start=position_in(region, r.start, first_line, encoding),
                              end=position_in(region, r.end, first_line, encoding)),
            new_text=r.text))
    return edits
