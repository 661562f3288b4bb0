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
3. Single line vs block (`mode_for`): one line when text follows the cursor on its line, or when
   the cursor ends an ordinary line; a block when the cursor ends a line that opens one (`:`,
   `{`, `(`, `=>`, `do` …) and the block is not already below, or sits on an empty line.
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

Structure means brackets, strings and comments (a small scanner, `Scan`) and indentation. The
language family — Python or a brace language — comes from the document's file name when the
caller passes it, else from the text around the cursor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fimlsp.context import Cursor
from fimlsp.models import TEMPLATES

TAB = 4  # columns of a tab when comparing indentation

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


# -- a small scanner: brackets, strings and comments --------------------------------------------

_PY_TOKENS = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<long>\"\"\"(?:[^"\\]|\\(?:.|\Z)|"(?!""))*(?:\"\"\"|\Z)
             |'''(?:[^'\\]|\\(?:.|\Z)|'(?!''))*(?:'''|\Z))
  | (?P<str>"(?:[^"\\\n]|\\(?:.|\Z))*(?:"|(?=\n)|\Z)|'(?:[^'\\\n]|\\(?:.|\Z))*(?:'|(?=\n)|\Z))
  | (?P<open>[(\[{]) | (?P<close>[)\]}])
""", re.X | re.S)
_C_TOKENS = re.compile(r"""
    (?P<comment>//[^\n]*)
  | (?P<long>/\*.*?(?:\*/|\Z)|`(?:[^`\\]|\\.)*(?:`|\Z))
  | (?P<life>(?<=[&<])'[A-Za-z_]\w*(?![\w'])|'(?:[a-z_]|static)(?![\w']))
  | (?P<str>"(?:[^"\\\n]|\\.)*(?:"|(?=\n)|\Z)|'(?:[^'\\\n]|\\.)*(?:'|(?=\n)|\Z))
  | (?P<open>[(\[{]) | (?P<close>[)\]}])
""", re.X | re.S)
_LONG_END = {'"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.S),
             "'''": re.compile(r"(?:[^'\\]|\\.|'(?!''))*'''", re.S),
             "/*": re.compile(r".*?\*/", re.S),
             "`": re.compile(r"(?:[^`\\]|\\.)*`", re.S)}
_OPENER = {")": "(", "]": "[", "}": "{"}


class Scan:
    """Bracket stack and open multi-line string/comment after some text; `feed` moves it on."""

    def __init__(self, python: bool) -> None:
        self.python = python
        self.stack: list[str] = []
        self.where: list[int] = []  # where each open bracket was opened (characters fed before)
        self.fed = 0
        self.low = 0  # the fewest brackets open at any point of the last `feed`
        self.long: str | None = None  # the delimiter of an open multi-line string or comment
        self.unmatched = 0  # closers with nothing open to close
        self.in_string = False  # the text fed last ended inside a one-line string

    def copy(self) -> Scan:
        other = Scan(self.python)
        other.stack, other.long, other.unmatched = list(self.stack), self.long, self.unmatched
        other.where, other.fed, other.in_string = list(self.where), self.fed, self.in_string
        return other

    @property
    def depth(self) -> int:
        return len(self.stack)

    @property
    def open(self) -> bool:
        return bool(self.stack) or self.long is not None

    def feed(self, text: str) -> Scan:
        pos, base = 0, self.fed
        self.fed += len(text)
        self.in_string = False
        self.low = len(self.stack)
        if self.long is not None:
            end = _LONG_END[self.long].match(text)
            if end is None:
                return self
            pos, self.long = end.end(), None
        for match in (_PY_TOKENS if self.python else _C_TOKENS).finditer(text, pos):
            kind, value = match.lastgroup, match.group()
            if kind == "open":
                self.stack.append(value)
                self.where.append(base + match.start())
            elif kind == "close":
                if self.stack and self.stack[-1] == _OPENER[value]:
                    self.stack.pop()
                    self.where.pop()
                    self.low = min(self.low, len(self.stack))
                else:
                    self.unmatched += 1
            elif kind == "long":
                delimiter = value[:3] if self.python else value[:2] if value[0] == "/" else "`"
                closer = "*/" if delimiter == "/*" else delimiter
                if len(value) < 2 * len(delimiter) or not value.endswith(closer) or (
                        delimiter == "/*" and len(value) < 4):
                    self.long = delimiter
            elif kind == "str" and match.end() == len(text) and (
                    len(value) < 2 or value[-1] != value[0] or value[-2:-1] == "\\"):
                self.in_string = True
        return self


# -- the cursor's surroundings -----------------------------------------------------------------

# A line that ends like this opens a block: the suggestion may span several lines.
_OPENS_BLOCK = re.compile(r"(:|\{|\[|\(|=>|->|\bdo|\bthen|\bbegin|=)\s*$")
_CLOSER = re.compile(r"\s*(?:[)\]}]|end\b)")
# Lines that start a top-level declaration: a safe place to start scanning (not inside a string).
_ANCHOR = re.compile(r"^(?:def|class|async|import|from|@|func|fn|pub|function|export|const|let|"
                     r"var|static|struct|impl|type|package|#include|interface|enum|mod|use|"
                     r"int|void|}|if __name__)\b", re.M)
# Python or a brace language? Python's compound headers end with `:`; brace languages end
# statements with `;` and open blocks with `{` (a Python dict literal does too, but rarely).
_PY_SIGNS = re.compile(r"^\s*(?:(?:async\s+)?(?:def|class|if|elif|else|for|while|try|except|"
                       r"finally|with)\b.*:|(?:import|from)\s+[\w.]+.*[^;{]|pass)\s*(?:#.*)?$",
                       re.M)
_C_SIGNS = re.compile(r"[;{]\s*(?://.*)?$", re.M)
_SNIFF = 20_000  # characters before the cursor looked at to tell
_SCAN_ALL = 300_000  # prefixes up to this long are scanned whole for brackets and strings
_SCAN_BACK = 20_000  # else this much of it, from a top-level declaration on
_LOOK = 4000
_LONG_LINE = 2000  # characters of the cursor's line scanned on each side of it, at most


def indent_of(line: str) -> int:
    """Columns of leading whitespace (a tab counts `TAB`)."""
    stripped = line.lstrip(" \t")
    return len(line[: len(line) - len(stripped)].expandtabs(TAB))


def _nows(text: str) -> str:
    return re.sub(r"\s+", "", text)


@dataclass
class Surroundings:
    """What the policy needs to know about where the cursor is, computed once per request."""

    python: bool
    line_prefix: str
    line_suffix: str
    after: str | None  # the first non-blank line below the cursor's line
    following: list[str]  # the suffix's lines below the cursor's line (a few dozen)
    suffix_head: str  # the start of the suffix
    at_line: Scan  # brackets and strings open where the cursor's line starts
    start_indent: int  # indentation of the statement the cursor's line ends (its first line)
    crlf: bool
    tabs: bool | None  # the document indents with tabs (True), spaces (False), or unknown
    unit: int  # columns per indentation level, for the document's spaces


def _following(suffix: str) -> list[str]:
    """The lines below the cursor's line, from the start of the suffix (whole lines only)."""
    head = suffix[:_LOOK].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return head[1:-1] if len(suffix) > _LOOK else head[1:]


# File name endings of Python; other known endings are brace languages. Unknown: guessed.
_PYTHON_FILES = (".py", ".pyi", ".pyw", ".pyx", ".pxd", ".sage", ".bzl", "SConstruct")
_BRACE_FILES = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".c", ".h", ".cc", ".cpp",
                ".cxx", ".hpp", ".hh", ".go", ".rs", ".java", ".kt", ".kts", ".scala", ".cs",
                ".swift", ".php", ".dart", ".m", ".mm", ".zig", ".css", ".scss", ".less", ".json",
                ".jsonc", ".groovy", ".gradle", ".proto", ".sol", ".v", ".sv", ".glsl", ".hlsl",
                ".cu", ".vue", ".svelte")


def is_python(path: str | None) -> bool | None:
    """Python (True), a brace language (False) or unknown (None), from a file name or URI."""
    if not path:
        return None
    name = path.rsplit("?", 1)[0].rsplit("#", 1)[0]
    if name.endswith(_PYTHON_FILES):
        return True
    if name.lower().endswith(_BRACE_FILES):
        return False
    return None


_last: tuple[Cursor | None, str | None, Surroundings | None] = (None, None, None)


def surroundings(cursor: Cursor, path: str | None = None) -> Surroundings:
    """Analyses `cursor` in the document `path` (a file name or URI, which says the language;
    without one it is guessed from the text). Memoised for the last cursor: `wants_stop` asks
    once per generated token."""
    global _last
    last_cursor, last_path, last = _last
    if last_cursor is cursor and last_path == path and last is not None:
        return last
    around = cursor.prefix[-_LOOK:] + cursor.suffix[:_LOOK]
    sniff = cursor.prefix[-_SNIFF:] + cursor.suffix[:_LOOK]
    python = is_python(path)
    if python is None:
        python = len(_PY_SIGNS.findall(sniff)) >= len(_C_SIGNS.findall(sniff))
    line_prefix = cursor.line_prefix
    start = len(cursor.prefix) - len(line_prefix)
    # A longer line is minified or generated: only _LONG_LINE characters on each side of the
    # cursor are scanned (a few times per request); what is open where that begins is guessed.
    line_prefix = line_prefix[-_LONG_LINE:]
    # Scanned from the top when that is cheap (about 7 ms per 100 kB), else from a declaration
    # line not too far back: what is open there is guessed, not known. A cursor whose prefix
    # does not reach the document's start (`Cursor.prefix_cut`) has no top to scan from.
    window_start = 0
    if start > _SCAN_ALL or cursor.prefix_cut:
        window_start = max(0, start - _SCAN_BACK)
        anchor = _ANCHOR.search(cursor.prefix, window_start, start)
        window_start = anchor.start() if anchor else window_start
    window = cursor.prefix[window_start:start]
    at_line = Scan(python).feed(window)
    at_line.unmatched = 0
    # A line that closes brackets opened on earlier lines ends a statement that started there.
    start_indent = indent_of(line_prefix)
    low = at_line.copy().feed(line_prefix).low
    first_line = start - window_start  # where, in `window`, the statement's first line starts
    if low < at_line.depth:
        first_line = window.rfind("\n", 0, at_line.where[low]) + 1
    # ... and a line continued with a backslash started on the line before.
    while first_line > 0 and window[:first_line - 1].rstrip(" \t").endswith("\\"):
        first_line = window.rfind("\n", 0, first_line - 1) + 1
    if first_line < start - window_start:
        start_indent = indent_of(window[first_line:])
    following = _following(cursor.suffix)
    after = next((ln for ln in following if ln.strip()), None)
    crlf = "\r\n" in cursor.prefix[-2000:] or "\r\n" in cursor.suffix[:2000]
    tabs, unit = indent_style(around, cursor.prefix, cursor.suffix, path)
    result = Surroundings(python, line_prefix, cursor.line_suffix[:_LONG_LINE], after, following,
                          cursor.suffix[:_LOOK].replace("\r\n", "\n"), at_line,
                          start_indent, crlf, tabs, unit)
    _last = (cursor, path, result)
    return result


# Indented lines: their leading whitespace, when code follows it. A line such as ` * text`
# continues a block comment at column 0: its space is not the document's indentation.
_INDENTED = re.compile(r"^([ \t]+)(?![*\s])", re.M)
_INDENTED_LINE = re.compile(r"([ \t]+)(?![*\s])")
_NEAR = 6  # indented lines nearest the cursor that vote tabs or spaces
_STYLE_SAMPLE = 400  # indented lines of the whole document looked at, when the cursor has none
# Languages with a fixed convention: gofmt indents Go with tabs and make requires a tab before
# every recipe line. Where the document has no indented line yet, PEP 8's four spaces.
_TAB_FILES = (".go", ".mk", ".mak", "/makefile", "/gnumakefile")
_SPACE_FILES = _PYTHON_FILES


def _vote(lines: list[str]) -> tuple[bool | None, int]:
    """(tabs?, columns per level of the space-indented ones) from indentation strings."""
    if not lines:
        return None, 4
    with_tabs = sum(1 for ln in lines if ln[0] == "\t")
    widths = [len(ln) for ln in lines if ln[0] == " "]
    unit = min(widths, default=4)
    return with_tabs > len(lines) - with_tabs, unit if unit in (2, 3, 4, 8) else 4


def _nearest_indents(prefix: str, suffix: str) -> list[str]:
    """The leading whitespace of the `_NEAR` indented lines nearest the cursor (its own line
    first, then alternately above and below, by distance), within `_LOOK` characters."""
    above = prefix[-_LOOK:].replace("\r", "").split("\n")
    below = suffix[:_LOOK].replace("\r", "").split("\n")
    lines = [above.pop() + below.pop(0)]
    if len(prefix) > _LOOK:
        above = above[1:]  # cut mid-line
    if len(suffix) > _LOOK:
        below = below[:-1]
    above.reverse()
    for i in range(max(len(above), len(below))):
        lines += [side[i] for side in (above, below) if i < len(side)]
    found: list[str] = []
    for line in lines:
        match = _INDENTED_LINE.match(line)
        if match:
            found.append(match.group(1))
            if len(found) >= _NEAR:
                break
    return found


def indent_style(around: str, prefix: str, suffix: str,
                 path: str | None = None) -> tuple[bool | None, int]:
    """Tabs (True), spaces (False) or unknown (None), and the columns of a space level.

    A language with a fixed convention follows it: gofmt indents Go with tabs and make needs a
    tab before every recipe line, whatever a raw string, a template or a pasted block in the file
    does. Otherwise the indented lines nearest the cursor decide — a count over a few thousand
    characters would let 40 lines of an embedded template outvote the 5 lines of code the user is
    writing in; else the whole document (a file's header has no indented line yet, the functions
    below it do); else the language's convention (Python: four spaces).
    """
    name = "/" + (path or "").rsplit("?", 1)[0].rsplit("#", 1)[0].rsplit("/", 1)[-1]
    if name.lower().endswith(_TAB_FILES):
        return True, 4
    # The width of a space level from every indented line around the cursor (the smallest one);
    # whether it is tabs or spaces from the nearest few.
    _, unit = _vote([m.group(1) for m in _INDENTED.finditer(around.replace("\r", ""))])
    tabs, _ = _vote(_nearest_indents(prefix, suffix))
    if tabs is not None:
        return tabs, unit
    sample: list[str] = []
    for text in (suffix, prefix):  # the cursor's neighbourhood is done: from there outwards
        for match in _INDENTED.finditer(text):
            sample.append(match.group(1).replace("\r", ""))
            if len(sample) >= _STYLE_SAMPLE:
                break
    if sample:
        return _vote(sample)
    if name.endswith(_SPACE_FILES):
        return False, 4
    return None, 4


def mode_for(cursor: Cursor, policy: str, path: str | None = None) -> str:
    """'single' or 'block'. Mid-line cursors get one line: the rest of the line is already there.

    A line that opens a block gets a block, unless the block is already below it (the next line
    is indented deeper): then the user is editing the header, and one line is what they want.
    """
    if policy == "never":
        return "single"
    if cursor.line_suffix.strip():
        return "single"
    if policy == "always":
        return "block"
    line = cursor.line_prefix
    if not line.strip():
        return "block"  # an empty line: start whatever comes next
    if not _OPENS_BLOCK.search(line):
        return "single"
    s = surroundings(cursor, path)
    if s.after is not None and indent_of(s.after) > s.start_indent:
        return "single"
    return "block"


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


def _code_tail(line: str, python: bool) -> str:
    """The line without a trailing comment (good enough to see how it ends)."""
    if python:
        if "#" in line:
            comment = [m for m in _PY_TOKENS.finditer(line) if m.lastgroup == "comment"]
            if comment:
                line = line[: comment[0].start()]
    else:
        match = [m for m in _C_TOKENS.finditer(line) if m.lastgroup == "comment"]
        if match:
            line = line[: match[0].start()]
    return line.rstrip()


def _expects_body(line: str, python: bool) -> bool:
    """After this (complete) line, is a deeper-indented line still part of the statement?"""
    code = _code_tail(line, python)
    if not code:
        return False
    if python:
        return code.endswith((":", "\\")) or bool(_OPENS_BLOCK.search(code))
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
    if after is None or not _CLOSER.match(after):
        return False
    return indent_of(after) == indent_of(line) and after.strip()[:1] == line.strip()[:1]


def _closes(line: str, scan: Scan) -> bool:
    """`line` starts by closing the innermost bracket open in `scan`."""
    first = line.strip()[:1]
    return bool(scan.stack) and _OPENER.get(first) == scan.stack[-1]


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
        if width == start and _CLOSER.match(line) and _suffix_closes(line, s):
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
            if (_CLOSER.match(line) and not _suffix_closes(line, s) and s.at_line.stack
                    and s.at_line.stack[-1] == _OPENER.get(line.strip()[0])):
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
    following = [(indent_of(ln), _nows(ln)) for ln in s.following if ln.strip()]
    if not following:
        return lines
    for start in range(1, len(lines)):
        tail = [(indent_of(ln), _nows(ln)) for ln in lines[start:] if ln.strip()]
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
    wanted = _nows(rest)
    if len(wanted) >= 2 and _nows(line).endswith(wanted):
        for cut in range(len(line), -1, -1):
            if _nows(line[cut:]) == wanted:
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
    if dropped is not None and (len(_nows(rest)) >= 3 or (on_line(dropped), below(dropped))
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
            if s.after is not None and _nows(lines[1]) == _nows(s.after):
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
