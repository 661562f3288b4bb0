"""The next-edit methods on the wire: GitHub Copilot's `textDocument/copilotInlineEdit`.

Shapes as Copilot's language server has them, read from the clients that render its answers
(copilot-lsp.nvim `lua/copilot-lsp/nes/init.lua` and `types.lua`, sidekick.nvim): params
`{textDocument: {uri, version}, position, context?}`, result `{edits: [{text, range,
textDocument: {uri, version}, command?}]}`; after showing one the client sends
`textDocument/didShowInlineEdit {item: {command}}`, and `textDocument/didFocus {textDocument:
{uri}}` when a buffer is entered. copilot-lsp.nvim iterates `result.edits` without a nil check, so
"nothing to suggest" is `{edits: []}`, never null; both plugins show the first edit.

A stale answer is never sent: a request whose version is not the document's current one gets
`{edits: []}` at once, a didChange for the document cancels its running next edit, and an answer
that comes back after the document moved on is dropped. The job yields to completions
(`Scheduler.submit(yields=True)`): a keystroke's inline completion never waits for a rewrite.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from lsprotocol import types

from fimlsp.errors import ErrorKind, FimError
from fimlsp.lsp.checks import CUSTOM_NOTIFICATIONS
from fimlsp.nextedit.service import SESSION_SUFFIX, Answer, capture, compute, format_for
from fimlsp.scheduler import Cancelled, CancelToken
from fimlsp.validation import json_type

if TYPE_CHECKING:
    from fimlsp.server import FimServer

log = logging.getLogger("fimlsp")

INLINE_EDIT = "textDocument/copilotInlineEdit"
DID_SHOW = "textDocument/didShowInlineEdit"
DID_FOCUS = "textDocument/didFocus"
CMD_ACCEPT_EDIT = "fimlsp.acceptNextEdit"
_KEPT = 64  # last answers kept (by document) for the inline-completion offer; dropped on close
CUSTOM_NOTIFICATIONS.update({DID_SHOW, DID_FOCUS})


class NextEditState:
    """Per server: the running job and the last answer of each document (event loop only)."""

    def __init__(self) -> None:
        self.running: dict[str, CancelToken] = {}
        self.last: OrderedDict[str, tuple[int, int, int | None, Answer]] = OrderedDict()
        self.shown = 0
        self.accepted = 0
        self._told = ""

    def changed(self, uri: str) -> None:
        """The document moved on: its running next edit is stale."""
        token = self.running.get(unquote(uri))
        if token is not None:
            token.cancel("superseded")

    def forget(self, uri: str) -> None:
        self.changed(uri)
        self.last.pop(unquote(uri), None)

    def remember(self, line: int, character: int, answer: Answer) -> None:
        key = unquote(answer.uri)
        self.last.pop(key, None)
        self.last[key] = (line, character, answer.version, answer)
        while len(self.last) > _KEPT:
            self.last.popitem(last=False)

    def tell_once(self, message: str) -> None:
        if message != self._told:
            self._told = message
            log.info(message)


def parse_params(raw: Any) -> tuple[str, int, int, int]:
    """(uri, version, line, character), or INVALID_PARAMS saying what is wrong."""
    def bad(why: str) -> FimError:
        return FimError(ErrorKind.INVALID_PARAMS, f"invalid params for {INLINE_EDIT}: {why}")

    if not isinstance(raw, dict):
        raise bad(f"params must be an object, not {json_type(raw)}")
    document, position = raw.get("textDocument"), raw.get("position")
    if not isinstance(document, dict) or not isinstance(document.get("uri"), str):
        raise bad("textDocument.uri (a string) is required")
    version = document.get("version")
    if type(version) is not int:
        raise bad("textDocument.version (an integer) is required: edits are for one version")
    if not isinstance(position, dict):
        raise bad("position {line, character} is required")
    line, character = position.get("line"), position.get("character")
    if type(line) is not int or type(character) is not int or line < 0 or character < 0:
        raise bad("position.line and position.character must be non-negative integers")
    return document["uri"], version, line, character


def wire(uri: str, version: int, answer: Answer) -> dict[str, Any]:
    """The answer as Copilot's server sends it."""
    edits = []
    for edit in answer.edits:
        r = edit.range
        edits.append({
            "text": edit.new_text,
            "range": {"start": {"line": r.start.line, "character": r.start.character},
                      "end": {"line": r.end.line, "character": r.end.character}},
            "textDocument": {"uri": uri, "version": version},
            "command": {"title": "fimlsp: next edit accepted", "command": CMD_ACCEPT_EDIT,
                        "arguments": [uri, version]}})
    return {"edits": edits}


