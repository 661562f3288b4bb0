"""Per request: which parts of the workspace index go into the prompt, and why.

Two sources, both cheap enough for every keystroke (dict look-ups and one BM25 query):

- definitions of the identifiers around the cursor (the cursor's line first, then the lines
  above, nearest first, then a few below), resolved through the index by name; where several
  files define the name, the one the current file imports it from wins (Python's `from a.b import
  X` / `import a.b as m; m.X`, JavaScript's `import {X} from './a/b'`), then top-level over
  methods (unless the use is `.name`), then the one nearest the current file;
- chunks most like the code above the cursor (BM25), for what no identifier names.

Stability is the point of the rest: the snippets open the prompt, so any change re-prefills the
whole window, which on a CPU is the cost of a completion. So the choice per document is a list
that only grows at its end (a newly used identifier adds its definition) and loses its oldest
entries when it outgrows its budget; identifiers still being typed (the word at the cursor) are
never looked up; the BM25 part is chosen again only when the cursor has moved `RESEARCH_LINES`
lines, as the open-document neighbours are. Whatever the current file or the open documents'
snippets already hold is left out.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from fimlsp.context import Cursor, Snippet
from fimlsp.repo.analysis import terms
from fimlsp.repo.index import FileEntry, RepoIndex
from fimlsp.repo.parse import Definition

MAX_DEFINITIONS = 8  # definitions looked up per request (nearest identifiers first)
LINES_ABOVE = 30  # lines above the cursor whose identifiers are looked up
LINES_BELOW = 3
QUERY_LINES = 16  # lines above the cursor that make the BM25 query
SIMILAR = 2  # BM25 chunks per request
RESEARCH_LINES = 8  # the cursor moves this far before the BM25 chunks are chosen again
MIN_SCORE = 4.0  # BM25 below this is chance, not similarity
_DOCUMENTS = 64  # documents whose choice is remembered (LRU)
_LOCAL_CHARS = 8192  # text around the cursor scanned for definitions of its own
_HEAD_CHARS = 8192  # start of the document scanned for imports
_WORD = re.compile(r"[A-Za-z_$][\w$]*")
_QUALIFIER = re.compile(r"[\w$]+$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PY_FROM = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+import\s+\(?([^)#\n]*(?:\n[^)#]*)?)", re.M)
_PY_IMPORT = re.compile(r"^\s*import\s+([\w.]+)(?:\s+as\s+(\w+))?", re.M)
_JS_IMPORT = re.compile(
    r"import\s+(?:type\s+)?(?:(\w+)\s*,?\s*)?(?:\{([^}]*)\}|\*\s+as\s+(\w+))?\s*from\s*['\"]"
    r"([^'\"]+)['\"]|(?:const|let|var)\s+(?:\{([^}]*)\}|(\w+))\s*=\s*require\(\s*['\"]"
    r"([^'\"]+)['\"]\s*\)")
_LOCAL_DEF = re.compile(
    r"\b(?:def|class|function|func|fn|struct|interface|trait|enum|type|const|let|var)\s+"
    r"\*?([A-Za-z_$][\w$]*)")


@dataclass(frozen=True)
class Choice:
    """One snippet from the index, as the prompt will show it."""

    key: tuple[str, int]  # (file, first line): one snippet per place
    snippet: Snippet
    kind: str  # "definition" | "similar"
    version: int  # of its file's index entry: a re-indexed file refreshes it
    name: str = ""  # the identifier, for a definition


@dataclass
class _State:
    definitions: list[Choice] = field(default_factory=list)  # prompt order: oldest first
    similar: list[Choice] = field(default_factory=list)  # best first
    similar_line: int = -(1 << 30)
    head: str = ""  # the start of the document, where its imports are ...
    imports: dict[str, str] = field(default_factory=dict)  # ... and what they import
    editor: list[Choice] = field(default_factory=list)  # sent by the client (`fimlsp.context`)


def uri_path(uri: str) -> Path | None:
    """The local path of a `file:` URI (resolved), else None."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    try:
        return Path(unquote(parsed.path)).resolve()
    except OSError:
        return None


