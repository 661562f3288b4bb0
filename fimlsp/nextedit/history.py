"""What the user did lately: edits per document from the didChange stream, and places viewed.

A next-edit model predicts the next change from the last ones, so it needs them as a developer
would describe them ("renamed the parameter on line 10"), not as keystrokes: the changes of one
burst of typing in one place are coalesced into one hunk. A change extends the open hunk when it
touches the hunk's lines or the line above or below and comes within `COALESCE_S` of the last
one; anything else closes it and opens a new one.

A hunk keeps the document version before its first change and after its last (`Text` versions
are immutable and share their unchanged chunks, so a kept version costs the chunks that changed,
not a copy of the file) and the span that differs: `before[start:old_end]` became
`after[start:new_end]`, everything around it identical. Rendering it as whole lines is done only
when a prompt asks for it.

Bounded: `MAX_HUNKS` per document, and only documents that are open; `close` drops all of it.
Places viewed (where the user's requests were, in other documents) are a short LRU.
"""

from __future__ import annotations

import difflib
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from lsprotocol import types

from fimlsp.documents import Text

MAX_HUNKS = 16  # per document: more than any prompt shows (Sweep's shows the last 6)
COALESCE_S = 5.0  # a pause longer than this starts a new hunk even in the same place
MAX_VIEWED = 8  # places in other documents remembered
MAX_HUNK_CHARS = 4000  # a hunk bigger than this (a paste, a reformat) is not shown to the model
CONTEXT_LINES = 3  # unchanged lines kept on each side of a hunk (a unified diff's usual context)


@dataclass(frozen=True)
class Hunk:
    """before[start:old_end] became after[start:new_end]; the text around it is the same."""

    uri: str
    before: Text
    after: Text
    start: int
    old_end: int
    new_end: int
    time: float
    cursor: int  # offset in `after` just past the last change: where the user was typing

    def lines(self) -> HunkLines | None:
        """The hunk as whole lines with one line of context on each side; None for a no-op
        (typed and deleted again) or one too big to show."""
        after, before = self.after, self.before
        first = after.line_of(self.start)
        line_start = after.line_start(first)  # the same offset in `before`: the prefix is shared
        new_last = after.line_of(self.new_end)
        old_last = before.line_of(self.old_end)
        old = before.slice(line_start, before.line_end(old_last))
        new = after.slice(line_start, after.line_end(new_last))
        if old == new or len(old) + len(new) > MAX_HUNK_CHARS:
            return None
        above = after.slice(after.line_start(first - 1), after.line_end(first - 1)) \
            if first > 0 else None
        below = after.slice(after.line_start(new_last + 1), after.line_end(new_last + 1)) \
            if new_last + 1 < after.line_count else None
        before_lines = tuple(after.slice(after.line_start(n), after.line_end(n))
                             for n in range(max(0, first - CONTEXT_LINES), first))
        after_lines = tuple(after.slice(after.line_start(n), after.line_end(n))
                            for n in range(new_last + 1,
                                           min(after.line_count, new_last + 1 + CONTEXT_LINES)))
        return HunkLines(self.uri, first, old, new, above, below, before_lines, after_lines)


@dataclass(frozen=True)
class HunkLines:
    """Whole lines: `old` (in the version before) became `new`, starting at 0-based `line` of
    the version after; `above` / `below`: the unchanged line on each side (None at an end)."""

    uri: str
    line: int
    old: str
    new: str
    above: str | None
    below: str | None
    # Up to CONTEXT_LINES unchanged lines before and after (a unified diff's context).
    context_before: tuple[str, ...] = ()
    context_after: tuple[str, ...] = ()

    def unified_diff(self) -> str:
        """The hunk as a unified diff with its context lines (\\n line breaks, each line ended),
        numbered in the whole file: what Zeta's edit events show."""
        before = [_lf(x) for x in self.context_before]
        after = [_lf(x) for x in self.context_after]
        old = before + _lf(self.old).split("\n") + after
        new = before + _lf(self.new).split("\n") + after
        first = self.line - len(before)  # 0-based line of the first line shown
        lines = list(difflib.unified_diff(old, new, n=CONTEXT_LINES, lineterm=""))[2:]
        out = []
        for line in lines:
            match = _HUNK_HEADER.match(line)
            if match:  # difflib numbers the snippet: number it in the file
                line = (f"@@ -{_range(int(match[1]) + first, match[2])} "
                        f"+{_range(int(match[3]) + first, match[4])} @@")
            out.append(line + "\n")
        return "".join(out)


_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@$")


