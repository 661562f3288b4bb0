"""What to show: turning raw model text into a suggestion a user wants to accept.

Everything here is a pure function of (generated text, cursor), so every rule has a table-driven
test (tests/test_postprocess.py) and the whole policy has a benchmark (`fimlsp bench policy`).

The rules, in the order `clean` applies them:

1. Special tokens. Generation stops at the template's stop ids and decodes without special
   tokens, but a model can still spell `<|endoftext|>` or `<fim_middle>` out of plain pieces
   (document text that contains them is encoded as plain text). The first one ends the text.
2. Line endings and indentation are the document's: CRLF if the document uses it; tabs in Go and
   Makefiles always (their tools demand them); else tabs or spaces as the indented lines nearest
   the cursor have them, else as the whole document does, else as its language wants (Python:
   four spaces).
3. Single line vs block (`surroundings.mode_for`): one line when text follows the cursor on its
   line, or when the cursor ends an ordinary line; a block when the cursor ends a line that
   opens one (`:`, `{`, `(`, `=>`, `do` …) and the block is not already below, or sits on an
   empty line.
4. Where a block ends (`_cut_block`), by structure, not by what the model happens to write next:
   - after an opener, or on an empty line with code at the same indentation below (the user is
     inserting a line): one statement — its line, the lines inside the brackets it opens, the
     deeper body of a header and the closer / `else:` lines of a compound statement;
   - on an empty line at the end of a block: the rest of that block, until the indentation
     returns below the cursor's;
   - a closing line (`}`, `]`, `end`) is kept only when the suffix does not already close it.
5. Text that repeats the suffix is dropped: the rest of the cursor's line (exact or ignoring
   whitespace), closers and quotes that the rest of the line (or the lines below) already has —
   decided by bracket and quote balance — and trailing lines that re-emit the lines that follow
   the cursor (ignoring whitespace within a line, not indentation).
6. No trailing whitespace, and no suggestion made only of whitespace.

Structure means brackets, strings and comments (a small scanner, `surroundings.Scan`) and
indentation. The language family — Python or a brace language — comes from the document's file
name when the caller passes it, else from the text around the cursor. What this module knows of
the cursor (surroundings.py) is read once per request; the rules here cut each text against it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fimlsp.context import Cursor
from fimlsp.models import TEMPLATES
from fimlsp.surroundings import (
    CLOSER,
    OPENER,
    OPENS_BLOCK,
    TAB,
    Scan,
    Surroundings,
    code_tail,
    indent_of,
    no_space,
    surroundings,
)

# -- special tokens ----------------------------------------------------------------------------

_KNOWN = sorted({t for template in TEMPLATES.values() for t in template.special_tokens}
                | {"<|im_start|>", "<|im_end|>", "<|EOT|>", "<|eot_id|>", "<|fim_pad|>"},
                key=len, reverse=True)
_SPECIAL = re.compile("|".join(
    [re.escape(t) for t in _KNOWN]
    + [r"<\|[A-Za-z][\w.-]{0,30}\|>",       # <|endoftext|>, <|file_sep|>, <|SUF|>, ...
       r"<fim[_-][a-z]{1,10}>",              # <fim_middle>, <fim-suffix>, <fim_pad>
       r"<｜[^｜\n]{1,40}｜>",                 # DeepSeek's full-width bars
       r"<(?:gh_stars|issue_\w+|jupyter_\w+|commit_\w+|empty_output|file_sep|filename|"
       r"reponame|repo_name)>"]))
# A special token cut off by the end of generation: `<|endo`, `<fim_mi`.
_PARTIAL_SPECIAL = re.compile(r"(?:<[|｜][\w.▁-]*|<fim[_-]\w*|<(?:file|repo|jupyter|issue|gh_|"
                              r"commit|empty)\w*)$")


def strip_special(text: str) -> str:
    """Text up to the first special token (every one of them ends a FIM middle)."""
    match = _SPECIAL.search(text)
    if match:
        text = text[: match.start()]
    partial = _PARTIAL_SPECIAL.search(text[-48:])
    if partial and len(partial.group(0)) >= 2 and any(
            t.startswith(partial.group(0)) for t in _KNOWN):
        text = text[: len(text) - len(partial.group(0))]
    return text


# -- blocks -----------------------------------------------------------------------------------

_PY_COMPOUND = {"if": ("elif", "else"), "elif": ("elif", "else"), "for": ("else",),
                "while": ("else",), "try": ("except", "else", "finally"),
                "except": ("except", "else", "finally"), "else": ("finally",),
                "with": (), "def": (), "class": (), "async": ()}
_C_CONTINUES = re.compile(r"\s*(?:else\b|catch\b|finally\b|while\s*\(.*\)\s*;)")
_C_ENDS = re.compile(r"[;},]\s*$")
# Go (and some C) put `case` labels at the level of their `switch`.
_LABEL = re.compile(r"\s*(?:case\b|default\s*:)")
_SWITCH = re.compile(r"\b(?:switch|select)\b")
_DECORATOR = re.compile(r"\s*(?:@\w|#\[)")


def _expects_body(line: str, python: bool) -> bool:
    """After this (complete) line, is a deeper-indented line still part of the statement?"""
    code = code_tail(line, python)
    if not code:
        return False
    if python:
        return code.endswith((":", "\\")) or bool(OPENS_BLOCK.search(code))
    return not _C_ENDS.search(code)


def _keyword(line: str) -> str:
    match = re.match(r"\s*([a-z]+)\b", line)
    return match.group(1) if match else ""


def _continues_compound(header: str, line: str, python: bool) -> bool:
    """`else:` after `if …:`, `except` after `try:`; `else {` / `catch` after a closing brace."""
    if python:
        return _keyword(line) in _PY_COMPOUND.get(_keyword(header), ())
    return bool(_C_CONTINUES.match(line))


def _suffix_closes(line: str, s: Surroundings) -> bool:
    """The closing line `line` is already in the suffix: the next code line closes the same
    bracket at the same indentation."""
    after = s.after
    if after is None or not CLOSER.match(after):
        return False
    return indent_of(after) == indent_of(line) and after.strip()[:1] == line.strip()[:1]


def _closes(line: str, scan: Scan) -> bool:
    """`line` starts by closing the innermost bracket open in `scan`."""
    first = line.strip()[:1]
    return bool(scan.stack) and OPENER.get(first) == scan.stack[-1]


@dataclass
class _Cut:
    kept: list[str]
    decided_by: int | None  # index of the generated line whose content ended the block


def _statement(lines: list[str], first: int, s: Surroundings, head: str) -> _Cut:
    """One statement starting at `lines[first]` (whose full text, with the cursor's line prefix
    when `first` is 0, is `head`): continuation lines inside its brackets, the deeper body of a
    header, closing and `else` lines of a compound statement at its own indentation."""
    start = s.start_indent if first == 0 and s.line_prefix.strip() else indent_of(head)
    scan = s.at_line.copy()
    scan.stack = []  # depth relative to the statement's start (lines before it are blank)
    scan.feed(head)
    kept = lines[: first + 1]
    header, last = head, head  # the last compound header / code line at the start indentation
    switch = bool(_SWITCH.search(head))  # its `case` labels may sit at its own indentation
    in_body = False
    for index in range(first + 1, len(lines)):
        line = lines[index]
        scan.feed("\n")
        if not line.strip():
            kept.append(line)
            continue
        width = indent_of(line)
        if scan.long is not None and s.at_line.long is None:
            kept.append(line)  # inside a string the statement opened: indentation means nothing
            scan.feed(line)
            continue
        if width < start:
            return _Cut(kept, index)
        if width == start and CLOSER.match(line) and _suffix_closes(line, s):
            return _Cut(kept, index)
        if scan.stack and (width > start or _closes(line, scan) or (
                _LABEL.match(line) and switch)):
            # Inside brackets the statement opened; at the statement's own indentation only a
            # closing line (or the `case` of a `switch`) can be inside its brackets.
            kept.append(line)
            scan.feed(line)
            if not scan.open:
                last = line
            continue
        if width > start:
            if not (in_body or _expects_body(last, s.python)):
                return _Cut(kept, index)
            in_body = True
        elif in_body and re.match(r"\s*end\b", line):  # `do` … `end`
            in_body = False
            last = line
            kept.append(line)
            scan.feed(line)
            if not _expects_body(line, s.python) and not scan.open:
                return _Cut(kept, index)
            continue
        elif (in_body or not s.python) and _continues_compound(header, line, s.python) and not (
                s.after is not None and indent_of(s.after) == start
                and _continues_compound(header, s.after, s.python)):
            in_body, header, last = False, line, line
        elif _DECORATOR.match(last) and not in_body:
            header, last = line, line  # the decorated definition
        else:
            return _Cut(kept, index)
        kept.append(line)
        scan.feed(line)
        switch = switch or bool(_SWITCH.search(line))
    return _Cut(kept, None)


def _rest_of_block(lines: list[str], first: int, s: Surroundings) -> _Cut:
    """From an empty line at the end of a block: everything down to where the indentation
    returns below the first line's, plus a closing line there that the suffix does not have."""
    floor = indent_of(lines[first]) if first else indent_of(s.line_prefix + lines[0])
    kept = lines[: first + 1]
    scan = s.at_line.copy().feed(s.line_prefix + "\n".join(lines[: first + 1]))
    for index in range(first + 1, len(lines)):
        line = lines[index]
        if scan.long is not None and s.at_line.long is None:
            kept.append(line)  # inside a string the block opened
            scan.feed("\n" + line)
            continue
        scan.feed("\n" + line)
        if line.strip() and indent_of(line) < floor:
            if (CLOSER.match(line) and not _suffix_closes(line, s) and s.at_line.stack
                    and s.at_line.stack[-1] == OPENER.get(line.strip()[0])):
                kept.append(line)
                return _Cut(kept, index)
            return _Cut(kept, index)
        kept.append(line)
    return _Cut(kept, None)


