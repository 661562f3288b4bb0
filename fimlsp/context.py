"""The cursor's context: the document split at the cursor, and snippets of other documents.

Positions are 0-based line / code unit of the encoding negotiated at initialize (`positions`);
`documents.Text.offset` turns them into offsets, and a position outside the document is the
client's bug and gets an INVALID_PARAMS error rather than a silently clamped guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from fimlsp.documents import Text
from fimlsp.positions import LINE_BREAK


@dataclass(frozen=True)
class Cursor:
    """The document split at the cursor, plus what the policy needs to know about the line."""

    prefix: str
    suffix: str
    line: int
    character: int  # code units of the negotiated encoding, as the client counts
    prefix_cut: bool = False  # `prefix` begins after the document's start (a bounded window)

    @property
    def line_prefix(self) -> str:
        return self.prefix[max(self.prefix.rfind("\n"), self.prefix.rfind("\r")) + 1:]

    @property
    def line_suffix(self) -> str:
        match = LINE_BREAK.search(self.suffix)
        return self.suffix[: match.start()] if match else self.suffix


def split_at(text: str, line: int, character: int, encoding: str = "utf-16") -> Cursor:
    """The whole document split at an LSP position; INVALID_PARAMS when it is outside the
    document. For tools and benchmarks that hold a document as one string; the server's cursor
    is `Completer.cursor_for`, which keeps only a window of the text around the position."""
    offset = Text(text).offset(line, character, encoding, clamp=False)
    return Cursor(prefix=text[:offset], suffix=text[offset:], line=line, character=character)


# -- neighbour context ---------------------------------------------------------------------------

WINDOW_LINES = 16  # lines per candidate snippet, and the cursor's query window
MIN_SIMILARITY = 0.1  # Jaccard below this is noise, not context
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


@dataclass(frozen=True)
class Snippet:
    """A piece of another open document, shown to the model before the FIM part."""

    path: str  # as the model sees it: the last path components
    text: str
    score: float
    line: int = 0  # first line of the snippet in its document
    uri: str = ""  # the document it came from
    reason: str = ""  # why it was chosen, for `fimlsp.prompt` (the workspace index's snippets)


def _words(lines: list[str]) -> frozenset[str]:
    return frozenset(_WORD.findall("\n".join(lines)))


def query_words(cursor: Cursor) -> frozenset[str]:
    """What the user is working on: the lines above the cursor and a few below it.

    The cursor's own line is left out on purpose: typing on it then never changes the query, so
    the chosen snippets (at the very start of the prompt) stay the same and so does the cache.
    """
    above = LINE_BREAK.split(cursor.prefix)[:-1][-WINDOW_LINES:]
    below = LINE_BREAK.split(cursor.suffix)[1:5]
    return _words(above + below)


def display_path(uri: str) -> str:
    """The last two components of a document's path: enough for the model, nothing private."""
    from urllib.parse import unquote, urlparse

    path = unquote(urlparse(uri).path) if "://" in uri else uri
    return "/".join(path.replace("\\", "/").split("/")[-2:])


Chunks = tuple[tuple[int, frozenset[str], str], ...]


def _chunks(text: str, max_lines: int) -> Chunks:
    """(first line, identifiers, text) of each window of `text`."""
    lines = text.splitlines()[:max_lines]
    step = WINDOW_LINES // 2
    out = []
    for start in range(0, max(len(lines) - step, 1), step):
        chunk = lines[start:start + WINDOW_LINES]
        words = _words(chunk)
        if words:
            out.append((start, words, "\n".join(chunk) + "\n"))
    return tuple(out)


class ChunkIndex:
    """The windows of each open document, for its current text only.

    The documents other than the one being edited rarely change between keystrokes, so their
    windows are kept. One entry per document, replaced when its text changes and dropped by
    `prune` when it closes or changes: the only text held is the text the document store holds
    (the same object). An LRU keyed by text kept every old version of an edited neighbour alive,
    up to 64 whole documents.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, int, Chunks]] = {}

    def chunks(self, uri: str, text: str, max_lines: int) -> Chunks:
        entry = self._entries.get(uri)
        if entry is not None and entry[1] == max_lines and self._same(entry[0], text):
            if entry[0] is not text:  # equal, another object: hold the store's, not ours
                self._entries[uri] = (text, max_lines, entry[2])
            return entry[2]
        chunks = _chunks(text, max_lines)
        self._entries[uri] = (text, max_lines, chunks)
        return chunks

    def is_current(self, uri: str, text: str | None) -> bool:
        """Whether the windows of `uri` were made from `text` (its text now)."""
        entry = self._entries.get(uri)
        return entry is not None and text is not None and self._same(entry[0], text)

    def prune(self, documents: Mapping[str, str]) -> None:
        """Drops the entries of closed documents and of documents edited since."""
        for uri in [u for u, e in self._entries.items()
                    if not self._same(e[0], documents.get(u))]:
            del self._entries[uri]

    def forget(self, uri: str) -> None:
        self._entries.pop(uri, None)

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _same(held: str, text: str | None) -> bool:
        # Identity first: the store keeps one object per version, so this is the common case.
        return held is text or (text is not None and len(held) == len(text) and held == text)


def similar_snippets(query: frozenset[str], documents: Mapping[str, str], exclude: str,
                     max_chars: int, max_lines_per_doc: int = 20_000,
                     index: ChunkIndex | None = None) -> list[Snippet]:
    """The windows of other open documents most similar to `query` (Jaccard over identifiers),
    best last, within `max_chars`; windows overlap by half so a function is not cut in two.
    `index` keeps the windows of unchanged documents from one call to the next."""
    if not query or max_chars <= 0:
        return []
    scored: list[Snippet] = []
    for uri in documents:
        if uri == exclude:  # before reading it: a store may join a document's text on read
            continue
        text = documents[uri]
        if "\x00" in text[:4096]:
            continue
        chunks = (index.chunks(uri, text, max_lines_per_doc) if index is not None
                  else _chunks(text, max_lines_per_doc))
        for start, words, chunk in chunks:
            score = len(query & words) / len(query | words)
            if score >= MIN_SIMILARITY:
                scored.append(Snippet(display_path(uri), chunk, score, start, uri))
    chosen: list[Snippet] = []
    used = 0
    for snippet in sorted(scored, key=lambda s: -s.score):
        overlaps = any(c.path == snippet.path and abs(c.line - snippet.line) < WINDOW_LINES
                       for c in chosen)
        if overlaps or used + len(snippet.text) > max_chars:
            continue
        chosen.append(snippet)
        used += len(snippet.text)
    return chosen[::-1]  # most similar closest to the code being completed
