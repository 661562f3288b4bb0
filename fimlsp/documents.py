"""The text of open documents: the server's only copy, kept the LSP way, O(edit) per keystroke.

**One copy.** `Documents` is the only copy of what the client has open: pygls's workspace
never sees a document (`lsp.sync` says why), and the server's didOpen/didChange/didClose
handlers keep this store in step.

**Lines and positions as LSP counts them** (`positions`): a line ends at \\r\\n, \\r or \\n
and nowhere else; a character offset counts code units of the negotiated position encoding.

**Out-of-range positions in edits are clamped as VS Code clamps them** (its TextDocument /
TextModel `validatePosition`), never refused: refusing one change would leave the document out of
step with the editor for the rest of the session.

- a negative line → the start of the document (0:0);
- a line past the last → the end of the document;
- a negative character → the start of its line;
- a character past the end of its line → the end of that line (before its line break);
- a character inside a character (between the two halves of a surrogate pair in UTF-16, inside
  a UTF-8 sequence) → the start of that character;
- a range whose end comes before its start is applied with the two swapped.

Every change of a notification is applied in order, each to the text the previous one left.
Requests (completion positions) are *not* clamped: `Text.offset(..., clamp=False)` raises
INVALID_PARAMS, because a position outside the document there is the client's bug to report.

**O(edit), not O(document).** A `Text` is an immutable version of a document: a tuple of chunks
of about 4k characters (never split inside \\r\\n and not aligned to lines, so a 5 MB minified
line is 1,200 chunks rather than one string copied per keystroke), with each chunk's length, line
break count and (per encoding, computed once) code-unit count. An edit rebuilds only the chunks
it touches, O(edited text + a chunk), and makes a new tuple of chunk references: the rest is
shared. Lookups bisect running sums of those counts (`itertools.accumulate`, once per version)
and then scan one chunk. The tuple copy and the sums are O(number of chunks), in C; past 1,024
chunks (4 MB) chunks grow instead of multiplying, so that part stays bounded and an edit's cost
is O(edited text + one chunk). Measured per didChange (`fimlsp bench edits`, in-process): about
0.1 ms for 100 lines, 0.2 ms for 100k lines, 0.1 ms for 5 MB or 48 MB on one line.

Why not a line list with a line-start index: shifting the offsets after an edit is O(lines) per
keystroke, and a 5 MB line would be copied per keystroke. Why not a rope library: Python has no
well-kept one, and a balanced tree walked in Python costs more than these C-speed tuple copies at
every size an editor opens.

Versions being immutable is also what makes them safe to hand to the model's worker thread while
the event loop applies the next keystroke.

Documents over `MAX_DOCUMENT_CHARS` are stored and kept in step, never scanned: they are not
offered as neighbour context, and completion in them is refused (`Completer.cursor_for`).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from urllib.parse import unquote

from lsprotocol import types

from fimlsp.errors import ErrorKind, FimError
from fimlsp.positions import LINE_BREAK, index_of_units, line_breaks, units_len

MAX_DOCUMENT_CHARS = 8_000_000  # beyond this we store, keep in step, and never scan

TARGET_CHUNK = 4096  # characters per chunk, about, up to MAX_CHUNKS chunks
MAX_CHUNKS = 1024  # past that (4 MB), chunks grow instead, so an edit's C-level work is bounded


def _target(size: int) -> int:
    """Chunk size for a document of `size` characters. An edit splits chunks longer than twice
    this and merges those shorter than a quarter of it with a neighbour."""
    return max(TARGET_CHUNK, size // MAX_CHUNKS)


def _split(text: str, target: int) -> list[str]:
    """`text` in chunks of about `target` characters, none ending between \\r and \\n."""
    if len(text) <= 2 * target:
        return [text] if text else []
    count = max(1, round(len(text) / target))
    size = -(-len(text) // count)
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if text[end - 1:end + 1] == "\r\n":
            end += 1
        pieces.append(text[start:end])
        start = end
    return pieces


class Text:
    """One immutable version of a document's text (see the module docstring)."""

    __slots__ = ("_breaks", "_chunks", "_cum", "_joined", "_lengths", "_units")

    def __init__(self, text: str = "") -> None:
        chunks = _split(text, _target(len(text)))
        self._set(tuple(chunks), tuple(map(len, chunks)), tuple(map(line_breaks, chunks)), {})
        self._joined: str | None = text

    def _set(self, chunks: tuple[str, ...], lengths: tuple[int, ...], breaks: tuple[int, ...],
             units: dict[str, tuple[int, ...]]) -> None:
        self._chunks = chunks
        self._lengths = lengths
        self._breaks = breaks
        self._units = units  # encoding → code units per chunk, filled on first use
        self._cum: dict[str, list[int]] = {}  # running sums, built once per version
        self._joined = None

    # -- sizes ------------------------------------------------------------------------------

    def _sums(self, kind: str) -> list[int]:
        """Running sums (chunk ends) of 'chars', 'breaks' or an encoding's code units."""
        sums = self._cum.get(kind)
        if sums is None:
            if kind == "chars":
                counts: Sequence[int] = self._lengths
            elif kind == "breaks":
                counts = self._breaks
            else:
                counts = self._chunk_units(kind)
            sums = self._cum[kind] = list(itertools.accumulate(counts))
        return sums

    def _chunk_units(self, encoding: str) -> tuple[int, ...]:
        if encoding == "utf-32":
            return self._lengths
        units = self._units.get(encoding)
        if units is None:
            units = self._units[encoding] = tuple(units_len(c, encoding) for c in self._chunks)
        return units

    def __len__(self) -> int:
        sums = self._sums("chars")
        return sums[-1] if sums else 0

    @property
    def line_count(self) -> int:
        sums = self._sums("breaks")
        return (sums[-1] if sums else 0) + 1

    def __str__(self) -> str:
        """The whole text, joined once per version (the debug command and neighbour context)."""
        if self._joined is None:
            self._joined = "".join(self._chunks)
        return self._joined

    # -- reading ----------------------------------------------------------------------------

    def _chunk_at(self, offset: int) -> tuple[int, int]:
        """(chunk index, chunk start) of the chunk holding `offset` (the last one at the end)."""
        ends = self._sums("chars")
        index = min(bisect.bisect_right(ends, offset), len(ends) - 1)
        return index, ends[index - 1] if index else 0

    def slice(self, start: int, end: int) -> str:
        """text[start:end], reading only the chunks it spans."""
        start, end = max(0, start), min(len(self), end)
        if start >= end:
            return ""
        if self._joined is not None:
            return self._joined[start:end]
        first, first_start = self._chunk_at(start)
        last, last_start = self._chunk_at(end - 1)
        if first == last:
            return self._chunks[first][start - first_start:end - first_start]
        return "".join((self._chunks[first][start - first_start:],
                        *self._chunks[first + 1:last],
                        self._chunks[last][:end - last_start]))

    def _break(self, number: int) -> tuple[int, re.Match[str]]:
        """The `number`-th line break of the document (1-based) and the offset of the chunk
        it is in: a bisection, then a scan of that one chunk."""
        sums = self._sums("breaks")
        index = bisect.bisect_left(sums, number)
        within = number - (sums[index - 1] if index else 0)
        match = next(itertools.islice(LINE_BREAK.finditer(self._chunks[index]), within - 1,
                                      None))
        return self._chunk_start(index), match

    def _chunk_start(self, index: int) -> int:
        return self._sums("chars")[index - 1] if index else 0

    def line_start(self, line: int) -> int:
        """Offset of the first character of `line` (0 <= line < line_count)."""
        if line == 0:
            return 0
        start, match = self._break(line)
        return start + match.end()

    def line_of(self, offset: int) -> int:
        """The line holding `offset` (its line break's line for an offset just before it): next
        edits number their hunks by line without joining the text."""
        offset = max(0, min(offset, len(self)))
        if not self._chunks:
            return 0
        index, start = self._chunk_at(offset)
        before = self._sums("breaks")[index - 1] if index else 0
        return before + len(LINE_BREAK.findall(self._chunks[index], 0, offset - start))

    def line_end(self, line: int) -> int:
        """Offset just after the last character of `line`, before its line break."""
        if line >= self.line_count - 1:
            return len(self)
        start, match = self._break(line + 1)
        return start + match.start()

    def _units_at(self, offset: int, encoding: str) -> int:
        """Code units before `offset`."""
        if not self._chunks:
            return 0
        index, start = self._chunk_at(offset)
        before = self._sums(encoding)[index - 1] if index else 0
        return before + units_len(self._chunks[index][:offset - start], encoding)

    def _offset_of_units(self, units: int, encoding: str) -> int:
        """The offset `units` code units into the document (inside a character → its start)."""
        sums = self._sums(encoding)
        index = bisect.bisect_right(sums, units)
        if index >= len(sums):
            return len(self)
        before = sums[index - 1] if index else 0
        chunk = self._chunks[index]
        rest = units - before
        within = rest if self._chunk_units(encoding)[index] == len(chunk) else \
            index_of_units(chunk, rest, encoding)
        return self._chunk_start(index) + within

    def offset(self, line: int, character: int, encoding: str = "utf-16", *,
               clamp: bool = True) -> int:
        """The offset of an LSP position. `clamp`: as VS Code clamps (module docstring);
        otherwise a position outside the document raises INVALID_PARAMS."""
        if line < 0 or character < 0:
            if not clamp:
                raise FimError(ErrorKind.INVALID_PARAMS,
                               f"position {line}:{character} is negative")
            if line < 0:
                return 0
        if line >= self.line_count:
            if not clamp:
                raise FimError(ErrorKind.INVALID_PARAMS, f"line {line} is outside the document "
                                                         f"({self.line_count} lines)")
            return len(self)
        start, end = self.line_start(line), self.line_end(line)
        if character <= 0:
            return start
        if encoding == "utf-32":
            first, length = 0, end - start
        else:
            first = self._units_at(start, encoding)
            length = self._units_at(end, encoding) - first
        if character >= length:
            if character > length and not clamp:
                raise FimError(ErrorKind.INVALID_PARAMS,
                               f"character {character} is past the end of line {line} "
                               f"({length} {encoding} units)")
            return end
        if encoding == "utf-32":
            return start + character
        return self._offset_of_units(first + character, encoding)

    # -- editing ----------------------------------------------------------------------------

    def replace(self, start: int, end: int, new: str) -> Text:
        """A new version with text[start:end] replaced by `new`; this one is unchanged."""
        start, end = max(0, min(start, len(self))), max(0, min(end, len(self)))
        if start > end:
            start, end = end, start
        if not self._chunks:
            return Text(new)
        chunks = self._chunks
        target = _target(len(self) - (end - start) + len(new))
        first, first_start = self._chunk_at(start)
        last, last_start = self._chunk_at(end)
        head = chunks[first][:start - first_start]
        tail = chunks[last][end - last_start:]
        # A \r ending the chunk before and a \n starting this region would be one line break:
        # take the neighbour in, so that no chunk boundary ever splits a \r\n.
        if first > 0 and chunks[first - 1].endswith("\r"):
            first -= 1
            head = chunks[first] + head
        if last + 1 < len(chunks) and (len(head) + len(new) + len(tail) < target // 4
                                       or chunks[last + 1].startswith("\n")):
            last += 1
            tail += chunks[last]
        if first > 0 and len(head) + len(new) + len(tail) < target // 4:
            first -= 1
            head = chunks[first] + head
        pieces = _split(head + new + tail, target)
        version = Text.__new__(Text)
        version._set(chunks[:first] + tuple(pieces) + chunks[last + 1:],
                     self._lengths[:first] + tuple(map(len, pieces)) + self._lengths[last + 1:],
                     self._breaks[:first] + tuple(map(line_breaks, pieces))
                     + self._breaks[last + 1:],
                     {encoding: units[:first] + tuple(units_len(p, encoding) for p in pieces)
                      + units[last + 1:] for encoding, units in self._units.items()})
        return version

    def apply(self, change: types.TextDocumentContentChangeEvent, encoding: str) -> Text:
        """One content change of a didChange, clamped as the module docstring says."""
        if not isinstance(change, types.TextDocumentContentChangePartial):
            return Text(change.text)
        start, end = change.range.start, change.range.end
        return self.replace(self.offset(start.line, start.character, encoding),
                            self.offset(end.line, end.character, encoding), change.text)