def _cut_block(lines: list[str], s: Surroundings) -> _Cut:
    head = s.line_prefix + lines[0]
    if s.line_prefix.strip():
        # The cursor ends a line that opens a block: that line's statement.
        return _statement(lines, 0, s, head)
    first = 0
    while first < len(lines) and not (head if first == 0 else lines[first]).strip():
        first += 1
    if first == len(lines):
        return _Cut(lines, None)
    full = head if first == 0 else lines[first]
    if indent_of(full) < indent_of(s.line_prefix):
        return _Cut(lines[:first], first)  # the model left the cursor's block at once
    if s.after is not None and indent_of(s.after) >= indent_of(full):
        # Code follows at this indentation: the user is inserting a line.
        return _statement(lines, first, s, full)
    return _rest_of_block(lines, first, s)


def _drop_suffix_overlap(lines: list[str], s: Surroundings) -> list[str]:
    """Removes trailing lines that re-emit the lines below the cursor (ignoring whitespace);
    the last line may be a cut-off start of one."""
    following = [(indent_of(ln), no_space(ln)) for ln in s.following if ln.strip()]
    if not following:
        return lines
    for start in range(1, len(lines)):
        tail = [(indent_of(ln), no_space(ln)) for ln in lines[start:] if ln.strip()]
        if not tail or len(tail) > len(following):
            continue
        whole, last = tail[:-1], tail[-1]
        if whole == following[: len(whole)] and (
                last == following[len(whole)]
                or (whole and last[0] == following[len(whole)][0]
                    and following[len(whole)][1].startswith(last[1]))):
            return lines[:start]
    return lines