async def inline_edit(ls: FimServer, raw: Any) -> dict[str, Any]:
    uri, version, line, character = parse_params(raw)
    none: dict[str, Any] = {"edits": []}
    state: NextEditState = ls.next_edits
    doc = ls.documents.get(uri)
    if doc is None:
        raise FimError(ErrorKind.UNKNOWN_DOCUMENT, f"{uri} was never opened (didOpen)")
    if ls.history.version(uri) != version:
        ls.request_log(f"next edit {uri}@{version}: stale (the document is at "
                       f"{ls.history.version(uri)}); no edits")
        return none
    cursor = doc.offset(line, character, ls.encoding, clamp=False)
    ls.history.viewed(uri, line)
    if ls.state != "ready":
        ls.not_ready()
        return none
    completer = ls.completer
    fmt = format_for(completer)
    if fmt is None:
        state.tell_once(f"no next edits: model {ls.settings.model} has no next-edit format "
                        f"(nextEditFormat {ls.settings.next_edit_format}; Sweep's next-edit "
                        "models and other Qwen2.5-Coder-family models have one)")
        return none
    kept = state.last.get(unquote(uri))
    if kept is not None and kept[:3] == (line, character, version):
        return wire(uri, version, kept[3])  # asked again for the same place and version
    request = capture(ls.history, ls.documents, uri, version, doc, cursor, ls.encoding, fmt)
    future, token = ls.scheduler.submit(
        unquote(uri) + SESSION_SUFFIX, lambda tok: compute(completer, request, tok),
        ls.settings.time_budget_ms / 1000, yields=True)
    state.running[unquote(uri)] = token
    try:
        answer = await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        token.cancel("cancelled")
        raise
    except Cancelled as cancelled:
        ls.request_log(f"next edit {uri}@{version}: {cancelled.reason} before it started")
        return none
    finally:
        if state.running.get(unquote(uri)) is token:
            del state.running[unquote(uri)]
    ls.request_log(answer.log_line())
    if ls.history.version(uri) != version:  # typed on while it ran: never sent as current
        ls.request_log(f"next edit {uri}@{version}: the document moved on; dropped")
        return none
    state.remember(line, character, answer)
    state.shown += bool(answer.edits)
    return wire(uri, version, answer)


def inline_item(ls: FimServer, uri: str, position: types.Position
                ) -> types.InlineCompletionItem | None:
    """The last next edit of this document as an inline completion, when it is for the current
    version and changes only the cursor's line: LSP 3.18 clients show it as ghost text that
    replaces a range. The range covers the edit and the cursor (clients want the cursor in it)."""
    kept = ls.next_edits.last.get(unquote(uri))
    doc = ls.documents.get(uri)
    if kept is None or doc is None or kept[2] != ls.history.version(uri):
        return None
    line = position.line
    edits = kept[3].edits
    if len(edits) != 1 or edits[0].range.start.line != line or edits[0].range.end.line != line \
            or "\n" in edits[0].new_text or "\r" in edits[0].new_text:
        return None
    edit = edits[0]
    start = doc.offset(line, edit.range.start.character, ls.encoding)
    end = doc.offset(line, edit.range.end.character, ls.encoding)
    at = doc.offset(line, position.character, ls.encoding)
    low, high = min(start, at), max(end, at)
    text = doc.slice(low, start) + edit.new_text + doc.slice(end, high)
    if text == doc.slice(low, high):
        return None
    low_character = min(edit.range.start.character, position.character)
    high_character = max(edit.range.end.character, position.character)
    return types.InlineCompletionItem(
        insert_text=text,
        range=types.Range(start=types.Position(line=line, character=low_character),
                          end=types.Position(line=line, character=high_character)),
        command=types.Command(title="fimlsp: next edit accepted", command=CMD_ACCEPT_EDIT,
                              arguments=[uri, kept[2]]))


def register(server: FimServer) -> None:
    """The next-edit handlers; `server.py` calls this once."""

    @server.feature(INLINE_EDIT)
    async def copilot_inline_edit(ls: FimServer, params: Any) -> Any:
        return await ls.guarded(inline_edit(ls, params), {"edits": []})

    @server.feature(DID_SHOW)
    def did_show(ls: FimServer, _params: Any) -> None:
        """The client showed an edit (copilot-lsp.nvim, sidekick.nvim): nothing to do."""

    @server.feature(DID_FOCUS)
    def did_focus(ls: FimServer, _params: Any) -> None:
        """A buffer was entered: the cursor comes with the next request, not here."""

    @server.command(CMD_ACCEPT_EDIT)
    def accept_edit(ls: FimServer, uri: str, version: int | None) -> None:
        """The arguments its items carry, declared so the protocol checks them: anything else
        is -32602 and counts nothing."""
        ls.next_edits.accepted += 1
