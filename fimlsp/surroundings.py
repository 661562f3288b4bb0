"""Reading the code around the cursor, for the completion policy (postprocess.py): brackets,
strings and comments open at the cursor (a small scanner, `Scan`), the language family (Python
or a brace language), the document's line endings and indentation style, and whether the
cursor wants one line or a block (`mode_for`).

All of it is computed once per request (`surroundings`, memoised for the last cursor), while
postprocess.py cuts each generated text against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fimlsp.context import Cursor

TAB = 4  # columns of a tab when comparing indentation

# -- a small scanner: brackets, strings and comments --------------------------------------------

PY_TOKENS = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<long>\"\"\"(?:[^"\\]|\\(?:.|\Z)|"(?!""))*(?:\"\"\"|\Z)
             |'''(?:[^'\\]|\\(?:.|\Z)|'(?!''))*(?:'''|\Z))
  | (?P<str>"(?:[^"\\\n]|\\(?:.|\Z))*(?:"|(?=\n)|\Z)|'(?:[^'\\\n]|\\(?:.|\Z))*(?:'|(?=\n)|\Z))
  | (?P<open>[(\[{]) | (?P<close>[)\]}])
""", re.X | re.S)
C_TOKENS = re.compile(r"""
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
OPENER = {")": "(", "]": "[", "}": "{"}


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
        for match in (PY_TOKENS if self.python else C_TOKENS).finditer(text, pos):
            kind, value = match.lastgroup, match.group()
            if kind == "open":
                self.stack.append(value)
                self.where.append(base + match.start())
            elif kind == "close":
                if self.stack and self.stack[-1] == OPENER[value]:
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
OPENS_BLOCK = re.compile(r"(:|\{|\[|\(|=>|->|\bdo|\bthen|\bbegin|=)\s*$")
CLOSER = re.compile(r"\s*(?:[)\]}]|end\b)")
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


def no_space(text: str) -> str:
    """`text` without any whitespace: lines compared ignoring it."""
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


def code_tail(line: str, python: bool) -> str:
    """The line without a trailing comment (good enough to see how it ends)."""
    if python:
        if "#" in line:
            comment = [m for m in PY_TOKENS.finditer(line) if m.lastgroup == "comment"]
            if comment:
                line = line[: comment[0].start()]
    else:
        match = [m for m in C_TOKENS.finditer(line) if m.lastgroup == "comment"]
        if match:
            line = line[: match[0].start()]
    return line.rstrip()


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
    s = surroundings(cursor, path)
    # `if x { // why` opens a block as much as `if x {` does: judge the code, not the comment.
    if not OPENS_BLOCK.search(code_tail(line, s.python)):
        return "single"
    if s.after is not None and indent_of(s.after) > s.start_indent:
        return "single"
    return "block"