# -- single lines -----------------------------------------------------------------------------


def _rest_dropped(line: str, rest: str) -> str | None:
    """`line` without a tail that repeats `rest` (exactly, or ignoring whitespace), if it has one:
    the model often writes out what already follows the cursor (`x, a, b)` before `a, b)`)."""
    if not rest.strip():
        return None
    for tail in (rest.rstrip(), rest.strip()):
        if line.rstrip().endswith(tail):
            return line.rstrip()[: -len(tail)]
    wanted = no_space(rest)
    if len(wanted) >= 2 and no_space(line).endswith(wanted):
        for cut in range(len(line), -1, -1):
            if no_space(line[cut:]) == wanted:
                return line[:cut]
    return None


_TRAILING_CLOSER = re.compile(r"[)\]}\"'`]\s*$")


def _fit_line(line: str, rest: str, s: Surroundings) -> str:
    """A mid-line answer that fits what follows it: without a repeat of the rest of the line,
    and without closers or quotes that the rest of the line already has. Which version fits is
    decided by bracket and quote balance: of the line, then of the lines below."""
    if not rest.strip():
        return line
    base = s.at_line.depth

    def on_line(candidate: str) -> int:
        """Closers with nothing to close, brackets left open, a string left open."""
        scan = s.at_line.copy().feed(s.line_prefix + candidate + rest)
        return (scan.unmatched + max(0, scan.depth - base) + (1 if scan.in_string else 0)
                + (1 if scan.long is not None and s.at_line.long is None else 0))

    def below(candidate: str) -> int:
        """The same balance over the next lines: a closer the lines below need is kept."""
        scan = s.at_line.copy().feed(s.line_prefix + candidate + s.suffix_head)
        return scan.unmatched + scan.depth

    dropped = _rest_dropped(line, rest)
    # A repeat of a few characters of the rest is a clear sign; of one or two (`)`, `];`) it
    # may be the answer's own closer, and balance decides.
    if dropped is not None and (len(no_space(rest)) >= 3 or (on_line(dropped), below(dropped))
                                <= (on_line(line), below(line))):
        line = dropped
    current = (on_line(line), below(line))
    while any(current) and _TRAILING_CLOSER.search(line):
        shorter = line.rstrip()[:-1]
        score = (on_line(shorter), below(shorter))
        if score >= current:
            break
        line, current = shorter, score
    return line


