"""What to show: turning raw model text into a suggestion a user wants to accept.

The model's text arrives without special tokens (generation stops at them). Here we decide
single line vs block, stop a block where its indentation ends, drop text that repeats what
already follows the cursor, and match the document's line endings. Everything is a pure function
of (generated text, cursor), so every rule has a table-driven test.
"""

from __future__ import annotations

import re

from fimlsp.context import Cursor

# A line that ends like this opens a block: the suggestion may span several lines.
_OPENS_BLOCK = re.compile(r"(:|\{|\[|\(|=>|->|\bdo|\bthen|\bbegin|=)\s*$")


def mode_for(cursor: Cursor, policy: str) -> str:
    """'single' or 'block'. Mid-line cursors get one line: the rest of the line is already there."""
    if policy == "never":
        return "single"
    if cursor.line_suffix.strip():
        return "single"
    if policy == "always":
        return "block"
    line = cursor.line_prefix
    if not line.strip():
        return "block"  # an empty line: start whatever comes next
    return "block" if _OPENS_BLOCK.search(line) else "single"


def wants_stop(text: str, mode: str) -> bool:
    """Early stop while streaming: a single-line answer is done at its first line break."""
    if mode != "single":
        return False
    return "\n" in text.lstrip(" \t\r\n")


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _cut_block(lines: list[str], cursor: Cursor) -> list[str]:
    """Keeps lines while they stay inside the block the cursor is in (or opens)."""
    current = cursor.line_prefix
    base = _indent(current) if current.strip() else len(current.expandtabs(4))
    # After an opening line the body must be indented deeper than that line.
    floor = base + 1 if current.strip() and _OPENS_BLOCK.search(current) else base
    kept = [lines[0]]
    for line in lines[1:]:
        if line.strip() and _indent(line) < floor:
            # A closing line at the opener's level (`}` / `end`) belongs to the block.
            if floor > base and _indent(line) == base and re.match(r"\s*[\]\)}]|\s*end\b", line):
                kept.append(line)
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


def _drop_suffix_overlap(lines: list[str], suffix: str) -> list[str]:
    """Removes trailing lines the suffix already has (the model re-emitting the closing lines)."""
    following = [ln.strip() for ln in suffix.splitlines() if ln.strip()]
    if not following:
        return lines
    for n in range(min(len(lines) - 1, len(following)), 0, -1):
        tail = [ln.strip() for ln in lines[-n:]]
        if tail == following[:n]:
            return lines[:-n]
    return lines


def _drop_rest_of_line(line: str, rest: str) -> str:
    """The model often writes out what already follows the cursor (`x, a, b)` before `a, b)`)."""
    if not rest.strip():
        return line
    for tail in (rest.rstrip(), rest.strip()):
        if line.rstrip().endswith(tail):
            return line.rstrip()[: -len(tail)]
    return line


def clean(text: str, cursor: Cursor, mode: str) -> str:
    """The suggestion to insert at the cursor, or '' when there is nothing worth showing."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    rest = cursor.line_suffix
    if mode == "single":
        if not rest.strip() and len(lines) > 1 and not lines[0].strip():
            lines = lines[:2]  # at a line's end the one line may be the next one
        else:
            lines = [_drop_rest_of_line(lines[0], rest)]
    else:
        lines = _cut_block(lines, cursor)
        lines = _drop_suffix_overlap(lines, cursor.suffix)
    if not lines:
        return ""
    # No trailing whitespace, except before text that follows the cursor on its line.
    lines = [ln.rstrip() for ln in lines[:-1]] + [
        lines[-1] if rest.strip() and len(lines) == 1 else lines[-1].rstrip()]
    result = "\n".join(lines)
    if not result.strip():
        return ""
    if "\r\n" in cursor.prefix[-2000:] or "\r\n" in cursor.suffix[:2000]:
        result = result.replace("\n", "\r\n")
    return result
