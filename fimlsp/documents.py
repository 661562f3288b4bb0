"""The text of open documents, kept the LSP way.

Why not pygls's workspace: it applies incremental edits over `str.splitlines()`, which also breaks
lines at form feed, vertical tab, \\x1c-\\x1e, \\x85, U+2028 and U+2029. LSP breaks lines only at
\\r\\n, \\r and \\n, so after a form feed (PEP 8 allows them in Python) or a U+2028 in a JavaScript
string, every later edit would land on the wrong line and the server would complete a document
the user never wrote. We apply edits with `context.split_at`, which counts lines as LSP does.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote

from lsprotocol import types

from fimlsp.context import split_at


def _key(uri: str) -> str:
    return unquote(uri)  # clients differ in how they escape the same path


class Documents:
    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def open(self, uri: str, text: str) -> None:
        self._texts[_key(uri)] = text

    def close(self, uri: str) -> None:
        self._texts.pop(_key(uri), None)

    def get(self, uri: str) -> str | None:
        return self._texts.get(_key(uri))

    def all(self) -> dict[str, str]:
        """A snapshot (a new dict; the strings are shared) for the worker thread."""
        return dict(self._texts)

    def change(self, uri: str, changes: Sequence[types.TextDocumentContentChangeEvent],
               encoding: str) -> None:
        """Applies content changes in order, each relative to the text the previous one left."""
        key = _key(uri)
        text = self._texts.get(key)
        if text is None:
            return  # never opened: nothing to keep in step with
        for change in changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                before = split_at(text, start.line, start.character, encoding).prefix
                after = split_at(text, end.line, end.character, encoding).suffix
                text = before + change.text + after
            else:
                text = change.text
        self._texts[key] = text