def _identifiers(cursor: Cursor) -> list[tuple[str, str | None, int]]:
    """(identifier, what precedes it in `x.name` or None, distance in lines) around the cursor,
    nearest first, once each. The word touching the cursor is left out: it is still being
    typed."""
    line = cursor.line_prefix
    partial = re.search(r"[\w$]+$", line)
    if partial:
        line = line[:partial.start()]
    above = _LINE_BREAK.split(cursor.prefix[-LINES_ABOVE * 200:])[:-1][-LINES_ABOVE:]
    below = _LINE_BREAK.split(cursor.suffix[:LINES_BELOW * 400])[1:1 + LINES_BELOW]
    seen: set[str] = set()
    out: list[tuple[str, str | None, int]] = []

    def take(text: str, distance: int) -> None:
        for match in reversed(list(_WORD.finditer(text))):
            word = match.group(0)
            if len(word) < 3 or word in seen:
                continue
            seen.add(word)
            qualifier = None
            if match.start() > 0 and text[match.start() - 1] == ".":
                before = _QUALIFIER.search(text, 0, match.start() - 1)
                qualifier = before.group(0) if before else ""
            out.append((word, qualifier, distance))

    take(line, 0)
    for distance, text in enumerate(reversed(above), 1):
        take(text, distance)
    for distance, text in enumerate(below, 1):
        take(text, distance)
    return out


def _module_path(spec: str) -> str:
    """A module as a path suffix: `..a.b` → `a/b`, `./a/b.js` → `a/b`."""
    if "/" in spec:
        parts = [p for p in spec.split("/") if p not in (".", "..", "")]
        path = "/".join(parts)
        return re.sub(r"\.(js|jsx|ts|tsx|mjs|cjs|mts|cts)$", "", path)
    return spec.lstrip(".").replace(".", "/")


def imports(text: str) -> dict[str, str]:
    """Names the file imports → the module path they come from (a suffix to match)."""
    found: dict[str, str] = {}
    for match in _PY_FROM.finditer(text):
        module = _module_path(match.group(1))
        for item in match.group(2).split(","):
            words = item.split()
            if words:
                found[words[-1]] = module
                found.setdefault(words[0], module)
    for match in _PY_IMPORT.finditer(text):
        module = _module_path(match.group(1))
        found[match.group(2) or match.group(1).split(".")[0]] = module
    for match in _JS_IMPORT.finditer(text):
        module = _module_path(match.group(4) or match.group(7) or "")
        names = [match.group(1), match.group(3), match.group(6)]
        for group in (match.group(2), match.group(5)):
            for item in (group or "").split(","):
                words = item.replace(":", " as ").split()
                names += [words[0], words[-1]] if words else []
        for name in names:
            if name:
                found[name] = module
    return found


def _matches_module(rel: str, module: str) -> bool:
    if not module:
        return False
    stem = str(PurePosixPath(rel).with_suffix(""))
    return stem == module or stem.endswith("/" + module) or \
        stem in (module + "/__init__", module + "/index") or \
        stem.endswith("/" + module + "/__init__") or stem.endswith("/" + module + "/index")


