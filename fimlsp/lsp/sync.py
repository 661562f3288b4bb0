"""Document sync: didOpen / didChange / didClose reach our store, never pygls's workspace.

pygls 2.1 applies every didChange to its own workspace before a handler sees it, over
`str.splitlines()` lines (which also break at form feed, vertical tab, \\x1c-\\x1e, U+0085,
U+2028 and U+2029), and its position codec rewrites the change's range *in place* (a character
past the end of a line becomes "one before the end"). Our handlers would then read a range that
no longer says what the client sent. `DocumentSync` replaces pygls's three built-in
document-sync handlers, so its workspace never sees, stores or rewrites a document; the
`documents.Documents` store is the only copy, and the server's handlers keep it in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lsprotocol import types
from pygls.protocol import lsp_method

from fimlsp.lsp.pygls_seam import PyglsProtocol


class DocumentSync(PyglsProtocol):
    """pygls's protocol with its built-in didOpen/didChange/didClose replaced.

    pygls registers those three as built-in features; each puts the document into, or applies
    the change to, `self.workspace` and then calls the user's handler. Overriding them by name
    (`pygls_seam` says why the names matter) keeps the user's handler and drops the workspace.
    """

    def _user(self, method: str, params: Any) -> Iterator[Any]:
        handler = self.fm.features.get(method)
        if handler is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams
                                    ) -> Iterator[Any]:
        yield from self._user(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams
                                      ) -> Iterator[Any]:
        yield from self._user(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams
                                     ) -> Iterator[Any]:
        yield from self._user(types.TEXT_DOCUMENT_DID_CLOSE, params)


def clamp_negative(params: Any) -> None:
    """In place: a negative line → 0:0, a negative character → 0 (VS Code's clamping, as
    `documents` clamps every other out-of-range position).

    Runs on a didChange's raw JSON before its params are checked (`protocol.FimProtocol`):
    lsprotocol's `uinteger` would otherwise reject the whole notification and with it every
    valid change it carries."""
    changes = params.get("contentChanges") if isinstance(params, dict) else None
    for change in changes if isinstance(changes, list) else ():
        rng = change.get("range") if isinstance(change, dict) else None
        for side in ("start", "end"):
            position = rng.get(side) if isinstance(rng, dict) else None
            if not isinstance(position, dict):
                continue
            line, character = position.get("line"), position.get("character")
            if type(line) is int and line < 0:
                position["line"], position["character"] = 0, 0
            elif type(character) is int and character < 0:
                position["character"] = 0
