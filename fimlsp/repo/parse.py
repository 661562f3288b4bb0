"""One source file → its definitions and its syntax chunks.

Definitions are what a completion most often needs from another file: a function's signature
(and the first lines of its body, where the docstring is), a class's outline (its header, fields
and method signatures, not its method bodies). Chunks are the units of the lexical index: runs of
whole top-level statements (or class members) of about `CHUNK_LINES` lines, cut where the syntax
has a boundary rather than in the middle of a function.

Grammars: tree-sitter's own per-language wheels (`tree-sitter-python`, `-javascript`,
`-typescript`, `-go`, `-rust`, `-java`), each a small compiled parser. `tree-sitter-language-pack`
was the first choice, but its 1.x releases download each grammar from GitHub on first use (it
fails offline, and a language server must not download what nobody asked for); its last bundled
release (0.13) is frozen. Files of other languages, or where a grammar is not installed, get a
regex for the common definition keywords and line-boundary chunks: weaker, never absent.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

CHUNK_LINES = 24  # lines a chunk aims for; a syntax boundary within it is where it ends
MAX_DEF_LINES = 14  # lines of a function definition shown: signature, docstring, first lines
MAX_OUTLINE_LINES = 40  # lines of a class outline
MAX_LINE_CHARS = 240  # a longer line is data, cut


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # class | function | variable | type
    line: int  # 0-based first line (the defining line, after decorators)
    end_line: int
    text: str  # what the prompt shows: the signature and first lines, or an outline
    container: str = ""  # the enclosing class, for methods


@dataclass(frozen=True)
class Chunk:
    line: int
    end_line: int  # exclusive
    text: str


@dataclass
class Parsed:
    definitions: list[Definition] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    parser: str = "regex"  # "tree-sitter" or "regex"


# -- grammars ---------------------------------------------------------------------------------

# extension → (module, function returning the language pointer)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "py": ("tree_sitter_python", "language"), "pyi": ("tree_sitter_python", "language"),
    "js": ("tree_sitter_javascript", "language"), "jsx": ("tree_sitter_javascript", "language"),
    "mjs": ("tree_sitter_javascript", "language"), "cjs": ("tree_sitter_javascript", "language"),
    "ts": ("tree_sitter_typescript", "language_typescript"),
    "mts": ("tree_sitter_typescript", "language_typescript"),
    "cts": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"), "rs": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
}
_CLASS_LIKE = {
    "class_definition", "class_declaration", "class", "abstract_class_declaration",
    "interface_declaration", "enum_declaration", "struct_item", "enum_item", "trait_item",
    "union_item", "record_declaration", "annotation_type_declaration", "type_spec",
}
_FUNCTION_LIKE = {
    "function_definition", "function_declaration", "generator_function_declaration",
    "method_definition", "method_declaration", "constructor_declaration", "function_item",
    "function_signature_item", "function_signature", "abstract_method_signature",
    "method_signature", "macro_definition",
}
_OTHER_DEFS = {"type_alias_declaration": "type", "type_item": "type", "const_item": "variable",
               "static_item": "variable", "const_spec": "variable", "var_spec": "variable"}
# Not definitions, but what definitions sit in: descended into (function bodies never are).
_DESCEND_MAX = 5

_parsers: dict[str, Any] = {}
_missing: set[str] = set()


def parser_for(ext: str) -> Any | None:
    """A tree-sitter parser for files with extension `ext`, or None (no grammar installed)."""
    spec = _GRAMMARS.get(ext)
    if spec is None or spec in _missing:
        return None
    key = f"{spec[0]}.{spec[1]}"
    if key not in _parsers:
        try:
            from tree_sitter import Language, Parser

            module = importlib.import_module(spec[0])
            _parsers[key] = Parser(Language(getattr(module, spec[1])()))
        except Exception:  # not installed, or an ABI the binding refuses: the regex instead
            _missing.add(spec)  # type: ignore[arg-type]
            return None
    return _parsers[key]


def languages() -> list[str]:
    """The extensions whose grammar loads here (for `fimlsp.stats`)."""
    return sorted(ext for ext in _GRAMMARS if parser_for(ext) is not None)


# -- tree-sitter ------------------------------------------------------------------------------


def _line(lines: list[str], row: int) -> str:
    text = lines[row] if row < len(lines) else ""
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS]


def _rows(lines: list[str], start: int, end: int) -> str:
    """Lines start..end inclusive, each cut to MAX_LINE_CHARS, newline-terminated."""
    return "".join(_line(lines, r) + "\n" for r in range(start, min(end, len(lines) - 1) + 1))


def _name(node: Any) -> str | None:
    name = node.child_by_field_name("name")
    if name is None and node.type == "assignment":
        name = node.child_by_field_name("left")
    if name is None or name.type not in ("identifier", "type_identifier", "property_identifier",
                                         "field_identifier", "constant"):
        return None
    return name.text.decode("utf-8", "replace")


def _header_end(node: Any) -> int:
    """The last row of a definition's header: the row its body starts on when the body opens on
    the header's line (`f() {`), else the row before the body (Python's `def f():` then body)."""
    body = node.child_by_field_name("body")
    if body is None:
        return node.end_point[0]
    start = node.start_point[0]
    body_row = body.start_point[0]
    if body.type == "block" and body_row > start and node.type in ("function_definition",
                                                                   "class_definition"):
        return body_row - 1
    return body_row


def _unwrap(node: Any) -> Any:
    """The definition inside a decorator or an `export` wrapper."""
    while node.type in ("decorated_definition", "export_statement"):
        inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
        if inner is None:
            return node
        node = inner
    return node


def _outline(node: Any, lines: list[str]) -> str:
    """A class-like definition's header, its short members, and its methods' signatures."""
    body = node.child_by_field_name("body")
    start = node.start_point[0]
    if body is None or node.end_point[0] - start < MAX_OUTLINE_LINES // 2:
        return _rows(lines, start, min(node.end_point[0], start + MAX_OUTLINE_LINES - 1))
    header_end = _header_end(node)
    out = [_rows(lines, start, header_end)]
    used = header_end - start + 1
    for member in body.named_children:
        inner = _unwrap(member)
        first, last = member.start_point[0], member.end_point[0]
        if first <= header_end:
            continue
        if inner.type in _FUNCTION_LIKE or inner.type in _CLASS_LIKE:
            last = max(first, min(_header_end(inner), last))
        elif last - first > 2:
            continue
        if used + last - first + 1 > MAX_OUTLINE_LINES:
            break
        out.append(_rows(lines, first, last))
        used += last - first + 1
    closing = node.end_point[0]
    if closing > header_end and _line(lines, closing).strip() in ("}", "};", "end"):
        out.append(_rows(lines, closing, closing))
    return "".join(out)


def _definitions(root: Any, lines: list[str]) -> tuple[list[Definition], set[int]]:
    """The definitions under `root`, and the rows where statements or members begin."""
    found: list[Definition] = []
    boundaries: set[int] = set()

    def visit(node: Any, depth: int, container: str) -> None:
        for child in node.named_children:
            if depth <= 1:
                boundaries.add(child.start_point[0])
            inner = _unwrap(child)
            kind = ("class" if inner.type in _CLASS_LIKE else
                    "function" if inner.type in _FUNCTION_LIKE else _OTHER_DEFS.get(inner.type))
            name = _name(inner) if kind else None
            if kind and name:
                start = inner.start_point[0]
                if kind == "class":
                    text = _outline(inner, lines)
                else:
                    text = _rows(lines, start, min(inner.end_point[0],
                                                   start + MAX_DEF_LINES - 1))
                found.append(Definition(name, kind, start, inner.end_point[0] + 1, text,
                                        container))
                if kind == "class" and depth < _DESCEND_MAX:
                    visit(inner.child_by_field_name("body") or inner, depth + 1, name)
                continue
            if inner.type in _FUNCTION_LIKE or depth >= _DESCEND_MAX:
                continue
            if depth == 0 and inner.type in ("expression_statement", "lexical_declaration",
                                             "variable_declaration"):
                _variables(inner, lines, found)
                continue
            if inner.type in ("impl_item", "declaration_list", "type_declaration",
                              "const_declaration", "var_declaration", "block", "class_body",
                              "if_statement", "module", "namespace_declaration",
                              "internal_module", "statement_block", "program", "source_file",
                              "else_clause", "try_statement", "mod_item"):
                visit(inner.child_by_field_name("body") or inner, depth + 1, container)

    visit(root, 0, "")
    return found, boundaries


def _variables(statement: Any, lines: list[str], found: list[Definition]) -> None:
    """Module-level `NAME = ...` (Python) and `const NAME = ...` (JavaScript)."""
    for child in statement.named_children:
        if child.type in ("assignment", "variable_declarator"):
            name = _name(child)
            if not name:
                continue
            start, end = statement.start_point[0], statement.end_point[0]
            value = child.child_by_field_name("value")
            kind = "function" if value is not None and value.type in (
                "arrow_function", "function_expression", "function") else "variable"
            limit = MAX_DEF_LINES if kind == "function" else 6
            found.append(Definition(name, kind, start, end + 1,
                                    _rows(lines, start, min(end, start + limit - 1))))


# -- without a grammar ------------------------------------------------------------------------

_DEF_RE = re.compile(
    r"^[ \t]*(?:(?:export|default|public|private|protected|internal|static|async|abstract|"
    r"final|override|pub(?:\([\w:]+\))?|local|unsafe|inline|extern|sealed|open|data)\s+)*"
    r"(?:def|class|function|func|fn|struct|interface|trait|enum|type|module|sub|proc|object|"
    r"protocol|record|defn|defun|defmacro|macro)\s+\*?([A-Za-z_$][\w$]*)", re.M)


def _regex_definitions(text: str, lines: list[str]) -> tuple[list[Definition], set[int]]:
    found = []
    boundaries = set()
    for match in _DEF_RE.finditer(text):
        row = text.count("\n", 0, match.start())
        keyword = match.group(0).split()[-2] if len(match.group(0).split()) > 1 else ""
        kind = "function" if keyword in ("def", "function", "func", "fn", "sub", "proc", "defn",
                                         "defun", "defmacro", "macro") else "class"
        found.append(Definition(match.group(1), kind, row, row + 1,
                                _rows(lines, row, row + MAX_DEF_LINES - 1)))
        boundaries.add(row)
    for row, line in enumerate(lines):
        if line and not line[0].isspace() and row > 0 and not lines[row - 1].strip():
            boundaries.add(row)
    return found, boundaries


# -- chunks -----------------------------------------------------------------------------------


def _chunks(lines: list[str], boundaries: set[int]) -> list[Chunk]:
    """The file cut into runs of about CHUNK_LINES lines, at syntax boundaries where there is
    one in reach, else every CHUNK_LINES lines."""
    cuts = sorted(b for b in boundaries if 0 < b < len(lines))
    chunks = []
    start = 0
    import bisect

    while start < len(lines):
        limit = start + CHUNK_LINES
        i = bisect.bisect_right(cuts, limit) - 1
        end = cuts[i] if i >= 0 and cuts[i] > start + CHUNK_LINES // 3 else limit
        end = min(end, len(lines))
        text = "".join(_line(lines, r) + "\n" for r in range(start, end))
        if text.strip():
            chunks.append(Chunk(start, end, text))
        start = end
    return chunks


def parse(text: str, ext: str) -> Parsed:
    """The definitions and chunks of one file's text (`ext`: its extension, lowercase)."""
    lines = text.splitlines()
    parser = parser_for(ext)
    if parser is not None:
        try:
            tree = parser.parse(text.encode("utf-8"))
            definitions, boundaries = _definitions(tree.root_node, lines)
            return Parsed(definitions, _chunks(lines, boundaries), "tree-sitter")
        except (RecursionError, ValueError):  # a pathological file: the regex still works
            pass
    definitions, boundaries = _regex_definitions(text, lines)
    return Parsed(definitions, _chunks(lines, boundaries), "regex")