class RepoContext:
    """The snippets of the index chosen for each document, kept stable across keystrokes."""

    def __init__(self) -> None:
        self._states: OrderedDict[str, _State] = OrderedDict()
        self.last: dict[str, list[dict[str, object]]] = {}  # key → why, for `fimlsp.prompt`

    def _state(self, key: str) -> _State:
        state = self._states.pop(key, None) or _State()
        self._states[key] = state
        while len(self._states) > _DOCUMENTS:
            self._states.popitem(last=False)
        return state

    def set_editor(self, key: str, snippets: list[Snippet]) -> None:
        """Definitions the editor's own language server gave for the symbols near the cursor
        (sent by the client): the best-ranked snippets of `key` until the next call. The same
        ones sent again change nothing, so the prompt (and its cache) stays."""
        state = self._state(key)
        fresh = [Choice((s.path, s.line), s, "editor", 0) for s in snippets]
        if [(c.key, c.snippet.text) for c in fresh] != \
                [(c.key, c.snippet.text) for c in state.editor]:
            state.editor = fresh

    def editor(self, key: str) -> bool:
        state = self._states.get(key)
        return bool(state and state.editor)

    def forget(self, key: str) -> None:
        self._states.pop(key, None)
        self.last.pop(key, None)

    def __len__(self) -> int:
        return len(self._states)

    def choose(self, index: RepoIndex | None, key: str, cursor: Cursor, max_chars: int,
               held: list[Snippet] = ()) -> list[Snippet]:  # type: ignore[assignment]
        """The index's snippets for a prompt at `cursor` in document `key`, oldest first (the
        order they open the prompt in), at most `max_chars` of text; `held` are the snippets of
        open documents the prompt already has. The editor's definitions (`set_editor`) come
        last, nearest the code, and are the last to go when the budget is short."""
        started = time.perf_counter()
        state = self._state(key)
        editor = []
        for choice in state.editor:  # they arrive nearest first
            if len(choice.snippet.text) <= max_chars:
                editor.insert(0, choice)
                max_chars -= len(choice.snippet.text)
        if index is None:
            self._explain(key, editor)
            return [c.snippet for c in editor]
        taken = {c.key for c in editor}
        here = uri_path(key)
        window = cursor.prefix[-_LOCAL_CHARS:] + cursor.suffix[:_LOCAL_CHARS // 4]
        local = set(_LOCAL_DEF.findall(window))
        entry = index.entry(here) if here is not None else None
        if entry is not None:  # the file as indexed (saved): its definitions are its own
            local |= {d.name for d in entry.definitions}
        head = cursor.prefix[:_HEAD_CHARS]
        if head != state.head:  # imports are parsed again only when the head changes
            state.head, state.imports = head, imports(head)
        wanted = [c for c in self._definitions(index, cursor, here, local, state.imports,
                                               window, held) if c.key not in taken]
        state.definitions = self._merge(index, state.definitions, wanted, max_chars)
        if abs(cursor.line - state.similar_line) >= RESEARCH_LINES or \
                not self._current(index, state.similar):
            state.similar = self._similar(index, cursor, here, held, wanted)
            state.similar_line = cursor.line
        # The chunks get what the definitions leave; they go first, the definitions (the
        # surer context) next to the code.
        room = max_chars - sum(len(c.snippet.text) for c in state.definitions)
        similar = []
        for choice in state.similar:
            if len(choice.snippet.text) <= room and all(
                    choice.key[0] != d.key[0] or not (choice.snippet.line <= d.snippet.line <
                                                      choice.snippet.line + _lines(choice))
                    for d in state.definitions):
                similar.append(choice)
                room -= len(choice.snippet.text)
        chosen = [*similar[::-1], *state.definitions, *editor]
        counters = index.counters
        counters.requests += 1
        counters.requests_with_context += int(bool(chosen))
        index.count_query((time.perf_counter() - started) * 1000)
        self._explain(key, chosen)
        return [c.snippet for c in chosen]

    def _explain(self, key: str, chosen: list[Choice]) -> None:
        self.last[key] = [{"path": c.snippet.path, "line": c.snippet.line + 1, "kind": c.kind,
                           "reason": c.snippet.reason, "score": round(c.snippet.score, 2),
                           "chars": len(c.snippet.text)} for c in chosen]

    # -- the two sources --------------------------------------------------------------------

    def _definitions(self, index: RepoIndex, cursor: Cursor, here: Path | None,
                     local: set[str], imported: dict[str, str], window: str,
                     held: list[Snippet]) -> list[Choice]:
        out: list[Choice] = []
        counters = index.counters
        for word, qualifier, distance in _identifiers(cursor):
            if word in local:
                continue  # defined in this file: the prompt holds it, or its window does
            found = index.definitions(word)
            counters.definition_lookups += 1
            module = imported.get(word) or imported.get(qualifier or "", "")
            best = _best(found, word, qualifier is not None, here, module)
            if best is None:
                continue
            entry, definition = best
            first = definition.text.split("\n", 1)[0].strip()
            if first and first in window:
                continue  # already in the prompt (a copy, or the current file's own text)
            if any(s.uri and uri_path(s.uri) == entry.path and
                   s.line <= definition.line < s.line + s.text.count("\n") for s in held):
                continue  # an open document's snippet shows it already
            counters.definition_hits += 1
            where = "the cursor's line" if distance == 0 else f"{distance} lines away"
            via = f", imported from {module}" if module else ""
            reason = f"definition of {word} (used on {where}{via})"
            snippet = Snippet(entry.rel, definition.text, 100.0 - distance, definition.line,
                              entry.path.as_uri(), reason)
            out.append(Choice((entry.rel, definition.line), snippet, "definition",
                              entry.version, word))
            if len(out) == MAX_DEFINITIONS:
                break
        return out

    def _similar(self, index: RepoIndex, cursor: Cursor, here: Path | None,
                 held: list[Snippet], wanted: list[Choice]) -> list[Choice]:
        above = _LINE_BREAK.split(cursor.prefix[-QUERY_LINES * 200:])[:-1][-QUERY_LINES:]
        query = terms("\n".join(above))
        index.counters.searches += 1
        exclude = {here} if here is not None else set()
        exclude |= {p for s in held if s.uri and (p := uri_path(s.uri)) is not None}
        out = []
        for hit in index.search(query, exclude, SIMILAR + len(wanted)):
            if hit.score < MIN_SCORE:
                break
            chunk = hit.chunk
            if any(w.key[0] == hit.entry.rel and chunk.line <= w.snippet.line < chunk.end_line
                   for w in wanted):
                continue  # its definition is chosen already
            reason = f"similar to the lines above (BM25 {hit.score:.1f}: " + \
                ", ".join(hit.matched[:6]) + ")"
            snippet = Snippet(hit.entry.rel, chunk.text, hit.score, chunk.line,
                              hit.entry.path.as_uri(), reason)
            out.append(Choice((hit.entry.rel, chunk.line), snippet, "similar",
                              hit.entry.version))
            if len(out) == SIMILAR:
                break
        index.counters.search_hits += int(bool(out))
        return out

    # -- keeping it stable ------------------------------------------------------------------

    @staticmethod
    def _current(index: RepoIndex, choices: list[Choice]) -> bool:
        for choice in choices:
            path = uri_path(choice.snippet.uri)
            entry = index.entry(path) if path is not None else None
            if entry is None or entry.version != choice.version:
                return False
        return True

    @staticmethod
    def _merge(index: RepoIndex, chosen: list[Choice], wanted: list[Choice],
               max_chars: int) -> list[Choice]:
        """The previous definitions, stale ones refreshed or dropped, then the newly wanted at
        the end; over `max_chars`, the oldest no longer wanted go first, then the wanted ones
        farthest from the cursor."""
        fresh = {c.key: c for c in wanted}
        kept: list[Choice] = []
        for choice in chosen:
            if choice.key in fresh:
                kept.append(fresh.pop(choice.key))  # the same place, maybe a newer version
                continue
            path = uri_path(choice.snippet.uri)
            entry = index.entry(path) if path is not None else None
            if entry is not None and entry.version == choice.version:
                kept.append(choice)
        rank = {c.key: i for i, c in enumerate(wanted)}  # nearest first
        kept += [c for c in wanted if c.key in fresh]
        size = sum(len(c.snippet.text) for c in kept)
        while size > max_chars and kept:
            unwanted = [i for i, c in enumerate(kept) if c.key not in rank]
            drop = unwanted[0] if unwanted else max(range(len(kept)),
                                                    key=lambda i: rank[kept[i].key])
            size -= len(kept[drop].snippet.text)
            del kept[drop]
        return kept


def _lines(choice: Choice) -> int:
    return choice.snippet.text.count("\n")


def _best(found: list[tuple[FileEntry, Definition]], word: str, dotted: bool,
          here: Path | None, module: str) -> tuple[FileEntry, Definition] | None:
    """The definition `word` most likely means, or None (not defined elsewhere, or so many
    places define it that a guess would mostly be wrong)."""
    candidates = [(e, d) for e, d in found if e.path != here]
    if not candidates:
        return None
    def rank(item: tuple[FileEntry, Definition]) -> tuple[int, int, int, str, int]:
        entry, definition = item
        score = 0
        if module and _matches_module(entry.rel, module):
            score += 8
        if dotted == bool(definition.container):
            score += 2
        if definition.kind == "class":
            score += 1
        near = 0
        if here is not None:
            near = len(set(entry.path.parent.parts) & set(here.parent.parts))
        return (score, near, -len(entry.rel), entry.rel, -definition.line)

    ranked = sorted(candidates, key=rank, reverse=True)
    top = rank(ranked[0])
    if top[0] < 8 and len(ranked) > 3 and rank(ranked[3])[:2] == top[:2]:
        return None  # four equally likely places: `get`, `run`, `__init__`
    return ranked[0]