def _range(start: int, length: str | None) -> str:
    """A unified diff range as difflib (and Rust's `similar`) write it: `start` alone for one
    line, `start,length` otherwise (an empty range names the line before it)."""
    return str(start) if length is None else f"{start},{length}"


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, compared 4k characters at a time (C-speed slices)."""
    n, i = min(len(a), len(b)), 0
    while i < n and a[i:i + 4096] == b[i:i + 4096]:
        i += 4096
    while i < n and a[i] == b[i]:
        i += 1
    return min(i, n)


def _key(uri: str) -> str:
    return unquote(uri)  # as documents.py keys them: clients escape the same path differently


class _Document:
    __slots__ = ("hunks", "version")

    def __init__(self, version: int | None) -> None:
        self.version = version
        self.hunks: deque[Hunk] = deque(maxlen=MAX_HUNKS)


class EditHistory:
    """Every open document's recent hunks and version; places viewed. Event loop only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._documents: dict[str, _Document] = {}
        self._viewed: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._clock = clock

    # -- the didOpen / didChange / didClose stream -----------------------------------------

    def open(self, uri: str, version: int | None) -> None:
        self._documents[_key(uri)] = _Document(version)

    def close(self, uri: str) -> None:
        key = _key(uri)
        self._documents.pop(key, None)
        self._viewed.pop(key, None)

    def set_version(self, uri: str, version: int | None) -> None:
        document = self._documents.get(_key(uri))
        if document is not None:
            document.version = version

    def version(self, uri: str) -> int | None:
        document = self._documents.get(_key(uri))
        return None if document is None else document.version

    def observer(self, uri: str, encoding: str
                 ) -> Callable[[types.TextDocumentContentChangeEvent, Text, Text], None]:
        """What `Documents.change` calls with each change and the versions around it."""
        key = _key(uri)

        def observe(change: types.TextDocumentContentChangeEvent, before: Text,
                    after: Text) -> None:
            if isinstance(change, types.TextDocumentContentChangePartial):
                rng = change.range
                start = before.offset(rng.start.line, rng.start.character, encoding)
                end = before.offset(rng.end.line, rng.end.character, encoding)
                start, end = min(start, end), max(start, end)
                self.record(key, before, after, start, end, len(change.text))
            else:  # the whole text: the span that differs, found once
                old, new = str(before), str(after)
                prefix = _common_prefix(old, new)
                limit = min(len(old), len(new)) - prefix
                suffix = 0
                while suffix < limit and old[-1 - suffix] == new[-1 - suffix]:
                    suffix += 1
                self.record(key, before, after, prefix, len(old) - suffix,
                            len(new) - suffix - prefix)

        return observe

    def record(self, uri: str, before: Text, after: Text, start: int, end: int,
               inserted: int) -> None:
        """before[start:end] was replaced by `inserted` characters, giving `after`."""
        document = self._documents.get(_key(uri))
        if document is None:
            return
        now = self._clock()
        last = document.hunks[-1] if document.hunks else None
        if last is not None and last.after is before and now - last.time <= COALESCE_S and \
                self._touches(last, before, start, end):
            low = min(last.start, start)
            high = max(last.new_end, end)  # in `before`, which is `last.after`
            document.hunks[-1] = Hunk(
                last.uri, last.before, after, low, last.old_end + (high - last.new_end),
                high + inserted - (end - start), now, start + inserted)
        else:
            document.hunks.append(Hunk(_key(uri), before, after, start, end, start + inserted,
                                       now, start + inserted))

    @staticmethod
    def _touches(hunk: Hunk, text: Text, start: int, end: int) -> bool:
        """The change is on the hunk's lines or the line next to them."""
        first, last = text.line_of(hunk.start), text.line_of(hunk.new_end)
        return text.line_of(start) <= last + 1 and text.line_of(end) >= first - 1

    # -- reading ----------------------------------------------------------------------------

    def hunks(self, uri: str) -> list[Hunk]:
        document = self._documents.get(_key(uri))
        return list(document.hunks) if document is not None else []

    def recent(self, limit: int) -> list[HunkLines]:
        """The last `limit` showable hunks of all open documents, oldest first."""
        every = sorted((h for d in self._documents.values() for h in d.hunks),
                       key=lambda h: h.time)
        out: list[HunkLines] = []
        for hunk in reversed(every):
            lines = hunk.lines()
            if lines is not None and (lines.old.strip() or lines.new.strip()) and \
                    lines.old.split() != lines.new.split():  # whitespace-only: not shown
                out.append(lines)
                if len(out) == limit:
                    break
        return out[::-1]

    def original(self, uri: str) -> Text | None:
        """The document before its oldest remembered edit (None: no edits remembered)."""
        document = self._documents.get(_key(uri))
        return document.hunks[0].before if document is not None and document.hunks else None

    # -- places viewed ----------------------------------------------------------------------

    def viewed(self, uri: str, line: int) -> None:
        key = _key(uri)
        self._viewed.pop(key, None)
        self._viewed[key] = (line, self._clock())
        while len(self._viewed) > MAX_VIEWED:
            self._viewed.popitem(last=False)

    def recently_viewed(self, exclude: str) -> list[tuple[str, int]]:
        """(uri, line) of other open documents, most recent first."""
        key = _key(exclude)
        return [(uri, line) for uri, (line, _) in reversed(self._viewed.items())
                if uri != key and uri in self._documents]

    def sizes(self) -> dict[str, int]:
        return {"history_documents": len(self._documents),
                "history_hunks": sum(len(d.hunks) for d in self._documents.values()),
                "viewed": len(self._viewed)}