def _key(uri: str) -> str:
    return unquote(uri)  # clients differ in how they escape the same path


class Documents:
    """The open documents by URI: opened, changed and closed on the event loop only."""

    def __init__(self) -> None:
        self._texts: dict[str, Text] = {}

    def open(self, uri: str, text: str) -> None:
        self._texts[_key(uri)] = Text(text)

    def close(self, uri: str) -> None:
        self._texts.pop(_key(uri), None)

    def get(self, uri: str) -> Text | None:
        return self._texts.get(_key(uri))

    def text(self, uri: str) -> str | None:
        """The whole text (for the debug command and tests), or None if it is not open."""
        version = self.get(uri)
        return None if version is None else str(version)

    def all(self, allowed: Callable[[str], bool] | None = None) -> Mapping[str, str]:
        """The documents that may be scanned (not over MAX_DOCUMENT_CHARS, and `allowed` by
        their unescaped URI: `sources.ContextSources.allows`), by unescaped URI.

        A snapshot of immutable versions, safe on the worker thread; a text is joined only when
        it is read (neighbour context reads other documents, not the one being typed in) and
        then once per version, so an unchanged document is the very same string object.
        """
        snapshot = dict(self._texts)  # one C-level copy: the event loop may open or close
        return _View({k: v for k, v in snapshot.items() if len(v) <= MAX_DOCUMENT_CHARS
                      and (allowed is None or allowed(k))})

    def change(self, uri: str, changes: Sequence[types.TextDocumentContentChangeEvent],
               encoding: str,
               observer: Callable[[types.TextDocumentContentChangeEvent, Text, Text], None]
               | None = None) -> None:
        """Applies content changes in order, each relative to the text the previous one left.
        `observer` sees each change with the versions before and after it (edit history)."""
        key = _key(uri)
        version = self._texts.get(key)
        if version is None:
            return  # never opened: nothing to keep in step with
        for change in changes:
            after = version.apply(change, encoding)
            if observer is not None:
                observer(change, version, after)
            version = after
        self._texts[key] = version


class _View(Mapping[str, str]):
    """uri → text, joined on first read."""

    def __init__(self, versions: dict[str, Text]) -> None:
        self._versions = versions

    def __getitem__(self, uri: str) -> str:
        return str(self._versions[uri])

    def __iter__(self) -> Iterator[str]:
        return iter(self._versions)

    def __len__(self) -> int:
        return len(self._versions)