# -- the document's style ---------------------------------------------------------------------


def _restyle_indent(lines: list[str], s: Surroundings) -> list[str]:
    """Leading tabs / spaces as the document has them (the model may prefer the other)."""
    if s.tabs is None:
        return lines
    if s.tabs:
        counts = [len(ln) - len(ln.lstrip(" ")) for ln in lines[1:] if ln.startswith(" ")]
        if not counts:
            return lines
        unit = math.gcd(*counts)
        unit = unit if 2 <= unit <= 8 else TAB
        out = [lines[0]]
        for ln in lines[1:]:
            spaces = len(ln) - len(ln.lstrip(" "))
            out.append("\t" * (spaces // unit) + " " * (spaces % unit) + ln[spaces:])
        return out
    out = [lines[0]]
    for ln in lines[1:]:
        body = ln.lstrip("\t")
        out.append(" " * (s.unit * (len(ln) - len(body))) + body)
    return out


# -- the policy -------------------------------------------------------------------------------


def wants_stop(text: str, mode: str, cursor: Cursor | None = None,
               path: str | None = None) -> bool:
    """Early stop while streaming: at a special token; a single-line answer at its first line
    break; a block (when the cursor is given) once a complete line has ended it."""
    if _SPECIAL.search(text):
        return True
    if mode == "single":
        return "\n" in text.lstrip(" \t\r\n")
    if cursor is None:
        return False
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _cut_block(lines, surroundings(cursor, path))
    # Only a complete line may end a block: `}` could still become `} else {`.
    return cut.decided_by is not None and cut.decided_by < len(lines) - 1


def clean(text: str, cursor: Cursor, mode: str, path: str | None = None) -> str:
    """The suggestion to insert at the cursor in the document `path` (file name or URI, for its
    language; optional), or '' when there is nothing worth showing."""
    s = surroundings(cursor, path)
    text = strip_special(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = _restyle_indent(text.split("\n"), s)
    rest = s.line_suffix
    if mode == "single":
        if not rest.strip() and len(lines) > 1 and not lines[0].strip():
            lines = lines[:2]  # at a line's end the one line may be the next one
            if s.after is not None and no_space(lines[1]) == no_space(s.after):
                lines = []  # ... but not the one that is already there
        else:
            lines = [_fit_line(lines[0], rest, s)]
    else:
        lines = _cut_block(lines, s).kept
        lines = _drop_suffix_overlap(lines, s)
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    if not lines:
        return ""
    # No trailing whitespace, except before text that follows the cursor on its line.
    lines = [ln.rstrip() for ln in lines[:-1]] + [
        lines[-1] if rest.strip() and len(lines) == 1 else lines[-1].rstrip()]
    result = "\n".join(lines)
    if not result.strip():
        return ""
    if s.crlf:
        result = result.replace("\n", "\r\n")
    return result
